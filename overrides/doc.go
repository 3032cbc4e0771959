/*
Copyright The vk8s Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package overrides holds the pure rules of federated workloads that the admission webhook
// applies: parsing the annotations users write, choosing, validating and applying
// Overrides, applying WorkloadFlavors, and the per-site replica arithmetic. Nothing here
// talks to a cluster; every function takes the objects it needs and returns new ones,
// leaving its arguments unmodified. docs/overrides.md describes the rules for users.
//
// # Annotations
//
// ParseVirtualSites, ParseOverrides and ParseWorkloadFlavor read ves.io/virtual-sites,
// ves.io/overrides and ves.io/workload-flavor. Lists are comma-separated; whitespace and
// quotes (plain or typographic, as pasted from documents) around the value or an entry are
// ignored, since no name can hold them; empty entries, malformed names and namespaces other
// than the workload's and the shared one are rejected with an *AnnotationError that names
// the annotation, the value, the reason and the fix. An absent or empty annotation means
// the default: the namespace's virtual-site, no Overrides, DefaultWorkloadFlavor.
//
// # Overrides
//
// SelectOverride picks the Override of a site: the first one, in the annotation's order,
// whose siteList holds the site. ValidateOverride checks an Override on its own (at its
// CREATE and UPDATE); ValidateOverrideForWorkload adds the checks against the workload
// that names it. ApplyOverride makes the pod template, replica count and strategy of one
// site: the Override's template replaces the workload's, but the workload selector's
// labels, pod identity and the labels controllers own are kept, and the pod is labelled
// vk8s.io/override=<name> so metrics can be split per Override.
//
// # Flavors
//
// ApplyFlavor sizes every container and init container on RegionalEdge sites: limits are
// the flavor's, requests 25% of the CPU limit and 50% of the memory limit, rounded down to
// whole millicores and bytes. CustomerEdge sites keep the manifest. BuiltinFlavors returns
// the three flavors the chart and the lab install.
//
// # Replicas
//
// Replicas are per site: PlanReplicas spreads R over the sites (Override replicas replace R
// on their sites) and returns the total for spec.replicas; ScaleJob multiplies a Job's
// parallelism and completions the same way. ReplicasPerSite derives R from a write of
// spec.replicas, rounding up unless asked to be strict.
package overrides

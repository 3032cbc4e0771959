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

// Package webhook is vk8s' admission webhook: it turns a workload of a vK8s namespace into
// "R replicas on every selected site", places each of its pods on a site, and applies the
// site's Override and WorkloadFlavor to the pod (SPEC §3 and §4). The rules are package
// overrides' (annotations, Overrides, flavors) and package placement's (replicas, plans,
// site choice); the federation of a workload is resolved by package federation's
// Resolver, which admission shares with the controllers that keep placement true after
// admission. This package only answers the API server. docs/webhook.md describes it for
// users and operators.
//
// # Workloads
//
// Deployments, StatefulSets, ReplicaSets (but a Deployment's), DaemonSets, Jobs and
// CronJobs (but a CronJob's Jobs) are mutated on create and update (workload.go), and the
// scale subresource of the first three on update (scale.go): the sites are resolved
// (ves.io/virtual-sites, else the namespace's VirtualKubernetes), spec.replicas becomes
// the total and vk8s.io/replicas-per-site holds R (Jobs: parallelism and completions are
// multiplied), the plan is recorded in vk8s.io/placement, and the pod template gains the
// toleration of virtual nodes and a required node affinity on vk8s.io/site limited to the
// sites. A write through the scale subresource hands R to the federation Refresher.
//
// # Pods
//
// A pod's site is chosen by its controller's kind (pod.go): the largest deficit against
// the plan for ReplicaSet and non-indexed Job pods, counting the pods admitted but not yet
// in the cache (the State's reservations, which expire) and not those the rollout deleted;
// ordinal blocks for StatefulSets and indexed Jobs; the node's site for DaemonSets; the
// fewest pods of the namespace for bare pods. The pod is pinned there by a required node
// affinity, gets the site's Override (applied at the template level, keeping what
// admission added: carryOver in podspec.go) and flavor, the labels vk8s.io/site and
// vk8s.io/override, and the stamp vk8s.io/override-hash. Its name, namespace, UID and
// owner references never change.
//
// # Validation
//
// Annotations, virtual-sites, Overrides, WorkloadFlavors and VirtualKubernetes objects
// are checked with messages that name the field, the value and the fix (validate.go);
// HorizontalPodAutoscalers aimed at federated workloads and vK8s annotations outside vK8s
// namespaces are refused. Every denial is a *federation.Rejection error, whose reason
// labels vk8s_webhook_rejections_total; any other error fails the request.
//
// # Serving
//
// Server runs a manager with the HTTPS webhook server, the cache, the federation
// controllers (federation.State.SetupWithManager), and the registrar that keeps the
// process's own two webhook configurations (configurations.go) and their CA bundle
// (package certs rotates the CA and the serving certificate).
package webhook

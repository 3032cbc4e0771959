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

package translate

// Fate is what vk8s does with objects of a kind in a vK8s namespace.
type Fate string

// Fates of the kinds in a vK8s namespace (docs/applications.md, "Kind by kind").
const (
	// FateFederated kinds run on the sites: R per site (workloads) or where admission placed
	// them (pods).
	FateFederated Fate = "federated"
	// FateMirrored kinds are on every site of the namespace (package mirror).
	FateMirrored Fate = "mirrored"
	// FateReferenced kinds go to the sites whose pods use them (package provider).
	FateReferenced Fate = "referenced"
	// FateHostOnly kinds mean something on the host alone: they describe or govern the host's
	// objects.
	FateHostOnly Fate = "host-only"
)

// NamespaceKind is a kind a vK8s namespace may hold, and what becomes of it.
type NamespaceKind struct {
	// Group and Resource name it as the API does ("" and "pods").
	Group, Resource string
	// Kind is its kind.
	Kind string
	Fate Fate
}

// NamespaceKinds are the kinds a vK8s namespace may hold; admission refuses the creation of
// any other (a ValidatingAdmissionPolicy of package webhook), naming these.
var NamespaceKinds = []NamespaceKind{
	{"", "pods", "Pod", FateFederated},
	{"apps", "deployments", "Deployment", FateFederated},
	{"apps", "replicasets", "ReplicaSet", FateFederated},
	{"apps", "statefulsets", "StatefulSet", FateFederated},
	{"apps", "daemonsets", "DaemonSet", FateFederated},
	{"batch", "jobs", "Job", FateFederated},
	{"batch", "cronjobs", "CronJob", FateFederated},
	{"", "services", "Service", FateMirrored},
	{"", "configmaps", "ConfigMap", FateMirrored},
	{"", "serviceaccounts", "ServiceAccount", FateMirrored},
	{"rbac.authorization.k8s.io", "roles", "Role", FateMirrored},
	{"rbac.authorization.k8s.io", "rolebindings", "RoleBinding", FateMirrored},
	{"networking.k8s.io", "networkpolicies", "NetworkPolicy", FateMirrored},
	{"", "secrets", "Secret", FateReferenced},
	{"", "persistentvolumeclaims", "PersistentVolumeClaim", FateReferenced},
	{"policy", "poddisruptionbudgets", "PodDisruptionBudget", FateHostOnly},
	{"autoscaling", "horizontalpodautoscalers", "HorizontalPodAutoscaler", FateHostOnly},
	{"", "limitranges", "LimitRange", FateHostOnly},
	{"", "resourcequotas", "ResourceQuota", FateHostOnly},
	{"", "events", "Event", FateHostOnly},
	{"events.k8s.io", "events", "Event", FateHostOnly},
	{"", "endpoints", "Endpoints", FateHostOnly},
	{"discovery.k8s.io", "endpointslices", "EndpointSlice", FateHostOnly},
	{"apps", "controllerrevisions", "ControllerRevision", FateHostOnly},
	{"coordination.k8s.io", "leases", "Lease", FateHostOnly},
	{"authorization.k8s.io", "localsubjectaccessreviews", "LocalSubjectAccessReview", FateHostOnly},
	{"vk8s.io", "virtualkubernetes", "VirtualKubernetes", FateHostOnly},
	{"vk8s.io", "virtualsites", "VirtualSite", FateHostOnly},
	{"vk8s.io", "overrides", "Override", FateHostOnly},
}

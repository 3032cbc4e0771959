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

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SiteType says who runs a site and so how workload flavors apply to it.
// +kubebuilder:validation:Enum=RegionalEdge;CustomerEdge
type SiteType string

const (
	// SiteTypeRegionalEdge sites give every container its flavor's limits and requests.
	SiteTypeRegionalEdge SiteType = "RegionalEdge"
	// SiteTypeCustomerEdge sites honour the manifest's resources unchanged.
	SiteTypeCustomerEdge SiteType = "CustomerEdge"
)

// NodeMode says how a site appears as virtual nodes in the host cluster.
// +kubebuilder:validation:Enum=PerNode;Aggregate
type NodeMode string

const (
	// NodeModePerNode shows one virtual node per real node, named <site>-<node>.
	NodeModePerNode NodeMode = "PerNode"
	// NodeModeAggregate shows one virtual node per site, named after the site.
	NodeModeAggregate NodeMode = "Aggregate"
)

// PodSecurityLevel is a Pod Security Standard
// (https://kubernetes.io/docs/concepts/security/pod-security-standards/), from the most
// permissive to the strictest: privileged, baseline, restricted.
// +kubebuilder:validation:Enum=privileged;baseline;restricted
type PodSecurityLevel string

const (
	// PodSecurityPrivileged allows every pod, privileged ones included.
	PodSecurityPrivileged PodSecurityLevel = "privileged"
	// PodSecurityBaseline refuses pods that escalate privileges in known ways: privileged
	// containers, host namespaces, host ports and paths, added capabilities beyond the
	// default set.
	PodSecurityBaseline PodSecurityLevel = "baseline"
	// PodSecurityRestricted adds the hardening best practices to baseline: non-root, no
	// privilege escalation, capabilities dropped, a seccomp profile.
	PodSecurityRestricted PodSecurityLevel = "restricted"
)

// PodSecurity is the Pod Security Admission of the namespaces vk8s creates on a site.
type PodSecurity struct {
	// enforce is the level the site's Pod Security Admission enforces in the namespaces
	// vk8s creates there (label pod-security.kubernetes.io/enforce, version latest; warn
	// and audit at the same level): the site refuses a pod that breaks it.
	// +optional
	// +kubebuilder:default=baseline
	Enforce PodSecurityLevel `json:"enforce,omitempty"`
}

// SiteSpec is the desired state of a Site.
type SiteSpec struct {
	// kubeconfigSecretRef points at the Secret key that holds the site's kubeconfig.
	// +required
	KubeconfigSecretRef SecretKeyReference `json:"kubeconfigSecretRef"`

	// type of the site: RegionalEdge applies workload flavors, CustomerEdge keeps manifests.
	// +optional
	// +kubebuilder:default=CustomerEdge
	Type SiteType `json:"type,omitempty"`

	// nodeMode says whether each real node is a virtual node (PerNode) or the whole site is
	// one (Aggregate).
	// +optional
	// +kubebuilder:default=PerNode
	NodeMode NodeMode `json:"nodeMode,omitempty"`

	// nodeSelector, when set, limits the site to the cluster's nodes with these labels, so
	// one cluster can hold several sites.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// unschedulable keeps new pods off the site's virtual nodes; running pods stay.
	// +optional
	Unschedulable bool `json:"unschedulable,omitempty"`

	// podSecurity is the Pod Security Standard of the namespaces vk8s creates on the site,
	// baseline unless set: a pod that breaks it is refused there, and its host pod says
	// why. Sites that are node-selected parts of one cluster share its namespaces, which
	// take the strictest of their levels. Namespaces vk8s did not create keep their own
	// labels.
	// +optional
	// +kubebuilder:default={}
	PodSecurity PodSecurity `json:"podSecurity,omitzero"`
}

// SecretKeyReference names one key of a Secret.
type SecretKeyReference struct {
	// namespace of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`

	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key in the Secret's data that holds the value.
	// +optional
	// +kubebuilder:default=kubeconfig
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// SiteStatus is the observed state of a Site.
type SiteStatus struct {
	// conditions: Connected (the API server answers with the credentials) and Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// clusterID identifies the cluster the Site reached first: the UID of its kube-system
	// namespace. A later kubeconfig that reaches a cluster with another ID is refused
	// (Connected=False, reason ClusterChanged) until the Secret points at this cluster
	// again; to move a Site to another cluster on purpose, delete and create it again.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ClusterID string `json:"clusterID,omitempty"`

	// kubernetesVersion reported by the site's API server.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// nodeCount is the number of the site's nodes.
	// +optional
	NodeCount int32 `json:"nodeCount,omitempty"`

	// allocatable is the sum of the allocatable resources of the site's nodes.
	// +optional
	Allocatable corev1.ResourceList `json:"allocatable,omitempty"`

	// lastHeartbeatTime is when vk8s last reached the site.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`

	// virtualNodes names the host nodes that stand for the site, sorted.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5000
	VirtualNodes []string `json:"virtualNodes,omitempty"`
}

// Site registers one remote Kubernetes cluster, or a node-selected part of one.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=vk8s-all
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.nodeMode`
// +kubebuilder:printcolumn:name="Connected",type=string,JSONPath=`.status.conditions[?(@.type=="Connected")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodeCount`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.kubernetesVersion`
// +kubebuilder:printcolumn:name="Pod-Security",type=string,JSONPath=`.spec.podSecurity.enforce`,priority=1
// +kubebuilder:printcolumn:name="Cluster-ID",type=string,JSONPath=`.status.clusterID`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Site struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the site.
	// +required
	Spec SiteSpec `json:"spec"`

	// status is the observed state of the site.
	// +optional
	Status SiteStatus `json:"status,omitempty"`
}

// SiteList is a list of Sites.
// +kubebuilder:object:root=true
type SiteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Site `json:"items"`
}

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

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// VirtualKubernetesSpec is the desired state of a VirtualKubernetes.
type VirtualKubernetesSpec struct {
	// virtualSite is the namespace's default virtual-site, as <namespace>/<name> or, for one
	// in this namespace, <name>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	VirtualSite string `json:"virtualSite"`
}

// VirtualKubernetesStatus is the observed state of a VirtualKubernetes.
type VirtualKubernetesStatus struct {
	// conditions: Ready when the namespace and its NetworkPolicy exist on every selected site.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// siteNamespace is the namespace on every site that holds this namespace's pods:
	// <tenant>-<namespace>.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	SiteNamespace string `json:"siteNamespace,omitempty"`

	// sites names the sites of the default virtual-site, sorted.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	Sites []string `json:"sites,omitempty"`

	// departedSites names sites that left the default virtual-site where vk8s has not yet
	// removed the NetworkPolicy and the namespace it made: it waits while pods or
	// PersistentVolumeClaims of the namespace remain there, or for the site to answer.
	// Sorted.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	DepartedSites []string `json:"departedSites,omitempty"`
}

// VirtualKubernetes makes its namespace a vK8s namespace: workloads there run on the sites
// of its default virtual-site. At most one per namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=vk8s-all,shortName=vk8s
// +kubebuilder:printcolumn:name="Virtual-Site",type=string,JSONPath=`.spec.virtualSite`
// +kubebuilder:printcolumn:name="Site-Namespace",type=string,JSONPath=`.status.siteNamespace`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualKubernetes struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the vK8s namespace.
	// +required
	Spec VirtualKubernetesSpec `json:"spec"`

	// status is the observed state of the vK8s namespace.
	// +optional
	Status VirtualKubernetesStatus `json:"status,omitempty"`
}

// VirtualKubernetesList is a list of VirtualKubernetes objects.
// +kubebuilder:object:root=true
type VirtualKubernetesList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualKubernetes `json:"items"`
}

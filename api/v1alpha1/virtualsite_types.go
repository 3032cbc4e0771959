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

// VirtualSiteSpec is the desired state of a VirtualSite.
type VirtualSiteSpec struct {
	// siteSelector selects Sites by their labels. An empty selector selects every Site.
	// +required
	SiteSelector metav1.LabelSelector `json:"siteSelector"`

	// siteType, when set, keeps only the selected Sites of this type.
	// +optional
	SiteType SiteType `json:"siteType,omitempty"`
}

// VirtualSiteStatus is the observed state of a VirtualSite.
type VirtualSiteStatus struct {
	// conditions: Ready when the selector resolved.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// sites names the selected Sites, sorted.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	Sites []string `json:"sites,omitempty"`

	// siteCount is the number of selected Sites.
	// +optional
	SiteCount int32 `json:"siteCount,omitempty"`
}

// VirtualSite is a label selector over Sites, referenced by workloads as <namespace>/<name>.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=vk8s-all,shortName=vsite
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.siteType`
// +kubebuilder:printcolumn:name="Sites",type=integer,JSONPath=`.status.siteCount`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualSite struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the virtual-site.
	// +required
	Spec VirtualSiteSpec `json:"spec"`

	// status is the observed state of the virtual-site.
	// +optional
	Status VirtualSiteStatus `json:"status,omitempty"`
}

// VirtualSiteList is a list of VirtualSites.
// +kubebuilder:object:root=true
type VirtualSiteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualSite `json:"items"`
}

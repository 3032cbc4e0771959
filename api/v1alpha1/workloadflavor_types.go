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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkloadFlavorSpec is the desired state of a WorkloadFlavor.
type WorkloadFlavorSpec struct {
	// cpu is the CPU limit of every container; the request is 25% of it.
	// +required
	CPU resource.Quantity `json:"cpu"`

	// memory is the memory limit of every container; the request is 50% of it.
	// +required
	Memory resource.Quantity `json:"memory"`
}

// WorkloadFlavorStatus is the observed state of a WorkloadFlavor.
type WorkloadFlavorStatus struct {
	// conditions: Ready when the limits are valid.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// WorkloadFlavor sizes every container of a workload on RegionalEdge sites; workloads name
// it in the ves.io/workload-flavor annotation.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=vk8s-all,shortName=flavor
// +kubebuilder:printcolumn:name="CPU",type=string,JSONPath=`.spec.cpu`
// +kubebuilder:printcolumn:name="Memory",type=string,JSONPath=`.spec.memory`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WorkloadFlavor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the flavor.
	// +required
	Spec WorkloadFlavorSpec `json:"spec"`

	// status is the observed state of the flavor.
	// +optional
	Status WorkloadFlavorStatus `json:"status,omitempty"`
}

// WorkloadFlavorList is a list of WorkloadFlavors.
// +kubebuilder:object:root=true
type WorkloadFlavorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkloadFlavor `json:"items"`
}

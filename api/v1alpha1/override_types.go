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
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OverrideDeploymentSpec is the part of an apps/v1 DeploymentSpec that an Override sets on
// its sites. replicas, template and strategy are honoured; selector must equal the
// workload's. The other DeploymentSpec fields are listed so that a manifest setting them is
// rejected with a clear message by the webhook instead of being pruned in silence.
type OverrideDeploymentSpec struct {
	// replicas replaces the workload's per-site replica count on the override's sites.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`

	// selector, when set, must equal the workload's selector.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// template replaces the workload's pod template on the override's sites; the labels of
	// the workload's selector are always kept.
	// +optional
	Template *corev1.PodTemplateSpec `json:"template,omitempty"`

	// strategy sets the pace of the per-site rollout on the override's sites.
	// +optional
	Strategy *appsv1.DeploymentStrategy `json:"strategy,omitempty"`

	// minReadySeconds is not supported in an Override; the webhook rejects it.
	// +optional
	MinReadySeconds *int32 `json:"minReadySeconds,omitempty"`

	// revisionHistoryLimit is not supported in an Override; the webhook rejects it.
	// +optional
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`

	// paused is not supported in an Override; the webhook rejects it.
	// +optional
	Paused *bool `json:"paused,omitempty"`

	// progressDeadlineSeconds is not supported in an Override; the webhook rejects it.
	// +optional
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`
}

// OverrideSpec is the desired state of an Override.
type OverrideSpec struct {
	// siteList names the Sites on which deploymentSpec replaces the workload's spec.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	SiteList []string `json:"siteList"`

	// deploymentSpec replaces the workload's spec on the listed sites.
	// +required
	DeploymentSpec OverrideDeploymentSpec `json:"deploymentSpec"`
}

// OverrideStatus is the observed state of an Override.
type OverrideStatus struct {
	// sites are the Sites of siteList that exist, sorted: where the Override applies to the
	// workloads that name it.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:MaxLength=253
	Sites []string `json:"sites,omitempty"`

	// conditions: Ready when the Override is valid and every listed Site exists.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// Override replaces a workload's spec on a list of sites (canary, A/B). Workloads name their
// Overrides, in order, in the ves.io/overrides annotation; per site the first match wins.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=vk8s-all,shortName=ovr
// +kubebuilder:printcolumn:name="Sites",type=string,JSONPath=`.spec.siteList`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Override struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the override.
	// +required
	Spec OverrideSpec `json:"spec"`

	// status is the observed state of the override.
	// +optional
	Status OverrideStatus `json:"status,omitempty"`
}

// OverrideList is a list of Overrides.
// +kubebuilder:object:root=true
type OverrideList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Override `json:"items"`
}

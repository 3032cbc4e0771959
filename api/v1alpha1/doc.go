// Package v1alpha1 holds the vk8s.io/v1alpha1 API: Site, VirtualSite, VirtualKubernetes,
// Override and WorkloadFlavor.
//
// # Kinds
//
// A Site registers one remote Kubernetes cluster (or a node-selected part of one); its labels
// are what VirtualSites select on. A VirtualKubernetes turns a host namespace into a vK8s
// namespace whose workloads run on the sites of its default VirtualSite. Overrides replace a
// workload's spec on some sites, and WorkloadFlavors size its containers.
//
// The semantics are fixed by the project's specification; docs/api.md explains each field.
//
// +kubebuilder:object:generate=true
// +groupName=vk8s.io
package v1alpha1

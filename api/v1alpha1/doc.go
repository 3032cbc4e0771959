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

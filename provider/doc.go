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

// Package provider is the vk8s virtual-kubelet provider: the process that shows every site
// of the site registry as virtual nodes in the host cluster (package vnode) and runs the
// pods bound to them on the sites. Run assembles the process: the site registry, the
// virtual nodes, the pods, the kubelet API (package kubeletapi) and the tenancy
// controllers (package tenancy), in one controller-runtime manager.
//
// # Pods
//
// Pods is virtual-kubelet's PodLifecycleHandler and PodNotifier for every virtual node: one
// virtual-kubelet PodController over one host pod informer serves them all (lifecycle.go).
// A host pod becomes its site pod by translate.SitePod, in namespace <tenant>-<namespace>
// (translate.SiteNamespace), pinned to the real node in PerNode mode and labelled with the
// tenant, the host namespace and the host pod's UID. The work on a site cluster goes
// through that cluster's own queue and workers (cluster.go, sitesync.go), so a slow or dead
// cluster only slows its own; the ConfigMaps, Secrets, ServiceAccounts and
// PersistentVolumeClaims a pod uses are copied there first and kept in step (copies.go).
// Status comes back from site informers through NotifyPods.
//
// # Site errors
//
// A site's refusal to create a pod is permanent or transient by its status code
// (permanentRejection): 422, 400 and 413 say the pod itself is unacceptable and fail the
// host pod (a ValidatingAdmissionPolicy answers 422 unless its validation says another
// reason); anything else (403 from quota, admission plugins or a policy with reason
// Forbidden, 5xx, timeouts) is retried with backoff while a condition and an Event quote
// the site. A refusal by the site's Pod Security Admission says so with its own reason
// (translate.ReasonPodSecurity) and the fix; when the level of a cluster's Sites changes
// (Registry.Watch), syncPodSecurity relabels the namespaces this host created there and
// queues the pods the old level refused.
//
// # Pods bound before their node
//
// A pod bound by hand to a virtual node that is not registered yet is picked up when the
// node appears (early.go): NodeAdded writes a condition into its status, and the update
// event passes the pod controller's filter as an Add.
//
// # The kubelet API's questions
//
// Pods also answers kubeletapi.Resolver from its caches (resolver.go): where a host pod
// runs, which real nodes a virtual node stands for, which host pod a site pod runs for.
package provider

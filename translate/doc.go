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

// Package translate holds the pure translations between the host and the sites: how a host
// pod becomes a site pod and how the site's status comes back, how a site's nodes become
// virtual nodes, what a pod spec references and what its site copies look like, and how
// host namespaces are named and isolated on the sites. Nothing here talks to a cluster
// (lint forbids client-go clients, informers and controller-runtime here); every function
// takes the objects it needs and returns new ones, leaving its arguments unmodified, so it
// is tested with plain tables. The provider, the virtual nodes and the tenancy controllers
// do the I/O around it.
//
// # Pods
//
// SitePod translates a host pod into the pod to create on its site: in the site namespace
// (SiteNamespace), labelled with the tenant, the host namespace, the host pod's UID and
// the Site it runs on, pinned to the real node in PerNode mode (Target), without what only means something in
// the host (the binding to the virtual node, the host's service-account token volume, the
// virtual nodes' toleration, node selection and priority class). ReachesSite says whether
// a host pod bound to a virtual node may go to its site at all (vK8s namespaces, the vk8s
// taint tolerated by key, or a pod bound by hand; never a host-wide DaemonSet).
//
// # Status
//
// HostStatus is the site's status as the host pod shows it; StaleStatus marks it stale
// while the site does not answer (Ready=False with reason SiteUnreachable after the grace
// period); TerminatedStatus ends a host pod whose site pod is gone. HostView and SiteUpdate
// compare and carry the fields a pod update may change (labels, annotations, images, the
// active deadline) between the two. SitePod records on the site pod what vk8s wrote of
// them (AnnotationLastApplied), and SiteUpdate is a three-way merge against that record,
// as kubectl apply's: it writes what the host changed since and leaves what the site's
// admission or controllers added or rewrote (SPEC §4, "Ownership").
//
// # Virtual nodes
//
// VirtualNodes turns a site's nodes into host Nodes: in PerNode mode one per real node,
// named VirtualNodeName (<site>-<node>; one that VirtualNodeNameFits refuses, longer than a
// label value, is left out), with its capacity, conditions and topology labels; in
// Aggregate mode one per site with the allocatable of its schedulable, Ready nodes summed.
// Every virtual node carries vk8s.io/site, type=virtual-kubelet and the taint only vK8s
// pods tolerate. Disconnected is a virtual node whose site does not answer: still
// Ready, SiteConnected=False and a NoSchedule taint.
//
// # References and copies
//
// References lists the ConfigMaps, Secrets, ServiceAccount and PersistentVolumeClaims a pod
// spec uses; SiteCopy is the object kept on the site for one of them, CopyUpdate the
// update of a copy (its labels and annotations merged three-way against its
// AnnotationLastApplied, as a site pod's, its content the host's), and SameCopy says
// whether a copy is up to date.
//
// # Site namespaces
//
// SiteNamespace names the namespace of a host namespace on a site: <tenant>-<namespace>,
// cut to 63 characters with a stable hash. Namespace is that namespace as vk8s creates it
// (labelled vk8s.io/tenant and vk8s.io/host-namespace, which CreatedByVK8s checks), and
// IsolationPolicy its NetworkPolicy: pods accept ingress only from their own namespace.
//
// # Pod Security
//
// SitePodSecurity is the level a Site asks for its namespaces (spec.podSecurity.enforce,
// baseline by default), StrictestPodSecurity the level of namespaces that several Sites of
// one cluster share, PodSecurityLabels the Pod Security Admission labels of a level, and
// WithPodSecurity a namespace vk8s created brought to a level. PodSecurityViolation
// recognizes a site's refusal by its Pod Security Admission, and PodSecurityRefusal says it
// on the host pod with the fix.
package translate

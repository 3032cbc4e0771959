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

// Package tenancy gives the namespaces of the host their place on the sites: the site
// namespace <tenant>-<namespace> and its isolation NetworkPolicy on every site of a
// VirtualKubernetes' virtual-site, and the status of VirtualSites. It runs in the provider
// process (provider.Run), elected with the rest, because it uses the site registry's
// connections.
//
// # Site namespaces
//
// translate.SiteNamespace names the namespace of a host namespace on a site:
// <tenant>-<namespace>, cut to 63 characters with a stable hash. EnsureNamespace creates it
// with the labels vk8s.io/tenant and vk8s.io/host-namespace, the Pod Security labels of its
// cluster's level (the strictest spec.podSecurity.enforce of the Sites on the cluster,
// baseline by default; Sites.PodSecurity) and its "default" ServiceAccount; the provider
// calls it when the first pod of a namespace reaches a site, this package when a
// VirtualKubernetes is created, so both make the same namespace. A namespace that existed
// before is used as it is and never labelled, so those labels say "vk8s created it"
// (translate.CreatedByVK8s). One vk8s created is relabelled when the level changes
// (SetPodSecurity, which reads it again when the provider wrote it meanwhile): a
// provisioned site is provisioned again when its level differs from the one it was
// provisioned at, on the registry's Watch event that a Site's spec change sends.
//
// # VirtualSite status
//
// ReconcileVirtualSite writes status.sites (sorted), siteCount, observedGeneration and
// Ready: True (SitesSelected), or False with InvalidSelector or NoSitesSelected and a
// message that says how to fix it. The rule is overrides.SelectSites, the webhook's. Site
// creations, deletions and changes of labels or spec.type enqueue the VirtualSites that
// select the Site before or after the change; status is written only when it changes.
// It lives here rather than in sitereg because it is about what a namespace selects, as
// the VirtualKubernetes controller is, and shares its Site-to-VirtualSite mapping; sitereg
// stays the registry of connections.
//
// # VirtualKubernetes
//
// ReconcileVirtualKubernetes adds the finalizer vk8s.io/site-namespaces, resolves
// spec.virtualSite (<namespace>/<name>, or <name> in its own namespace) with the same rule,
// and on every selected site ensures the site namespace and the NetworkPolicy
// vk8s-isolation (labelled vk8s.io/tenant, vk8s.io/host-namespace and
// app.kubernetes.io/managed-by=vk8s): every pod of the namespace accepts ingress only from
// pods of the same namespace; egress is not limited. Sites that are node-selected slices of
// one cluster share one namespace and are worked on once. Each site cluster is worked on in
// its own goroutine (16 at most at a time) under SiteTimeout; errors are collected, so an
// unreachable or slow site never holds up the others. A site provisioned through the same
// connection within ResyncInterval is not called again (a NetworkPolicy deleted by hand on
// a site comes back at the next resync).
//
// Status: siteNamespace, sites (the selected ones), departedSites, observedGeneration, and
// Ready: True (Provisioned) when both exist on every selected site; False with
// ProvisioningFailed and a message naming each failing site, why, and the fix; False with
// VirtualSiteNotFound, InvalidVirtualSite or NoSites. While the virtual-site cannot be
// resolved nothing on the sites is changed (fixing a typo must not empty them). Sites the
// registry is still connecting after a restart keep a Ready condition that was True.
// Failures are retried with a per-object backoff (1s to 2m); Registry.Watch (SiteEvents)
// reconciles the VirtualKubernetes of a site at once when it reconnects.
//
// Events on the VirtualKubernetes: Warning ProvisioningFailed (or the reason of Ready)
// when the set of failing sites changes, Normal Provisioned when all are in place again;
// Normal CleanedUp, Warning CleanupFailed and CleanupAbandoned on deletion.
//
// # Sites that leave
//
// A site that leaves the virtual-site (its labels change, the VirtualSite's selector
// changes) is in status.departedSites until vk8s removed what it made there: the namespace
// when vk8s created it and it holds no pods and no PersistentVolumeClaims, else the
// NetworkPolicy alone (a namespace vk8s did not create is never deleted). While pods of the
// namespace still run there (workloads that name other virtual-sites in ves.io/virtual-sites)
// both stay: isolation does not disappear under running pods; the site is looked at again
// every minute. A site whose cluster also serves a selected site has nothing to remove. A
// deleted Site cannot be reached and is dropped.
//
// # Deletion
//
// A VirtualKubernetes being deleted keeps its finalizer until, on every site it had, the
// NetworkPolicy is deleted and the namespace too when vk8s created it and no pods and no
// PersistentVolumeClaims remain there (a claim's volume holds data: such a namespace stays,
// without its NetworkPolicy). Pods still terminating are waited for. Sites that do not
// answer are waited for up to CleanupTimeout (default 5m) after the deletion; then the
// finalizer goes anyway with a Warning Event CleanupAbandoned naming what may remain, so
// deleting a host namespace never hangs on a dead site. If vk8s is uninstalled, remove the
// finalizer by hand (kubectl patch vk8s NAME --type merge -p '{"metadata":{"finalizers":null}}').
//
// The finalizer does not disturb the webhook: its namespace labeler keeps the namespace's
// vk8s.io/virtual-kubernetes label while the object finalizes (workloads are admitted
// during cleanup), and its validation does not check spec.virtualSite on writes that leave
// it unchanged, so the finalizer can be removed after the VirtualSite is gone (as when the
// whole namespace is deleted).
//
// # Metrics
//
// vk8s_tenancy_site_operations_total{site,operation,result}: provision and cleanup calls
// per site, success or error. Registered on controller-runtime's metrics.Registry unless
// Config says otherwise.
//
// # Permissions
//
// On the host: get, list and watch Sites, VirtualSites and VirtualKubernetes; update and
// patch virtualkubernetes (the finalizer); update and patch virtualsites/status and
// virtualkubernetes/status; create and patch events (events.k8s.io). On each site: get,
// list, create, update and delete namespaces; create serviceaccounts; get, create, update and delete
// networkpolicies (networking.k8s.io); list pods and persistentvolumeclaims. The lab's
// sites use admin credentials.
package tenancy

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

// Package mirror keeps a vK8s namespace's objects on every site the namespace runs on, so
// an application is more than its pods: Services, ConfigMaps, ServiceAccounts, Roles,
// RoleBindings and NetworkPolicies (translate.Mirrored). It runs in the provider process,
// elected with it, through the site registry's connections. Secrets go only to the sites
// whose pods use them, and PersistentVolumeClaims where their pod runs: the provider copies
// those (and makes sure a pod's ConfigMaps and ServiceAccount are on its site before the
// pod; Mirrored tells it that their lifecycle afterwards is this package's).
//
// # Which sites
//
// The sites of a namespace are those of its VirtualKubernetes (status.sites, written by
// package tenancy) and those its pods run on (a workload that names other virtual-sites
// brings its namespace there). A namespace without a VirtualKubernetes is not mirrored.
//
// # Copies
//
// A copy is package translate's SiteCopy of the host object, in the site namespace
// <tenant>-<namespace>, labelled vk8s.io/tenant and vk8s.io/host-namespace. vk8s changes
// and deletes only copies with those labels: an object of the same name that someone else
// made on the site is left alone, and a Warning Event SiteCopyConflict on the host object
// says so; a site that refuses a copy gives a Warning Event SiteCopyRefused. A copy is
// made equal to its host object when either changes (what a site adds to a copy's
// annotations stays), replaced when a field that cannot change did (a RoleBinding's
// roleRef), and deleted when the host object is, or when its namespace no longer runs on
// the copy's site. The "default" ServiceAccount and the kube-root-ca.crt ConfigMap stay on
// the host: every site namespace has its own.
//
// Services are site-local: a site's copy selects the site's own pods (a site pod carries
// its host pod's labels), with the site's own cluster IP ("None" stays: a headless Service
// keeps a StatefulSet's DNS names on its site) and node ports. RoleBinding subjects that
// are ServiceAccounts name their site namespace; NetworkPolicy peers selecting a
// namespace by kubernetes.io/metadata.name name its site namespace.
//
// # Status back on the host
//
// Each host Service shows its sites: vk8s.io/site-endpoints counts each site's Ready
// endpoints (from the site's own EndpointSlices, which carry the copy's labels), a
// LoadBalancer Service's status.loadBalancer.ingress lists every site's ingress and
// vk8s.io/site-load-balancers says which site each is from, and the condition
// vk8s.io/SitesReady is False, naming the sites, when a site has no Ready endpoint. The
// host's own EndpointSlices of the Service list every site's pods with their site
// addresses: they say where the pods run, and are not routable from the host
// (docs/applications.md).
//
// # Work
//
// Host objects are read from the provider's host informers; the copies, and the
// EndpointSlices of the copies of Services, from informers per site cluster selected by
// the tenant label. Each site cluster has its own work queue and workers, so a slow or
// dead cluster only slows its own. Every ResyncInterval every object and every copy is
// looked at again (a VirtualKubernetes that gained or lost sites, a copy changed behind
// vk8s' back); a pod landing on a site queues its namespace's objects there at once.
//
// # Metrics
//
// vk8s_mirror_site_operations_total{kind,operation,result} and
// vk8s_mirror_sync_duration_seconds{kind,result}.
package mirror

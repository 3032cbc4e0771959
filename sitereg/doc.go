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

// Package sitereg is the site registry: it keeps one connection per site cluster for the
// rest of vk8s, and keeps the status of every vk8s.io Site in the host cluster current. It
// follows cluster-api's clustercache: a controller on the host's Sites owns the
// connections, probes their health, and answers Get with the connection or an error that
// wraps ErrSiteNotConnected.
//
// # Connections
//
// A Site names a Secret key that holds a kubeconfig (spec.kubeconfigSecretRef). The
// kubeconfig must be self-contained: inline certificates and tokens only; paths to files and
// credential plugins (exec, auth-provider) are refused, since they would read files or run
// commands where vk8s runs. The Secret's data is read uncached, and again only when the
// Secret's resourceVersion changes; the registry caches only the metadata of Secrets.
//
// Sites that reach the same API server with the same credentials share one connection: a
// client and one node informer. A node-selected slice of a cluster is a Site of its own
// (spec.nodeSelector), so 300 Sites that slice 3 clusters make 3 connections. A connection
// is reference-counted by its Sites and closed when the last one is deleted, points at
// other credentials, or loses its Secret. A changed Secret takes effect at once: its Sites
// move to the connection of the new credentials.
//
// Closing a connection ends what it opened: its node informer, and every TCP connection
// its client made to the API server, idle or carrying a watch of anyone's (each connection
// has a dialer of its own and a transport of its own, not client-go's shared one); its
// client fails from then on. Its watchers hear of the Sites that left it, and
// HasConnection tells them to drop what they made of it (the provider's and the mirror's
// caches of the cluster), so that nothing goes on with credentials no Site uses.
//
// # One cluster per Site
//
// The first successful probe of a connection reads the cluster's identity: the UID of its
// kube-system namespace. The first time a Site connects it is recorded in the Site's
// status.clusterID; a later kubeconfig (a changed Secret) that reaches a cluster with
// another identity is refused: Connected and Ready False with ReasonClusterChanged, naming
// both IDs and the fixes (point the Secret back, or delete the Site and create it again to
// move it on purpose). The Site drops that connection (closed when no other Site uses it),
// Get wraps ErrSiteDown, and nothing is read from or written to the other cluster beyond
// the probe, until the Secret changes again. Until a Site's connection passed this check,
// Get does not give it.
//
// # One host per tenant
//
// With Config.Claim, a connection that a Site passed the identity check on also writes the
// tenant claim on its cluster (Claim), or finds it written by this host; until it has,
// the connection is not used. A claim by another host refuses the Site with
// ReasonTenantInUse, and every reconcile tries again.
//
// # Health
//
// Every Site is reconciled every HeartbeatInterval (default 30s, with 10% jitter) through
// the controller's RequeueAfter; there is no polling goroutine per Site. A reconcile probes
// the connection with GET /version under ProbeTimeout (default 5s); the first probe of a
// connection also lists one node, so credentials that may not read nodes fail with
// Forbidden instead of an informer that never syncs, and reads the cluster's identity. The Sites of one connection share a
// probe: a result younger than half the interval is reused, and concurrent reconciles wait
// for the probe in flight. The node informer starts after the first successful probe; its
// events (adds, deletes, and updates that change labels, capacity, allocatable,
// schedulability or a condition) enqueue
// the Sites whose node selector matches the node, coalesced so a burst of events costs one
// reconcile per Site. Reconciles run in parallel (MaxConcurrentReconciles, default 10) and
// every call to a site or to a Secret is bounded by ProbeTimeout, so one slow or unreachable
// site does not hold up the others.
//
// # Status
//
// Connected is True when the last probe answered; otherwise False with a reason
// (SecretNotFound, SecretKeyNotFound, InvalidKubeconfig, InvalidNodeSelector, Unauthorized,
// Forbidden, TLSError, Unreachable, ProbeFailed, TenantInUse, ClusterChanged) and a message that says what
// is wrong and how to fix it. Ready is True when connected and at least one of the Site's nodes is
// Ready; False with NoReadyNodes when none is (or the selector matches none); False with the
// connection's reason when not connected; Unknown with NodesNotSynced while the node cache
// fills. nodeCount, allocatable (summed over the Site's nodes, Ready or not) and
// virtualNodes ("<site>-<node>" per node in PerNode mode, "<site>" in Aggregate mode,
// sorted) come from the node cache. While a site is unreachable they keep their last
// values, and lastHeartbeatTime stays at the last successful probe, so the Site's virtual
// nodes stay in place. The status is written when it changes; a new lastHeartbeatTime
// alone is written at most every half interval (coalesceHeartbeat), so that Sites
// reconciled between their heartbeats (a node of their cluster, a Site sharing their
// connection) do not each write one, and a Site's own requeue writes it: it is never older
// than about 1.6 intervals (half an interval of a shared probe, the requeue and its jitter).
//
// # Virtual node names
//
// Ready is False with NodeNamesTooLong when a "<site>-<node>" name is longer than a Node's
// hostname label allows, and with NodeNameCollision when another Site makes the same name
// (Site a's node b-c and Site a-b's node c are both a-b-c; Site a-b in Aggregate mode and
// Site a's node b are both a-b). Such names are left out of virtualNodes. Of the Sites that
// make a name, the one that has it (its virtualNodes list it) keeps it, else the oldest;
// the decisions are taken one at a time (assign), and a Site whose names change wakes the
// other Sites that could make them. A name that is a Node of the host's own (no
// vk8s.io/site label) is never a Site's: NodeNameCollision too. Collisions tells the
// virtual nodes which names are another Site's or the host's.
//
// A change of Connected, or of Ready while connected, is recorded as a Kubernetes Event on
// the Site (Warning for failures, Normal for recoveries); a probe that changes nothing
// records nothing.
//
// # Using a site
//
// Get returns a Conn: the shared client and rest.Config, a NodeLister that shows only the
// Site's nodes (and one of every node of the cluster), the node mode and the server's
// version. It does no I/O; when the Site is not usable its error wraps ErrSiteNotConnected
// and the cause (ReasonOf gives the reason and message of a refusal).
//
// Watch returns a channel for source.Channel that names a Site each time its nodes change
// (straight from the node informer, before the registry's own status write), its status
// changes (connection lost or regained, nodes, version; not a heartbeat that moves only
// lastHeartbeatTime, which 1,000 Sites do 33 times a second), or it is deleted, so another
// controller (the provider's virtual nodes) can follow the sites without polling. Requests
// are coalesced per Site and never dropped.
//
// # Metrics
//
// Registered on controller-runtime's metrics.Registry unless Config says otherwise:
// vk8s_sitereg_site_connected{site}, vk8s_sitereg_site_ready{site} and
// vk8s_sitereg_site_nodes{site} gauges, the vk8s_sitereg_probe_duration_seconds{result}
// histogram (one observation per probe made, not per Site), the vk8s_sitereg_connections
// gauge, vk8s_sitereg_tcp_connections{connection}, the TCP connections each site
// connection has open (its series goes when it closes), and
// vk8s_sitereg_site_last_heartbeat_timestamp_seconds{site}.
//
// Every call to a site's API server, whoever makes it, is counted and timed in the
// connection's transport: vk8s_sitereg_site_requests_total{site,verb,code} and
// vk8s_sitereg_site_request_duration_seconds{site,verb}. The site is the one the request's
// context names (WithSite), else the connection's Sites (SiteLabel); a deleted Site's
// series go with it.
//
// # Permissions
//
// On the host: get, list and watch Sites; update and patch sites/status; get, list and
// watch Secrets; create and patch events (events.k8s.io). On each site: get /version, list
// and watch nodes, get namespace kube-system (the cluster's identity), plus what the
// provider needs.
package sitereg

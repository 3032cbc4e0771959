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

// Package vnode runs the virtual nodes: for every site of the site registry, the host Nodes
// that package translate's VirtualNodes makes of the site's nodes (one per real node in
// PerNode mode, one per site in Aggregate mode), kept alive together: one set of workers
// registers them all, renews their Leases and writes their status.
//
// # Nodes
//
// Nodes is a controller keyed by Site: it starts, updates and stops the heartbeats of a
// site's virtual nodes so that they show what VirtualNodes makes of its nodes now, brings the host
// Node's spec (unschedulable, taints) along, and registers again a virtual node deleted
// behind its back. A name that another Site
// keeps (sitereg's Collisions) is neither registered nor deleted for the site. A site that does not answer
// keeps its virtual nodes, Ready but with SiteConnected=False and a NoSchedule taint
// (translate.Disconnected): the site keeps running its pods, and a host-side eviction
// would only do harm. After a restart they are taken from the host, so their Leases go on.
//
// # Grace period
//
// A virtual node the site no longer makes (a Site edit: spec.nodeSelector, spec.nodeMode;
// the Site deleted; the site node gone) is not deleted at once: for NodesConfig.Grace
// (default 5 minutes) it stays, NotReady (Ready=False, reason NodeLeftSite, a message that
// names the Site, what changed and how to undo it) and tainted vk8s.io/left-site:NoSchedule,
// with its pods, and a Warning Event goes on the Node and the Site. Undone within the
// grace period, the edit brings the node back as it was, pods untouched; after it, the node
// is deleted as before, and the host deletes its pods. Another Site that makes the name
// waits for the grace period to end. The time a node left is its Ready condition's
// lastTransitionTime, so a restarted provider goes on from there.
//
// # Heartbeats
//
// The heartbeats of all virtual nodes run on NodesConfig.HeartbeatWorkers workers (default
// 64) fed by one delaying work queue that holds each node's next due time, as kwok keeps
// thousands of nodes: the goroutines and timers do not grow with the nodes (virtual-kubelet's
// NodeController, one per node, ran three loops each). A worker registers a node (a create
// when the host's cache does not have it, otherwise a patch of its status and a create if
// the patch finds none: a Node deleted behind the provider's back comes back), renews its Lease in kube-node-lease every quarter of
// LeaseDurationSeconds (default 40 s, as a kubelet), owned by the Node, and writes its
// status, labels and annotations at once when they change, otherwise every StatusInterval
// (default 5 minutes, as a kubelet's nodeStatusReportFrequency): the host tells a node's
// health by its Lease. A status write is one strategic merge patch from what the process
// wrote last, so that what it no longer shows goes and what others write stays. A failed
// call is tried again after 200 ms, doubling, at most a renewal apart.
//
// With NodesConfig.HeartbeatConfig the heartbeats use a host client of their own, whose
// rate limit grows with the virtual nodes running, so that renewals neither wait behind the
// pods' requests nor run out of a budget sized for fewer nodes.
//
// # Kubelet API endpoints
//
// NodeEndpoints (the kubelet API server) gives each virtual node its kubelet port and
// annotations; a node keeps the port it advertises across restarts when it can.
package vnode

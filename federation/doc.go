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

// Package federation keeps a federated workload's placement true after admission. It holds
// what admission (package webhook) and the controllers of the webhook process share, the
// State: the Resolver that tells a workload's sites, Overrides and flavor from its
// annotations and its namespace's VirtualKubernetes, the reservations of placement, the pods
// the rollout deleted, and the Refresher. The controllers take a State, never the admission
// handlers' internals; their decisions are package placement's, so what is here is the
// reading and writing around them.
//
// # Resolution
//
// Resolver.Resolve returns a workload's Federation (sites and their types, Overrides in
// order, flavor) from the process's cache, or a *Rejection naming the field, the value and
// the fix when the annotations do not resolve. Admission denies with it; the controllers
// leave such a workload alone until its next write.
//
// # Controllers
//
//   - Rebalancer (one controller per kind: Deployments, bare ReplicaSets, StatefulSets)
//     converges per-site counts on the plan: it re-plans a workload whose sites changed by
//     writing vk8s.io/placement (admission recomputes spec.replicas), marks every site's
//     surplus pods with a pod-deletion-cost far below admission's, and evicts surplus
//     pods of a settled ReplicaSet only as far as reachable sites lack pods, at
//     maxUnavailable, so that admission recreates them at the deficit.
//   - Rollout brings running pods to their site's current Override: keyed by Deployment,
//     StatefulSet, DaemonSet or bare ReplicaSet, woken by workload, pod and Override
//     events, it evicts the pods whose stamp differs from the one admission would give
//     now, one site at a time and at the Override's (else the workload's)
//     maxUnavailable, and leaves workloads in their own rollout alone; their controllers
//     recreate the pods on the same site with the current Override.
//   - Refresher writes vk8s.io/replicas-per-site after a write through the scale
//     subresource, which cannot carry it.
//   - The namespace labeler keeps vk8s.io/virtual-kubernetes on exactly the namespaces
//     that hold a VirtualKubernetes, which the webhook configurations select on, so other
//     namespaces never call the webhook.
//   - The Job status controller writes each site's share of a federated Job on the host
//     Job (vk8s.io/site-succeeded, vk8s.io/site-failed) and fails the Job when one site's
//     failures pass vk8s.io/backoff-limit-per-site: it names the site in
//     vk8s.io/site-backoff-exceeded and sets spec.backoffLimit to 0, so that the host's job
//     controller fails it by its own rules.
//   - The status controllers write the status of Overrides (the Sites of the siteList that
//     exist, Ready) and WorkloadFlavors (Ready when the limits are valid).
//
// Like every controller-runtime controller, they run only on the leader when the manager
// elects one.
//
// # Metrics
//
// vk8s_federation_rebalance_moves_total{site}, vk8s_federation_rebalance_replans_total and
// vk8s_federation_rollout_restarts_total{site}, registered with the webhook's own.
package federation

// Package webhook is vk8s' admission webhook: it turns a workload of a vK8s namespace into
// "R replicas on every selected site", places each of its pods on a site, and applies the
// site's Override and WorkloadFlavor to the pod (SPEC §3 and §4). The rules themselves are
// package overrides'; this package reads the objects they need from a controller-runtime
// cache and answers the API server. docs/webhook.md describes it for users and operators.
//
// # Workloads
//
// Deployments, StatefulSets, ReplicaSets (but a Deployment's), DaemonSets, Jobs and
// CronJobs (but a CronJob's Jobs) are mutated on create and update, and the scale
// subresource of the first three on update: the sites are resolved (ves.io/virtual-sites,
// else the namespace's VirtualKubernetes), spec.replicas becomes the total and
// vk8s.io/replicas-per-site holds R (Jobs: parallelism and completions are multiplied),
// the plan is recorded in vk8s.io/placement, and the pod template gains the toleration of
// virtual nodes and a required node affinity on vk8s.io/site limited to the sites.
//
// # Pods
//
// A pod's site is chosen by its controller's kind: the largest deficit against the plan
// for ReplicaSet and non-indexed Job pods, counting the pods admitted but not yet in the
// cache (reservations, which expire); ordinal blocks for StatefulSets and indexed Jobs;
// the node's site for DaemonSets; the fewest pods of the namespace for bare pods. The pod
// is pinned there by a required node affinity, gets the site's Override (applied at the
// template level, keeping what admission added: carryOver) and flavor, and the labels
// vk8s.io/site and vk8s.io/override, and the stamp vk8s.io/override-hash (a hash of the
// Override's name and template). Its name, namespace, UID and owner references never
// change.
//
// # Rollouts
//
// The rollout controller brings running pods to their site's current Override: keyed by
// Deployment, StatefulSet, DaemonSet or bare ReplicaSet, woken by workload, pod and
// Override events, it deletes the pods whose stamp differs from the one admission would
// give now, one site at a time and at the Override's (else the workload's)
// maxUnavailable, and leaves workloads in their own rollout alone; their controllers
// recreate the pods on the same site with the current Override.
//
// # Validation
//
// Annotations, virtual-sites, Overrides, WorkloadFlavors and VirtualKubernetes objects
// are checked with messages that name the field, the value and the fix;
// HorizontalPodAutoscalers aimed at federated workloads and vK8s annotations outside vK8s
// namespaces are refused.
//
// # Rebalancing
//
// The rebalancer (a controller per kind: Deployments, bare ReplicaSets, StatefulSets)
// converges per-site counts on the plan: it re-plans a workload whose sites changed by
// writing vk8s.io/placement (admission recomputes spec.replicas), marks every site's
// surplus pods with a pod-deletion-cost far below admission's, and deletes surplus pods of
// a settled ReplicaSet only as far as reachable sites lack pods, at maxUnavailable, so
// that admission recreates them at the deficit.
//
// # Serving
//
// Server runs a manager with the HTTPS webhook server, the cache, the rollout
// controller, a controller that labels vK8s namespaces (vk8sv1.LabelVirtualKubernetes, which the configurations select on, so other
// namespaces never call the webhook), and the registrar that keeps the process's own two
// webhook configurations and their CA bundle (package certs rotates the CA and the serving
// certificate).
package webhook

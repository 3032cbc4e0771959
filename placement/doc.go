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

// Package placement answers "how are replicas placed?": the pure rules of how many pods
// each site of a federated workload runs and which site a new pod goes to, and the
// decisions of the controllers that keep those counts true (the rebalancer's and the
// per-site rollout's). Nothing here talks to a cluster (lint forbids client-go clients,
// informers and controller-runtime here): admission (package webhook) and the federation
// controllers (package federation) read the objects and write the results; this package
// decides, and is tested with plain tables. docs/webhook.md describes the rules for users.
//
// # Replicas
//
// Replicas are per site: PlanReplicas spreads R over the sites (Override replicas replace R
// on their sites) and returns the total for spec.replicas; ScaleJob multiplies a Job's
// parallelism and completions the same way. ReplicasPerSite derives R from a total, rounding
// up unless asked to be strict. ReplicaWrite.PerSite decides, for a write of spec.replicas,
// whether the value written is R or a total (kubectl apply, edit, scale, replace).
//
// # Layouts and choices
//
// A Layout is the plan recorded on a workload in vk8s.io/placement: its sites in order,
// each with its pod count. StatefulSets and indexed Jobs deal their ordinals out in blocks
// in that order (SiteOfOrdinal); new sites are appended (NewLayout). ReplicaSet and
// non-indexed Job pods go to the site with the largest deficit (ChooseByDeficit), bare pods
// to the site with the fewest pods of their namespace (ChooseFewest). Reservations count
// the pods admitted but not yet in the cache, so concurrent admissions see each other.
//
// # Rebalancing and rollouts
//
// Rebalance decides which surplus pods of a ReplicaSet are marked with ExcessDeletionCost
// and which move to reachable sites that lack pods, at maxUnavailable. Stamp is the hash
// admission records of the Override it applied (vk8s.io/override-hash), Stale compares a
// pod with its site's current Override, and SiteStep decides one step of a site's rollout.
package placement

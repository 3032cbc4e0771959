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

// Package shard shares the Sites among the provider's replicas through Kubernetes Leases,
// so that each Site is acted for by exactly one live replica and ownership moves when
// replicas come and go.
//
// # Shards
//
// A Site belongs to one of Config.Shards shards (Of: a hash of its name; 64 by default).
// The shard is the unit of ownership: a Lease per shard (ShardPrefix+i) names the replica
// that acts for its Sites, so that 10,000 Sites cost 64 Leases, not 10,000, and a dead
// replica's Sites move with a handful of writes.
//
// # Members
//
// Each replica announces itself with a member Lease (MemberPrefix+identity) that it renews
// every RetryPeriod; that renewal is the only periodic write. A replica takes another for
// alive while its member Lease changes within LeaseDuration, on its own clock (as
// client-go's leader election: no clock is compared with another's). A member Lease left
// unrenewed for ten durations is deleted by a live replica.
//
// # Who owns what
//
// The replica a shard should belong to is Assign's: rendezvous hashing over the live
// members, so that a member that leaves moves only its own shards and one that joins takes
// only its share. Each replica, every RetryPeriod:
//
//   - takes a shard that should be its own when its Lease is free or its holder is not
//     alive, by an update that carries the Lease's resourceVersion (two replicas cannot
//     both win);
//   - hands on a shard it holds that should be another's: it stops acting at once (Owns is
//     false), waits RenewDeadline for what acted for the shard's Sites to stop, then
//     clears the holder; the new owner takes it at its next look;
//   - stops acting for every shard when its member Lease has not been renewed for
//     RenewDeadline (shorter than LeaseDuration), before any other replica can take it for
//     dead; Run then returns an error, and the process should exit.
//
// A replica that starts only announces itself for two RetryPeriods before it takes a
// shard, so that replicas started together (a Deployment's) see each other first instead
// of the first taking every shard and handing most of them on.
//
// A replica that stops cleanly (Run's context ends) stops acting, clears the holder of its
// shards and deletes its member Lease: the others take over at their next look. One that
// dies is noticed LeaseDuration after its last renewal: with the defaults (10 s, 7 s,
// 1 s), its Sites have a new owner within about 12 s.
//
// # Permissions
//
// get, list, watch, create, update and delete Leases in Config.Namespace.
package shard

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

package shard

import (
	"hash/fnv"
	"strconv"
)

// Of returns the shard of a Site among n shards: a hash of its name, so that every
// replica agrees without asking anyone.
func Of(site string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(site))
	return int(h.Sum32() % uint32(n)) //nolint:gosec // n is a positive shard count
}

// Assign returns the member that should own shard among members, by rendezvous (highest
// random weight) hashing: each member scores every shard, the highest score wins. A member
// that leaves moves only its own shards, each to the member that scored it second; one
// that joins takes only the shards it scores highest. Empty when there are no members.
func Assign(shard int, members []string) string {
	var (
		best      string
		bestScore uint64
	)
	for _, m := range members {
		s := score(m, shard)
		if best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

// Plan returns the owner Assign gives each of n shards.
func Plan(n int, members []string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = Assign(i, members)
	}
	return out
}

// score is member's weight for shard: FNV-1a of both, through a 64-bit finalizer (FNV alone
// leaves names that differ in their last character with close scores for every shard).
func score(member string, shard int) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(strconv.Itoa(shard)))
	return mix(h.Sum64())
}

// mix is the finalizer of SplitMix64.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

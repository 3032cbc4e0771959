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
	"fmt"
	"testing"
)

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("vk8s-provider-7d9f8-%d", i)
	}
	return out
}

func TestAssignIsTheSameForEveryOrder(t *testing.T) {
	m := members(5)
	rev := []string{m[4], m[3], m[2], m[1], m[0]}
	for s := range 256 {
		if a, b := Assign(s, m), Assign(s, rev); a != b {
			t.Fatalf("shard %d: %s in one order, %s in the other", s, a, b)
		}
	}
	if got := Assign(3, nil); got != "" {
		t.Errorf("Assign without members = %q, want empty", got)
	}
}

func TestAssignSpreadsShards(t *testing.T) {
	const shards = 256
	for _, n := range []int{2, 3, 10} {
		count := map[string]int{}
		for _, owner := range Plan(shards, members(n)) {
			count[owner]++
		}
		if len(count) != n {
			t.Fatalf("%d members: %d own shards (%v)", n, len(count), count)
		}
		fair := shards / n
		for m, c := range count {
			if c < fair/2 || c > fair*2 {
				t.Errorf("%d members: %s owns %d of %d shards, want about %d", n, m, c, shards, fair)
			}
		}
	}
}

// TestAssignMovesFew checks the minimal movement: a member that leaves hands on only its
// own shards, and one that joins takes shards from the others and moves nothing else.
func TestAssignMovesFew(t *testing.T) {
	const shards = 256
	all := members(4)
	before := Plan(shards, all)
	gone := all[1]
	after := Plan(shards, []string{all[0], all[2], all[3]})
	for s := range shards {
		switch {
		case before[s] == gone && after[s] == gone:
			t.Errorf("shard %d still goes to %s, which left", s, gone)
		case before[s] != gone && after[s] != before[s]:
			t.Errorf("shard %d moved from %s to %s though its owner stayed", s, before[s], after[s])
		}
	}
	joined := Plan(shards, append(members(4), "vk8s-provider-new"))
	moved := 0
	for s := range shards {
		if joined[s] != before[s] {
			moved++
			if joined[s] != "vk8s-provider-new" {
				t.Errorf("shard %d moved from %s to %s, not to the member that joined", s, before[s], joined[s])
			}
		}
	}
	if moved == 0 || moved > shards/2 {
		t.Errorf("a fifth member took %d of %d shards, want about %d", moved, shards, shards/5)
	}
}

func TestOf(t *testing.T) {
	seen := map[int]int{}
	for i := range 1000 {
		s := Of(fmt.Sprintf("site-%d", i), 64)
		if s < 0 || s >= 64 {
			t.Fatalf("Of = %d, want within [0, 64)", s)
		}
		seen[s]++
	}
	if len(seen) < 60 {
		t.Errorf("1,000 Sites fell in %d of 64 shards", len(seen))
	}
}

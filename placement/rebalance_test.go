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

package placement

import (
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// pods makes Ready pods named <site>-<slot> for the slots given per site.
func testPods(slots map[string][]int) []RebalancePod {
	var out []RebalancePod
	for _, site := range slices.Sorted(maps.Keys(slots)) {
		for _, s := range slots[site] {
			out = append(out, RebalancePod{Name: site + "-" + strconv.Itoa(s), Site: site, Slot: s, Ready: true, Cost: strconv.Itoa(-s)})
		}
	}
	return out
}

func names(ps []RebalancePod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestRebalance(t *testing.T) {
	all := func(string) bool { return true }
	even := map[string]int32{"site1": 3, "site2": 3, "site3": 3}
	for _, tc := range []struct {
		name      string
		counts    map[string]int32
		pods      []RebalancePod
		reachable func(string) bool
		limit     int
		moves     []string
		costs     map[string]string
	}{{
		name:   "exact counts: nothing to do",
		counts: even,
		pods:   testPods(map[string][]int{"site1": {1, 2, 3}, "site2": {1, 2, 3}, "site3": {1, 2, 3}}),
		limit:  2,
	}, {
		name:   "a surplus and a deficit after an admission race: the highest slot moves",
		counts: even,
		pods:   testPods(map[string][]int{"site1": {1, 2, 3, 4}, "site2": {1, 2}, "site3": {1, 2, 3}}),
		limit:  2, moves: []string{"site1-4"}, costs: map[string]string{"site1-4": "-1000004"},
	}, {
		name:      "the deficit is on an unreachable site: nothing moves, the surplus is marked",
		counts:    even,
		pods:      testPods(map[string][]int{"site1": {1, 2, 3, 4}, "site2": {1, 2}, "site3": {1, 2, 3}}),
		reachable: func(s string) bool { return s != "site2" },
		limit:     2, costs: map[string]string{"site1-4": "-1000004"},
	}, {
		name:   "a removed site: all its pods are surplus, marked for the scale-down, none moves",
		counts: map[string]int32{"site1": 3, "site2": 3},
		pods:   testPods(map[string][]int{"site1": {1, 2, 3}, "site2": {1, 2, 3}, "site3": {1, 2, 3}}),
		limit:  2, costs: map[string]string{"site3-1": "-1000001", "site3-2": "-1000002", "site3-3": "-1000003"},
	}, {
		name:   "moves stop at the limit, highest slots first",
		counts: map[string]int32{"site1": 3, "site2": 3},
		pods:   testPods(map[string][]int{"site1": {1, 2, 3, 4, 5, 6}}),
		limit:  2, moves: []string{"site1-6", "site1-5"},
		costs: map[string]string{"site1-4": "-1000004", "site1-5": "-1000005", "site1-6": "-1000006"},
	}, {
		name:   "a site keeps its Ready pods: a surplus pod that is not Ready moves first",
		counts: even,
		pods: func() []RebalancePod {
			ps := testPods(map[string][]int{"site1": {1, 2, 3, 4}, "site2": {1, 2}, "site3": {1, 2, 3}})
			ps[1].Ready = false // site1-2
			return ps
		}(),
		limit: 1, moves: []string{"site1-2"}, costs: map[string]string{"site1-2": "-1000002"},
	}, {
		name:   "a pod the rebalancer marked that its site needs again gets admission's cost back",
		counts: even,
		pods: func() []RebalancePod {
			ps := testPods(map[string][]int{"site1": {1, 2, 3}, "site2": {1, 2, 3}, "site3": {1, 2, 3}})
			ps[2].Cost = "-1000003" // site1-3
			return ps
		}(),
		limit: 1, costs: map[string]string{"site1-3": "-3"},
	}, {
		name:   "terminating pods do not count",
		counts: even,
		pods: func() []RebalancePod {
			ps := testPods(map[string][]int{"site1": {1, 2, 3, 4}, "site2": {1, 2, 3}, "site3": {1, 2, 3}})
			ps[3].Terminating = true // site1-4
			return ps
		}(),
		limit: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			reachable := cmpOr(tc.reachable, all)
			d := Rebalance(tc.counts, tc.pods, reachable, tc.limit)
			if diff := cmp.Diff(tc.moves, names(d.Moves)); diff != "" {
				t.Errorf("moves (-want +got):\n%s", diff)
			}
			want := tc.costs
			if want == nil {
				want = map[string]string{}
			}
			if diff := cmp.Diff(want, d.Costs); diff != "" {
				t.Errorf("costs (-want +got):\n%s", diff)
			}
		})
	}
}

func cmpOr(f, g func(string) bool) func(string) bool {
	if f != nil {
		return f
	}
	return g
}

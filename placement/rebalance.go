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
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// ExcessDeletionCost is the controller.kubernetes.io/pod-deletion-cost of a pod its site
// has too many of (minus its slot): far below admission's -slot, so a ReplicaSet that
// scales down removes the surplus of every site before any pod a site needs.
const ExcessDeletionCost = -1_000_000

// RebalancePod is what the rebalancer knows of a pod.
type RebalancePod struct {
	Name        string
	UID         types.UID
	Site        string
	Slot        int
	Ready       bool
	Terminating bool
	// Cost is the pod's controller.kubernetes.io/pod-deletion-cost as written.
	Cost string
}

// Decision is what Rebalance chose.
type Decision struct {
	// Costs maps pods whose deletion cost changes to their new one.
	Costs map[string]string
	// Moves are the pods to delete, so that they come back where pods are missing.
	Moves []RebalancePod
	// Terminating says some pod is on its way out (a move or a scale-down in progress).
	Terminating bool
}

// Rebalance compares the live pods of a ReplicaSet with the plan's per-site counts. Every
// site keeps its Ready pods first, then its lowest slots; what is beyond its count is
// excess, marked with ExcessDeletionCost. Excess pods move (are deleted) only as far as
// reachable sites lack pods, at most limit at once, not-ready ones first, then the highest
// slots.
func Rebalance(counts map[string]int32, pods []RebalancePod, reachable func(string) bool, limit int) Decision {
	d := Decision{Costs: map[string]string{}}
	bySite := map[string][]RebalancePod{}
	for _, p := range pods {
		if p.Terminating {
			d.Terminating = true
			continue
		}
		bySite[p.Site] = append(bySite[p.Site], p)
	}
	var excess []RebalancePod
	deficit := 0
	for _, site := range slices.Sorted(maps.Keys(bySite)) {
		ps := bySite[site]
		slices.SortFunc(ps, func(a, b RebalancePod) int {
			if a.Ready != b.Ready {
				if a.Ready {
					return -1
				}
				return 1
			}
			return cmp.Or(cmp.Compare(a.Slot, b.Slot), strings.Compare(a.Name, b.Name))
		})
		keep := int(counts[site])
		for i, p := range ps {
			want := strconv.Itoa(-p.Slot)
			if i >= keep {
				excess = append(excess, p)
				want = strconv.Itoa(ExcessDeletionCost - p.Slot)
			}
			if p.Cost != want && (i >= keep || isExcessCost(p.Cost)) {
				// Admission's -slot stays on kept pods; only the rebalancer's marks change.
				d.Costs[p.Name] = want
			}
		}
	}
	for site, n := range counts {
		if have := len(bySite[site]); int(n) > have && reachable(site) {
			deficit += int(n) - have
		}
	}
	slices.SortFunc(excess, func(a, b RebalancePod) int {
		if a.Ready != b.Ready {
			if a.Ready {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(b.Slot, a.Slot), strings.Compare(a.Site, b.Site), strings.Compare(a.Name, b.Name))
	})
	d.Moves = excess[:min(len(excess), deficit, max(limit, 1))]
	return d
}

// isExcessCost says whether a deletion cost is one the rebalancer set.
func isExcessCost(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n <= ExcessDeletionCost
}

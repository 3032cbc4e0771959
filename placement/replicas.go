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
	"errors"
	"fmt"
	"math"
	"slices"
)

// Errors of the replica arithmetic, for errors.Is.
var (
	// ErrNoSites: replicas cannot be spread over, or derived from, zero sites.
	ErrNoSites = errors.New("the workload has no sites")
	// ErrNotMultiple: in strict mode, a total that is not a multiple of the site count.
	ErrNotMultiple = errors.New("not a multiple of the number of sites")
)

// Plan is how many replicas of a workload each of its sites runs.
type Plan struct {
	// Sites are the workload's sites, sorted, without duplicates.
	Sites []string
	// Replicas maps each site to its count.
	Replicas map[string]int32
	// Total is the sum of Replicas: the workload's spec.replicas in the host.
	Total int32
}

// PlanReplicas spreads a workload with perSite replicas (R) over sites: every site runs R,
// but a site in overrideReplicas runs that count instead (the replicas of the Override
// that applies there). Entries of overrideReplicas for sites not in sites are ignored:
// an Override may list sites the workload does not run on. It fails when a count is
// negative or the total does not fit spec.replicas (int32).
func PlanReplicas(sites []string, perSite int32, overrideReplicas map[string]int32) (Plan, error) {
	if perSite < 0 {
		return Plan{}, fmt.Errorf("plan replicas: %d replicas per site: must be 0 or more", perSite)
	}
	p := Plan{Sites: slices.Compact(slices.Sorted(slices.Values(sites))), Replicas: map[string]int32{}}
	var total int64
	for _, s := range p.Sites {
		n := perSite
		if r, ok := overrideReplicas[s]; ok {
			if r < 0 {
				return Plan{}, fmt.Errorf("plan replicas: site %s: override replicas %d: must be 0 or more", s, r)
			}
			n = r
		}
		p.Replicas[s] = n
		total += int64(n)
	}
	if total > math.MaxInt32 {
		return Plan{}, fmt.Errorf("plan replicas: %d replicas on %d sites make %d, more than spec.replicas can hold (%d)", perSite, len(p.Sites), total, math.MaxInt32)
	}
	p.Total = int32(total)
	return p, nil
}

// ScaleJob returns the host Job's parallelism and completions for a Job whose per-site
// parallelism and completions are given, on sites sites: both are multiplied by the number
// of sites, as replicas are. A nil parallelism counts as 1, the Kubernetes default; a nil
// completions (a work-queue Job) stays nil.
func ScaleJob(parallelism, completions *int32, sites int) (*int32, *int32, error) {
	if sites <= 0 {
		return nil, nil, fmt.Errorf("scale job: %w", ErrNoSites)
	}
	scale := func(name string, v int32) (*int32, error) {
		if v < 0 {
			return nil, fmt.Errorf("scale job: %s %d: must be 0 or more", name, v)
		}
		total := int64(v) * int64(sites)
		if total > math.MaxInt32 {
			return nil, fmt.Errorf("scale job: %s %d on %d sites makes %d, more than the Job can hold (%d)", name, v, sites, total, math.MaxInt32)
		}
		t := int32(total)
		return &t, nil
	}
	p := int32(1)
	if parallelism != nil {
		p = *parallelism
	}
	totalP, err := scale("parallelism", p)
	if err != nil {
		return nil, nil, err
	}
	if completions == nil {
		return totalP, nil, nil
	}
	totalC, err := scale("completions", *completions)
	if err != nil {
		return nil, nil, err
	}
	return totalP, totalC, nil
}

// DefaultBackoffLimit is a Job's backoffLimit when it names none (the Kubernetes default).
const DefaultBackoffLimit = 6

// ScaleBackoffLimit returns the host Job's backoffLimit for a per-site backoffLimit on
// sites sites: the most failures the sites together may have without any one of them
// passing its own limit (capped at the largest int32). The host's job controller fails
// the Job only past that sum; a site that passes its own limit first is failed by vk8s
// (the federation's Job status controller).
func ScaleBackoffLimit(perSite int32, sites int) int32 {
	return int32(min(int64(perSite)*int64(max(sites, 1)), math.MaxInt32))
}

// BackoffLimitPerSite derives the per-site backoffLimit from a write of the host Job's
// total, rounding up.
func BackoffLimitPerSite(total int32, sites int) int32 {
	n := int64(max(sites, 1))
	return int32((int64(total) + n - 1) / n)
}

// ReplicasPerSite derives R from a write of spec.replicas (total) to a workload on sites
// sites without Override replicas. A total that is not a multiple of sites is rounded up,
// so the workload never runs fewer pods than asked (spec.replicas=10 on 3 sites gives
// R=4, and the caller writes spec.replicas=12); with strict it is an error wrapping
// ErrNotMultiple instead, whose message names the nearest valid totals.
func ReplicasPerSite(total int32, sites int, strict bool) (int32, error) {
	if sites <= 0 {
		return 0, fmt.Errorf("spec.replicas: cannot derive replicas per site: %w; select sites with the ves.io/virtual-sites annotation or the namespace's VirtualKubernetes", ErrNoSites)
	}
	if total < 0 {
		return 0, fmt.Errorf("spec.replicas: invalid value %d: must be 0 or more", total)
	}
	n := int64(sites)
	r := (int64(total) + n - 1) / n
	if strict && int64(total)%n != 0 {
		lower, upper := int64(total)/n*n, r*n
		fix := fmt.Sprintf("write %d or %d", lower, upper)
		if lower == 0 {
			fix = fmt.Sprintf("write %d", upper)
		}
		return 0, fmt.Errorf("spec.replicas: invalid value %d: %w (%d): replicas are per site, so the total is a multiple of the site count; %s",
			total, ErrNotMultiple, sites, fix)
	}
	return int32(r), nil
}

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
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Layout is the plan recorded on a workload in vk8s.io/placement: its sites in order,
// each with the number of pods it runs. The order is the sites' sorted order, except for
// StatefulSets and indexed Jobs, whose ordinals are dealt out in blocks in this order (the
// first site gets ordinals 0..n-1, ...) and whose new sites are appended at the end.
type Layout struct {
	// Sites in order, without duplicates.
	Sites []string
	// Counts maps each site to its pod count; nil for DaemonSets, which run one pod per
	// node.
	Counts map[string]int32
}

// String returns the annotation's value: "site1=3,site2=1" (DaemonSets: "site1,site2").
func (l Layout) String() string {
	var b strings.Builder
	for i, s := range l.Sites {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
		if l.Counts != nil {
			b.WriteByte('=')
			b.WriteString(strconv.Itoa(int(l.Counts[s])))
		}
	}
	return b.String()
}

// Total is the sum of the counts.
func (l Layout) Total() int32 {
	var t int32
	for _, s := range l.Sites {
		t += l.Counts[s]
	}
	return t
}

// ParseLayout parses a vk8s.io/placement value written by String.
func ParseLayout(v string) (Layout, error) {
	var l Layout
	if strings.TrimSpace(v) == "" {
		return l, nil
	}
	for _, e := range strings.Split(v, ",") {
		site, count, hasCount := strings.Cut(strings.TrimSpace(e), "=")
		if site == "" || slices.Contains(l.Sites, site) {
			return Layout{}, fmt.Errorf("placement %q: empty or repeated site", v)
		}
		l.Sites = append(l.Sites, site)
		if !hasCount {
			continue
		}
		n, err := strconv.ParseInt(count, 10, 32)
		if err != nil || n < 0 {
			return Layout{}, fmt.Errorf("placement %q: count of site %s is not a number", v, site)
		}
		if l.Counts == nil {
			l.Counts = map[string]int32{}
		}
		l.Counts[site] = int32(n)
	}
	if l.Counts != nil && len(l.Counts) != len(l.Sites) {
		return Layout{}, fmt.Errorf("placement %q: some sites have counts, others not", v)
	}
	return l, nil
}

// NewLayout returns the layout of plan in order: the sites of previous that are still
// planned keep their order, and the new ones follow, sorted.
func NewLayout(plan Plan, previous []string) Layout {
	l := Layout{Counts: plan.Replicas}
	for _, s := range previous {
		if _, ok := plan.Replicas[s]; ok && !slices.Contains(l.Sites, s) {
			l.Sites = append(l.Sites, s)
		}
	}
	for _, s := range plan.Sites {
		if !slices.Contains(l.Sites, s) {
			l.Sites = append(l.Sites, s)
		}
	}
	return l
}

// SiteOfOrdinal returns the site whose block holds ordinal i, or false when i is beyond
// the total.
func (l Layout) SiteOfOrdinal(i int) (string, bool) {
	if i < 0 {
		return "", false
	}
	next := 0
	for _, s := range l.Sites {
		next += int(l.Counts[s])
		if i < next {
			return s, true
		}
	}
	return "", false
}

// JobLayout is the layout a non-indexed Job's next pod fills: each site's completions per
// site, against the pods placed there that have not failed (running and succeeded alike),
// so that every site completes exactly its share whatever its pace, and however late the
// caller's cache learns of a success. A failed pod no longer counts, so its replacement goes
// back to its site. When the host's job controller keeps more pods running than a site's
// pace needs, per-site parallelism gives way to exact completions. A work-queue Job
// (completions nil) runs parallelism pods per site, counted against running pods only.
func JobLayout(sites []string, parallelism int32, completions *int32) Layout {
	n := parallelism
	if completions != nil {
		n = *completions
	}
	l := Layout{Sites: sites, Counts: make(map[string]int32, len(sites))}
	for _, s := range sites {
		l.Counts[s] = n
	}
	return l
}

// ChooseByDeficit returns the site of l with the largest deficit (planned minus current
// pods); ties go to the site with fewer pods, then to the earlier site.
func ChooseByDeficit(l Layout, current map[string]int) string {
	best := ""
	var bestDeficit, bestCurrent int
	for _, s := range l.Sites {
		d, c := int(l.Counts[s])-current[s], current[s]
		if best == "" || d > bestDeficit || (d == bestDeficit && c < bestCurrent) {
			best, bestDeficit, bestCurrent = s, d, c
		}
	}
	return best
}

// ChooseFewest returns the site with the fewest current pods; ties go to the earlier site.
func ChooseFewest(sites []string, current map[string]int) string {
	best := ""
	for _, s := range sites {
		if best == "" || current[s] < current[best] {
			best = s
		}
	}
	return best
}

// FreeSlot returns the lowest slot number above 0 that used does not hold.
func FreeSlot(used map[int]bool) int {
	for i := 1; ; i++ {
		if !used[i] {
			return i
		}
	}
}

// Slot is a pod's vk8s.io/slot: its number among its owner's pods on its site, 0 when it
// has none.
func Slot(pod *corev1.Pod) int {
	n, _ := atoiNonNegative(pod.Annotations[vk8sv1.AnnotationSlot])
	return n
}

// Ordinal returns a StatefulSet pod's ordinal: its apps.kubernetes.io/pod-index label, or
// the number after the last '-' of its name.
func Ordinal(pod *corev1.Pod) (int, bool) {
	s := pod.Labels["apps.kubernetes.io/pod-index"]
	if s == "" {
		i := strings.LastIndexByte(pod.Name, '-')
		if i < 0 {
			return 0, false
		}
		s = pod.Name[i+1:]
	}
	return atoiNonNegative(s)
}

// atoiNonNegative parses a non-negative decimal int.
func atoiNonNegative(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

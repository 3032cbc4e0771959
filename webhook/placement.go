package webhook

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vk8s-io/vk8s/overrides"
)

// Placement is the plan recorded on a workload in vk8sv1.AnnotationPlacement: its sites in order,
// each with the number of pods it runs. The order is the sites' sorted order, except for
// StatefulSets and indexed Jobs, whose ordinals are dealt out in blocks in this order (the
// first site gets ordinals 0..n-1, ...) and whose new sites are appended at the end.
type Placement struct {
	// Sites in order, without duplicates.
	Sites []string
	// Counts maps each site to its pod count; nil for DaemonSets, which run one pod per
	// node.
	Counts map[string]int32
}

// String returns the annotation's value: "site1=3,site2=1" (DaemonSets: "site1,site2").
func (p Placement) String() string {
	var b strings.Builder
	for i, s := range p.Sites {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
		if p.Counts != nil {
			b.WriteByte('=')
			b.WriteString(strconv.Itoa(int(p.Counts[s])))
		}
	}
	return b.String()
}

// Total is the sum of the counts.
func (p Placement) Total() int32 {
	var t int32
	for _, s := range p.Sites {
		t += p.Counts[s]
	}
	return t
}

// ParsePlacement parses an vk8sv1.AnnotationPlacement value written by String.
func ParsePlacement(v string) (Placement, error) {
	var p Placement
	if strings.TrimSpace(v) == "" {
		return p, nil
	}
	for _, e := range strings.Split(v, ",") {
		site, count, hasCount := strings.Cut(strings.TrimSpace(e), "=")
		if site == "" || slices.Contains(p.Sites, site) {
			return Placement{}, fmt.Errorf("placement %q: empty or repeated site", v)
		}
		p.Sites = append(p.Sites, site)
		if !hasCount {
			continue
		}
		n, err := strconv.ParseInt(count, 10, 32)
		if err != nil || n < 0 {
			return Placement{}, fmt.Errorf("placement %q: count of site %s is not a number", v, site)
		}
		if p.Counts == nil {
			p.Counts = map[string]int32{}
		}
		p.Counts[site] = int32(n)
	}
	if p.Counts != nil && len(p.Counts) != len(p.Sites) {
		return Placement{}, fmt.Errorf("placement %q: some sites have counts, others not", v)
	}
	return p, nil
}

// newPlacement returns the placement of plan in order: the sites of previous that are still
// planned keep their order, and the new ones follow, sorted.
func newPlacement(plan overrides.Plan, previous []string) Placement {
	p := Placement{Counts: plan.Replicas}
	for _, s := range previous {
		if _, ok := plan.Replicas[s]; ok && !slices.Contains(p.Sites, s) {
			p.Sites = append(p.Sites, s)
		}
	}
	for _, s := range plan.Sites {
		if !slices.Contains(p.Sites, s) {
			p.Sites = append(p.Sites, s)
		}
	}
	return p
}

// SiteOfOrdinal returns the site whose block holds ordinal i, or false when i is beyond
// the total.
func (p Placement) SiteOfOrdinal(i int) (string, bool) {
	if i < 0 {
		return "", false
	}
	next := 0
	for _, s := range p.Sites {
		next += int(p.Counts[s])
		if i < next {
			return s, true
		}
	}
	return "", false
}

// chooseByDeficit returns the site of p with the largest deficit (planned minus current
// pods); ties go to the site with fewer pods, then to the earlier site.
func chooseByDeficit(p Placement, current map[string]int) string {
	best := ""
	var bestDeficit, bestCurrent int
	for _, s := range p.Sites {
		d, c := int(p.Counts[s])-current[s], current[s]
		if best == "" || d > bestDeficit || (d == bestDeficit && c < bestCurrent) {
			best, bestDeficit, bestCurrent = s, d, c
		}
	}
	return best
}

// chooseFewest returns the site with the fewest current pods; ties go to the earlier site.
func chooseFewest(sites []string, current map[string]int) string {
	best := ""
	for _, s := range sites {
		if best == "" || current[s] < current[best] {
			best = s
		}
	}
	return best
}

// reservation is a pod admitted on a site but perhaps not yet in the cache.
type reservation struct {
	site string
	// slot numbers the pod among its owner's pods on the site (vk8sv1.AnnotationSlot); 0 for pods
	// placed by namespace, which are matched by name.
	slot    int
	name    string
	expires time.Time
}

// visiblePod is a pod of the cache, as the placement counts it.
type visiblePod struct {
	site string
	slot int
	name string
}

// reservations remembers the pods admitted recently, per owner (or namespace), so that
// concurrent admissions see each other before the cache does. A reservation ends when the
// pod shows up in the cache (same site and slot, or same name) or after its TTL, which
// covers pods that a later admission step refused.
type reservations struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	keys      map[string]*reservationList
	nextSweep time.Time
}

type reservationList struct {
	// users counts the admissions holding the list; guarded by reservations.mu, so a
	// sweep never forgets a list that an admission is about to add to.
	users int

	mu   sync.Mutex
	list []reservation
}

func newReservations(ttl time.Duration, now func() time.Time) *reservations {
	return &reservations{ttl: ttl, now: now, keys: map[string]*reservationList{}}
}

// place runs choose for key with the pods of the key the cache holds (visible, which it
// lists under the key's lock) and the reservations they do not account for yet, and
// records choose's answer as a reservation. Admissions of one key are serialized; other
// keys run in parallel.
func (r *reservations) place(key string, visible func() ([]visiblePod, error),
	choose func(counts map[string]int, used map[string]map[int]bool) (site string, slot int, name string, err error),
) (string, int, error) {
	now := r.now()
	r.mu.Lock()
	if now.After(r.nextSweep) {
		r.sweepLocked(now)
	}
	l := r.keys[key]
	if l == nil {
		l = &reservationList{}
		r.keys[key] = l
	}
	l.users++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		l.users--
		r.mu.Unlock()
	}()

	l.mu.Lock()
	defer l.mu.Unlock()
	pods, err := visible()
	if err != nil {
		return "", 0, err
	}
	counts := map[string]int{}
	used := map[string]map[int]bool{}
	seenSlot := map[string]map[int]bool{}
	seenName := map[string]bool{}
	mark := func(m map[string]map[int]bool, site string, slot int) {
		if m[site] == nil {
			m[site] = map[int]bool{}
		}
		m[site][slot] = true
	}
	for _, p := range pods {
		counts[p.site]++
		if p.slot > 0 {
			mark(used, p.site, p.slot)
			mark(seenSlot, p.site, p.slot)
		}
		if p.name != "" {
			seenName[p.name] = true
		}
	}
	kept := l.list[:0]
	for _, res := range l.list {
		if !now.Before(res.expires) || (res.slot > 0 && seenSlot[res.site][res.slot]) || (res.name != "" && seenName[res.name]) {
			continue
		}
		kept = append(kept, res)
		counts[res.site]++
		if res.slot > 0 {
			mark(used, res.site, res.slot)
		}
	}
	l.list = kept
	site, slot, name, err := choose(counts, used)
	if err != nil {
		return "", 0, err
	}
	l.list = append(l.list, reservation{site: site, slot: slot, name: name, expires: now.Add(r.ttl)})
	return site, slot, nil
}

// forget drops key's reservations of slot on site (slot 0: of name): the pod they
// reserved is in the cache. The per-site rollout calls it before deleting such a pod: a
// reservation that no admission matched while its pod was visible would otherwise count
// again once the pod is gone, and send the pod's replacement to another site.
func (r *reservations) forget(key, site string, slot int, name string) {
	r.mu.Lock()
	l := r.keys[key]
	r.mu.Unlock()
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = slices.DeleteFunc(l.list, func(res reservation) bool {
		return res.site == site && ((slot > 0 && res.slot == slot) || (res.name != "" && res.name == name))
	})
}

// sweepLocked forgets keys whose reservations all expired, so owners that come and go do
// not accumulate. r.mu is held.
func (r *reservations) sweepLocked(now time.Time) {
	for k, l := range r.keys {
		if l.users > 0 || !l.mu.TryLock() {
			continue
		}
		live := slices.ContainsFunc(l.list, func(res reservation) bool { return now.Before(res.expires) })
		l.mu.Unlock()
		if !live {
			delete(r.keys, k)
		}
	}
	r.nextSweep = now.Add(r.ttl)
}

// count returns the number of live reservations, for the metric.
func (r *reservations) count() int {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.keys {
		l.mu.Lock()
		for _, res := range l.list {
			if now.Before(res.expires) {
				n++
			}
		}
		l.mu.Unlock()
	}
	return n
}

// freeSlot returns the lowest slot number above 0 that used does not hold.
func freeSlot(used map[int]bool) int {
	for i := 1; ; i++ {
		if !used[i] {
			return i
		}
	}
}

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
	"slices"
	"sync"
	"time"
)

// Visible is a pod that the caller's cache holds, as placement counts it.
type Visible struct {
	Site string
	// Slot is the pod's vk8s.io/slot; 0 for pods placed by namespace, matched by Name.
	Slot int
	Name string
	// Ended: the pod is in the cache but no longer counts (it failed, or it succeeded
	// where successes do not count). It ends its reservation and counts for nothing; its
	// slot stays taken while it is in the cache, so that a reservation of its
	// replacement is never mistaken for it.
	Ended bool
}

// Choose picks a site given the pods each site has (visible ones and reservations) and
// the slots in use per site; it returns the site, the slot of the new pod (0: none) and
// its name (for pods matched by name).
type Choose func(counts map[string]int, used map[string]map[int]bool) (site string, slot int, name string, err error)

// reservation is a pod admitted on a site but perhaps not yet in the cache.
type reservation struct {
	site    string
	slot    int
	name    string
	expires time.Time
}

// Reservations remembers the pods admitted recently, per key (a workload's UID, or a
// namespace), so that concurrent admissions see each other before the cache does. A
// reservation ends when the pod shows up in the cache (same site and slot, or same name)
// or after its TTL, which covers pods that a later admission step refused. It is safe for
// concurrent use; admissions of one key are serialized, other keys run in parallel.
type Reservations struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	keys      map[string]*reservationList
	nextSweep time.Time
}

type reservationList struct {
	// users counts the admissions holding the list; guarded by Reservations.mu, so a
	// sweep never forgets a list that an admission is about to add to.
	users int

	mu   sync.Mutex
	list []reservation
}

// NewReservations returns reservations that last ttl by the clock now.
func NewReservations(ttl time.Duration, now func() time.Time) *Reservations {
	return &Reservations{ttl: ttl, now: now, keys: map[string]*reservationList{}}
}

// Place runs choose for key with the pods of the key the cache holds (visible, which it
// lists under the key's lock) and the reservations they do not account for yet, and
// records choose's answer as a reservation. It returns choose's site and slot.
func (r *Reservations) Place(key string, visible func() ([]Visible, error), choose Choose) (string, int, error) {
	return r.place(key, visible, choose, true)
}

// Peek answers as Place does and records nothing: for a dry-run admission, whose pod is
// never created, so that it does not count against the next real one for the TTL.
func (r *Reservations) Peek(key string, visible func() ([]Visible, error), choose Choose) (string, int, error) {
	return r.place(key, visible, choose, false)
}

func (r *Reservations) place(key string, visible func() ([]Visible, error), choose Choose, record bool) (string, int, error) {
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
		if !p.Ended {
			counts[p.Site]++
		}
		if p.Slot > 0 {
			mark(used, p.Site, p.Slot)
			mark(seenSlot, p.Site, p.Slot)
		}
		if p.Name != "" {
			seenName[p.Name] = true
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
	if record {
		l.list = append(l.list, reservation{site: site, slot: slot, name: name, expires: now.Add(r.ttl)})
	}
	return site, slot, nil
}

// Forget drops key's reservations of slot on site (slot 0: of name): the pod they
// reserved is in the cache. The per-site rollout calls it before deleting such a pod: a
// reservation that no admission matched while its pod was visible would otherwise count
// again once the pod is gone, and send the pod's replacement to another site.
func (r *Reservations) Forget(key, site string, slot int, name string) {
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
func (r *Reservations) sweepLocked(now time.Time) {
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

// Count returns the number of live reservations, for a metric.
func (r *Reservations) Count() int {
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

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
	"maps"
	"slices"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// testClock is a settable clock.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time      { return c.t }
func (c *testClock) add(d time.Duration) { c.t = c.t.Add(d) }

func TestPlacementAnnotation(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Layout
		wantErr bool
	}{
		{in: "", want: Layout{}},
		{in: "site2=3,site1=0", want: Layout{Sites: []string{"site2", "site1"}, Counts: map[string]int32{"site2": 3, "site1": 0}}},
		{in: "a, b", want: Layout{Sites: []string{"a", "b"}}},
		{in: "a=1,a=2", wantErr: true},
		{in: "a=1,b", wantErr: true},
		{in: "a=x", wantErr: true},
		{in: "a=-1", wantErr: true},
		{in: "a,,b", wantErr: true},
	} {
		got, err := ParseLayout(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && !apiequality.Semantic.DeepEqual(got, tc.want)) {
			t.Errorf("ParseLayout(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && tc.in != "a, b" && got.String() != tc.in {
			t.Errorf("%q formats back as %q", tc.in, got.String())
		}
	}
}

func TestOrdinalBlocks(t *testing.T) {
	plan, _ := PlanReplicas([]string{"site1", "site2", "site3", "site4"}, 2, map[string]int32{"site3": 0, "site4": 1})
	// site2 was first, site1 second; site3 and site4 are new and go last, sorted.
	p := NewLayout(plan, []string{"site2", "gone", "site1"})
	if got := p.String(); got != "site2=2,site1=2,site3=0,site4=1" {
		t.Fatalf("placement %s", got)
	}
	var got []string
	for i := range 6 {
		s, ok := p.SiteOfOrdinal(i)
		if !ok {
			s = "-"
		}
		got = append(got, s)
	}
	if want := []string{"site2", "site2", "site1", "site1", "site4", "-"}; !slices.Equal(got, want) {
		t.Errorf("ordinals 0..5 on %v, want %v", got, want)
	}
	if _, ok := p.SiteOfOrdinal(-1); ok {
		t.Error("ordinal -1 has a site")
	}
}

func TestChoose(t *testing.T) {
	p := Layout{Sites: []string{"a", "b", "c"}, Counts: map[string]int32{"a": 3, "b": 1, "c": 3}}
	for _, tc := range []struct {
		current map[string]int
		deficit string
		fewest  string
	}{
		{map[string]int{}, "a", "a"},
		{map[string]int{"a": 1}, "c", "b"},
		{map[string]int{"a": 2, "c": 1}, "c", "b"},
		{map[string]int{"a": 3, "b": 1, "c": 3}, "b", "b"},
		{map[string]int{"a": 4, "b": 1, "c": 3}, "b", "b"},
		{map[string]int{"a": 3, "b": 2, "c": 3}, "a", "b"},
	} {
		if got := ChooseByDeficit(p, tc.current); got != tc.deficit {
			t.Errorf("deficit with %v: %s, want %s", tc.current, got, tc.deficit)
		}
		if got := ChooseFewest(p.Sites, tc.current); got != tc.fewest {
			t.Errorf("fewest with %v: %s, want %s", tc.current, got, tc.fewest)
		}
	}
}

func TestReservations(t *testing.T) {
	clock := &testClock{t: time.Unix(1000, 0)}
	r := NewReservations(10*time.Second, clock.now)
	var visible []Visible
	list := func() ([]Visible, error) { return slices.Clone(visible), nil }
	var seen map[string]int
	place := func(site string, slot int, name string) {
		t.Helper()
		if _, _, err := r.Place("k", list, func(counts map[string]int, used map[string]map[int]bool) (string, int, string, error) {
			seen = maps.Clone(counts)
			if slot == 0 && used[site] != nil {
				slot = FreeSlot(used[site])
			}
			return site, slot, name, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	place("a", 1, "")
	place("a", 2, "")
	place("b", 0, "solo")
	if want := map[string]int{"a": 2}; !maps.Equal(seen, want) {
		t.Errorf("counts %v, want %v", seen, want)
	}
	// The first pod shows up in the cache: it is counted once.
	visible = []Visible{{Site: "a", Slot: 1}, {Site: "b", Name: "solo"}}
	place("c", 1, "")
	if want := map[string]int{"a": 2, "b": 1}; !maps.Equal(seen, want) {
		t.Errorf("counts with the cache %v, want %v", seen, want)
	}
	if n := r.Count(); n != 2 {
		t.Errorf("%d live reservations, want 2 (a/2 and c/1)", n)
	}
	// A pod that ended before any admission saw it live (a Job's pod that failed) ends
	// its reservation all the same, counts for nothing, and keeps its slot.
	visible = []Visible{{Site: "a", Slot: 1}, {Site: "b", Name: "solo"}, {Site: "a", Slot: 2, Ended: true}, {Site: "c", Slot: 1, Ended: true}}
	var used map[string]map[int]bool
	if _, _, err := r.Place("k", list, func(counts map[string]int, u map[string]map[int]bool) (string, int, string, error) {
		seen, used = maps.Clone(counts), u
		return "c", FreeSlot(u["c"]), "", nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 1, "b": 1}; !maps.Equal(seen, want) {
		t.Errorf("counts with ended pods %v, want %v", seen, want)
	}
	if !used["a"][2] || !used["c"][1] {
		t.Errorf("slots in use %v, want a/2 and c/1 kept by their ended pods", used)
	}
	visible = []Visible{{Site: "a", Slot: 1}, {Site: "b", Name: "solo"}, {Site: "a", Slot: 2, Ended: true}, {Site: "c", Slot: 1, Ended: true}}
	place("x", 1, "")
	if want := map[string]int{"a": 1, "b": 1, "c": 1}; !maps.Equal(seen, want) {
		t.Errorf("counts with the replacement reserved on c/2 %v, want %v", seen, want)
	}

	// Reservations expire; the keys that hold none are forgotten.
	clock.add(11 * time.Second)
	visible = nil
	place("x", 1, "")
	if want := map[string]int{}; !maps.Equal(seen, want) {
		t.Errorf("counts after expiry %v, want none", seen)
	}
	if _, _, err := r.Place("k", list, func(map[string]int, map[string]map[int]bool) (string, int, string, error) {
		return "", 0, "", errors.New("refused")
	}); err == nil {
		t.Error("choose's error was lost")
	}
	clock.add(11 * time.Second)
	_, _, _ = r.Place("other", list, func(map[string]int, map[string]map[int]bool) (string, int, string, error) { return "a", 1, "", nil })
	if _, ok := r.keys["k"]; ok {
		t.Error("a key without live reservations was kept")
	}
}

// TestReservationsPeek: a dry run sees the reservations and records none.
func TestReservationsPeek(t *testing.T) {
	clock := &testClock{t: time.Unix(1000, 0)}
	r := NewReservations(10*time.Second, clock.now)
	list := func() ([]Visible, error) { return nil, nil }
	var seen map[string]int
	choose := func(site string) Choose {
		return func(counts map[string]int, used map[string]map[int]bool) (string, int, string, error) {
			seen = maps.Clone(counts)
			return site, FreeSlot(used[site]), "", nil
		}
	}
	if _, _, err := r.Place("k", list, choose("a")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		site, slot, err := r.Peek("k", list, choose("b"))
		if err != nil || site != "b" || slot != 1 {
			t.Errorf("Peek = %s, %d, %v; want b, slot 1", site, slot, err)
		}
		if want := map[string]int{"a": 1}; !maps.Equal(seen, want) {
			t.Errorf("Peek saw %v, want %v (the one reservation, none of an earlier peek)", seen, want)
		}
	}
	if n := r.Count(); n != 1 {
		t.Errorf("%d reservations after a Place and two Peeks, want 1", n)
	}
}

func TestJobLayout(t *testing.T) {
	sites := []string{"site1", "site2", "site3"}
	two := int32(2)
	for _, tc := range []struct {
		name        string
		completions *int32
		// placed are the pods on each site that have not failed: running and succeeded
		// (with completions), running only (a work queue).
		placed map[string]int
		want   string
	}{
		{name: "start: even", completions: &two, placed: map[string]int{}, want: "site1"},
		{name: "a fast site gets its second pod", completions: &two, placed: map[string]int{"site1": 1, "site2": 1, "site3": 1}, want: "site1"},
		// The job controller keeps 3 pods running: the site with its 2 placed gets none.
		{name: "a site with its share placed gets no more", completions: &two, placed: map[string]int{"site1": 2, "site2": 1, "site3": 1}, want: "site2"},
		{name: "a failed pod's site gets its replacement", completions: &two, placed: map[string]int{"site1": 2, "site2": 1, "site3": 2}, want: "site2"},
		{name: "work queue: parallelism per site", placed: map[string]int{"site1": 1}, want: "site2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := JobLayout(sites, 1, tc.completions)
			want := int32(1)
			if tc.completions != nil {
				want = *tc.completions
			}
			for _, s := range sites {
				if l.Counts[s] != want {
					t.Errorf("count of %s %d, want %d", s, l.Counts[s], want)
				}
			}
			if got := ChooseByDeficit(l, tc.placed); got != tc.want {
				t.Errorf("next pod on %s, want %s", got, tc.want)
			}
		})
	}
}

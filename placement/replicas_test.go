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
	"k8s.io/utils/ptr"
	"math"
	"reflect"
	"testing"
)

func TestPlanReplicas(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sites     []string
		r         int32
		overrides map[string]int32
		want      Plan
		wantErr   string
	}{
		{
			name: "R x N", sites: []string{"site1", "site2", "site3"}, r: 3,
			want: Plan{Sites: []string{"site1", "site2", "site3"}, Replicas: map[string]int32{"site1": 3, "site2": 3, "site3": 3}, Total: 9},
		},
		{
			name: "sorted and de-duplicated", sites: []string{"site3", "site1", "site3"}, r: 2,
			want: Plan{Sites: []string{"site1", "site3"}, Replicas: map[string]int32{"site1": 2, "site3": 2}, Total: 4},
		},
		{
			name: "override replicas replace R on their sites", sites: []string{"site1", "site2", "site3"}, r: 3,
			overrides: map[string]int32{"site2": 1, "site3": 0, "elsewhere": 7},
			want:      Plan{Sites: []string{"site1", "site2", "site3"}, Replicas: map[string]int32{"site1": 3, "site2": 1, "site3": 0}, Total: 4},
		},
		{
			name: "zero R, overrides only", sites: []string{"a", "b"}, r: 0, overrides: map[string]int32{"a": 2},
			want: Plan{Sites: []string{"a", "b"}, Replicas: map[string]int32{"a": 2, "b": 0}, Total: 2},
		},
		{
			name: "no sites", sites: nil, r: 3,
			want: Plan{Sites: nil, Replicas: map[string]int32{}, Total: 0},
		},
		{name: "negative R", sites: []string{"a"}, r: -1, wantErr: "plan replicas: -1 replicas per site: must be 0 or more"},
		{name: "negative override", sites: []string{"a"}, r: 1, overrides: map[string]int32{"a": -2}, wantErr: "plan replicas: site a: override replicas -2: must be 0 or more"},
		{
			name: "overflow", sites: []string{"a", "b"}, r: math.MaxInt32,
			wantErr: "plan replicas: 2147483647 replicas on 2 sites make 4294967294, more than spec.replicas can hold (2147483647)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]string(nil), tc.sites...)
			got, err := PlanReplicas(tc.sites, tc.r, tc.overrides)
			checkErr(t, err, tc.wantErr)
			if !reflect.DeepEqual(tc.sites, in) {
				t.Errorf("PlanReplicas modified its sites: %v", tc.sites)
			}
			if tc.wantErr != "" {
				return
			}
			if !reflect.DeepEqual(got.Sites, tc.want.Sites) || !reflect.DeepEqual(got.Replicas, tc.want.Replicas) || got.Total != tc.want.Total {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestScaleJob(t *testing.T) {
	for _, tc := range []struct {
		name               string
		parallelism, compl *int32
		sites              int
		wantP, wantC       *int32
		wantErr            string
		wantErrIs          error
	}{
		{name: "both", parallelism: ptr.To[int32](2), compl: ptr.To[int32](4), sites: 3, wantP: ptr.To[int32](6), wantC: ptr.To[int32](12)},
		{name: "work queue", parallelism: ptr.To[int32](2), sites: 3, wantP: ptr.To[int32](6)},
		{name: "defaulted parallelism", compl: ptr.To[int32](1), sites: 3, wantP: ptr.To[int32](3), wantC: ptr.To[int32](3)},
		{name: "zero parallelism (suspended by hand)", parallelism: ptr.To[int32](0), compl: ptr.To[int32](5), sites: 2, wantP: ptr.To[int32](0), wantC: ptr.To[int32](10)},
		{name: "no sites", parallelism: ptr.To[int32](1), sites: 0, wantErr: "scale job: the workload has no sites", wantErrIs: ErrNoSites},
		{name: "negative", parallelism: ptr.To[int32](-1), sites: 2, wantErr: "scale job: parallelism -1: must be 0 or more"},
		{
			name: "overflow", parallelism: ptr.To[int32](1), compl: ptr.To[int32](math.MaxInt32), sites: 2,
			wantErr: "scale job: completions 2147483647 on 2 sites makes 4294967294, more than the Job can hold (2147483647)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c, err := ScaleJob(tc.parallelism, tc.compl, tc.sites)
			checkErr(t, err, tc.wantErr)
			if tc.wantErrIs != nil && !errors.Is(err, tc.wantErrIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantErrIs)
			}
			if !reflect.DeepEqual(p, tc.wantP) || !reflect.DeepEqual(c, tc.wantC) {
				t.Errorf("got %v/%v, want %v/%v", deref(p), deref(c), deref(tc.wantP), deref(tc.wantC))
			}
		})
	}
}

func TestReplicasPerSite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		total     int32
		sites     int
		strict    bool
		want      int32
		wantErr   string
		wantErrIs error
	}{
		{name: "multiple", total: 9, sites: 3, want: 3},
		{name: "multiple, strict", total: 9, sites: 3, strict: true, want: 3},
		{name: "zero", total: 0, sites: 3, strict: true, want: 0},
		{name: "rounded up", total: 10, sites: 3, want: 4},
		{name: "fewer than sites rounds up to 1", total: 1, sites: 3, want: 1},
		{name: "one site", total: 7, sites: 1, strict: true, want: 7},
		{name: "largest", total: math.MaxInt32, sites: 2, want: 1 << 30},
		{
			name: "not a multiple, strict", total: 10, sites: 3, strict: true,
			wantErr:   "spec.replicas: invalid value 10: not a multiple of the number of sites (3): replicas are per site, so the total is a multiple of the site count; write 9 or 12",
			wantErrIs: ErrNotMultiple,
		},
		{
			name: "fewer than sites, strict", total: 2, sites: 3, strict: true,
			wantErr:   "spec.replicas: invalid value 2: not a multiple of the number of sites (3): replicas are per site, so the total is a multiple of the site count; write 3",
			wantErrIs: ErrNotMultiple,
		},
		{
			name: "no sites", total: 3, sites: 0,
			wantErr:   "spec.replicas: cannot derive replicas per site: the workload has no sites; select sites with the ves.io/virtual-sites annotation or the namespace's VirtualKubernetes",
			wantErrIs: ErrNoSites,
		},
		{name: "negative", total: -1, sites: 2, wantErr: "spec.replicas: invalid value -1: must be 0 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReplicasPerSite(tc.total, tc.sites, tc.strict)
			checkErr(t, err, tc.wantErr)
			if tc.wantErrIs != nil && !errors.Is(err, tc.wantErrIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantErrIs)
			}
			if got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// TestReplicasRoundTrip checks that R derived from a total gives back at least that total,
// and exactly it when the total is a multiple of the site count.
func TestReplicasRoundTrip(t *testing.T) {
	sites := []string{"a", "b", "c", "d", "e", "f", "g"}
	for n := 1; n <= len(sites); n++ {
		for total := int32(0); total <= 50; total++ {
			r, err := ReplicasPerSite(total, n, false)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := PlanReplicas(sites[:n], r, nil)
			if err != nil {
				t.Fatal(err)
			}
			if plan.Total < total || plan.Total-total >= int32(n) {
				t.Errorf("total %d on %d sites: R=%d gives %d", total, n, r, plan.Total)
			}
			_, strictErr := ReplicasPerSite(total, n, true)
			if (total%int32(n) == 0) != (strictErr == nil) || (strictErr == nil && plan.Total != total) {
				t.Errorf("total %d on %d sites: strict err %v, plan total %d", total, n, strictErr, plan.Total)
			}
		}
	}
}

func deref(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %s", want)
	case want != "" && err.Error() != want:
		t.Fatalf("error:\n got %s\nwant %s", err, want)
	}
}

func TestBackoffLimit(t *testing.T) {
	for _, tc := range []struct {
		perSite int32
		sites   int
		want    int32
	}{
		{6, 3, 18},
		{0, 3, 0},
		{2, 1, 2},
		{2, 0, 2}, // no sites yet: as one
		{math.MaxInt32, 3, math.MaxInt32},
		{math.MaxInt32/2 + 1, 2, math.MaxInt32},
	} {
		if got := ScaleBackoffLimit(tc.perSite, tc.sites); got != tc.want {
			t.Errorf("ScaleBackoffLimit(%d, %d) = %d, want %d", tc.perSite, tc.sites, got, tc.want)
		}
	}
	for _, tc := range []struct {
		total int32
		sites int
		want  int32
	}{
		{18, 3, 6},
		{10, 3, 4}, // rounded up: no site gets fewer retries than asked
		{0, 3, 0},
		{math.MaxInt32, 3, 715827883},
		{5, 0, 5},
	} {
		if got := BackoffLimitPerSite(tc.total, tc.sites); got != tc.want {
			t.Errorf("BackoffLimitPerSite(%d, %d) = %d, want %d", tc.total, tc.sites, got, tc.want)
		}
	}
}

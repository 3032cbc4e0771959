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

package main

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantile(t *testing.T) {
	before := hist{bounds: []float64{0.1, 0.5, 1}, counts: []float64{5, 5, 5}, count: 5, sum: 0.2}
	// 100 observations since: 10 up to 0.1 s, 80 in (0.1, 0.5], 8 in (0.5, 1], 2 above.
	after := hist{bounds: []float64{0.1, 0.5, 1}, counts: []float64{15, 95, 103}, count: 105, sum: 30.2}
	d := after.minus(before)
	if d.count != 100 || math.Abs(d.sum-30) > 1e-9 {
		t.Fatalf("minus: count %d sum %g, want 100 and 30", d.count, d.sum)
	}
	for _, tc := range []struct {
		q, want float64
	}{
		{0.05, 0.05},     // half-way into the first bucket, from 0
		{0.50, 0.3},      // rank 50: 40 of the second bucket's 80
		{0.94, 0.75},     // rank 94: 4 of the third bucket's 8
		{0.99, 1},        // beyond the last bucket: its bound
		{0.10, 0.1},      // exactly the first bucket's count
		{0.90, 0.5},      // exactly the second's
		{0.98, 1},        // exactly the third's
		{0.975, 0.96875}, // rank 97.5: 7.5 of 8
	} {
		if got := d.quantile(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%g) = %g, want %g", tc.q, got, tc.want)
		}
	}
	if got := (hist{}).quantile(0.5); !math.IsNaN(got) {
		t.Errorf("quantile of nothing = %g, want NaN", got)
	}
}

func TestBenchStages(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	times := map[string]*podTimes{
		"a": {create: at(0), bound: at(10), siteAdded: at(110), siteRunning: at(610), running: at(710)},
		"b": {create: at(0), bound: at(20), siteAdded: at(220), siteRunning: at(1220), running: at(1320)},
		// c's site watch missed it: only the host's stages count it.
		"c": {create: at(0), bound: at(30), running: at(2000)},
	}
	want := map[string]struct {
		count    int
		p50, p99 float64
	}{
		"create -> bound (host scheduler)": {3, 0.020, 0.030},
		"bound -> site pod seen":           {2, 0.100, 0.200},
		"site pod seen -> Running on site": {2, 0.500, 1.000},
		"Running on site -> seen on host":  {2, 0.100, 0.100},
		"total (create -> seen Running)":   {3, 1.320, 2.000},
	}
	got := benchStages(times)
	if len(got) != len(want) {
		t.Fatalf("%d stages, want %d: %+v", len(got), len(want), got)
	}
	for _, s := range got {
		w, ok := want[s.Name]
		if !ok || s.Count != w.count || math.Abs(s.P50-w.p50) > 1e-9 || math.Abs(s.P99-w.p99) > 1e-9 {
			t.Errorf("stage %q: n %d p50 %g p99 %g, want %+v", s.Name, s.Count, s.P50, s.P99, w)
		}
	}
}

func TestWithoutPaths(t *testing.T) {
	got := withoutPaths([]string{"--vk8s", "/tmp/x/vk8s", "--results", "docs/bench", "--name", "stg"})
	want := []string{"--vk8s", "vk8s", "--results", "docs/bench", "--name", "stg"}
	if !slices.Equal(got, want) {
		t.Errorf("withoutPaths = %q, want %q", got, want)
	}
}

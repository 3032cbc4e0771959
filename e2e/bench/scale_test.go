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
	"maps"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []size
		wantErr bool
	}{
		{in: "3,30,300", want: []size{{3, 1}, {30, 1}, {300, 1}}},
		{in: "3, 300,1000x3", want: []size{{3, 1}, {300, 1}, {1000, 3}}},
		{in: "30x1", want: []size{{30, 1}}},
		{in: "", want: nil},            // no footprint run
		{in: "2", wantErr: true},       // fewer than the lab's own sites
		{in: "30,3", wantErr: true},    // not increasing
		{in: "1000x4", wantErr: true},  // more nodes than a site cluster has
		{in: "1000x0", wantErr: true},  // no nodes
		{in: "1000x", wantErr: true},   // no count
		{in: "many", wantErr: true},    // no number
		{in: "300,,30", wantErr: true}, // empty item
	} {
		got, err := parseSizes(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseSizes(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if n := (size{1000, 3}).virtualNodes(); n != 3000 {
		t.Errorf("1000x3: %d virtual nodes, want 3000", n)
	}
}

// Slices go round the site clusters, and within a cluster round its nodes or groups, so
// every real node (group) carries as many slices as the others.
func TestSliceSelector(t *testing.T) {
	for _, tc := range []struct {
		i, nodes int
		want     map[string]string
	}{
		{i: 4, nodes: 1, want: map[string]string{corev1.LabelHostname: "node2"}},
		{i: 7, nodes: 1, want: map[string]string{corev1.LabelHostname: "node3"}},
		{i: 10, nodes: 1, want: map[string]string{corev1.LabelHostname: "node1"}},
		{i: 4, nodes: 3, want: map[string]string{groupLabel(3): "1"}},
		{i: 1000, nodes: 3, want: map[string]string{groupLabel(3): "1"}},
	} {
		if got := sliceSelector(tc.i, labSites, tc.nodes); !maps.Equal(got, tc.want) {
			t.Errorf("sliceSelector(%d, %d, %d) = %v, want %v", tc.i, labSites, tc.nodes, got, tc.want)
		}
	}
}

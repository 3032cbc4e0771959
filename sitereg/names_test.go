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

package sitereg

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNamers(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []namer
	}{
		{"a-b-c", []namer{{"a", "b-c"}, {"a-b", "c"}, {site: "a-b-c"}}},
		{"site1-node1", []namer{{"site1", "node1"}, {site: "site1-node1"}}},
		{"solo", []namer{{site: "solo"}}},
		{"a--b", []namer{{"a", "-b"}, {"a-", "b"}, {site: "a--b"}}},
	} {
		if got := namers(tc.name); !slices.Equal(got, tc.want) {
			t.Errorf("namers(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fleetSite is a Site of a table: its nodes (PerNode) or Aggregate, and the virtual nodes
// its status lists.
type fleetSite struct {
	age       int // minutes before now: older Sites have more
	aggregate bool
	nodes     []string
	unknown   bool // its nodes are not known (not connected yet): only held counts
	held      []string
}

func (f fleetSite) view(name string, now time.Time) siteView {
	v := siteView{name: name, created: now.Add(-time.Duration(f.age) * time.Minute), aggregate: f.aggregate, held: map[string]bool{}}
	for _, h := range f.held {
		v.held[h] = true
	}
	if !f.unknown {
		v.makes = func(node string) bool { return slices.Contains(f.nodes, node) }
	}
	return v
}

// names is what translate.VirtualNodes makes of f's nodes.
func (f fleetSite) names(name string) []string {
	if f.aggregate {
		return []string{name}
	}
	var out []string
	for _, n := range f.nodes {
		out = append(out, name+"-"+n)
	}
	return out
}

func TestCollisions(t *testing.T) {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		fleet map[string]fleetSite
		// want is, per Site, its collisions as "name:keeper"; Sites without are left out.
		want map[string][]string
	}{
		{
			name: "distinct names",
			fleet: map[string]fleetSite{
				"site1": {age: 2, nodes: []string{"node1", "node2"}},
				"site2": {age: 1, nodes: []string{"node1", "node2"}},
			},
		},
		{
			name: "a's node b-c and a-b's node c: the older Site keeps a-b-c",
			fleet: map[string]fleetSite{
				"a":   {age: 2, nodes: []string{"b-c", "d"}},
				"a-b": {age: 1, nodes: []string{"c", "e"}},
			},
			want: map[string][]string{"a-b": {"a-b-c:a"}},
		},
		{
			name: "the same, a-b created first",
			fleet: map[string]fleetSite{
				"a":   {age: 1, nodes: []string{"b-c"}},
				"a-b": {age: 2, nodes: []string{"c"}},
			},
			want: map[string][]string{"a": {"a-b-c:a-b"}},
		},
		{
			name: "created in the same second: the first name keeps it",
			fleet: map[string]fleetSite{
				"a":   {age: 1, nodes: []string{"b-c"}},
				"a-b": {age: 1, nodes: []string{"c"}},
			},
			want: map[string][]string{"a-b": {"a-b-c:a"}},
		},
		{
			name: "the Site that has the virtual node keeps it, though younger: a node that joins the older Site takes nothing",
			fleet: map[string]fleetSite{
				"a":   {age: 2, nodes: []string{"b-c"}},
				"a-b": {age: 1, nodes: []string{"c"}, held: []string{"a-b-c"}},
			},
			want: map[string][]string{"a": {"a-b-c:a-b"}},
		},
		{
			name: "both have it (left by a version without the check): the older keeps it",
			fleet: map[string]fleetSite{
				"a":   {age: 1, nodes: []string{"b-c"}, held: []string{"a-b-c"}},
				"a-b": {age: 2, nodes: []string{"c"}, held: []string{"a-b-c"}},
			},
			want: map[string][]string{"a": {"a-b-c:a-b"}},
		},
		{
			name: "an Aggregate Site named like another Site's virtual node",
			fleet: map[string]fleetSite{
				"site1":       {age: 2, nodes: []string{"node1", "node2"}},
				"site1-node1": {age: 1, aggregate: true, nodes: []string{"node1"}},
			},
			want: map[string][]string{"site1-node1": {"site1-node1:site1"}},
		},
		{
			name: "an older Aggregate Site keeps its name",
			fleet: map[string]fleetSite{
				"site1":       {age: 1, nodes: []string{"node1", "node2"}},
				"site1-node1": {age: 2, aggregate: true},
			},
			want: map[string][]string{"site1": {"site1-node1:site1-node1"}},
		},
		{
			name: "three Sites make one name",
			fleet: map[string]fleetSite{
				"a":     {age: 1, nodes: []string{"b-c"}},
				"a-b":   {age: 2, nodes: []string{"c"}},
				"a-b-c": {age: 3, aggregate: true},
			},
			want: map[string][]string{"a": {"a-b-c:a-b-c"}, "a-b": {"a-b-c:a-b-c"}},
		},
		{
			name: "a Site whose nodes are not known yet claims what its status lists",
			fleet: map[string]fleetSite{
				"a":   {age: 2, nodes: []string{"b-c"}},
				"a-b": {age: 1, unknown: true, held: []string{"a-b-c"}},
			},
			want: map[string][]string{"a": {"a-b-c:a-b"}},
		},
		{
			name: "a Site whose nodes are not known yet and lists nothing claims nothing",
			fleet: map[string]fleetSite{
				"a":   {age: 1, nodes: []string{"b-c"}},
				"a-b": {age: 2, unknown: true},
			},
		},
		{
			name: "a node the other Site's selector leaves out makes nothing",
			fleet: map[string]fleetSite{
				"a":   {age: 1, nodes: []string{"b-c"}},
				"a-b": {age: 2, nodes: []string{"d"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(site string) (siteView, bool) {
				f, ok := tc.fleet[site]
				return f.view(site, now), ok
			}
			got := map[string][]string{}
			for site, f := range tc.fleet {
				for _, c := range collisions(f.view(site, now), f.names(site), lookup) {
					if !strings.HasPrefix(c.Name, site) || (c.Node == "") != f.aggregate {
						t.Errorf("%s: collision %+v does not name its own node", site, c)
					}
					if k := tc.fleet[c.Keeper]; (c.KeeperNode == "") != k.aggregate {
						t.Errorf("%s: collision %+v does not name the keeper's node", site, c)
					}
					got[site] = append(got[site], c.Name+":"+c.Keeper)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("collisions %v, want %v", got, tc.want)
			}
			for site, want := range tc.want {
				if !slices.Equal(got[site], want) {
					t.Errorf("%s: collisions %v, want %v", site, got[site], want)
				}
			}
		})
	}
}

func TestCollisionMessage(t *testing.T) {
	cols := []Collision{
		{Name: "a-b-c", Node: "c", Keeper: "a", KeeperNode: "b-c"},
		{Name: "a-b", Keeper: "a", KeeperNode: "b"},
	}
	want := "virtual node names collide with another Site's: a-b-c (its node c) is Site a's (its node b-c); " +
		"a-b (its Aggregate node) is Site a's (its node b); a host Node stands for one site node, so the Site that has " +
		"the name keeps it and this Site's node is not registered: rename the node on its site, leave it out with " +
		"spec.nodeSelector, or recreate this Site under another name"
	if got := collisionMessage(cols); got != want {
		t.Errorf("message\n  %s\nwant\n  %s", got, want)
	}
	host := Collision{Name: "host-node1", Node: "node1", HostNode: true}
	if got, want := collisionMessage([]Collision{host}), "collide with the host's own Nodes: host-node1 (its node node1) is a Node of the host itself;"; !strings.Contains(got, want) {
		t.Errorf("message %q does not say %q", got, want)
	}
	if got, want := collisionMessage(append(cols, host)), "collide with another Site's or the host's own Nodes: a-b-c"; !strings.Contains(got, want) {
		t.Errorf("message %q does not say %q", got, want)
	}
	var many []Collision
	for i := range 7 {
		many = append(many, Collision{Name: "s-n" + string(rune('0'+i)), Node: "n", Keeper: "s-n"})
	}
	if got := collisionMessage(many); !strings.Contains(got, "; and 2 more;") {
		t.Errorf("message of 7 collisions does not stop at 5: %s", got)
	}
}

func TestSymmetricDifference(t *testing.T) {
	if got := symmetricDifference([]string{"a", "b", "c"}, []string{"b", "d"}); !slices.Equal(got, []string{"a", "c", "d"}) {
		t.Errorf("symmetricDifference = %v, want [a c d]", got)
	}
}

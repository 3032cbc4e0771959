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

package translate

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func siteNode(name, cpu string, ready, cordoned bool, labels map[string]string) *corev1.Node {
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	l := map[string]string{corev1.LabelHostname: name, "node-role.kubernetes.io/worker": ""}
	for k, v := range labels {
		l[k] = v
	}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("4Gi")}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       corev1.NodeSpec{Unschedulable: cordoned},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		},
	}
}

func TestVirtualNodes(t *testing.T) {
	ep := Endpoint{Address: "192.0.2.7", Port: 10250}
	eu := map[string]string{corev1.LabelTopologyRegion: "eu", corev1.LabelTopologyZone: "eu-a"}
	euB := map[string]string{corev1.LabelTopologyRegion: "eu", corev1.LabelTopologyZone: "eu-b"}
	nodes := []*corev1.Node{
		siteNode("node2", "2", true, false, euB),
		siteNode("node1", "4", true, false, eu),
		siteNode("node3", "8", false, false, eu),
		siteNode("node4", "16", true, true, eu),
	}
	site := func(mode vk8sv1.NodeMode, unschedulable bool) *vk8sv1.Site {
		return &vk8sv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: "site1"},
			Spec:       vk8sv1.SiteSpec{NodeMode: mode, Unschedulable: unschedulable},
		}
	}
	for _, tc := range []struct {
		name              string
		site              *vk8sv1.Site
		wantNames         []string
		wantUnschedulable []bool
		wantCPU           []string
		wantReady         []corev1.ConditionStatus
		wantZone          []string
	}{
		{
			name:              "per node",
			site:              site(vk8sv1.NodeModePerNode, false),
			wantNames:         []string{"site1-node1", "site1-node2", "site1-node3", "site1-node4"},
			wantUnschedulable: []bool{false, false, false, true},
			wantCPU:           []string{"4", "2", "8", "16"},
			wantReady:         []corev1.ConditionStatus{"True", "True", "False", "True"},
			wantZone:          []string{"eu-a", "eu-b", "eu-a", "eu-a"},
		},
		{
			name:              "per node, site unschedulable",
			site:              site(vk8sv1.NodeModePerNode, true),
			wantNames:         []string{"site1-node1", "site1-node2", "site1-node3", "site1-node4"},
			wantUnschedulable: []bool{true, true, true, true},
			wantCPU:           []string{"4", "2", "8", "16"},
			wantReady:         []corev1.ConditionStatus{"True", "True", "False", "True"},
			wantZone:          []string{"eu-a", "eu-b", "eu-a", "eu-a"},
		},
		{
			// node3 is not Ready and node4 is cordoned: only node1 and node2 count.
			name:              "aggregate",
			site:              site(vk8sv1.NodeModeAggregate, false),
			wantNames:         []string{"site1"},
			wantUnschedulable: []bool{false},
			wantCPU:           []string{"6"},
			wantReady:         []corev1.ConditionStatus{"True"},
			wantZone:          []string{""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := VirtualNodes(tc.site, nodes, "v1.35.4", ep)
			var names []string
			for i, v := range got {
				names = append(names, v.Name)
				if i >= len(tc.wantCPU) {
					continue
				}
				if v.Spec.Unschedulable != tc.wantUnschedulable[i] {
					t.Errorf("%s: unschedulable %v, want %v", v.Name, v.Spec.Unschedulable, tc.wantUnschedulable[i])
				}
				cpu := v.Status.Allocatable[corev1.ResourceCPU]
				if cpu.Cmp(resource.MustParse(tc.wantCPU[i])) != 0 {
					t.Errorf("%s: allocatable cpu %s, want %s", v.Name, cpu.String(), tc.wantCPU[i])
				}
				if r := readyStatus(v); r != tc.wantReady[i] {
					t.Errorf("%s: Ready %s, want %s", v.Name, r, tc.wantReady[i])
				}
				if z := v.Labels[corev1.LabelTopologyZone]; z != tc.wantZone[i] {
					t.Errorf("%s: zone %q, want %q", v.Name, z, tc.wantZone[i])
				}
				// What every virtual node carries.
				if v.Labels[vk8sv1.LabelSite] != "site1" || v.Labels[vk8sv1.LabelType] != vk8sv1.TypeVirtualKubelet || v.Labels[corev1.LabelHostname] != v.Name {
					t.Errorf("%s: labels %v", v.Name, v.Labels)
				}
				if _, ok := v.Labels["node-role.kubernetes.io/worker"]; ok {
					t.Errorf("%s: the site's role label leaked: %v", v.Name, v.Labels)
				}
				if len(v.Spec.Taints) != 1 || v.Spec.Taints[0].Key != vk8sv1.TaintKey || v.Spec.Taints[0].Effect != corev1.TaintEffectNoSchedule {
					t.Errorf("%s: taints %v", v.Name, v.Spec.Taints)
				}
				if v.Status.DaemonEndpoints.KubeletEndpoint.Port != ep.Port || v.Status.Addresses[0].Address != ep.Address {
					t.Errorf("%s: endpoint %v %v", v.Name, v.Status.Addresses, v.Status.DaemonEndpoints)
				}
				if v.Status.NodeInfo.KubeletVersion != "v1.35.4" {
					t.Errorf("%s: kubelet version %q", v.Name, v.Status.NodeInfo.KubeletVersion)
				}
			}
			if !slices.Equal(names, tc.wantNames) {
				t.Errorf("names %v, want %v", names, tc.wantNames)
			}
			if tc.site.Spec.NodeMode == vk8sv1.NodeModePerNode {
				if got[0].Labels[vk8sv1.LabelSiteNode] != "node1" {
					t.Errorf("site-node label %q, want node1", got[0].Labels[vk8sv1.LabelSiteNode])
				}
			}
		})
	}
}

func TestAggregateWithoutUsableNodes(t *testing.T) {
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: vk8sv1.SiteSpec{NodeMode: vk8sv1.NodeModeAggregate}}
	got := VirtualNodes(site, []*corev1.Node{siteNode("n", "1", false, false, nil)}, "", Endpoint{})
	if len(got) != 1 || !got[0].Spec.Unschedulable || readyStatus(got[0]) != corev1.ConditionFalse {
		t.Fatalf("aggregate of a site with no Ready node: %+v", got)
	}
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// A node whose virtual name would be longer than a label value could never register: it
// is left out (the Site's Ready condition names it, package sitereg), the others stay.
func TestVirtualNodesLeaveOutNamesTooLong(t *testing.T) {
	long := strings.Repeat("n", 58) // "site1-" + 58 = 64 characters
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "site1"}}
	got := VirtualNodes(site, []*corev1.Node{siteNode("node1", "1", true, false, nil), siteNode(long, "1", true, false, nil)}, "v1.35.4", Endpoint{})
	if len(got) != 1 || got[0].Name != "site1-node1" {
		t.Errorf("virtual nodes %v, want site1-node1 only", got)
	}
	if !VirtualNodeNameFits("site1-"+long[:57]) || VirtualNodeNameFits("site1-"+long) {
		t.Error("VirtualNodeNameFits: 63 characters fit, 64 do not")
	}
}

func TestLeftSite(t *testing.T) {
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "s"}}
	v := VirtualNodes(site, []*corev1.Node{siteNode("n1", "2", true, false, nil)}, "v1.35.4", Endpoint{Address: "a", Port: 1})[0]
	since := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if _, ok := LeftSiteSince(v); ok {
		t.Error("LeftSiteSince of a node in its Site: ok")
	}
	left := LeftSite(v, "gone", since)
	if readyStatus(left) != corev1.ConditionFalse {
		t.Errorf("Ready %s, want False", readyStatus(left))
	}
	if got, ok := LeftSiteSince(left); !ok || !got.Equal(since.Time) {
		t.Errorf("LeftSiteSince = %v %v, want %v", got, ok, since)
	}
	if !slices.ContainsFunc(left.Spec.Taints, func(t corev1.Taint) bool {
		return t.Key == vk8sv1.TaintLeftSite && t.Effect == corev1.TaintEffectNoSchedule
	}) || !ManagedTaint(vk8sv1.TaintLeftSite) {
		t.Errorf("taints %v, want a managed %s:NoSchedule", left.Spec.Taints, vk8sv1.TaintLeftSite)
	}
	if again := LeftSite(left, "still gone", since); len(again.Spec.Taints) != len(left.Spec.Taints) {
		t.Errorf("taint added twice: %v", again.Spec.Taints)
	}
	if readyStatus(v) != corev1.ConditionTrue || len(v.Spec.Taints) != 1 {
		t.Error("LeftSite changed its argument")
	}
	// The other conditions stay as the site node had them.
	if c := slices.IndexFunc(left.Status.Conditions, func(c corev1.NodeCondition) bool { return c.Type == vk8sv1.ConditionSiteConnected }); c < 0 {
		t.Errorf("conditions %v lost SiteConnected", left.Status.Conditions)
	}
}

func TestLeftSiteMessage(t *testing.T) {
	perNode := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: vk8sv1.SiteSpec{
		NodeMode: vk8sv1.NodeModePerNode, NodeSelector: map[string]string{"pool": "edge"}}}
	n1 := siteNode("n1", "2", true, false, map[string]string{"pool": "edge"})
	v := VirtualNodes(perNode, []*corev1.Node{n1}, "", Endpoint{})[0]
	agg := perNode.DeepCopy()
	agg.Spec.NodeMode = vk8sv1.NodeModeAggregate
	aggNode := VirtualNodes(agg, []*corev1.Node{n1}, "", Endpoint{})[0]
	typo := perNode.DeepCopy()
	typo.Spec.NodeSelector = map[string]string{"pool": "egde"}
	deadline := time.Date(2026, 1, 2, 3, 9, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		v        *corev1.Node
		site     *vk8sv1.Site
		siteNode *corev1.Node
		want     []string
	}{
		{"Site deleted", v, nil, n1, []string{"Site s was deleted", "create Site s again as it was"}},
		{"PerNode to Aggregate", v, agg, n1, []string{"Site s's spec.nodeMode changed to Aggregate", "set spec.nodeMode back to PerNode"}},
		{"Aggregate to PerNode", aggNode, perNode, nil, []string{"Site s's spec.nodeMode changed to PerNode", "set spec.nodeMode back to Aggregate"}},
		{"node selector typo", v, typo, n1, []string{"Site s's spec.nodeSelector {pool=egde} no longer selects its node n1", "pool=edge", "fix spec.nodeSelector"}},
		{"node gone from the site", v, perNode, nil, []string{"node n1 is no longer in the cluster of Site s", "bring node n1 back"}},
		{"anything else", v, perNode, n1, []string{"virtual node s-n1 no longer stands for a node of Site s", "undo the change"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LeftSiteMessage(tc.v, tc.site, tc.siteNode, 5*time.Minute, deadline)
			for _, want := range append(tc.want, "Virtual node "+tc.v.Name+" stays, NotReady and unschedulable, with its pods until 2026-01-02T03:09:05Z (grace period 5m0s)",
				"the host deletes its pods") {
				if !strings.Contains(got, want) {
					t.Errorf("message %q does not say %q", got, want)
				}
			}
		})
	}
}

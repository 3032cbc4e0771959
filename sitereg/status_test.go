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
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// node returns a node with the given labels, allocatable CPU and memory, and readiness.
func node(name string, ready bool, cpu, mem string, lbls map[string]string) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	l := map[string]string{corev1.LabelHostname: name}
	for k, v := range lbls {
		l[k] = v
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(cpu),
				corev1.ResourceMemory: resource.MustParse(mem),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		},
	}
}

func TestSummarizeNodes(t *testing.T) {
	zoneA := map[string]string{"zone": "a"}
	zoneB := map[string]string{"zone": "b"}
	three := []*corev1.Node{
		node("node2", true, "15800m", "62Gi", zoneA),
		node("node1", true, "15800m", "62Gi", zoneA),
		node("node3", false, "2", "1Gi", zoneB),
	}
	for _, tc := range []struct {
		name          string
		mode          vk8sv1.NodeMode
		selector      map[string]string
		nodes         []*corev1.Node
		count, ready  int
		cpu, mem      string
		virtual       []string
		noAllocatable bool
	}{
		{
			name: "per node, all nodes, sorted", mode: vk8sv1.NodeModePerNode, nodes: three,
			count: 3, ready: 2, cpu: "33600m", mem: "125Gi",
			virtual: []string{"s-node1", "s-node2", "s-node3"},
		},
		{
			name: "empty mode is per node", nodes: three,
			count: 3, ready: 2, cpu: "33600m", mem: "125Gi",
			virtual: []string{"s-node1", "s-node2", "s-node3"},
		},
		{
			name: "aggregate", mode: vk8sv1.NodeModeAggregate, nodes: three,
			count: 3, ready: 2, cpu: "33600m", mem: "125Gi", virtual: []string{"s"},
		},
		{
			name: "selector picks a slice", mode: vk8sv1.NodeModePerNode, selector: zoneB, nodes: three,
			count: 1, ready: 0, cpu: "2", mem: "1Gi", virtual: []string{"s-node3"},
		},
		{
			name: "selector on hostname", selector: map[string]string{corev1.LabelHostname: "node1"}, nodes: three,
			count: 1, ready: 1, cpu: "15800m", mem: "62Gi", virtual: []string{"s-node1"},
		},
		{
			name: "selector matches none", selector: map[string]string{"zone": "c"}, nodes: three,
			noAllocatable: true,
		},
		{
			name: "aggregate of no nodes still names the site", mode: vk8sv1.NodeModeAggregate,
			noAllocatable: true, virtual: []string{"s"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := nodeSelector(tc.selector)
			if err != nil {
				t.Fatal(err)
			}
			got := summarizeNodes("s", tc.mode, sel, tc.nodes)
			if got.count != tc.count || got.ready != tc.ready || got.total != len(tc.nodes) {
				t.Errorf("count %d ready %d total %d, want %d %d %d", got.count, got.ready, got.total, tc.count, tc.ready, len(tc.nodes))
			}
			if !slices.Equal(got.virtualNodes, tc.virtual) {
				t.Errorf("virtual nodes %v, want %v", got.virtualNodes, tc.virtual)
			}
			if tc.noAllocatable {
				if got.allocatable != nil {
					t.Errorf("allocatable %v, want none", got.allocatable)
				}
				return
			}
			if cpu := got.allocatable[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse(tc.cpu)) != 0 {
				t.Errorf("cpu %s, want %s", cpu.String(), tc.cpu)
			}
			if mem := got.allocatable[corev1.ResourceMemory]; mem.Cmp(resource.MustParse(tc.mem)) != 0 {
				t.Errorf("memory %s, want %s", mem.String(), tc.mem)
			}
		})
	}
}

func TestNodeSelectorRejectsInvalidLabels(t *testing.T) {
	if _, err := nodeSelector(map[string]string{"bad key!": "x"}); err == nil {
		t.Error("nodeSelector accepted an invalid label key")
	}
	sel, err := nodeSelector(nil)
	if err != nil || !sel.Empty() {
		t.Errorf("empty selector: %v %v, want labels.Everything", sel, err)
	}
}

func TestNodeChangeMatters(t *testing.T) {
	base := node("n", true, "1", "1Gi", nil)
	for _, tc := range []struct {
		name   string
		change func(n *corev1.Node)
		want   bool
	}{
		{"heartbeat only", func(n *corev1.Node) { n.ResourceVersion = "2"; n.Status.Conditions[0].LastHeartbeatTime = metav1.Now() }, false},
		{"label", func(n *corev1.Node) { n.Labels["zone"] = "b" }, true},
		{"allocatable", func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourceCPU] = resource.MustParse("2") }, true},
		{"not ready", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown }, true},
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }, true},
		{"capacity", func(n *corev1.Node) {
			n.Status.Capacity = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("10")}
		}, true},
		{"another condition", func(n *corev1.Node) {
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue})
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := base.DeepCopy()
			tc.change(cur)
			if got := nodeChangeMatters(base, cur); got != tc.want {
				t.Errorf("nodeChangeMatters = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSiteStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	heartbeat := now.Add(-10 * time.Second).Truncate(time.Second)
	all := labels.Everything()
	three := []*corev1.Node{
		node("node1", true, "1", "1Gi", nil), node("node2", true, "1", "1Gi", nil), node("node3", false, "1", "1Gi", nil),
	}
	site := func(mode vk8sv1.NodeMode, status vk8sv1.SiteStatus) *vk8sv1.Site {
		return &vk8sv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Generation: 4},
			Spec:       vk8sv1.SiteSpec{NodeMode: mode},
			Status:     status,
		}
	}
	previous := vk8sv1.SiteStatus{
		KubernetesVersion: "v1.35.3", NodeCount: 2, VirtualNodes: []string{"s-old1", "s-old2"},
		LastHeartbeatTime: &metav1.Time{Time: heartbeat.Add(-time.Hour)},
	}
	unreachable := probeFailure("https://site:6443", "ns/secret", fmt.Errorf("get version: %w", context.DeadlineExceeded))

	for _, tc := range []struct {
		name                                  string
		site                                  *vk8sv1.Site
		obs                                   observation
		connected, ready                      metav1.ConditionStatus
		connectedReason, readyReason, message string
		nodeCount                             int32
		virtual                               []string
		version                               string
		heartbeat                             time.Time
	}{
		{
			name: "connected with ready nodes",
			site: site(vk8sv1.NodeModePerNode, vk8sv1.SiteStatus{}),
			obs: observation{server: "https://site:6443", version: "v1.35.4", heartbeat: heartbeat, nodesKnown: true,
				nodes: summarizeNodes("s", vk8sv1.NodeModePerNode, all, three)},
			connected: metav1.ConditionTrue, connectedReason: ReasonConnected,
			ready: metav1.ConditionTrue, readyReason: ReasonNodesReady, message: "2 of 3 nodes are Ready",
			nodeCount: 3, virtual: []string{"s-node1", "s-node2", "s-node3"}, version: "v1.35.4", heartbeat: heartbeat,
		},
		{
			name: "connected, no node ready",
			site: site(vk8sv1.NodeModePerNode, vk8sv1.SiteStatus{}),
			obs: observation{version: "v1.35.4", heartbeat: heartbeat, nodesKnown: true,
				nodes: summarizeNodes("s", vk8sv1.NodeModePerNode, all, three[2:])},
			connected: metav1.ConditionTrue, connectedReason: ReasonConnected,
			ready: metav1.ConditionFalse, readyReason: ReasonNoReadyNodes, message: "none of the site's 1 nodes is Ready",
			nodeCount: 1, virtual: []string{"s-node3"}, version: "v1.35.4", heartbeat: heartbeat,
		},
		{
			name: "connected, selector matches nothing",
			site: site(vk8sv1.NodeModePerNode, vk8sv1.SiteStatus{}),
			obs: observation{version: "v1.35.4", heartbeat: heartbeat, nodesKnown: true,
				nodes: summarizeNodes("s", vk8sv1.NodeModePerNode, labels.SelectorFromSet(labels.Set{"x": "y"}), three)},
			connected: metav1.ConditionTrue, connectedReason: ReasonConnected,
			ready: metav1.ConditionFalse, readyReason: ReasonNoReadyNodes, message: "matches none of the cluster's 3 nodes",
			version: "v1.35.4", heartbeat: heartbeat,
		},
		{
			name: "a node whose virtual name is too long for a Node: not Ready, named, and left out",
			site: site(vk8sv1.NodeModePerNode, vk8sv1.SiteStatus{}),
			obs: observation{version: "v1.35.4", heartbeat: heartbeat, nodesKnown: true,
				nodes: summarizeNodes("s", vk8sv1.NodeModePerNode, all, []*corev1.Node{three[0], node(strings.Repeat("n", 62), true, "1", "1Gi", nil)})},
			connected: metav1.ConditionTrue, connectedReason: ReasonConnected,
			ready: metav1.ConditionFalse, readyReason: ReasonNodeNamesTooLong, message: "s-" + strings.Repeat("n", 62) + " are longer than 63 characters",
			nodeCount: 2, virtual: []string{"s-node1"}, version: "v1.35.4", heartbeat: heartbeat,
		},
		{
			name: "a node whose virtual name another Site keeps: not Ready, named with the other Site, and left out",
			site: site(vk8sv1.NodeModePerNode, vk8sv1.SiteStatus{}),
			obs: observation{version: "v1.35.4", heartbeat: heartbeat, nodesKnown: true,
				nodes: func() nodeSummary {
					n := summarizeNodes("s", vk8sv1.NodeModePerNode, all, three)
					n.collisions = []Collision{{Name: "s-node2", Node: "node2", Keeper: "s-node2"}}
					n.virtualNodes = withoutCollisions(n.virtualNodes, n.collisions)
					return n
				}()},
			connected: metav1.ConditionTrue, connectedReason: ReasonConnected,
			ready: metav1.ConditionFalse, readyReason: ReasonNodeNameCollision,
			message: "virtual node names collide with another Site's: s-node2 (its node node2) is Site s-node2's (its Aggregate node); " +
				"a host Node stands for one site node, so the Site that has the name keeps it and this Site's node is not registered: " +
				"rename the node on its site, leave it out with spec.nodeSelector, or recreate this Site under another name",
			nodeCount: 3, virtual: []string{"s-node1", "s-node3"}, version: "v1.35.4", heartbeat: heartbeat,
		},
		{
			name:      "connected, nodes not read yet",
			site:      site(vk8sv1.NodeModePerNode, vk8sv1.SiteStatus{}),
			obs:       observation{version: "v1.35.4", heartbeat: heartbeat},
			connected: metav1.ConditionTrue, connectedReason: ReasonConnected,
			ready: metav1.ConditionUnknown, readyReason: ReasonNodesNotSynced,
			version: "v1.35.4", heartbeat: heartbeat,
		},
		{
			name:      "unreachable keeps the last known nodes and heartbeat",
			site:      site(vk8sv1.NodeModePerNode, previous),
			obs:       observation{err: unreachable},
			connected: metav1.ConditionFalse, connectedReason: ReasonUnreachable,
			ready: metav1.ConditionFalse, readyReason: ReasonUnreachable, message: "cannot reach the API server at https://site:6443",
			nodeCount: 2, virtual: []string{"s-old1", "s-old2"}, version: "v1.35.3", heartbeat: heartbeat.Add(-time.Hour),
		},
		{
			name:      "secret missing in aggregate mode names the site",
			site:      site(vk8sv1.NodeModeAggregate, vk8sv1.SiteStatus{}),
			obs:       observation{err: newSiteError(ReasonSecretNotFound, nil, "Secret ns/x not found: create it")},
			connected: metav1.ConditionFalse, connectedReason: ReasonSecretNotFound,
			ready: metav1.ConditionFalse, readyReason: ReasonSecretNotFound, message: "Secret ns/x not found",
			virtual: []string{"s"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := siteStatus(tc.site, tc.obs, now)
			if got.ObservedGeneration != 4 {
				t.Errorf("observedGeneration %d, want 4", got.ObservedGeneration)
			}
			c := meta.FindStatusCondition(got.Conditions, vk8sv1.ConditionConnected)
			r := meta.FindStatusCondition(got.Conditions, vk8sv1.ConditionReady)
			if c == nil || r == nil {
				t.Fatalf("conditions %+v, want Connected and Ready", got.Conditions)
			}
			if c.Status != tc.connected || c.Reason != tc.connectedReason {
				t.Errorf("Connected %s/%s, want %s/%s (%s)", c.Status, c.Reason, tc.connected, tc.connectedReason, c.Message)
			}
			if r.Status != tc.ready || r.Reason != tc.readyReason || !strings.Contains(r.Message, tc.message) {
				t.Errorf("Ready %s/%s %q, want %s/%s containing %q", r.Status, r.Reason, r.Message, tc.ready, tc.readyReason, tc.message)
			}
			if c.ObservedGeneration != 4 || !c.LastTransitionTime.Time.Equal(now.Truncate(time.Second)) {
				t.Errorf("Connected observedGeneration %d lastTransitionTime %s", c.ObservedGeneration, c.LastTransitionTime)
			}
			if got.NodeCount != tc.nodeCount || !slices.Equal(got.VirtualNodes, tc.virtual) || got.KubernetesVersion != tc.version {
				t.Errorf("nodeCount %d virtualNodes %v version %q, want %d %v %q", got.NodeCount, got.VirtualNodes, got.KubernetesVersion, tc.nodeCount, tc.virtual, tc.version)
			}
			switch {
			case tc.heartbeat.IsZero() && got.LastHeartbeatTime != nil:
				t.Errorf("lastHeartbeatTime %s, want none", got.LastHeartbeatTime)
			case !tc.heartbeat.IsZero() && (got.LastHeartbeatTime == nil || !got.LastHeartbeatTime.Time.Equal(tc.heartbeat.Truncate(time.Second))):
				t.Errorf("lastHeartbeatTime %v, want %s", got.LastHeartbeatTime, tc.heartbeat.Truncate(time.Second))
			}
		})
	}
}

func TestSiteStatusKeepsTransitionTime(t *testing.T) {
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "s"}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	obs := observation{version: "v1", heartbeat: t0, nodesKnown: true,
		nodes: summarizeNodes("s", "", labels.Everything(), []*corev1.Node{node("n", true, "1", "1Gi", nil)})}
	site.Status = siteStatus(site, obs, t0)
	obs.heartbeat = t0.Add(time.Minute)
	again := siteStatus(site, obs, t0.Add(time.Minute))
	c := meta.FindStatusCondition(again.Conditions, vk8sv1.ConditionConnected)
	if !c.LastTransitionTime.Time.Equal(t0) {
		t.Errorf("an unchanged condition moved its lastTransitionTime to %s", c.LastTransitionTime)
	}
	if !again.LastHeartbeatTime.Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("lastHeartbeatTime %s, want %s", again.LastHeartbeatTime, t0.Add(time.Minute))
	}
}

func TestTransitionEvents(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: reason + " message"}
	}
	connected := cond(vk8sv1.ConditionConnected, metav1.ConditionTrue, ReasonConnected)
	ready := cond(vk8sv1.ConditionReady, metav1.ConditionTrue, ReasonNodesReady)
	syncing := cond(vk8sv1.ConditionReady, metav1.ConditionUnknown, ReasonNodesNotSynced)
	noNodes := cond(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonNoReadyNodes)
	collides := cond(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonNodeNameCollision)
	stalled := cond(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonWritesTimingOut)
	tooLong := cond(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonNodeNamesTooLong)
	down := func(reason string) []metav1.Condition {
		return []metav1.Condition{
			cond(vk8sv1.ConditionConnected, metav1.ConditionFalse, reason),
			cond(vk8sv1.ConditionReady, metav1.ConditionFalse, reason),
		}
	}
	for _, tc := range []struct {
		name     string
		old, cur []metav1.Condition
		want     []string // "Type Reason"
	}{
		{"first connect", nil, []metav1.Condition{connected, ready}, []string{"Normal Connected"}},
		{"unchanged", []metav1.Condition{connected, ready}, []metav1.Condition{connected, ready}, nil},
		{"first reconcile fails", nil, down(ReasonSecretNotFound), []string{"Warning SecretNotFound"}},
		{"same failure again", down(ReasonUnreachable), down(ReasonUnreachable), nil},
		{"failure changes", down(ReasonSecretNotFound), down(ReasonUnauthorized), []string{"Warning Unauthorized"}},
		{"connection lost", []metav1.Condition{connected, ready}, down(ReasonUnreachable), []string{"Warning Unreachable"}},
		{"recovered", down(ReasonUnreachable), []metav1.Condition{connected, ready}, []string{"Normal Connected"}},
		{"nodes go away", []metav1.Condition{connected, ready}, []metav1.Condition{connected, noNodes}, []string{"Warning NoReadyNodes"}},
		{"nodes come back", []metav1.Condition{connected, noNodes}, []metav1.Condition{connected, ready}, []string{"Normal NodesReady"}},
		{"cache fills", []metav1.Condition{connected, syncing}, []metav1.Condition{connected, ready}, nil},
		{"a node name collides", []metav1.Condition{connected, ready}, []metav1.Condition{connected, collides}, []string{"Warning NodeNameCollision"}},
		{"the collision is gone", []metav1.Condition{connected, collides}, []metav1.Condition{connected, ready}, []string{"Normal NodesReady"}},
		{"writes hang", []metav1.Condition{connected, ready}, []metav1.Condition{connected, stalled}, []string{"Warning WritesTimingOut"}},
		{"writes answer again", []metav1.Condition{connected, stalled}, []metav1.Condition{connected, ready}, []string{"Normal NodesReady"}},
		{"a node name too long", []metav1.Condition{connected, syncing}, []metav1.Condition{connected, tooLong}, []string{"Warning NodeNamesTooLong"}},
		{"the same problem again", []metav1.Condition{connected, stalled}, []metav1.Condition{connected, stalled}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, ev := range transitionEvents(tc.old, tc.cur) {
				got = append(got, ev.eventType+" "+ev.reason)
				if ev.note == "" || ev.action == "" {
					t.Errorf("event %+v without note or action", ev)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("events %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCoalesceHeartbeat: a reconcile between heartbeats that changes nothing but the time
// writes nothing; the heartbeat due after an interval, a change, or a first write go out.
func TestCoalesceHeartbeat(t *testing.T) {
	at := func(d time.Duration) *metav1.Time {
		t := metav1.NewTime(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).Add(d))
		return &t
	}
	ready := []metav1.Condition{{Type: vk8sv1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonNodesReady}}
	written := &vk8sv1.SiteStatus{LastHeartbeatTime: at(0), NodeCount: 3, Conditions: ready}
	for _, tc := range []struct {
		name    string
		written *vk8sv1.SiteStatus
		status  vk8sv1.SiteStatus
		now     time.Duration
		want    *metav1.Time
	}{
		{"between heartbeats: kept", written, vk8sv1.SiteStatus{LastHeartbeatTime: at(10 * time.Second), NodeCount: 3, Conditions: ready}, 10 * time.Second, at(0)},
		{"half an interval on: written", written, vk8sv1.SiteStatus{LastHeartbeatTime: at(15 * time.Second), NodeCount: 3, Conditions: ready}, 15 * time.Second, at(15 * time.Second)},
		{"the interval on: written", written, vk8sv1.SiteStatus{LastHeartbeatTime: at(31 * time.Second), NodeCount: 3, Conditions: ready}, 31 * time.Second, at(31 * time.Second)},
		{"something else changed: written", written, vk8sv1.SiteStatus{LastHeartbeatTime: at(5 * time.Second), NodeCount: 4, Conditions: ready}, 5 * time.Second, at(5 * time.Second)},
		{"nothing written by this process yet: written", nil, vk8sv1.SiteStatus{LastHeartbeatTime: at(5 * time.Second), NodeCount: 3, Conditions: ready}, 5 * time.Second, at(5 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := coalesceHeartbeat(tc.written, tc.status, at(tc.now).Time, 30*time.Second)
			if !got.LastHeartbeatTime.Equal(tc.want) {
				t.Errorf("lastHeartbeatTime %v, want %v", got.LastHeartbeatTime, tc.want)
			}
		})
	}
}

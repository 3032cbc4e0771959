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

package vnode

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientfake "k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/translate"
)

// graceEnv is a Nodes whose heartbeats write to a fake host, with a clock of its own.
type graceEnv struct {
	m        *Nodes
	host     *clientfake.Clientset
	recorder *events.FakeRecorder
	now      time.Time
}

func newGraceEnv(t *testing.T, cached ...client.Object) *graceEnv {
	t.Helper()
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	host := clientfake.NewClientset()
	e := &graceEnv{host: host, recorder: events.NewFakeRecorder(100), now: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)}
	reg, err := sitereg.New(sitereg.Config{MetricsRegisterer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewNodes(NodesConfig{Host: host, Registry: reg, Endpoint: translate.Endpoint{Address: "a", Port: 1}, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m.client = fake.NewClientBuilder().WithScheme(s).WithObjects(cached...).Build()
	m.recorder = e.recorder
	m.now = func() time.Time { return e.now }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		_ = m.Start(ctx)
		close(done)
	}()
	<-m.started
	t.Cleanup(func() {
		cancel()
		<-done
	})
	e.m = m
	return e
}

func (e *graceEnv) sync(t *testing.T, s siteState) time.Duration {
	t.Helper()
	requeue, err := e.m.sync(t.Context(), s)
	if err != nil {
		t.Fatalf("sync %s: %v", s.name, err)
	}
	return requeue
}

// node is what site s's virtual node for site node n is, as the site shows it now.
func (e *graceEnv) node(site *vk8sv1.Site, n string) *corev1.Node {
	return translate.VirtualNodes(site, []*corev1.Node{testSiteNode(n)}, "v1.35.4", translate.Endpoint{Address: "a", Port: 1})[0]
}

// running returns the virtual node name of site as its heartbeats show it, and when
// it left the site (zero: it did not).
func (e *graceEnv) running(t *testing.T, site, name string) (*corev1.Node, time.Time) {
	t.Helper()
	v := e.m.running[site][name]
	if v == nil {
		t.Fatalf("no heartbeats for %s of site %s", name, site)
	}
	return v.current(), v.left
}

func (e *graceEnv) deleted() []string {
	var out []string
	for _, a := range e.host.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && a.GetResource().Resource == "nodes" {
			out = append(out, d.GetName())
		}
	}
	return out
}

func (e *graceEnv) events() []string {
	var out []string
	for {
		select {
		case ev := <-e.recorder.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func testSiteNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name, "pool": "edge"}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

// clusterNodes lists nodes as a site cluster's node cache does.
func clusterNodes(nodes ...*corev1.Node) corelisters.NodeLister {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range nodes {
		_ = idx.Add(n)
	}
	return corelisters.NewNodeLister(idx)
}

func readyReason(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return string(c.Status) + "/" + c.Reason
		}
	}
	return ""
}

func hasEvent(evs []string, prefix string) bool {
	return slices.ContainsFunc(evs, func(ev string) bool { return strings.HasPrefix(ev, prefix) })
}

func TestGracePeriod(t *testing.T) {
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: vk8sv1.SiteSpec{NodeSelector: map[string]string{"pool": "edge"}}}
	typo := site.DeepCopy()
	typo.Spec.NodeSelector = map[string]string{"pool": "egde"}
	e := newGraceEnv(t)
	n1, n2 := e.node(site, "n1"), e.node(site, "n2")
	nodes := clusterNodes(testSiteNode("n1"), testSiteNode("n2"))

	if requeue := e.sync(t, siteState{name: "s", site: site, want: []*corev1.Node{n1, n2}, clusterNodes: nodes}); requeue != 0 {
		t.Errorf("requeue %s with no node in a grace period", requeue)
	}

	t.Run("a node that leaves its Site stays NotReady and unschedulable", func(t *testing.T) {
		requeue := e.sync(t, siteState{name: "s", site: typo, want: []*corev1.Node{n1}, clusterNodes: nodes})
		if requeue != time.Minute {
			t.Errorf("requeue %s, want the grace period, 1m", requeue)
		}
		got, left := e.running(t, "s", "s-n2")
		if !left.Equal(e.now) || readyReason(got) != "False/"+translate.ReasonNodeLeftSite ||
			!slices.ContainsFunc(got.Spec.Taints, func(t corev1.Taint) bool { return t.Key == vk8sv1.TaintLeftSite }) {
			t.Errorf("s-n2: left %v, Ready %s, taints %v; want NotReady since now and tainted", left, readyReason(got), got.Spec.Taints)
		}
		if msg := got.Status.Conditions[0].Message; !strings.Contains(msg, "spec.nodeSelector {pool=egde} no longer selects its node n2") {
			t.Errorf("message %q", msg)
		}
		if d := e.deleted(); len(d) != 0 {
			t.Errorf("deleted %v at once", d)
		}
		if evs := e.events(); !hasEvent(evs, "Warning NodeLeftSite") {
			t.Errorf("events %q, want Warning %s", evs, ReasonNodeLeftSite)
		}
		// A later sync in the grace period records nothing more and keeps the time.
		e.now = e.now.Add(20 * time.Second)
		if requeue := e.sync(t, siteState{name: "s", site: typo, want: []*corev1.Node{n1}, clusterNodes: nodes}); requeue != 40*time.Second {
			t.Errorf("requeue %s, want the rest of the grace period, 40s", requeue)
		}
		if evs := e.events(); len(evs) != 0 {
			t.Errorf("events %q on a second sync", evs)
		}
	})

	t.Run("another Site that makes the name waits for the grace period to end", func(t *testing.T) {
		other := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "x"}}
		v := e.node(other, "n2")
		v.Name = "s-n2"
		if requeue := e.sync(t, siteState{name: "x", site: other, want: []*corev1.Node{v}}); requeue != 41*time.Second {
			t.Errorf("requeue %s, want the rest of s-n2's grace period and a second", requeue)
		}
		if e.m.running["x"]["s-n2"] != nil {
			t.Error("Site x runs s-n2 while Site s keeps it in its grace period")
		}
	})

	t.Run("undoing the edit brings the node back", func(t *testing.T) {
		e.sync(t, siteState{name: "s", site: site, want: []*corev1.Node{n1, n2}, clusterNodes: nodes})
		got, left := e.running(t, "s", "s-n2")
		if !left.IsZero() || !translate.NodeReady(got) {
			t.Errorf("s-n2: left %v, Ready %s; want back and Ready", left, readyReason(got))
		}
		if evs := e.events(); !hasEvent(evs, "Normal NodeBackInSite") {
			t.Errorf("events %q, want Normal %s", evs, ReasonNodeBackInSite)
		}
		if _, held := e.m.heldElsewhere("s-n2", "x"); held {
			t.Error("s-n2 still held for Site s")
		}
	})

	t.Run("after the grace period the node is deleted", func(t *testing.T) {
		e.sync(t, siteState{name: "s", site: typo, want: []*corev1.Node{n1}, clusterNodes: nodes})
		e.now = e.now.Add(time.Minute)
		if requeue := e.sync(t, siteState{name: "s", site: typo, want: []*corev1.Node{n1}, clusterNodes: nodes}); requeue != 0 {
			t.Errorf("requeue %s after the grace period", requeue)
		}
		if e.m.running["s"]["s-n2"] != nil || !slices.Equal(e.deleted(), []string{"s-n2"}) {
			t.Errorf("s-n2 still runs, or deletions %v; want s-n2 deleted", e.deleted())
		}
		if evs := e.events(); !hasEvent(evs, "Normal VirtualNodeDeleted") {
			t.Errorf("events %q, want Normal %s", evs, ReasonNodeDeleted)
		}
	})

	t.Run("a deleted Site's nodes wait out the grace period", func(t *testing.T) {
		e.sync(t, siteState{name: "s", deleted: true})
		got, left := e.running(t, "s", "s-n1")
		if !left.Equal(e.now) || !strings.Contains(got.Status.Conditions[0].Message, "Site s was deleted") {
			t.Errorf("s-n1: left %v, Ready %q", left, got.Status.Conditions[0].Message)
		}
		if slices.Contains(e.deleted(), "s-n1") {
			t.Error("s-n1 deleted with its Site, at once")
		}
		// Without the site's nodes (it does not answer) the message stays.
		e.sync(t, siteState{name: "s", site: site})
		if got, _ := e.running(t, "s", "s-n1"); !strings.Contains(got.Status.Conditions[0].Message, "Site s was deleted") {
			t.Errorf("message changed without news: %q", got.Status.Conditions[0].Message)
		}
	})
}

// TestGracePeriodAfterRestart: a process that finds a virtual node no controller runs
// (an earlier process ran it) keeps it for the rest of the grace period the earlier
// process started, or for a whole one.
func TestGracePeriodAfterRestart(t *testing.T) {
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "s"}}
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	marked := translate.LeftSite(translate.VirtualNodes(site, []*corev1.Node{testSiteNode("n1")}, "", translate.Endpoint{})[0],
		"left", metav1.NewTime(start.Add(-50*time.Second)))
	unmarked := translate.VirtualNodes(site, []*corev1.Node{testSiteNode("n2")}, "", translate.Endpoint{})[0]
	e := newGraceEnv(t, marked, unmarked)
	e.now = start
	if requeue := e.sync(t, siteState{name: "s", site: site, clusterNodes: clusterNodes()}); requeue != 10*time.Second {
		t.Errorf("requeue %s, want the 10s left of s-n1's grace period", requeue)
	}
	if _, left := e.running(t, "s", "s-n1"); !left.Equal(start.Add(-50 * time.Second)) {
		t.Errorf("s-n1 left at %v, want when the earlier process marked it", left)
	}
	if got, left := e.running(t, "s", "s-n2"); !left.Equal(start) || readyReason(got) != "False/"+translate.ReasonNodeLeftSite {
		t.Errorf("s-n2: left %v, Ready %s; want marked now", left, readyReason(got))
	}
	if d := e.deleted(); len(d) != 0 {
		t.Errorf("deleted %v at once", d)
	}
}

// TestLetGoOfAnotherReplicasSite: when another replica owns the Site (the replicas share
// the Sites), its virtual nodes' heartbeats stop here, and its Nodes are neither deleted nor marked:
// they are the new owner's to run.
func TestLetGoOfAnotherReplicasSite(t *testing.T) {
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: vk8sv1.SiteSpec{NodeSelector: map[string]string{"pool": "edge"}}}
	e := newGraceEnv(t, site)
	reg, err := sitereg.New(sitereg.Config{MetricsRegisterer: prometheus.NewRegistry(), Owns: func(string) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, siteState{name: "s", site: site, want: []*corev1.Node{e.node(site, "n1")}, clusterNodes: clusterNodes(testSiteNode("n1"))})
	v := e.m.running["s"]["s-n1"]
	if v == nil || e.m.beats.nodes["s-n1"] == nil {
		t.Fatal("s-n1 has no heartbeats here")
	}
	e.m.cfg.Registry = reg
	if _, err := e.m.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Name: "s"}}); err != nil {
		t.Fatal(err)
	}
	if e.m.beats.nodes["s-n1"] != nil || !v.removed || len(e.m.running["s"]) != 0 {
		t.Errorf("s-n1's heartbeats still run here (removed %v, running %v)", v.removed, e.m.running["s"])
	}
	if d := e.deleted(); len(d) != 0 {
		t.Errorf("deleted %v, want the Nodes left to the new owner", d)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("events %q, want none", evs)
	}
}

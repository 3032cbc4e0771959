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
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	pkgruntime "k8s.io/apimachinery/pkg/runtime"
)

// fakeHost is a fake host whose Nodes get a new UID each time they are created, as the
// API server gives them.
func fakeHost() *fake.Clientset {
	host := fake.NewClientset()
	var created atomic.Int32
	host.PrependReactor("create", "nodes", func(a k8stesting.Action) (bool, pkgruntime.Object, error) {
		n := a.(k8stesting.CreateAction).GetObject().(*corev1.Node)
		n.UID = types.UID(fmt.Sprintf("uid-%d", created.Add(1)))
		return false, nil, nil
	})
	return host
}

// calls lists the host calls made so far as "verb resource[/subresource]".
func calls(host *fake.Clientset) []string {
	var out []string
	for _, a := range host.Actions() {
		c := a.GetVerb() + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			c += "/" + a.GetSubresource()
		}
		out = append(out, c)
	}
	return out
}

// TestBeatSchedule: what is due is done, and nothing else: the first beat registers the
// node and creates its Lease; the Lease is renewed every quarter of its duration, an
// unchanged status every statusInterval, a changed one at once.
func TestBeatSchedule(t *testing.T) {
	host := fakeHost()
	b := newBeats(host, 40, 5*time.Minute, 1, nil, logr.Discard())
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	b.now = func() time.Time { return now }
	v := b.add(testNode("1"))
	step := func(name string, at time.Duration, wantCalls []string, wantDue time.Duration) {
		t.Helper()
		now = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).Add(at)
		host.ClearActions()
		due, err := b.beat(t.Context(), v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := strings.Join(calls(host), ", "); got != strings.Join(wantCalls, ", ") {
			t.Errorf("%s: calls %q, want %q", name, got, wantCalls)
		}
		if want := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).Add(wantDue); !due.Equal(want) {
			t.Errorf("%s: next due %s, want %s", name, due.Sub(now), want.Sub(now))
		}
	}
	step("registration", 0, []string{"patch nodes/status", "create nodes", "create leases"}, 10*time.Second)
	step("nothing due", 3*time.Second, nil, 10*time.Second)
	step("Lease due", 10*time.Second, []string{"update leases"}, 20*time.Second)
	step("Lease due again", 21*time.Second, []string{"update leases"}, 31*time.Second)
	b.add(testNode("2"))
	step("status changed", 22*time.Second, []string{"patch nodes/status"}, 31*time.Second)
	b.add(testNode("2"))
	step("status unchanged", 23*time.Second, nil, 31*time.Second)
	step("status interval", 22*time.Second+5*time.Minute, []string{"patch nodes/status", "update leases"}, 22*time.Second+5*time.Minute+10*time.Second)

	l, err := host.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), "site-n", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *l.Spec.LeaseDurationSeconds != 40 || *l.Spec.HolderIdentity != "site-n" || !l.Spec.RenewTime.Equal(&metav1.MicroTime{Time: now}) ||
		len(l.OwnerReferences) != 1 || l.OwnerReferences[0].UID != "uid-1" || l.OwnerReferences[0].Kind != "Node" {
		t.Errorf("Lease %+v %+v", l.Spec, l.OwnerReferences)
	}
	n, err := host.CoreV1().Nodes().Get(t.Context(), "site-n", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cpu := n.Status.Allocatable[corev1.ResourceCPU]; cpu.String() != "2" || !n.Status.Conditions[0].LastHeartbeatTime.Time.Equal(now) {
		t.Errorf("host node: cpu %s, heartbeat %v; want 2 and now", cpu.String(), n.Status.Conditions[0].LastHeartbeatTime)
	}
}

// TestBeatRegistersWhatTheCacheLacks: a node the cache does not have is created at once,
// and its Lease too; one it has is written with a patch, its Lease read first.
func TestBeatRegistersWhatTheCacheLacks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cached bool
		want   []string
	}{
		{"new", false, []string{"create nodes", "create leases"}},
		{"known", true, []string{"patch nodes/status", "create nodes", "create leases"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := fakeHost()
			b := newBeats(host, 40, 5*time.Minute, 1, nil, logr.Discard())
			b.exists = func(context.Context, string) bool { return tc.cached }
			if _, err := b.beat(t.Context(), b.add(testNode("1"))); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(calls(host), ", "); got != strings.Join(tc.want, ", ") {
				t.Errorf("calls %q, want %q", got, tc.want)
			}
		})
	}
	// A Lease left by an earlier Node of the name: read and renewed for the new one.
	host := fakeHost()
	if _, err := host.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(t.Context(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "site-n", Namespace: corev1.NamespaceNodeLease},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	host.ClearActions()
	b := newBeats(host, 40, 5*time.Minute, 1, nil, logr.Discard())
	b.exists = func(context.Context, string) bool { return false }
	v := b.add(testNode("1"))
	for range 2 {
		if _, err := b.beat(t.Context(), v); err != nil {
			t.Fatal(err)
		}
	}
	want := "create nodes, create leases, get leases, update leases"
	if got := strings.Join(calls(host), ", "); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// TestBeatReregisters: a Node deleted behind our back is registered again, and its Lease
// names the new Node as its owner (the host would delete it with the old one).
func TestBeatReregisters(t *testing.T) {
	host := fakeHost()
	b := newBeats(host, 40, 5*time.Minute, 1, nil, logr.Discard())
	v := b.add(testNode("1"))
	if _, err := b.beat(t.Context(), v); err != nil {
		t.Fatal(err)
	}
	if err := host.CoreV1().Nodes().Delete(t.Context(), "site-n", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	b.reregister("site-n")
	if _, err := b.beat(t.Context(), v); err != nil {
		t.Fatal(err)
	}
	n, err := host.CoreV1().Nodes().Get(t.Context(), "site-n", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("not registered again: %v", err)
	}
	l, err := host.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), "site-n", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.UID != "uid-2" || l.OwnerReferences[0].UID != n.UID {
		t.Errorf("Node UID %s, Lease owner %s; want uid-2 both", n.UID, l.OwnerReferences[0].UID)
	}
}

// TestBeatsRun: the workers register the nodes added, renew their Leases (every 250 ms
// for a Lease of one second here), and stop renewing those removed.
func TestBeatsRun(t *testing.T) {
	host := fakeHost()
	b := newBeats(host, 1, time.Hour, 2, nil, logr.Discard())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		b.run(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for _, name := range []string{"a", "b"} {
		n := testNode("1")
		n.Name = name
		b.add(n)
	}
	renewals := func(name string) int {
		c := 0
		for _, a := range host.Actions() {
			if u, ok := a.(k8stesting.UpdateAction); ok && a.GetResource().Resource == "leases" &&
				u.GetObject().(*coordinationv1.Lease).Name == name {
				c++
			}
		}
		return c
	}
	deadline := time.Now().Add(10 * time.Second)
	for renewals("a") < 3 || renewals("b") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("renewals a %d, b %d after 10s; want 3 each (every 250 ms)", renewals("a"), renewals("b"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.remove("a")
	before := renewals("a")
	time.Sleep(time.Second)
	if got := renewals("a"); got != before {
		t.Errorf("a renewed %d times after it was removed", got-before)
	}
	if renewals("b") < 5 {
		t.Errorf("b renewed %d times, want it renewed on", renewals("b"))
	}
}

// TestBeatsGoroutinesDoNotGrowWithNodes: three hundred virtual nodes run on the workers
// and the queue's goroutines, not on goroutines of their own.
func TestBeatsGoroutinesDoNotGrowWithNodes(t *testing.T) {
	host := fakeHost()
	b := newBeats(host, 40, time.Hour, 4, nil, logr.Discard())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	before := runtime.NumGoroutine()
	go func() {
		b.run(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for i := range 300 {
		n := testNode("1")
		n.Name = fmt.Sprintf("n%d", i)
		b.add(n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := host.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) == 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 300 Leases after 30s", len(l.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if grown := runtime.NumGoroutine() - before; grown > 20 {
		t.Errorf("%d goroutines more for 300 virtual nodes on 4 workers", grown)
	}
}

// TestStatusPatch: the patch from what was written to what is wanted removes what the
// provider no longer shows and leaves what others wrote; the first one removes
// virtual-kubelet's NodeController annotations.
func TestStatusPatch(t *testing.T) {
	sent := testNode("1")
	sent.Status.Conditions = append(sent.Status.Conditions, corev1.NodeCondition{Type: "Gone", Status: corev1.ConditionTrue})
	sent.Labels["old"] = "x"
	want := testNode("2")
	current := sent.DeepCopy()
	current.Status.Conditions = append(current.Status.Conditions, corev1.NodeCondition{Type: "Others", Status: corev1.ConditionFalse})
	current.Labels["theirs"] = "y"
	current.Annotations = map[string]string{nodeControllerAnnotations[0]: "{}", "theirs": "z"}

	apply := func(sent *corev1.Node) *corev1.Node {
		t.Helper()
		patch, err := statusPatch(sent, want)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := json.Marshal(current)
		if err != nil {
			t.Fatal(err)
		}
		out, err := strategicpatch.StrategicMergePatch(cur, patch, corev1.Node{})
		if err != nil {
			t.Fatal(err)
		}
		n := &corev1.Node{}
		if err := json.Unmarshal(out, n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	conditions := func(n *corev1.Node) string {
		var out []string
		for _, c := range n.Status.Conditions {
			out = append(out, string(c.Type))
		}
		return strings.Join(out, ",")
	}

	got := apply(sent)
	if c := conditions(got); c != "Ready,Others" {
		t.Errorf("conditions %s, want Ready,Others", c)
	}
	if cpu := got.Status.Allocatable[corev1.ResourceCPU]; cpu.String() != "2" {
		t.Errorf("cpu %s, want 2", cpu.String())
	}
	if _, ok := got.Labels["old"]; ok || got.Labels["theirs"] != "y" || got.Labels["a"] != "b" {
		t.Errorf("labels %v, want a=b and theirs=y", got.Labels)
	}
	if _, ok := got.Annotations[nodeControllerAnnotations[0]]; !ok {
		t.Error("a later patch touched the NodeController's annotations")
	}

	got = apply(nil)
	if _, ok := got.Annotations[nodeControllerAnnotations[0]]; ok || got.Annotations["theirs"] != "z" {
		t.Errorf("annotations %v after the first patch, want theirs only", got.Annotations)
	}
	if c := conditions(got); c != "Ready,Gone,Others" {
		t.Errorf("conditions %s after the first patch, want Ready,Gone,Others (nothing known to remove)", c)
	}
}

// TestStatusPatchKeepsOthersMaps: labels or annotations that go as a whole go key by key.
func TestStatusPatchKeepsOthersMaps(t *testing.T) {
	sent := testNode("1")
	sent.Annotations = map[string]string{"ours": "1"}
	want := testNode("1")
	want.Labels = nil
	patch, err := statusPatch(sent, want)
	if err != nil {
		t.Fatal(err)
	}
	current := sent.DeepCopy()
	current.Labels["theirs"] = "y"
	current.Annotations["theirs"] = "z"
	cur, err := json.Marshal(current)
	if err != nil {
		t.Fatal(err)
	}
	out, err := strategicpatch.StrategicMergePatch(cur, patch, corev1.Node{})
	if err != nil {
		t.Fatal(err)
	}
	got := &corev1.Node{}
	if err := json.Unmarshal(out, got); err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != 1 || got.Labels["theirs"] != "y" || len(got.Annotations) != 1 || got.Annotations["theirs"] != "z" {
		t.Errorf("labels %v, annotations %v; want theirs only (patch %s)", got.Labels, got.Annotations, patch)
	}
}

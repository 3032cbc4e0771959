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
	"testing"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testNode(cpu string) *corev1.Node {
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("4Gi")}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "site-n", Labels: map[string]string{"a": "b"}},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

// TestPumpSendsLatestOnlyAfterReady covers the contract with virtual-kubelet's
// NodeController: nothing is sent before the node is registered (its loop does not read
// yet), updates made meanwhile are not lost, and an unchanged node is not sent again.
func TestPumpSendsLatestOnlyAfterReady(t *testing.T) {
	p := newNodeProvider(testNode("1"))
	got := make(chan *corev1.Node, 10)
	p.NotifyNodeStatus(t.Context(), func(n *corev1.Node) { got <- n })
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.pump(ctx, ready); close(done) }()

	p.update(testNode("2"))
	p.update(testNode("3"))
	select {
	case n := <-got:
		t.Fatalf("sent %v before the node was registered", n.Status.Allocatable)
	case <-time.After(50 * time.Millisecond):
	}
	close(ready)
	select {
	case n := <-got:
		if cpu := n.Status.Allocatable[corev1.ResourceCPU]; cpu.String() != "3" {
			t.Errorf("first send has cpu %s, want the latest, 3", cpu.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the update made before registration was never sent")
	}

	p.update(testNode("3")) // no change
	p.update(testNode("4"))
	select {
	case n := <-got:
		if cpu := n.Status.Allocatable[corev1.ResourceCPU]; cpu.String() != "4" {
			t.Errorf("sent cpu %s, want 4 (an unchanged node is not sent)", cpu.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("update not sent")
	}
	cancel()
	<-done
}

// TestUpdateNeverBlocks: the manager calls update while the controller's channel is full.
func TestUpdateNeverBlocks(t *testing.T) {
	p := newNodeProvider(testNode("1"))
	block := make(chan struct{})
	p.NotifyNodeStatus(t.Context(), func(*corev1.Node) { <-block })
	ready := make(chan struct{})
	close(ready)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go p.pump(ctx, ready)
	finished := make(chan struct{})
	go func() {
		for i := 2; i < 100; i++ {
			p.update(testNode("1" + string(rune('0'+i%10))))
		}
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("update blocked behind a busy NodeController")
	}
	close(block)
}

func TestWithTaintsKeepsOthers(t *testing.T) {
	ours := corev1.Taint{Key: vk8sv1.TaintKey, Value: vk8sv1.TaintValue, Effect: corev1.TaintEffectNoSchedule}
	notReady := corev1.Taint{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule}
	got := withTaints([]corev1.Taint{notReady}, []corev1.Taint{ours})
	if len(got) != 2 || got[0] != notReady || got[1] != ours {
		t.Errorf("withTaints = %v", got)
	}
	if again := withTaints(got, []corev1.Taint{ours}); len(again) != 2 {
		t.Errorf("taint added twice: %v", again)
	}
}

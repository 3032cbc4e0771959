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
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// nodeProvider is virtual-kubelet's NodeProvider for one virtual node: it passes on the
// latest node the manager computed, when it changed. update never blocks: pump, a goroutine
// per virtual node, hands the latest node to the NodeController, whose channel holds one.
type nodeProvider struct {
	// initial is the node the NodeController registers.
	initial *corev1.Node
	signal  chan struct{}

	mu     sync.Mutex
	notify func(*corev1.Node)
	last   *corev1.Node
}

func newNodeProvider(n *corev1.Node) *nodeProvider {
	return &nodeProvider{initial: n.DeepCopy(), last: n.DeepCopy(), signal: make(chan struct{}, 1)}
}

// Ping always succeeds: a virtual node stays Ready while the provider runs, even when its
// site does not answer (the site keeps running its pods).
func (p *nodeProvider) Ping(context.Context) error { return nil }

// NotifyNodeStatus implements node.NodeProvider.
func (p *nodeProvider) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	p.mu.Lock()
	p.notify = cb
	p.mu.Unlock()
}

func (p *nodeProvider) current() *corev1.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last.DeepCopy()
}

// update records n as the node to show and wakes pump.
func (p *nodeProvider) update(n *corev1.Node) {
	p.mu.Lock()
	p.last = n.DeepCopy()
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// pump passes the latest node to the NodeController whenever it differs from what was
// passed before, from when the controller registered the node (ready) until ctx ends.
// Before ready the controller's loop does not read its channel, so nothing is sent; the
// first comparison after ready catches updates made meanwhile.
func (p *nodeProvider) pump(ctx context.Context, ready <-chan struct{}) {
	select {
	case <-ready:
	case <-ctx.Done():
		return
	}
	sent := p.initial
	changed := true // compare at once: updates may have come before ready
	for {
		if !changed {
			select {
			case <-ctx.Done():
				return
			case <-p.signal:
			}
		}
		changed = false
		p.mu.Lock()
		n, notify := p.last.DeepCopy(), p.notify
		p.mu.Unlock()
		if notify == nil || sameNode(sent, n) || ctx.Err() != nil {
			continue
		}
		notify(n)
		sent = n
	}
}

// sameNode says whether a and b show the same status, labels and annotations.
func sameNode(a, b *corev1.Node) bool {
	return equality.Semantic.DeepEqual(a.Status, b.Status) &&
		equality.Semantic.DeepEqual(a.Labels, b.Labels) &&
		equality.Semantic.DeepEqual(a.Annotations, b.Annotations)
}

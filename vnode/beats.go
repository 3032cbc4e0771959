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
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// DefaultHeartbeatWorkers is how many virtual nodes' registrations, Lease renewals and
// status writes go to the host at once, whatever the number of virtual nodes.
const DefaultHeartbeatWorkers = 64

// Annotations virtual-kubelet's NodeController kept on every Node it wrote (the last
// status and metadata it applied, for its three-way patches); beats removes them.
var nodeControllerAnnotations = []string{
	"virtual-kubelet.io/last-applied-node-status",
	"virtual-kubelet.io/last-applied-object-meta",
}

// beats registers every virtual node, renews its Lease (coordination.k8s.io/v1 in
// kube-node-lease, as a kubelet: every quarter of the Lease's duration) and writes its
// status (at once when it changes, otherwise every statusInterval), from a fixed number
// of workers. A delaying work queue holds each node's next due time, so that the
// goroutines and timers do not grow with the nodes: this is what a NodeController per
// node (a control loop, a ping loop and a Lease loop each) did before.
type beats struct {
	client         kubernetes.Interface
	leaseSeconds   int32
	renew          time.Duration
	statusInterval time.Duration
	workers        int
	// limiter follows the number of nodes (nil: none).
	limiter *heartbeatLimiter
	// exists says whether the host has Node name as far as a cache knows (nil: no cache;
	// a node is patched first, then created if the patch finds none).
	exists func(ctx context.Context, name string) bool
	log    logr.Logger
	now    func() time.Time

	queue workqueue.TypedRateLimitingInterface[string]

	mu    sync.Mutex
	nodes map[string]*beat
}

// beat is one virtual node's heartbeat.
type beat struct {
	name string

	// mu guards want and removed: add and remove take it without waiting for the
	// host.
	mu      sync.Mutex
	want    *corev1.Node
	removed bool

	// registered is set once the Node is on the host (created, or found and written);
	// rewrite asks for the next write at once, and a new registration if it is gone.
	registered atomic.Bool
	rewrite    atomic.Bool

	// work serializes the node's host calls, and remove's wait for the one in flight.
	// The fields below are the worker's, under work.
	work sync.Mutex
	// sent is the node as last written (nil: nothing written by this process yet).
	sent       *corev1.Node
	uid        types.UID
	lastStatus time.Time
	lease      *coordinationv1.Lease
	lastLease  time.Time
	// newLease says that the Lease is most likely not there (the Node was just created).
	newLease bool
}

func newBeats(client kubernetes.Interface, leaseSeconds int32, statusInterval time.Duration, workers int, limiter *heartbeatLimiter, log logr.Logger) *beats {
	renew := time.Duration(leaseSeconds) * time.Second / 4
	return &beats{
		client: client, leaseSeconds: leaseSeconds, renew: renew, statusInterval: statusInterval,
		workers: workers, limiter: limiter, log: log, now: time.Now,
		// A failed call is tried again after 200 ms, doubling, at most a renewal apart.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, renew),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "virtual-node-heartbeats"}),
		nodes: map[string]*beat{},
	}
}

// run runs the workers until ctx ends.
func (b *beats) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range b.workers {
		wg.Go(func() {
			for b.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	b.queue.ShutDown()
	wg.Wait()
}

// next handles one node from the queue; false when the queue is shut down.
func (b *beats) next(ctx context.Context) bool {
	name, shutdown := b.queue.Get()
	if shutdown {
		return false
	}
	defer b.queue.Done(name)
	b.mu.Lock()
	v := b.nodes[name]
	b.mu.Unlock()
	if v == nil {
		b.queue.Forget(name)
		return true
	}
	due, err := b.beat(ctx, v)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			b.log.Error(err, "virtual node heartbeat failed; trying again", "node", name)
			b.queue.AddRateLimited(name)
		}
	case due.IsZero(): // removed meanwhile
		b.queue.Forget(name)
	default:
		b.queue.Forget(name)
		b.queue.AddAfter(name, due.Sub(b.now()))
	}
	return true
}

// add starts the heartbeats of n, or passes n on when they run: written at once when its
// status, labels or annotations changed. It never waits for the host.
func (b *beats) add(n *corev1.Node) *beat {
	b.mu.Lock()
	v := b.nodes[n.Name]
	if v == nil {
		v = &beat{name: n.Name}
		b.nodes[n.Name] = v
		b.limiter.add(1)
	}
	b.mu.Unlock()
	v.mu.Lock()
	changed := v.want == nil || !sameNode(v.want, n)
	v.want = n.DeepCopy()
	v.mu.Unlock()
	if changed {
		b.queue.Add(n.Name)
	}
	return v
}

// remove stops the heartbeats of virtual node name and waits for a host call in flight:
// once it returns, nothing registers the node again nor renews its Lease.
func (b *beats) remove(name string) {
	b.mu.Lock()
	v := b.nodes[name]
	delete(b.nodes, name)
	b.mu.Unlock()
	if v == nil {
		return
	}
	b.limiter.add(-1)
	v.mu.Lock()
	v.removed = true
	v.mu.Unlock()
	v.work.Lock()
	defer v.work.Unlock()
}

// reregister writes node name at once, registering it again if it is gone from the host.
func (b *beats) reregister(name string) {
	b.mu.Lock()
	v := b.nodes[name]
	b.mu.Unlock()
	if v != nil {
		v.rewrite.Store(true)
		b.queue.Add(name)
	}
}

// current is the node as last passed to add.
func (v *beat) current() *corev1.Node {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.want.DeepCopy()
}

// beat does what is due for v: its registration, its status, its Lease. It returns when
// something is next due.
func (b *beats) beat(ctx context.Context, v *beat) (time.Time, error) {
	v.work.Lock()
	defer v.work.Unlock()
	v.mu.Lock()
	want, removed := v.want.DeepCopy(), v.removed
	v.mu.Unlock()
	if removed {
		return time.Time{}, nil
	}
	now := b.now()
	rewrite := v.rewrite.Swap(false)
	if !v.registered.Load() || rewrite || v.sent == nil || !sameNode(v.sent, want) || !now.Before(v.lastStatus.Add(b.statusInterval)) {
		if err := b.writeStatus(ctx, v, want, now); err != nil {
			if rewrite {
				v.rewrite.Store(true)
			}
			return time.Time{}, err
		}
	}
	if !now.Before(v.lastLease.Add(b.renew)) {
		if err := b.renewLease(ctx, v, now); err != nil {
			return time.Time{}, err
		}
	}
	return earliest(v.lastLease.Add(b.renew), v.lastStatus.Add(b.statusInterval)), nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// writeStatus writes want's status, labels and annotations to the host's Node, with the
// conditions' heartbeat times now, registering the Node when it is not there. The patch
// goes from what this process wrote last, so that it removes what it no longer shows and
// leaves what others write (conditions, labels, annotations of their own).
func (b *beats) writeStatus(ctx context.Context, v *beat, want *corev1.Node, now time.Time) error {
	nodes := b.client.CoreV1().Nodes()
	heartbeat := metav1.NewTime(now)
	for i := range want.Status.Conditions {
		want.Status.Conditions[i].LastHeartbeatTime = heartbeat
	}
	var (
		written *corev1.Node
		err     error
	)
	created := false
	if v.sent == nil && b.exists != nil && !b.exists(ctx, want.Name) {
		// New as far as the cache knows: created at once, not after a patch that fails.
		written, err = nodes.Create(ctx, want, metav1.CreateOptions{})
		created = err == nil
	}
	if written == nil && (err == nil || apierrors.IsAlreadyExists(err)) {
		var patch []byte
		if patch, err = statusPatch(v.sent, want); err != nil {
			return fmt.Errorf("status patch of virtual node %s: %w", want.Name, err)
		}
		written, err = nodes.Patch(ctx, want.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		if apierrors.IsNotFound(err) {
			// Not registered yet, or deleted behind our back: register it.
			written, err = nodes.Create(ctx, want, metav1.CreateOptions{})
			created = err == nil
		}
	}
	if err != nil {
		return fmt.Errorf("write virtual node %s: %w", want.Name, err)
	}
	if created {
		b.log.V(1).Info("virtual node registered", "node", want.Name)
	}
	if written.UID != v.uid {
		// A Node of its own: the Lease names it as its owner. A Node just created most
		// likely has no Lease yet: it is created at once, not after a GET that fails.
		v.uid = written.UID
		v.lastLease = time.Time{}
		v.newLease = created
	}
	v.sent, v.lastStatus = want, now
	v.registered.Store(true)
	return nil
}

// statusPatch is the strategic merge patch of a Node's status subresource from sent (what
// was last written; nil: nothing yet) to want: status, labels and annotations. Labels and
// annotations go key by key, so that those others set stay.
func statusPatch(sent, want *corev1.Node) ([]byte, error) {
	from := &corev1.Node{}
	if sent != nil {
		from = shown(sent)
	}
	a, err := json.Marshal(from)
	if err != nil {
		return nil, err
	}
	c, err := json.Marshal(shown(want))
	if err != nil {
		return nil, err
	}
	p, err := strategicpatch.CreateTwoWayMergePatch(a, c, corev1.Node{})
	if err != nil {
		return nil, err
	}
	patch := map[string]any{}
	if err := json.Unmarshal(p, &patch); err != nil {
		return nil, err
	}
	meta, _ := patch["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	// A map gone as a whole is null in the patch: it would remove others' keys too.
	for field, keys := range map[string]map[string]string{"labels": from.Labels, "annotations": from.Annotations} {
		if v, ok := meta[field]; ok && v == nil {
			gone := map[string]any{}
			for k := range keys {
				gone[k] = nil
			}
			meta[field] = gone
		}
	}
	if sent == nil {
		// Removes the NodeController's annotations, written by an earlier version.
		ann, _ := meta["annotations"].(map[string]any)
		if ann == nil {
			ann = map[string]any{}
		}
		for _, k := range nodeControllerAnnotations {
			ann[k] = nil
		}
		meta["annotations"] = ann
	}
	if len(meta) > 0 {
		patch["metadata"] = meta
	}
	return json.Marshal(patch)
}

// shown is what a virtual node shows through its status: its status, labels and
// annotations.
func shown(n *corev1.Node) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Labels: n.Labels, Annotations: n.Annotations},
		Status:     n.Status,
	}
}

// renewLease renews v's Lease, creating it when it is not there; its owner is the Node,
// so that the host deletes it with the Node.
func (b *beats) renewLease(ctx context.Context, v *beat, now time.Time) error {
	leases := b.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: v.name, UID: v.uid}}
	create := func() (bool, error) {
		l, err := leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: v.name, Namespace: corev1.NamespaceNodeLease, OwnerReferences: owner},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(v.name),
				LeaseDurationSeconds: ptr.To(b.leaseSeconds),
				RenewTime:            &metav1.MicroTime{Time: now},
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("create Lease of virtual node %s: %w", v.name, err)
		}
		v.lease, v.lastLease = l, now
		return true, nil
	}
	if v.lease == nil && v.newLease {
		v.newLease = false
		if done, err := create(); done || err != nil {
			return err
		}
	}
	if v.lease == nil {
		l, err := leases.Get(ctx, v.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err := create()
			return err
		case err != nil:
			return fmt.Errorf("get Lease of virtual node %s: %w", v.name, err)
		}
		v.lease = l
	}
	l := v.lease.DeepCopy()
	l.Spec.HolderIdentity = ptr.To(v.name)
	l.Spec.LeaseDurationSeconds = ptr.To(b.leaseSeconds)
	l.Spec.RenewTime = &metav1.MicroTime{Time: now}
	if len(l.OwnerReferences) != 1 || l.OwnerReferences[0].UID != v.uid {
		l.OwnerReferences = owner
	}
	l, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		// Read again next time: changed (a conflict) or deleted behind our back.
		v.lease = nil
		return fmt.Errorf("renew Lease of virtual node %s: %w", v.name, err)
	}
	v.lease, v.lastLease = l, now
	return nil
}

// sameNode says whether a and b show the same status, labels and annotations, but for the
// conditions' heartbeat times.
func sameNode(a, b *corev1.Node) bool {
	return equality.Semantic.DeepEqual(withoutHeartbeats(a.Status), withoutHeartbeats(b.Status)) &&
		equality.Semantic.DeepEqual(a.Labels, b.Labels) &&
		equality.Semantic.DeepEqual(a.Annotations, b.Annotations)
}

func withoutHeartbeats(s corev1.NodeStatus) corev1.NodeStatus {
	s.Conditions = append([]corev1.NodeCondition(nil), s.Conditions...)
	for i := range s.Conditions {
		s.Conditions[i].LastHeartbeatTime = metav1.Time{}
	}
	return s
}

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

package provider

import (
	"cmp"
	"context"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// statusClient is the pod controller's host client: it writes the status virtual-kubelet
// was handed (Pods.report) onto the host pod as the host cache has it, tells lag each pod
// status the host accepted, which is where virtual-kubelet's status sync ends, and writes
// again at once a status the host refused for a stale resource version
// (statusPods.UpdateStatus).
type statusClient struct {
	typedcorev1.PodsGetter
	cached corelisters.PodLister
	statusFollow
}

// statusFollow is what the status writes tell and count, the same for every namespace.
type statusFollow struct {
	lag       *statusLag
	start     *podStart
	conflicts prometheus.Counter
	writes    *prometheus.CounterVec
	writeTime prometheus.Observer
	recent    *recentWrites
}

// Pods returns the pods of namespace, their status writes followed.
func (c statusClient) Pods(namespace string) typedcorev1.PodInterface {
	var cached corelisters.PodNamespaceLister
	if c.cached != nil {
		cached = c.cached.Pods(namespace)
	}
	return statusPods{PodInterface: c.PodsGetter.Pods(namespace), cached: cached, statusFollow: c.statusFollow}
}

type statusPods struct {
	typedcorev1.PodInterface
	cached corelisters.PodNamespaceLister
	statusFollow
}

// Results of status writes, the values of vk8s_provider_pod_status_writes_total's result.
const (
	writeWritten   = "written"
	writeUnchanged = "unchanged"
	writeFailed    = "failed"
)

// conflictRetries bounds the writes of one status after the first was refused as stale.
const conflictRetries = 3

// UpdateStatus writes pod's status onto the host pod and, when the host accepted it,
// observes its lag (and, for a status Running, the end of the pod's start).
//
// pod is what Pods.report handed virtual-kubelet (no spec) with the resource version of
// virtual-kubelet's informer copy. The host applies a status write's labels and
// annotations too, so the write carries the host pod as the cache has it now (metadata,
// spec and version), with pod's status; a pod the cache does not hold goes as it is. When
// the cached host pod shows that status already (the site pod's first status is often the
// Pending the host gave the pod at creation), nothing is sent, unless the cache has not
// caught up with this client's last write of the pod: the host may show another status;
// the write then goes onto the host's answer to that last write, the later version.
//
// That version lags behind the host whenever the status before was written a moment ago
// (a starting pod goes Pending, scheduled, Running within a few hundred milliseconds):
// the host refuses it as a conflict, and virtual-kubelet's queue would retry with backoff
// until the informer catches up. The status is the provider's to write, whatever the
// version, so a refused write goes again at once onto the pod the host has now (the same
// pod: its UID is checked).
func (p statusPods) UpdateStatus(ctx context.Context, pod *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	onto := pod
	// virtual-kubelet's own status of a pod the provider refused (ProviderFailed) comes
	// with no resource version, on its informer's copy changed in place: it is written as
	// it is, whatever the host has.
	if p.cached != nil && pod.ResourceVersion != "" {
		if c, err := p.cached.Get(pod.Name); err == nil && c != pod && c.UID == pod.UID {
			last := p.recent.ahead(c)
			if last == nil && equality.Semantic.DeepEqual(&c.Status, &pod.Status) {
				p.count(writeUnchanged)
				p.accepted(pod)
				return c, nil
			}
			// While the cache has not delivered this client's last write, the host's
			// answer to it is the later version: writing onto the cache's would be
			// refused as a conflict, and cost a read and a write more.
			onto = withStatus(cmp.Or(last, c), pod.Status)
		}
	}
	began := time.Now()
	out, err := p.PodInterface.UpdateStatus(ctx, onto, opts)
	for range conflictRetries {
		if !apierrors.IsConflict(err) {
			break
		}
		if p.conflicts != nil {
			p.conflicts.Inc()
		}
		latest, gerr := p.Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil || latest.UID != pod.UID {
			break // virtual-kubelet's queue decides
		}
		out, err = p.PodInterface.UpdateStatus(ctx, withStatus(latest, pod.Status), opts)
	}
	if p.writeTime != nil {
		p.writeTime.Observe(time.Since(began).Seconds())
	}
	if err != nil {
		p.count(writeFailed)
		return out, err
	}
	p.recent.wrote(out, p.cached)
	p.count(writeWritten)
	p.accepted(pod)
	return out, nil
}

// accepted observes the lag of pod's status, which the host shows now, and for a status
// Running the end of the pod's start.
func (p statusPods) accepted(pod *corev1.Pod) {
	p.lag.written(pod.UID)
	if pod.Status.Phase == corev1.PodRunning {
		p.start.mark(pod.UID, stageHostStatus)
	}
}

func (p statusPods) count(result string) {
	if p.writes != nil {
		p.writes.WithLabelValues(result).Inc()
	}
}

// withStatus is pod with status: a shallow copy, whose maps and slices are pod's (a cached
// object's, only read by the write's encoding).
func withStatus(pod *corev1.Pod, status corev1.PodStatus) *corev1.Pod {
	out := *pod
	out.Status = status
	return &out
}

// recentWrites holds the host's answer to the last status write of each host pod whose
// write the host pod cache has not delivered yet (UID -> version and pod): until it does,
// the cache's status is not what the host has, and the next write goes onto the answer.
// The cache shows the write once it holds the written version or a later one (resource
// versions compare as integers): a watch delivers every version of a pod in order, and a
// relist may skip the written one. An answer is held for as long as the cache takes to
// show it, usually a fraction of a second; a write onto an answer another writer has
// overtaken meanwhile is refused and goes again onto the latest, which only costs a write.
type recentWrites struct {
	mu     sync.Mutex
	writes map[types.UID]recentWrite
}

type recentWrite struct {
	key     string // namespace/name
	version string
	// pod is the host's answer to the write.
	pod *corev1.Pod
}

func newRecentWrites() *recentWrites {
	return &recentWrites{writes: map[types.UID]recentWrite{}}
}

// wrote records a status write's result, unless cached (the host pod cache of its
// namespace) shows its version already.
func (r *recentWrites) wrote(out *corev1.Pod, cached corelisters.PodNamespaceLister) {
	if r == nil || out == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cached != nil {
		if c, err := cached.Get(out.Name); err == nil && c.UID == out.UID && shows(c.ResourceVersion, out.ResourceVersion) {
			delete(r.writes, out.UID)
			return
		}
	}
	// Without its managedFields, as the cache keeps pods: a write of none keeps the host's.
	held := *out
	held.ManagedFields = nil
	r.writes[out.UID] = recentWrite{key: out.Namespace + "/" + out.Name, version: out.ResourceVersion, pod: &held}
}

// shows says whether a pod's version rv is the written version w or a later one. Resource
// versions compare as integers (resourceversion.CompareResourceVersion); one that does
// not parse shows only itself.
func shows(rv, w string) bool {
	if c, err := resourceversion.CompareResourceVersion(rv, w); err == nil {
		return c >= 0
	}
	return rv == w
}

// ahead returns the host's answer to the last status write of cached's pod when cached,
// the cache's copy, does not show it yet; nil when it does, or none is waiting.
func (r *recentWrites) ahead(cached *corev1.Pod) *corev1.Pod {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.writes[cached.UID]; ok {
		if !shows(cached.ResourceVersion, w.version) {
			return w.pod
		}
		// The cache went past the write without delivering it (a relist).
		delete(r.writes, cached.UID)
	}
	return nil
}

// handler is the host pod informer's event handler that forgets a write once the cache
// delivers its version, or the pod.
func (r *recentWrites) handler() cache.ResourceEventHandler {
	forget := func(obj any, gone bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if w, ok := r.writes[pod.UID]; ok && (gone || shows(pod.ResourceVersion, w.version)) {
			delete(r.writes, pod.UID)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { forget(obj, false) },
		DeleteFunc: func(obj any) { forget(obj, true) },
	}
}

// prune forgets the writes of pods for which exists says no (deleted before the write was
// recorded).
func (r *recentWrites) prune(exists func(key string, uid types.UID) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	maps.DeleteFunc(r.writes, func(uid types.UID, w recentWrite) bool { return !exists(w.key, uid) })
}

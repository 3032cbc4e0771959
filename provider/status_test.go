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
	"errors"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

// What virtual-kubelet is handed carries no spec; the status write puts its status onto
// the host pod as the cache has it now (its labels, spec and version), and on a conflict
// onto the pod the host has then, so that neither a spec nor a label changed since the
// site's status was seen is written back.
func TestStatusWriteGoesOntoTheCachedPod(t *testing.T) {
	m, err := newPodMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	host := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1", ResourceVersion: "5", Labels: map[string]string{"app": "a"}},
		Spec:       corev1.PodSpec{NodeName: "site1-node1", Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	handed := reported(host, corev1.PodStatus{Phase: corev1.PodRunning})
	if !equality.Semantic.DeepEqual(handed.Spec, corev1.PodSpec{}) || handed.ResourceVersion != "5" || handed.UID != "u1" ||
		handed.Labels["app"] != "a" {
		t.Fatalf("handed to virtual-kubelet: %+v, want the identity, version, labels and status alone", handed)
	}

	// The cache has the pod relabelled since; virtual-kubelet writes on the version it read.
	cached := host.DeepCopy()
	cached.ResourceVersion, cached.Labels = "6", map[string]string{"app": "b"}
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if err := indexer.Add(cached); err != nil {
		t.Fatal(err)
	}
	latest := cached.DeepCopy()
	latest.ResourceVersion, latest.Labels = "7", map[string]string{"app": "c"}
	cs := fake.NewClientset(latest)
	var written []*corev1.Pod
	cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.UpdateAction).GetObject().(*corev1.Pod).DeepCopy()
		written = append(written, pod)
		if pod.ResourceVersion != "7" {
			return true, nil, apierrors.NewConflict(corev1.Resource("pods"), pod.Name, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	client := statusClient{PodsGetter: cs.CoreV1(), cached: corelisters.NewPodLister(indexer), statusFollow: testFollow(m, nil)}

	vk := handed.DeepCopy()
	vk.ResourceVersion = "5"
	if _, err := client.Pods("ns").UpdateStatus(t.Context(), vk, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 {
		t.Fatalf("%d writes, want 2 (the cached pod, then the latest)", len(written))
	}
	for i, want := range []*corev1.Pod{cached, latest} {
		w := written[i]
		if w.ResourceVersion != want.ResourceVersion || !maps.Equal(w.Labels, want.Labels) ||
			!equality.Semantic.DeepEqual(w.Spec, host.Spec) || w.Status.Phase != corev1.PodRunning {
			t.Errorf("write %d: version %s, labels %v, spec %+v, phase %s; want version %s, labels %v, the host's spec, Running",
				i, w.ResourceVersion, w.Labels, w.Spec, w.Status.Phase, want.ResourceVersion, want.Labels)
		}
	}
	if cached.Status.Phase != corev1.PodPending {
		t.Errorf("the cached pod was changed: phase %s", cached.Status.Phase)
	}

	// A status the cached pod shows already is not sent.
	same := reported(cached, cached.Status)
	if _, err := client.Pods("ns").UpdateStatus(t.Context(), same, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || testutil.ToFloat64(m.writes.WithLabelValues(writeUnchanged)) != 1 ||
		testutil.ToFloat64(m.writes.WithLabelValues(writeWritten)) != 1 {
		t.Errorf("%d writes, %v unchanged, %v written; want 2, 1, 1", len(written),
			testutil.ToFloat64(m.writes.WithLabelValues(writeUnchanged)), testutil.ToFloat64(m.writes.WithLabelValues(writeWritten)))
	}
	// One status was sent (twice, the conflict's retry in the same time); the unchanged one is not timed.
	if n := sampleCount(t, m.writeTime); n != 1 {
		t.Errorf("vk8s_provider_pod_status_write_seconds counted %d writes, want 1", n)
	}
}

// sampleCount is the number of observations of h.
func sampleCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var out dto.Metric
	if err := h.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount()
}

// A status the cache shows is not sent while the cache has not delivered this client's
// last write of the pod: the host may show another status by then.
func TestUnchangedStatusWaitsForTheCacheToCatchUp(t *testing.T) {
	m, err := newPodMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1", ResourceVersion: "5"},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if err := indexer.Add(host); err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(host.DeepCopy())
	sent := 0
	cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sent++
		pod := a.(k8stesting.UpdateAction).GetObject().(*corev1.Pod).DeepCopy()
		pod.ResourceVersion = "6"
		return true, pod, nil
	})
	recent := newRecentWrites()
	client := statusClient{PodsGetter: cs.CoreV1(), cached: corelisters.NewPodLister(indexer), statusFollow: testFollow(m, recent)}
	write := func(phase corev1.PodPhase) {
		t.Helper()
		if _, err := client.Pods("ns").UpdateStatus(t.Context(), reported(host, corev1.PodStatus{Phase: phase}), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	write(corev1.PodFailed) // accepted as version 6; the cache still has 5, Pending
	write(corev1.PodPending)
	if sent != 2 {
		t.Fatalf("%d writes, want 2: the cache's Pending is not the host's Failed yet", sent)
	}
	// The cache delivers version 6 (here: Pending again, someone else's write after ours
	// would have a later version); from then on its status is the host's.
	seen := host.DeepCopy()
	seen.ResourceVersion = "6"
	if err := indexer.Update(seen); err != nil {
		t.Fatal(err)
	}
	recent.handler().OnUpdate(host, seen)
	write(corev1.PodPending)
	if sent != 2 {
		t.Errorf("%d writes, want 2: the cache had caught up and showed the status", sent)
	}
}

// Statuses written one after the other faster than the cache delivers them go each onto
// the host's answer to the write before, not onto the cache's older version, which the
// host would refuse as a conflict.
func TestStatusWritesFollowTheirOwnAnswers(t *testing.T) {
	m, err := newPodMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1", ResourceVersion: "5", Labels: map[string]string{"app": "a"}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if err := indexer.Add(host.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	// The host: each accepted write makes the next version; a write on another is refused.
	cs := fake.NewClientset(host.DeepCopy())
	version, updates := 5, 0
	cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		updates++
		pod := a.(k8stesting.UpdateAction).GetObject().(*corev1.Pod).DeepCopy()
		if pod.ResourceVersion != strconv.Itoa(version) {
			return true, nil, apierrors.NewConflict(corev1.Resource("pods"), pod.Name, errors.New("the object has been modified"))
		}
		version++
		pod.ResourceVersion = strconv.Itoa(version)
		if err := cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), pod, pod.Namespace); err != nil {
			return true, nil, err
		}
		answer := pod.DeepCopy()
		answer.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "vk8s", Subresource: "status"}}
		return true, answer, nil
	})
	recent := newRecentWrites()
	client := statusClient{PodsGetter: cs.CoreV1(), cached: corelisters.NewPodLister(indexer), statusFollow: testFollow(m, recent)}

	// Scheduled, started, Running: three statuses before the cache shows the first write.
	for _, st := range []corev1.PodStatus{
		{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}},
		{Phase: corev1.PodPending, PodIP: "10.0.0.1"},
		{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	} {
		out, err := client.Pods("ns").UpdateStatus(t.Context(), reported(host, st), metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if out.Labels["app"] != "a" || !equality.Semantic.DeepEqual(out.Status, st) {
			t.Errorf("the host has labels %v, status %+v; want app=a, %+v", out.Labels, out.Status, st)
		}
	}
	if conflicts := testutil.ToFloat64(m.conflicts); updates != 3 || conflicts != 0 {
		t.Errorf("%d writes, %v refused as stale; want 3 and none", updates, conflicts)
	}
	if held := recent.ahead(host); held == nil {
		t.Error("no answer held while the cache shows none of the writes")
	} else if held.ResourceVersion != "8" || held.ManagedFields != nil {
		t.Errorf("held answer: version %s, %d managedFields entries; want version 8 without managedFields (as the cache keeps pods)",
			held.ResourceVersion, len(held.ManagedFields))
	}
	// Someone relabels the pod, and a relist brings the cache that later version without
	// the one written last: the answer is let go, and the next write goes onto the cache's.
	relabelled, err := cs.CoreV1().Pods("ns").Get(t.Context(), "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	version++
	relabelled.ResourceVersion, relabelled.Labels = strconv.Itoa(version), map[string]string{"app": "b"}
	if err := cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), relabelled, "ns"); err != nil {
		t.Fatal(err)
	}
	if err := indexer.Update(relabelled); err != nil {
		t.Fatal(err)
	}
	recent.handler().OnUpdate(host, relabelled)
	if held := recent.ahead(relabelled); held != nil {
		t.Errorf("an answer (version %s) is still held once the cache shows version %s", held.ResourceVersion, relabelled.ResourceVersion)
	}
	out, err := client.Pods("ns").UpdateStatus(t.Context(), reported(host, corev1.PodStatus{Phase: corev1.PodSucceeded}), metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if conflicts := testutil.ToFloat64(m.conflicts); updates != 4 || conflicts != 0 || out.Labels["app"] != "b" {
		t.Errorf("%d writes, %v refused as stale, labels %v; want 4, none, app=b", updates, conflicts, out.Labels)
	}
}

// The cache shows a write once it holds its version or a later one; versions that do not
// parse show only themselves.
func TestShows(t *testing.T) {
	for _, c := range []struct {
		rv, written string
		want        bool
	}{
		{"7", "7", true}, {"8", "7", true}, {"10", "9", true}, {"6", "7", false}, {"9", "10", false},
		{"x", "x", true}, {"x", "7", false}, {"", "7", false},
	} {
		if got := shows(c.rv, c.written); got != c.want {
			t.Errorf("shows(%q, %q) = %v, want %v", c.rv, c.written, got, c.want)
		}
	}
}

// virtual-kubelet's own status of a pod the provider refused (ProviderFailed) is its
// informer's copy changed in place, without a resource version: it is written as it is,
// although the cache "shows" it.
func TestProviderFailedStatusIsWritten(t *testing.T) {
	m, err := newPodMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1", ResourceVersion: "5"},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	cached := host.DeepCopy()
	if err := indexer.Add(cached); err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(host)
	sent := 0
	cs.PrependReactor("update", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		sent++
		return false, nil, nil
	})
	client := statusClient{PodsGetter: cs.CoreV1(), cached: corelisters.NewPodLister(indexer), statusFollow: testFollow(m, newRecentWrites())}
	// As virtual-kubelet's handleProviderError does.
	cached.ResourceVersion = ""
	cached.Status.Phase, cached.Status.Reason = corev1.PodFailed, "ProviderFailed"
	if _, err := client.Pods("ns").UpdateStatus(t.Context(), cached, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Pods("ns").Get(t.Context(), "p", metav1.GetOptions{})
	if err != nil || sent != 1 || got.Status.Phase != corev1.PodFailed {
		t.Errorf("%d writes, host phase %s (%v); want 1 write and Failed", sent, got.Status.Phase, err)
	}
}

// testFollow is what a test's status writes tell and count: m's metrics, and recent.
func testFollow(m *podMetrics, recent *recentWrites) statusFollow {
	return statusFollow{lag: &statusLag{hist: m.lag, now: time.Now, pending: map[types.UID]pendingStatus{}},
		start: newPodStart(m.start, time.Now), conflicts: m.conflicts, writes: m.writes, writeTime: m.writeTime, recent: recent}
}

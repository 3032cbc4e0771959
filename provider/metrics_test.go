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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
)

func TestStatusSyncLag(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newPodMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	lag := &statusLag{hist: m.lag, now: func() time.Time { return now }, pending: map[types.UID]pendingStatus{}}
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1"}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	running := corev1.PodStatus{Phase: corev1.PodRunning}
	client := statusClient{PodsGetter: fake.NewClientset(host).CoreV1(), statusFollow: statusFollow{lag: lag}}

	// The same status as the host's: nothing to write, nothing to time.
	lag.seen(host, host.Status.DeepCopy())
	// The site's pod runs; two changes before the write count from the first.
	lag.seen(host, &running)
	now = now.Add(time.Second)
	lag.seen(host, &corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"})
	now = now.Add(2 * time.Second)
	written := host.DeepCopy()
	written.Status = running
	if _, err := client.Pods("ns").UpdateStatus(t.Context(), written, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A second write of the pod has nothing pending.
	if _, err := client.Pods("ns").UpdateStatus(t.Context(), written, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP vk8s_provider_status_sync_lag_seconds Time from the provider seeing a site pod change the host pod's status to the host accepting that status.
# TYPE vk8s_provider_status_sync_lag_seconds histogram
vk8s_provider_status_sync_lag_seconds_bucket{le="0.005"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="0.01"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="0.025"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="0.05"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="0.1"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="0.25"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="0.5"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="1"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="2.5"} 0
vk8s_provider_status_sync_lag_seconds_bucket{le="5"} 1
vk8s_provider_status_sync_lag_seconds_bucket{le="10"} 1
vk8s_provider_status_sync_lag_seconds_bucket{le="30"} 1
vk8s_provider_status_sync_lag_seconds_bucket{le="60"} 1
vk8s_provider_status_sync_lag_seconds_bucket{le="+Inf"} 1
vk8s_provider_status_sync_lag_seconds_sum 3
vk8s_provider_status_sync_lag_seconds_count 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vk8s_provider_status_sync_lag_seconds"); err != nil {
		t.Error(err)
	}

	// A pod that went before its status was written is forgotten.
	lag.seen(host, &corev1.PodStatus{Phase: corev1.PodFailed})
	lag.prune(func(string, types.UID) bool { return false })
	if len(lag.pending) != 0 {
		t.Errorf("pending after prune: %v", lag.pending)
	}
}

// testPods is a Pods over host caches holding nodes and pods, with its metrics in reg
// and its spans recorded by rec.
func testPods(t *testing.T, reg prometheus.Registerer, rec *tracetest.SpanRecorder, nodes []*corev1.Node, pods []*corev1.Pod) *Pods {
	t.Helper()
	nodeIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range nodes {
		_ = nodeIdx.Add(n)
	}
	podIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, p := range pods {
		_ = podIdx.Add(p)
	}
	reg2, err := sitereg.New(sitereg.Config{MetricsRegisterer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPods(PodsConfig{
		Tenant: "t", Host: fake.NewClientset(), Registry: reg2, Recorder: record.NewFakeRecorder(10),
		HostPods: corelisters.NewPodLister(podIdx), HostNodes: corelisters.NewNodeLister(nodeIdx),
		HostConfigMaps: corelisters.NewConfigMapLister(podIdx), HostSecrets: corelisters.NewSecretLister(podIdx),
		HostServiceAccounts: corelisters.NewServiceAccountLister(podIdx), HostPersistentVolumeClaims: corelisters.NewPersistentVolumeClaimLister(podIdx),
		HostSynced: func() bool { return true },
		HostPodsOn: func(node string) []*corev1.Pod {
			var out []*corev1.Pod
			for _, p := range pods {
				if p.Spec.NodeName == node {
					out = append(out, p)
				}
			}
			return out
		},
		Log: logr.Discard(), MetricsRegisterer: reg,
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func virtualNode(name, site string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{vk8sv1.LabelSite: site, vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}}}
}

func podOn(name, node string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
}

// A status refused because the pod controller's copy was stale is written again at once on
// the host's version; another pod of that name (a new UID) is not written over.
func TestStatusWriteOnAStaleVersionGoesAgain(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newPodMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1", ResourceVersion: "5"}}
	cs := fake.NewClientset(host)
	// The fake tracker takes any version: refuse all but the latest, as an API server does.
	var writes []string
	cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		u := a.(k8stesting.UpdateAction)
		pod := u.GetObject().(*corev1.Pod)
		writes = append(writes, pod.ResourceVersion)
		if pod.ResourceVersion != "5" {
			return true, nil, apierrors.NewConflict(corev1.Resource("pods"), pod.Name, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	client := statusClient{PodsGetter: cs.CoreV1(), statusFollow: testFollow(m, nil)}

	stale := host.DeepCopy()
	stale.ResourceVersion, stale.Status.Phase = "4", corev1.PodRunning
	if _, err := client.Pods("ns").UpdateStatus(t.Context(), stale, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("a stale write was not written again: %v", err)
	}
	if got, err := cs.CoreV1().Pods("ns").Get(t.Context(), "p", metav1.GetOptions{}); err != nil || got.Status.Phase != corev1.PodRunning {
		t.Errorf("host pod after the write: %v, %v", got.Status.Phase, err)
	}
	if !slices.Equal(writes, []string{"4", "5"}) || testutil.ToFloat64(m.conflicts) != 1 {
		t.Errorf("writes on versions %v, %v conflicts; want [4 5], 1", writes, testutil.ToFloat64(m.conflicts))
	}

	writes = nil
	replaced := stale.DeepCopy()
	replaced.UID = "u0"
	if _, err := client.Pods("ns").UpdateStatus(t.Context(), replaced, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("the status of a pod replaced since: %v, want the conflict", err)
	}
	if !slices.Equal(writes, []string{"4"}) {
		t.Errorf("writes on versions %v, want only [4]", writes)
	}
}

func TestPodsPerSiteAndPhase(t *testing.T) {
	reg := prometheus.NewRegistry()
	testPods(t, reg, tracetest.NewSpanRecorder(),
		[]*corev1.Node{virtualNode("site1-node1", "site1"), virtualNode("site1-node2", "site1"), virtualNode("site2-node1", "site2"),
			{ObjectMeta: metav1.ObjectMeta{Name: "host-node1"}}},
		[]*corev1.Pod{podOn("a", "site1-node1", corev1.PodRunning), podOn("b", "site1-node2", corev1.PodRunning),
			podOn("c", "site1-node2", ""), podOn("d", "site2-node1", corev1.PodSucceeded), podOn("e", "host-node1", corev1.PodRunning)})
	want := `
# HELP vk8s_provider_pods Host pods bound to the virtual nodes of a site, by site and phase (Pending, Running, Succeeded, Failed, Unknown), from the provider's host pod cache.
# TYPE vk8s_provider_pods gauge
vk8s_provider_pods{phase="Failed",site="site1"} 0
vk8s_provider_pods{phase="Failed",site="site2"} 0
vk8s_provider_pods{phase="Pending",site="site1"} 1
vk8s_provider_pods{phase="Pending",site="site2"} 0
vk8s_provider_pods{phase="Running",site="site1"} 2
vk8s_provider_pods{phase="Running",site="site2"} 0
vk8s_provider_pods{phase="Succeeded",site="site1"} 0
vk8s_provider_pods{phase="Succeeded",site="site2"} 1
vk8s_provider_pods{phase="Unknown",site="site1"} 0
vk8s_provider_pods{phase="Unknown",site="site2"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vk8s_provider_pods"); err != nil {
		t.Error(err)
	}
}

// TestCreatePodJoinsTheAdmissionTrace: CreatePod's span is a child of the admission's
// (the pod's traceparent) linked to virtual-kubelet's, and the creation on the site is a
// child of CreatePod's.
func TestCreatePodJoinsTheAdmissionTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := testPods(t, prometheus.NewRegistry(), rec, nil, nil)
	admission := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0, 0xf0, 1}, TraceFlags: trace.FlagsSampled, Remote: true})
	vk := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}, TraceFlags: trace.FlagsSampled})
	pod := podOn("web", "site1-node1", "")
	pod.Annotations = map[string]string{vk8sv1.AnnotationTraceParent: "00-" + admission.TraceID().String() + "-" + admission.SpanID().String() + "-01"}

	// Its node is not in the cache: CreatePod fails, but its span is there.
	_ = p.CreatePod(trace.ContextWithSpanContext(t.Context(), vk), pod)
	_, span := p.createSpan(t.Context(), pod, "site1")
	span.End()
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	create, site := spans[0], spans[1]
	if create.Name() != "provider CreatePod" || !create.Parent().Equal(admission) || create.SpanContext().TraceID() != admission.TraceID() {
		t.Errorf("CreatePod span %q parent %v, want a child of the admission's %v", create.Name(), create.Parent(), admission)
	}
	if links := create.Links(); len(links) != 1 || !links[0].SpanContext.Equal(vk) {
		t.Errorf("CreatePod span links %v, want virtual-kubelet's span", links)
	}
	if site.Parent().SpanID() != create.SpanContext().SpanID() || site.SpanContext().TraceID() != admission.TraceID() {
		t.Errorf("site creation span parent %v, want CreatePod's %v", site.Parent(), create.SpanContext())
	}

	// Without a traceparent (or with one that does not parse) CreatePod's span is a child
	// of virtual-kubelet's.
	pod.Annotations[vk8sv1.AnnotationTraceParent] = "junk"
	_ = p.CreatePod(trace.ContextWithSpanContext(t.Context(), vk), pod)
	if s := rec.Ended()[2]; !s.Parent().Equal(vk) || len(s.Links()) != 0 {
		t.Errorf("CreatePod span parent %v links %v, want a child of virtual-kubelet's", s.Parent(), s.Links())
	}
}

func TestPodStartStages(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newPodMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	s := newPodStart(m.start, func() time.Time { return now })
	after := func(d time.Duration) { now = now.Add(d) }
	pod := func(uid types.UID, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: string(uid), UID: uid}, Status: corev1.PodStatus{Phase: phase}}
	}

	// p1 goes through every stage in order.
	s.seen(pod("p1", ""))
	after(10 * time.Millisecond)
	s.seen(pod("p1", corev1.PodPending)) // seen again: the clock keeps its start
	s.mark("p1", stageHanded)
	after(20 * time.Millisecond)
	s.mark("p1", stageQueued)
	after(30 * time.Millisecond)
	s.mark("p1", stageSent)
	s.mark("p1", stageSent) // once per pod
	after(400 * time.Millisecond)
	s.mark("p1", stageRunningOnSite)
	after(40 * time.Millisecond)
	s.mark("p1", stageHostStatus)
	// p2's site pod is seen Running before its create's answer: queued and sent end then,
	// and the answer that follows observes nothing.
	s.seen(pod("p2", corev1.PodPending))
	s.mark("p2", stageHanded)
	after(time.Second)
	s.mark("p2", stageRunningOnSite)
	s.mark("p2", stageSent)
	s.mark("p2", stageHostStatus)
	// p3 runs already (a provider restart): not followed. p4 is deleted before it runs:
	// pruned, and its late marks observe nothing.
	s.seen(pod("p3", corev1.PodRunning))
	s.mark("p3", stageHanded)
	s.mark("p3", stageHostStatus)
	s.seen(pod("p4", corev1.PodPending))
	s.prune(func(_ string, uid types.UID) bool { return uid != "p4" }, time.Hour)
	s.mark("p4", stageHanded)
	// p5 never runs: forgotten after maxAge.
	s.seen(pod("p5", corev1.PodPending))
	after(2 * time.Hour)
	s.prune(func(string, types.UID) bool { return true }, time.Hour)
	if len(s.pods) != 0 {
		t.Errorf("followed after prune: %v", s.pods)
	}

	sums := map[string]float64{}
	counts := map[string]uint64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vk8s_provider_pod_start_stage_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			stage := mt.GetLabel()[0].GetValue()
			sums[stage] = mt.GetHistogram().GetSampleSum()
			counts[stage] = mt.GetHistogram().GetSampleCount()
		}
	}
	for _, c := range []struct {
		stage string
		count uint64
		sum   float64
	}{
		{"handed", 2, 0.010},
		{"queued", 2, 0.020 + 1.0},
		{"sent", 2, 0.030},
		{"running_on_site", 2, 0.400},
		{"host_status", 2, 0.040},
		{"total", 2, 0.5 + 1.0},
	} {
		if counts[c.stage] != c.count || sums[c.stage] < c.sum-1e-9 || sums[c.stage] > c.sum+1e-9 {
			t.Errorf("stage %s: %d observations summing %gs, want %d summing %gs", c.stage, counts[c.stage], sums[c.stage], c.count, c.sum)
		}
	}
}

// TestPodsOfAnotherReplicasSite: a pod whose Site another replica owns (the replicas share
// the Sites) is neither created, reported waiting, failed nor deleted here, and its Site
// changing is not taken for it going down.
func TestPodsOfAnotherReplicasSite(t *testing.T) {
	pod := podOn("web", "site2-node1", corev1.PodRunning)
	p := testPods(t, prometheus.NewRegistry(), tracetest.NewSpanRecorder(), []*corev1.Node{virtualNode("site2-node1", "site2")}, []*corev1.Pod{pod})
	reg, err := sitereg.New(sitereg.Config{MetricsRegisterer: prometheus.NewRegistry(), Owns: func(string) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	p.cfg.Registry = reg
	var notified []*corev1.Pod
	p.NotifyPods(t.Context(), func(pod *corev1.Pod) { notified = append(notified, pod) })

	if err := p.CreatePod(t.Context(), pod); err != nil {
		t.Errorf("CreatePod: %v", err)
	}
	if err := p.UpdatePod(t.Context(), pod); err != nil {
		t.Errorf("UpdatePod: %v", err)
	}
	p.siteChanged("site2")
	deleting := pod.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	if err := p.DeletePod(t.Context(), deleting); err != nil {
		t.Errorf("DeletePod: %v", err)
	}
	if len(notified) != 0 {
		t.Errorf("statuses written for another replica's pod: %+v", notified[0].Status)
	}
	if len(p.waiting) != 0 || len(p.down) != 0 {
		t.Errorf("waiting %v, down %v: want nothing kept for another replica's Site", p.waiting, p.down)
	}
	if actions := p.cfg.Host.(*fake.Clientset).Actions(); len(actions) != 0 {
		t.Errorf("host calls %v, want none", actions)
	}
}

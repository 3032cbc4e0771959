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
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk8s-io/vk8s/promreg"
)

// podMetrics are the pod lifecycle's Prometheus metrics.
type podMetrics struct {
	ops     *prometheus.CounterVec
	waiting prometheus.Gauge
	// pods and queue are computed at scrape from the host pod cache and the site
	// clusters' queues.
	pods  *promreg.Gauges
	queue *promreg.Gauges
	lag   prometheus.Histogram
	start *prometheus.HistogramVec
	// conflicts counts the status writes the host refused for a stale resource version.
	conflicts prometheus.Counter
	// writes counts the status writes by result.
	writes *prometheus.CounterVec
	// writeTime times the host's status writes of one status (sent ones only).
	writeTime prometheus.Histogram
}

func newPodMetrics(reg prometheus.Registerer) (*podMetrics, error) {
	m := &podMetrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_provider_site_pod_operations_total",
			Help: "Pod operations on sites, by site, operation (create, update, delete) and result (ok, rejected, error).",
		}, []string{"site", "operation", "result"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vk8s_provider_pods_waiting_for_site",
			Help: "Host pods bound to a virtual node whose site is not connected.",
		}),
		pods: promreg.NewGauges(prometheus.GaugeOpts{
			Name: "vk8s_provider_pods",
			Help: "Host pods bound to the virtual nodes of a site, by site and phase (Pending, Running, Succeeded, Failed, Unknown), from the provider's host pod cache.",
		}, []string{"site", "phase"}),
		queue: promreg.NewGauges(prometheus.GaugeOpts{
			Name: "vk8s_provider_site_queue_depth",
			Help: "Work items (pods, copies, sweeps) waiting in the queue of a site cluster's workers, by site (the Sites that share the cluster's connection, joined by commas).",
		}, []string{"site"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vk8s_provider_status_sync_lag_seconds",
			Help:    "Time from the provider seeing a site pod change the host pod's status to the host accepting that status.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		start: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vk8s_provider_pod_start_stage_seconds",
			Help: "Time a starting pod spent in each stage, from the host pod informer's event to the host accepting status Running: " +
				"handed (to CreatePod), queued (in its site's queue), sent (until the site accepted the create), " +
				"running_on_site (until the site pod was seen Running), host_status (until the host accepted Running), total.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"stage"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vk8s_provider_pod_status_conflicts_total",
			Help: "Host pod status writes refused because the provider's copy of the pod was behind the host's (each is written again at once on the latest version).",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_provider_pod_status_writes_total",
			Help: "Host pod status writes virtual-kubelet asked for, by result: written (the host accepted it), unchanged (not sent: the host pod showed that status already), failed.",
		}, []string{"result"}),
		writeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vk8s_provider_pod_status_write_seconds",
			Help: "Time the host took to accept (or refuse) a pod status the provider sent: the write, and the reads and writes again after a conflict. " +
				"The host_status stage less this is the time the status waited in virtual-kubelet's queue.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	var err error
	if m.writeTime, err = promreg.Register(reg, m.writeTime); err != nil {
		return nil, err
	}
	if m.conflicts, err = promreg.Register(reg, m.conflicts); err != nil {
		return nil, err
	}
	if m.writes, err = promreg.Register(reg, m.writes); err != nil {
		return nil, err
	}
	if m.start, err = promreg.Register(reg, m.start); err != nil {
		return nil, err
	}
	if m.ops, err = promreg.Register(reg, m.ops); err != nil {
		return nil, err
	}
	if m.waiting, err = promreg.Register(reg, m.waiting); err != nil {
		return nil, err
	}
	if m.pods, err = promreg.Register(reg, m.pods); err != nil {
		return nil, err
	}
	if m.queue, err = promreg.Register(reg, m.queue); err != nil {
		return nil, err
	}
	if m.lag, err = promreg.Register(reg, m.lag); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *podMetrics) op(site, operation string, err error, rejected bool) {
	result := "ok"
	switch {
	case rejected:
		result = "rejected"
	case err != nil:
		result = "error"
	}
	m.ops.WithLabelValues(site, operation, result).Inc()
}

// podPhases are the phases vk8s_provider_pods reports for every site, zero or not, so
// that a site's series do not come and go with its pods.
var podPhases = []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown}

// statusLag follows the host pods whose site status the provider has seen and the host
// does not show yet, for vk8s_provider_status_sync_lag_seconds.
type statusLag struct {
	hist prometheus.Histogram
	now  func() time.Time

	mu      sync.Mutex
	pending map[types.UID]pendingStatus
}

type pendingStatus struct {
	since time.Time
	key   string // namespace/name, to forget pods that went
}

// seen records that the site gave host pod host the status want: when it differs from the
// host's, a write is due, and its lag counts from the first such change not yet written.
func (l *statusLag) seen(host *corev1.Pod, want *corev1.PodStatus) {
	if host.Status.Phase == corev1.PodSucceeded || host.Status.Phase == corev1.PodFailed ||
		equality.Semantic.DeepEqual(&host.Status, want) {
		return // virtual-kubelet writes nothing for these
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pending[host.UID]; !ok {
		l.pending[host.UID] = pendingStatus{since: l.now(), key: host.Namespace + "/" + host.Name}
	}
}

// written observes the lag of a status the host accepted.
func (l *statusLag) written(uid types.UID) {
	l.mu.Lock()
	p, ok := l.pending[uid]
	delete(l.pending, uid)
	l.mu.Unlock()
	if ok {
		l.hist.Observe(l.now().Sub(p.since).Seconds())
	}
}

// prune forgets the pods for which exists says no.
func (l *statusLag) prune(exists func(key string, uid types.UID) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	maps.DeleteFunc(l.pending, func(uid types.UID, p pendingStatus) bool { return !exists(p.key, uid) })
}

// The stages of a pod's start, in order: the values of the stage label of
// vk8s_provider_pod_start_stage_seconds. Each is timed from the end of the one before.
const (
	// stageSeen is when the provider's host pod informer delivered the pending pod to
	// virtual-kubelet's event filter (Owns); it starts the clock and is no stage itself.
	stageSeen = iota
	// stageHanded ends when virtual-kubelet's pod worker called CreatePod.
	stageHanded
	// stageQueued ends when the site cluster's worker took the pod from its queue.
	stageQueued
	// stageSent ends when the site accepted the pod's create (its namespace and copies first).
	stageSent
	// stageRunningOnSite ends when the site pod informer showed the site pod Running.
	stageRunningOnSite
	// stageHostStatus ends when the host accepted the host pod's status Running.
	stageHostStatus
	stageCount
)

// stageNames are the stage label values, by stage; "total" is seen to host_status.
var stageNames = [stageCount]string{"", "handed", "queued", "sent", "running_on_site", "host_status"}

// PodStartStages returns the values of vk8s_provider_pod_start_stage_seconds' stage label
// in the order of a pod's start, "total" last.
func PodStartStages() []string {
	return append(slices.Clone(stageNames[stageSeen+1:]), "total")
}

// podStart follows the host pods that are starting, for
// vk8s_provider_pod_start_stage_seconds: the time of each stage's end, by host pod UID.
// Only pods seen pending are followed, and each stage is observed once per pod. A nil
// podStart (a Pods made without NewPods, in tests) follows nothing.
type podStart struct {
	hist *prometheus.HistogramVec
	now  func() time.Time

	mu   sync.Mutex
	pods map[types.UID]*startMarks
}

type startMarks struct {
	key string // namespace/name, to forget pods that went
	at  [stageCount]time.Time
}

func newPodStart(hist *prometheus.HistogramVec, now func() time.Time) *podStart {
	return &podStart{hist: hist, now: now, pods: map[types.UID]*startMarks{}}
}

// seen starts following a host pod that has not started: pending, not being deleted.
func (s *podStart) seen(pod *corev1.Pod) {
	if s == nil || pod.DeletionTimestamp != nil || (pod.Status.Phase != "" && pod.Status.Phase != corev1.PodPending) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pods[pod.UID]; !ok {
		m := &startMarks{key: pod.Namespace + "/" + pod.Name}
		m.at[stageSeen] = s.now()
		s.pods[pod.UID] = m
	}
}

// mark records the end of stage for a followed pod and observes the stage's duration. The
// stages before it that have no end yet end now (a site pod's Running event may arrive
// before its create's answer): their time went into the earliest of them. The last stage
// observes the total and forgets the pod.
func (s *podStart) mark(uid types.UID, stage int) {
	if s == nil {
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.pods[uid]
	if !ok || !m.at[stage].IsZero() {
		return
	}
	last := stageSeen
	for i := stageSeen + 1; i < stage; i++ {
		if !m.at[i].IsZero() {
			last = i
		}
	}
	for i := last + 1; i <= stage; i++ {
		m.at[i] = now
		s.hist.WithLabelValues(stageNames[i]).Observe(now.Sub(m.at[i-1]).Seconds())
	}
	if stage == stageHostStatus {
		s.hist.WithLabelValues("total").Observe(now.Sub(m.at[stageSeen]).Seconds())
		delete(s.pods, uid)
	}
}

// prune forgets the pods for which exists says no, and those followed for longer than
// maxAge (a pod that never runs: it fails, or waits for a site for good).
func (s *podStart) prune(exists func(key string, uid types.UID) bool, maxAge time.Duration) {
	if s == nil {
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.pods, func(uid types.UID, m *startMarks) bool {
		return now.Sub(m.at[stageSeen]) > maxAge || !exists(m.key, uid)
	})
}

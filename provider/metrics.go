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
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

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
	}
	var err error
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
	for uid, p := range l.pending {
		if !exists(p.key, uid) {
			delete(l.pending, uid)
		}
	}
}

// statusClient is the pod controller's host client: it tells lag each pod status the host
// accepted, which is where virtual-kubelet's status sync ends.
type statusClient struct {
	typedcorev1.PodsGetter
	lag *statusLag
}

// Pods returns the pods of namespace, their status writes followed.
func (c statusClient) Pods(namespace string) typedcorev1.PodInterface {
	return statusPods{PodInterface: c.PodsGetter.Pods(namespace), lag: c.lag}
}

type statusPods struct {
	typedcorev1.PodInterface
	lag *statusLag
}

// UpdateStatus writes the status and, when the host accepted it, observes its lag.
func (p statusPods) UpdateStatus(ctx context.Context, pod *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	out, err := p.PodInterface.UpdateStatus(ctx, pod, opts)
	if err == nil {
		p.lag.written(pod.UID)
	}
	return out, err
}

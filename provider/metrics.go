package provider

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// podMetrics are the pod lifecycle's Prometheus metrics.
type podMetrics struct {
	ops     *prometheus.CounterVec
	waiting prometheus.Gauge
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
	}
	for _, c := range []prometheus.Collector{m.ops, m.waiting} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register metric: %w", err)
			}
			// Another provider in this process (tests): share its collector.
			switch existing := are.ExistingCollector.(type) {
			case *prometheus.CounterVec:
				m.ops = existing
			case prometheus.Gauge:
				m.waiting = existing
			}
		}
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

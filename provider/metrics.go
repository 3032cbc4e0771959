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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vk8s-io/vk8s/promreg"
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
	var err error
	if m.ops, err = promreg.Register(reg, m.ops); err != nil {
		return nil, err
	}
	if m.waiting, err = promreg.Register(reg, m.waiting); err != nil {
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

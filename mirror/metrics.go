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

package mirror

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vk8s-io/vk8s/promreg"
)

// metrics are the mirror's Prometheus metrics.
type metrics struct {
	ops   *prometheus.CounterVec
	syncs *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_mirror_site_operations_total",
			Help: "Writes of mirrored objects to sites, by kind, operation (create, update, delete) and result (ok, error).",
		}, []string{"kind", "operation", "result"}),
		syncs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vk8s_mirror_sync_duration_seconds",
			Help:    "Time to bring one mirrored object to one site cluster, by kind and result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"kind", "result"}),
	}
	var err error
	if m.ops, err = promreg.Register(reg, m.ops); err != nil {
		return nil, err
	}
	if m.syncs, err = promreg.Register(reg, m.syncs); err != nil {
		return nil, err
	}
	return m, nil
}

// result is the result label of err.
func result(err error) string {
	if err != nil && !errors.Is(err, errSkip) {
		return "error"
	}
	return "ok"
}

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

package promreg

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Gauges is a gauge vector computed at scrape from state a part keeps anyway (informer
// caches, queues), so that no one has to keep a count in step by hand. Its function is
// set after registration: a part built again in the process (Register shares the
// collector) points it at its own state.
type Gauges struct {
	desc *prometheus.Desc

	mu sync.Mutex
	fn func(emit func(value float64, labelValues ...string))
}

// NewGauges returns a Gauges with no function: it reports nothing until Set.
func NewGauges(opts prometheus.GaugeOpts, labelNames []string) *Gauges {
	return &Gauges{desc: prometheus.NewDesc(prometheus.BuildFQName(opts.Namespace, opts.Subsystem, opts.Name),
		opts.Help, labelNames, opts.ConstLabels)}
}

// Set makes fn compute the gauges at each scrape: it calls emit once per series, with
// a value for every label name in order.
func (g *Gauges) Set(fn func(emit func(value float64, labelValues ...string))) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fn = fn
}

// Describe implements prometheus.Collector.
func (g *Gauges) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *Gauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	fn := g.fn
	g.mu.Unlock()
	if fn == nil {
		return
	}
	fn(func(value float64, labelValues ...string) {
		m, err := prometheus.NewConstMetric(g.desc, prometheus.GaugeValue, value, labelValues...)
		if err != nil {
			// A wrong number of label values is a bug of fn: the registry reports it.
			m = prometheus.NewInvalidMetric(g.desc, err)
		}
		ch <- m
	})
}

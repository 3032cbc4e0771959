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

package sitereg

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vk8s-io/vk8s/promreg"
)

// metrics are the registry's Prometheus metrics.
type metrics struct {
	connected     *prometheus.GaugeVec
	ready         *prometheus.GaugeVec
	nodes         *prometheus.GaugeVec
	probeDuration *prometheus.HistogramVec
	connections   prometheus.Gauge
	tcp           *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vk8s_sitereg_site_connected",
			Help: "1 when the site's API server answered the last probe, else 0.",
		}, []string{"site"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vk8s_sitereg_site_ready",
			Help: "1 when the site is connected and has a Ready node, else 0.",
		}, []string{"site"}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vk8s_sitereg_site_nodes",
			Help: "Number of the site's nodes, as last seen.",
		}, []string{"site"}),
		probeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vk8s_sitereg_probe_duration_seconds",
			Help:    "Duration of health probes of site clusters (one per shared connection), by result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vk8s_sitereg_connections",
			Help: "Number of open connections to site clusters; sites on one cluster with the same credentials share one.",
		}),
		tcp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vk8s_sitereg_tcp_connections",
			Help: "Number of open TCP connections to a site cluster's API server, by site connection (the first 12 hex digits of its key); a closed connection's series goes.",
		}, []string{"connection"}),
	}
	var err error
	if m.connected, err = promreg.Register(reg, m.connected); err != nil {
		return nil, err
	}
	if m.ready, err = promreg.Register(reg, m.ready); err != nil {
		return nil, err
	}
	if m.nodes, err = promreg.Register(reg, m.nodes); err != nil {
		return nil, err
	}
	if m.probeDuration, err = promreg.Register(reg, m.probeDuration); err != nil {
		return nil, err
	}
	if m.connections, err = promreg.Register(reg, m.connections); err != nil {
		return nil, err
	}
	if m.tcp, err = promreg.Register(reg, m.tcp); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) observeProbe(d time.Duration, err error) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.probeDuration.WithLabelValues(result).Observe(d.Seconds())
}

func (m *metrics) setSite(site string, connected, ready bool, nodes int32) {
	m.connected.WithLabelValues(site).Set(boolFloat(connected))
	m.ready.WithLabelValues(site).Set(boolFloat(ready))
	m.nodes.WithLabelValues(site).Set(float64(nodes))
}

func (m *metrics) deleteSite(site string) {
	m.connected.DeleteLabelValues(site)
	m.ready.DeleteLabelValues(site)
	m.nodes.DeleteLabelValues(site)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

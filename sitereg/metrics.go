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
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vk8s-io/vk8s/promreg"
)

// metrics are the registry's Prometheus metrics.
type metrics struct {
	connected       *prometheus.GaugeVec
	ready           *prometheus.GaugeVec
	nodes           *prometheus.GaugeVec
	heartbeat       *prometheus.GaugeVec
	probeDuration   *prometheus.HistogramVec
	connections     prometheus.Gauge
	tcp             *prometheus.GaugeVec
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
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
		heartbeat: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vk8s_sitereg_site_last_heartbeat_timestamp_seconds",
			Help: "When the site's API server last answered a probe (the Site's status.lastHeartbeatTime), in Unix seconds; time() minus it is the heartbeat's age.",
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
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_sitereg_site_requests_total",
			Help: "Calls to the sites' API servers, by site, verb (GET, LIST, WATCH, POST, PUT, PATCH, DELETE) and code (the HTTP status, or \"error\" when no answer came).",
		}, []string{"site", "verb", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vk8s_sitereg_site_request_duration_seconds",
			Help:    "Time until a site's API server answered a call (the response headers: a watch counts until it is established), by site and verb.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"site", "verb"}),
	}
	var err error
	for _, v := range []**prometheus.GaugeVec{&m.connected, &m.ready, &m.nodes, &m.heartbeat, &m.tcp} {
		if *v, err = promreg.Register(reg, *v); err != nil {
			return nil, err
		}
	}
	if m.probeDuration, err = promreg.Register(reg, m.probeDuration); err != nil {
		return nil, err
	}
	if m.connections, err = promreg.Register(reg, m.connections); err != nil {
		return nil, err
	}
	if m.requests, err = promreg.Register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.requestDuration, err = promreg.Register(reg, m.requestDuration); err != nil {
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

func (m *metrics) setSite(site string, connected, ready bool, nodes int32, heartbeat time.Time) {
	m.connected.WithLabelValues(site).Set(boolFloat(connected))
	m.ready.WithLabelValues(site).Set(boolFloat(ready))
	m.nodes.WithLabelValues(site).Set(float64(nodes))
	if !heartbeat.IsZero() {
		m.heartbeat.WithLabelValues(site).Set(float64(heartbeat.UnixNano()) / 1e9)
	}
}

func (m *metrics) deleteSite(site string) {
	m.connected.DeleteLabelValues(site)
	m.ready.DeleteLabelValues(site)
	m.nodes.DeleteLabelValues(site)
	m.heartbeat.DeleteLabelValues(site)
	m.deleteCalls(site)
}

// deleteCalls drops the site call series of a site label value.
func (m *metrics) deleteCalls(site string) {
	m.requests.DeletePartialMatch(prometheus.Labels{"site": site})
	m.requestDuration.DeletePartialMatch(prometheus.Labels{"site": site})
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// siteKey carries the Site a call to a shared connection is made for (WithSite).
type siteKey struct{}

// WithSite returns ctx naming the Site its calls to a site's API server are made for, so
// that the calls count under that Site (vk8s_sitereg_site_requests_total) also when its
// connection is shared with other Sites on the same cluster.
func WithSite(ctx context.Context, site string) context.Context {
	return context.WithValue(ctx, siteKey{}, site)
}

// SiteLabel is the site label of what concerns a connection that Sites share and no one
// Site in particular (its node watch, its probes, its work queue): the Site, or the Sites
// in name order joined by commas.
func SiteLabel(sites []string) string {
	return strings.Join(slices.Sorted(slices.Values(sites)), ",")
}

// wrapCalls is the connection's RoundTripper wrapper that counts and times every call
// under the Site of the request's context (WithSite), else site().
func (m *metrics) wrapCalls(site func() string) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			s, _ := req.Context().Value(siteKey{}).(string)
			if s == "" {
				s = site()
			}
			if s == "" {
				// A closed connection's last tries (errConnClosed): no Site to count them for.
				return rt.RoundTrip(req)
			}
			verb := requestVerb(req)
			start := time.Now()
			resp, err := rt.RoundTrip(req)
			m.requestDuration.WithLabelValues(s, verb).Observe(time.Since(start).Seconds())
			code := "error"
			if err == nil {
				code = strconv.Itoa(resp.StatusCode)
			}
			m.requests.WithLabelValues(s, verb, code).Inc()
			return resp, err
		})
	}
}

// requestVerb is the verb of a call to an API server, as its audit log names it but in
// capitals: a GET of a collection is a LIST, one with watch=true a WATCH.
func requestVerb(req *http.Request) string {
	if req.Method != http.MethodGet {
		return req.Method
	}
	q := req.URL.Query()
	if w := q.Get("watch"); w == "true" || w == "1" {
		return "WATCH"
	}
	if isCollection(req.URL.Path) {
		return "LIST"
	}
	return http.MethodGet
}

// isCollection says whether an API path names a collection: /api/v1/<resource>,
// /api/v1/namespaces/<ns>/<resource>, and the same under /apis/<group>/<version>; a
// namespace itself (/api/v1/namespaces/<ns>) is an object. Paths outside the resource
// API (/version, /healthz) are not collections.
func isCollection(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return false
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) != 2 {
		parts = parts[2:]
	}
	return len(parts) == 1
}

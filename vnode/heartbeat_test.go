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

package vnode

import (
	"math"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/vk8s-io/vk8s/sitereg"
)

func TestHeartbeatRate(t *testing.T) {
	for _, tc := range []struct {
		lease  int32
		status time.Duration
		want   float64
	}{
		// A Lease every 10 s, GET and PATCH of the Node every minute, doubled.
		{lease: 40, status: time.Minute, want: 2 * (0.1 + 2.0/60)},
		{lease: 40, status: 5 * time.Minute, want: 2 * (0.1 + 2.0/300)},
		{lease: 80, status: 5 * time.Minute, want: 2 * (0.05 + 2.0/300)},
	} {
		if got := heartbeatRate(tc.lease, tc.status); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("heartbeatRate(%d, %s) = %v, want %v", tc.lease, tc.status, got, tc.want)
		}
	}
}

func TestHeartbeatLimiterFollowsNodes(t *testing.T) {
	h := newHeartbeatLimiter(100, 200, 0.25)
	for _, tc := range []struct {
		add  int
		want float32
	}{
		{add: 0, want: 100},
		{add: 3000, want: 850},
		{add: -1000, want: 600},
		{add: -5000, want: 100}, // never below the base
		{add: 4, want: 101},
	} {
		h.add(tc.add)
		if got := h.QPS(); got != tc.want {
			t.Errorf("after add(%d): QPS %v, want %v", tc.add, got, tc.want)
		}
	}
	var none *heartbeatLimiter
	none.add(1) // a client without one: no panic
}

func TestNewNodesHeartbeatClient(t *testing.T) {
	reg, err := sitereg.New(sitereg.Config{MetricsRegisterer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	host := fake.NewClientset()
	for _, tc := range []struct {
		name        string
		cfg         *rest.Config
		wantOwn     bool
		wantLimiter float32 // base QPS; 0: no limiter that follows the nodes
	}{
		{name: "none: Host", cfg: nil},
		{name: "unset QPS: DefaultHostQPS", cfg: &rest.Config{Host: "https://host"}, wantOwn: true, wantLimiter: DefaultHostQPS},
		{name: "QPS set", cfg: &rest.Config{Host: "https://host", QPS: 30, Burst: 60}, wantOwn: true, wantLimiter: 30},
		{name: "no client-side limit", cfg: &rest.Config{Host: "https://host", QPS: -1}, wantOwn: true},
		{name: "own limiter", cfg: &rest.Config{Host: "https://host", RateLimiter: flowcontrol.NewFakeAlwaysRateLimiter()}, wantOwn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewNodes(NodesConfig{Host: host, HeartbeatConfig: tc.cfg, Registry: reg, Endpoint: translate.Endpoint{Address: "10.0.0.1", Port: 10250}})
			if err != nil {
				t.Fatal(err)
			}
			if own := m.heartbeats != host; own != tc.wantOwn {
				t.Errorf("client of its own: %v, want %v", own, tc.wantOwn)
			}
			switch {
			case tc.wantLimiter == 0 && m.limiter != nil:
				t.Errorf("limiter at %v QPS, want none", m.limiter.QPS())
			case tc.wantLimiter != 0 && m.limiter == nil:
				t.Errorf("no limiter, want one from %v QPS", tc.wantLimiter)
			case tc.wantLimiter != 0:
				if got := m.limiter.QPS(); got != tc.wantLimiter {
					t.Errorf("limiter at %v QPS, want %v", got, tc.wantLimiter)
				}
				// Sized for the defaults: Leases of 40 s, status every StatusInterval.
				if want := heartbeatRate(40, m.cfg.StatusInterval); m.limiter.perNode != want {
					t.Errorf("per node %v, want %v", m.limiter.perNode, want)
				}
			}
			if tc.cfg != nil && m.limiter != nil && tc.cfg.RateLimiter != nil {
				t.Error("the limiter was set in the caller's config, not in a copy")
			}
		})
	}
}

// The host tells a virtual node's health by its Lease (every 10 s); its status is written
// when it changes and otherwise every 5 minutes, as a kubelet does, not every minute.
func TestNewNodesDefaults(t *testing.T) {
	reg, err := sitereg.New(sitereg.Config{MetricsRegisterer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewNodes(NodesConfig{Host: fake.NewClientset(), Registry: reg, Endpoint: translate.Endpoint{Address: "10.0.0.1", Port: 10250}})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.LeaseDurationSeconds != 40 || m.cfg.StatusInterval != 5*time.Minute {
		t.Errorf("Lease %d s, status every %s; want 40 s and 5m", m.cfg.LeaseDurationSeconds, m.cfg.StatusInterval)
	}
}

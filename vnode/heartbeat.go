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
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Client rate limits towards the host when a configuration sets none.
const (
	DefaultHostQPS   = 100
	DefaultHostBurst = 200
)

// heartbeatRate is what one virtual node's heartbeats ask of the host per second when
// nothing changes: a Lease renewal every quarter of the Lease's duration (as a kubelet
// renews), and a PATCH of the Node every statusInterval (counted twice, as when it was a
// GET and a PATCH), doubled for conflicts, status changes and registration.
func heartbeatRate(leaseDurationSeconds int32, statusInterval time.Duration) float64 {
	renew := time.Duration(leaseDurationSeconds) * time.Second / 4
	return 2 * (1/renew.Seconds() + 2/statusInterval.Seconds())
}

// heartbeatLimiter is the client-side rate limit (client-go's flowcontrol.RateLimiter) of
// the host client the heartbeats renew Leases and write node status with. Their
// requests grow with the number of virtual nodes, so the limit does too: base plus perNode
// for each virtual node running. A fixed limit either throttles the heartbeats once there
// are enough nodes (100 requests a second are 1,000 Lease renewals every 10 s and nothing
// else), so that Leases are renewed late and the host marks the nodes NotReady, or is so
// high that it means nothing while the nodes register.
type heartbeatLimiter struct {
	base    float64
	burst   int
	perNode float64

	mu    sync.Mutex
	nodes int
	l     *rate.Limiter
}

func newHeartbeatLimiter(qps float32, burst int, perNode float64) *heartbeatLimiter {
	return &heartbeatLimiter{base: float64(qps), burst: burst, perNode: perNode, l: rate.NewLimiter(rate.Limit(qps), burst)}
}

// add changes the number of virtual nodes by delta and the limit with it. A nil
// heartbeatLimiter (a client without one) does nothing.
func (h *heartbeatLimiter) add(delta int) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodes = max(h.nodes+delta, 0)
	// One request per node may go at once: renewals that fall together are not delayed.
	h.l.SetLimit(rate.Limit(h.base + float64(h.nodes)*h.perNode))
	h.l.SetBurst(h.burst + h.nodes)
}

// TryAccept implements flowcontrol.RateLimiter.
func (h *heartbeatLimiter) TryAccept() bool { return h.l.Allow() }

// Accept implements flowcontrol.RateLimiter.
func (h *heartbeatLimiter) Accept() { time.Sleep(h.l.Reserve().Delay()) }

// Stop implements flowcontrol.RateLimiter.
func (h *heartbeatLimiter) Stop() {}

// QPS implements flowcontrol.RateLimiter.
func (h *heartbeatLimiter) QPS() float32 { return float32(h.l.Limit()) }

// Wait implements flowcontrol.RateLimiter.
func (h *heartbeatLimiter) Wait(ctx context.Context) error { return h.l.Wait(ctx) }

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
	"testing"

	"github.com/vk8s-io/vk8s/vnode"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

func TestWithRateLimits(t *testing.T) {
	limiter := flowcontrol.NewFakeAlwaysRateLimiter()
	for _, tc := range []struct {
		name      string
		cfg       rest.Config
		wantQPS   float32
		wantBurst int
	}{
		// client-go's default (5/s) would hold 1,000 Sites' heartbeats back.
		{name: "unset: the provider's defaults", cfg: rest.Config{}, wantQPS: vnode.DefaultHostQPS, wantBurst: vnode.DefaultHostBurst},
		{name: "set: kept", cfg: rest.Config{QPS: 7, Burst: 9}, wantQPS: 7, wantBurst: 9},
		{name: "no client-side limit: kept", cfg: rest.Config{QPS: -1}, wantQPS: -1},
		{name: "own limiter: kept", cfg: rest.Config{RateLimiter: limiter}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.cfg
			got := withRateLimits(&in)
			if got.QPS != tc.wantQPS || got.Burst != tc.wantBurst {
				t.Errorf("QPS %v, Burst %d; want %v, %d", got.QPS, got.Burst, tc.wantQPS, tc.wantBurst)
			}
			if in.QPS != tc.cfg.QPS || in.Burst != tc.cfg.Burst {
				t.Errorf("the input was changed: QPS %v, Burst %d", in.QPS, in.Burst)
			}
		})
	}
}

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
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterSharesTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "vk8s_test_total", Help: "test"}
	first, err := Register(reg, prometheus.NewCounterVec(opts, []string{"site"}))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, prometheus.NewCounterVec(opts, []string{"site"}))
	if err != nil || second != first {
		t.Fatalf("second registration: %v, same collector %v; want the first one back", err, second == first)
	}
	// Another type under the name is an error.
	if _, err := Register(reg, prometheus.NewCounter(opts)); err == nil {
		t.Error("a Counter under a CounterVec's name was accepted")
	}
}

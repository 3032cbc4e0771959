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
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

func TestGaugesComputedAtScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.GaugeOpts{Name: "vk8s_test_things", Help: "test"}
	first, err := Register(reg, NewGauges(opts, []string{"site"}))
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "vk8s_test_things"); n != 0 {
		t.Errorf("%d series before Set, want none", n)
	}
	n := 1.0
	first.Set(func(emit func(float64, ...string)) { emit(n, "site1"); emit(2, "site2") })
	n = 3
	want := "# HELP vk8s_test_things test\n# TYPE vk8s_test_things gauge\nvk8s_test_things{site=\"site1\"} 3\nvk8s_test_things{site=\"site2\"} 2\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vk8s_test_things"); err != nil {
		t.Error(err)
	}
	// A second part takes the registered collector over.
	second, err := Register(reg, NewGauges(opts, []string{"site"}))
	if err != nil || second != first {
		t.Fatalf("second registration: %v, same collector %v", err, second == first)
	}
	second.Set(func(emit func(float64, ...string)) { emit(7, "site3") })
	if v := testutil.ToFloat64(second); v != 7 {
		t.Errorf("after the second Set: %v, want 7", v)
	}
	// A wrong number of label values is reported, not a panic.
	second.Set(func(emit func(float64, ...string)) { emit(1) })
	if _, err := reg.Gather(); err == nil {
		t.Error("a series without its site label was gathered")
	}
}

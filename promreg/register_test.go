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

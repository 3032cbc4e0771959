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

package shard

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Timings of the test: a tenth of the defaults'.
const (
	testLease = 1200 * time.Millisecond
	testRenew = 700 * time.Millisecond
	testRetry = 100 * time.Millisecond
	testN     = 32
)

// replica is a Sharder of the test, whose API server connection can be cut (a SIGKILL as
// the others see it: no more renewals, nothing released).
type replica struct {
	s      *Sharder
	cut    atomic.Bool
	cancel context.CancelFunc
	done   chan error
}

func startReplica(t *testing.T, cfg *rest.Config, id string) *replica {
	t.Helper()
	r := &replica{done: make(chan error, 1)}
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if r.cut.Load() {
				return nil, errors.New("connection cut by the test")
			}
			return rt.RoundTrip(req)
		})
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.s, err = New(Config{Client: cs, Namespace: "vk8s-system", Identity: id, Shards: testN,
		LeaseDuration: testLease, RenewDeadline: testRenew, RetryPeriod: testRetry, Log: testr.New(t).WithName(id),
		MetricsRegisterer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	go func() { r.done <- r.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Logf("replica %s: %v", id, err)
		}
	})
	return r
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// owners says who acts for each shard now, and fails the test when two do at once.
type owners struct {
	t  *testing.T
	mu sync.Mutex
	rs []*replica
}

func (o *owners) add(r *replica) {
	o.mu.Lock()
	o.rs = append(o.rs, r)
	o.mu.Unlock()
}

// snapshot returns the owner of each shard ("" for none).
func (o *owners) snapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, testN)
	for i := range testN {
		for _, r := range o.rs {
			if r.s.ownsShard(i) {
				if out[i] != "" {
					o.t.Errorf("shard %d acted for by %s and %s at once", i, out[i], r.s.Identity())
				}
				out[i] = r.s.Identity()
			}
		}
	}
	return out
}

// watch checks for two owners at once every few milliseconds until the test ends.
func (o *owners) watch(ctx context.Context) {
	go func() {
		for ctx.Err() == nil {
			o.snapshot()
			time.Sleep(2 * time.Millisecond)
		}
	}()
}

// settled waits until every shard has the owner the hashing gives it among want, and
// returns how long that took.
func (o *owners) settled(t *testing.T, want []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	plan := Plan(testN, want)
	var got []string
	for time.Since(start) < within {
		got = o.snapshot()
		if strings.Join(got, ",") == strings.Join(plan, ",") {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("after %v the shards are owned by %v, want %v", within, got, plan)
	return 0
}

// TestLeases runs the Lease protocol through a real API server (envtest): three replicas
// share the shards as Assign says; one that stops renewing (its connection cut, as a
// SIGKILL) loses its shards to the others once its member Lease expires; one that stops
// cleanly hands them on at once; one that joins takes its part. At no time do two
// replicas act for one shard.
func TestLeases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd and a kube-apiserver")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: toolsDir(t), ControlPlaneStartTimeout: time.Minute}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start an API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cs := kubernetes.NewForConfigOrDie(cfg)
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vk8s-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	o := &owners{t: t}
	o.watch(t.Context())
	a, b, c := startReplica(t, cfg, "a"), startReplica(t, cfg, "b"), startReplica(t, cfg, "c")
	o.add(a)
	o.add(b)
	o.add(c)
	took := o.settled(t, []string{"a", "b", "c"}, 10*time.Second)
	t.Logf("three replicas own their shards %v after start", took)

	// SIGKILL, as the others see it: b neither renews nor releases anything.
	b.cut.Store(true)
	killed := time.Now()
	took = o.settled(t, []string{"a", "c"}, testLease+testRenew+2*time.Second)
	t.Logf("takeover of a dead replica's shards: %v (lease duration %v)", took, testLease)
	if took < testRenew {
		t.Errorf("the shards of a replica that stopped renewing moved after %v, before its renew deadline %v", took, testRenew)
	}
	select {
	case err := <-b.done:
		if err == nil || !strings.Contains(err.Error(), "not renewed") {
			t.Errorf("the cut replica's Run returned %v, want the error that it stopped acting", err)
		}
		b.done <- err
	case <-time.After(time.Until(killed.Add(5 * time.Second))):
		t.Error("the cut replica's Run did not return")
	}

	// A replica that joins takes its part, handed on by the others.
	d := startReplica(t, cfg, "d")
	o.add(d)
	took = o.settled(t, []string{"a", "c", "d"}, testLease+2*testRenew+2*time.Second)
	t.Logf("a replica joined and owns its shards after %v", took)

	// One that stops cleanly releases its shards at once.
	c.cancel()
	took = o.settled(t, []string{"a", "d"}, testLease)
	t.Logf("a replica stopped cleanly; its shards moved in %v", took)

	if got, want := testutil.ToFloat64(a.s.ownedGauge), float64(len(a.s.Owned())); got != want || want == 0 {
		t.Errorf("vk8s_shard_owned_shards of a = %v, want %v (and not 0)", got, want)
	}
	if got := testutil.ToFloat64(a.s.membersGauge); got != 2 {
		t.Errorf("vk8s_shard_members of a = %v, want 2 (a and d)", got)
	}

	// The stopped one's member Lease is gone.
	members, err := cs.CoordinationV1().Leases("vk8s-system").List(t.Context(), metav1.ListOptions{LabelSelector: LabelRole + "=" + RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range members.Items {
		if l.Name == MemberPrefix+"c" {
			t.Errorf("member Lease %s is left after a clean stop", l.Name)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"})
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"identity", Config{Client: cs, Namespace: "n", Identity: "Not_A_Name"}, `identity "Not_A_Name"`},
		{"timings", Config{Client: cs, Namespace: "n", Identity: "a", LeaseDuration: time.Second, RenewDeadline: 2 * time.Second}, "want lease duration > renew deadline"},
		{"shards", Config{Client: cs, Namespace: "n", Identity: "a", Shards: -1}, "shards -1"},
		{"namespace", Config{Client: cs, Identity: "a"}, "namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// toolsDir holds etcd and kube-apiserver (hack/tools.sh).
func toolsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VK8S_TOOLS_DIR")
	if dir == "" {
		out, err := exec.Command("../hack/tools.sh", "dir").Output()
		if err != nil {
			t.Fatalf("hack/tools.sh dir: %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		t.Fatalf("kube-apiserver is not built (%v): run make tools", err)
	}
	return dir
}

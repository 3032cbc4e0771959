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

package e2e

import (
	"context"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/lab"
)

// topTimeout bounds the waits on metrics-server, which scrapes every 15 s in the lab and
// needs two scrapes before it has a pod's CPU rate.
const topTimeout = 3 * time.Minute

// TestTop reads the virtual nodes' resource metrics through the host's metrics.k8s.io:
// lab.Up runs metrics-server against the host and registers it as an APIService; it scrapes
// the provider's kubelet API at each virtual node's advertised address and port (or the
// node-named path its annotation gives), verifying the provider's certificate against the
// host CA and presenting the host's admin certificate.
func TestTop(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	const ns, node = "top-e2e", "site1-node1"
	hostNamespace(t, host, ns)
	waitAllVirtualNodes(t, host)
	p := testPod("top-pod", node)
	p.Namespace = ns
	// The site's kwok reports the usage these annotations give (the lab's ClusterResourceUsage).
	p.Annotations = map[string]string{"kwok.x-k8s.io/usage-cpu": "250m", "kwok.x-k8s.io/usage-memory": "300Mi"}
	mustCreate(t, host, p)
	pollPod(t, host, client.ObjectKey{Namespace: ns, Name: p.Name}, "Running", time.Minute, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})

	t.Run("the APIService is Available and answers through the aggregator", func(t *testing.T) {
		waitFor(t, "APIService "+lab.MetricsAPIService+" Available", func(ctx context.Context) (bool, error) {
			as := &unstructured.Unstructured{}
			as.SetAPIVersion("apiregistration.k8s.io/v1")
			as.SetKind("APIService")
			if err := host.Get(ctx, client.ObjectKey{Name: lab.MetricsAPIService}, as); err != nil {
				return false, err
			}
			ok, _ := lab.APIServiceAvailable(as)
			return ok, nil
		})
		out := kubectl(t, "host", "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
		if !strings.Contains(out, `"kind":"NodeMetricsList"`) {
			t.Errorf("GET /apis/metrics.k8s.io/v1beta1/nodes: %s, want a NodeMetricsList", out)
		}
	})

	t.Run("metrics-server scrapes the provider with TLS verified and authenticated", func(t *testing.T) {
		// The host's API server verifies the provider's certificate too: once kubectl logs
		// answers, the provider serves its signed certificate, so metrics-server's scrapes
		// from here on must not fail on TLS or authentication.
		waitFor(t, "the host's API server to reach the provider for kubectl logs", func(ctx context.Context) (bool, error) {
			_, err := kubectlErr(t, "host", "logs", "-n", ns, p.Name, "--tail=1")
			return err == nil, nil
		})
		from := topLogSize(t)
		var log string
		err := wait.PollUntilContextTimeout(t.Context(), time.Second, topTimeout, true, func(context.Context) (bool, error) {
			log = topLogSince(t, from)
			// Two finished cycles: the first may have started before the provider was reachable.
			return strings.Count(log, `"Scrape finished"`) >= 2, nil
		})
		if err != nil {
			t.Fatalf("metrics-server finished fewer than 2 scrape cycles in %s; log %s since the test began:\n%s", topTimeout, fleet.MetricsServerLog(), log)
		}
		scraped := false
		for _, line := range strings.Split(log, "\n") {
			switch {
			case strings.Contains(line, `"Failed to scrape node"`) && topDeniedRE.MatchString(line):
				t.Errorf("metrics-server could not scrape the provider: %s", line)
			case topNodeCountRE.MatchString(line),
				strings.Contains(line, `"Failed getting complete node metric"`),
				strings.Contains(line, `"Failed to scrape node"`) && topStatusRE.MatchString(line):
				// The provider answered (data, an incomplete metric set, or an HTTP error
				// after authentication): TLS and authentication passed.
				scraped = true
			}
		}
		if !scraped {
			t.Errorf("metrics-server's log shows no answer from the provider:\n%s", log)
		}
	})

	t.Run("kubectl top node and pod print the site's numbers", func(t *testing.T) {
		if _, ok := fleet.SiteNodeIP(); !ok {
			// Where the sites' API servers cannot reach their nodes' resource metrics there
			// are no numbers to show: kubectl top must then fail at once with a clear
			// error, not hang.
			for _, args := range [][]string{{"top", "node", node}, {"top", "pod", "-n", ns, p.Name}} {
				start := time.Now()
				out, err := kubectlErr(t, "host", append(args, "--request-timeout=20s")...)
				took := time.Since(start)
				t.Logf("kubectl %s (%s): %v", strings.Join(args, " "), took.Round(time.Millisecond), err)
				if err == nil {
					t.Errorf("kubectl %s printed %q although site1 serves no resource metrics", strings.Join(args, " "), out)
				} else if !strings.Contains(err.Error(), "not found") && !strings.Contains(err.Error(), "not available") {
					t.Errorf("kubectl %s: %v; want a not found / not available error", strings.Join(args, " "), err)
				}
				if took > 30*time.Second {
					t.Errorf("kubectl %s took %s; want a prompt answer", strings.Join(args, " "), took)
				}
			}
			t.Skip("the site nodes are at loopback, where their API servers proxy to none (the lab could not make its kubelet network): numbers cannot exist")
		}
		nodeOut := topPoll(t, []string{"top", "node", node, "--no-headers"}, topNodeRE)
		t.Logf("kubectl top node %s: %s", node, nodeOut)
		podOut := topPoll(t, []string{"top", "pod", "-n", ns, p.Name, "--no-headers"}, topPodRE)
		t.Logf("kubectl top pod %s: %s", p.Name, podOut)
		// The pod's numbers are the site's: kwok's 250m and 300Mi (the CPU is a rate
		// metrics-server takes over two scrapes, so it may be off by a little). The node's are
		// its pods' plus the lab node's own 50m and 256Mi, so at least the pod's.
		f := strings.Fields(podOut)
		if cpu := resource.MustParse(f[1]); f[2] != "300Mi" || absDiff(cpu.MilliValue(), 250) > 10 {
			t.Errorf("kubectl top pod: %q, want 250m (within 10m) and 300Mi, the site's usage", podOut)
		}
		f = strings.Fields(nodeOut)
		if cpu, mem := resource.MustParse(f[1]), resource.MustParse(f[3]); cpu.MilliValue() < 250 || mem.Value() < 300<<20 {
			t.Errorf("kubectl top node: %q, want at least the pod's 250m and 300Mi", nodeOut)
		}
	})

	t.Run("a metrics-server that died is shown by Status and started again by Up", func(t *testing.T) {
		st, err := fleet.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ms := findComponent(st, "host", lab.MetricsServerComponent)
		if ms == nil || !ms.Running || ms.Log != fleet.MetricsServerLog() {
			t.Fatalf("status of the host's %s: %+v, want it running with its log", lab.MetricsServerComponent, ms)
		}
		if err := syscall.Kill(ms.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "status to show metrics-server stopped", func(ctx context.Context) (bool, error) {
			st, err := fleet.Status(ctx)
			return err == nil && !findComponent(st, "host", lab.MetricsServerComponent).Running, nil
		})
		// Up returns once the host reports the APIService Available again.
		if err := fleet.Up(t.Context()); err != nil {
			t.Fatalf("Up after metrics-server died: %v", err)
		}
		st, _ = fleet.Status(t.Context())
		if again := findComponent(st, "host", lab.MetricsServerComponent); again == nil || !again.Running || again.PID == ms.PID {
			t.Errorf("after Up: %+v, want a new running metrics-server", again)
		}
		kubectl(t, "host", "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
	})
}

var (
	// topDeniedRE matches a scrape error of TLS, credentials or the port.
	topDeniedRE = regexp.MustCompile(`x509|tls:|certificate|status: \\?"40[13] |connection refused`)
	// topNodeCountRE matches a scrape cycle that got metrics of at least one node.
	topNodeCountRE = regexp.MustCompile(`"Scrape finished".*nodeCount=[1-9]`)
	// topStatusRE matches an HTTP error status the provider answered with.
	topStatusRE = regexp.MustCompile(`request failed, status: \\?"[2-5][0-9][0-9] `)
	// topNodeRE is a `kubectl top node --no-headers` line: name, CPU, CPU%, memory, memory%.
	topNodeRE = regexp.MustCompile(`^\S+\s+\d+m?\s+\d+%\s+\d+(Ki|Mi|Gi)?\s+\d+%$`)
	// topPodRE is a `kubectl top pod --no-headers` line: name, CPU, memory.
	topPodRE = regexp.MustCompile(`^\S+\s+\d+m?\s+\d+(Ki|Mi|Gi)?$`)
)

// topPoll runs kubectl until its output is one line matching re, and returns it.
func topPoll(t *testing.T, args []string, re *regexp.Regexp) string {
	t.Helper()
	var out string
	var lastErr error
	err := wait.PollUntilContextTimeout(t.Context(), 2*time.Second, topTimeout, true, func(context.Context) (bool, error) {
		out, lastErr = kubectlErr(t, "host", args...)
		out = strings.TrimSpace(out)
		return lastErr == nil && re.MatchString(out), nil
	})
	if err != nil {
		t.Fatalf("kubectl %s: no numbers in %s although site1's nodes carry %s and their API server reaches them: last output %q, error %v; "+
			"metrics-server's log (%s) says what the provider's /metrics/resource held:\n%s",
			strings.Join(args, " "), topTimeout, vk8sv1.AnnotationResourceMetricsPath, out, lastErr,
			fleet.MetricsServerLog(), topLogTail(t))
	}
	return out
}

// topLogSize is the current size of metrics-server's log.
func topLogSize(t *testing.T) int64 {
	t.Helper()
	info, err := os.Stat(fleet.MetricsServerLog())
	if err != nil {
		t.Fatalf("metrics-server log: %v (lab.Up runs metrics-server)", err)
	}
	return info.Size()
}

// topLogSince is metrics-server's log from byte offset from on.
func topLogSince(t *testing.T, from int64) string {
	t.Helper()
	raw, err := os.ReadFile(fleet.MetricsServerLog())
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) < from {
		return string(raw)
	}
	return string(raw[from:])
}

// topLogTail is the end of metrics-server's log.
func topLogTail(t *testing.T) string {
	t.Helper()
	log := topLogSince(t, 0)
	if len(log) > 3000 {
		log = log[len(log)-3000:]
	}
	return log
}

// absDiff is |a-b|.
func absDiff(a, b int64) int64 {
	if a < b {
		return b - a
	}
	return a - b
}

package kubeletapi

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

var t0 = metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))

// siteNodeSummary is what a site kubelet reports: one of our pods, one of another tenant.
func siteNodeSummary(node string, cpu uint64) *statsv1alpha1.Summary {
	return &statsv1alpha1.Summary{
		Node: statsv1alpha1.NodeStats{
			NodeName:  node,
			StartTime: t0,
			CPU:       &statsv1alpha1.CPUStats{Time: t0, UsageNanoCores: ptr.To(cpu), UsageCoreNanoSeconds: ptr.To(cpu * 1000)},
			Memory:    &statsv1alpha1.MemoryStats{Time: t0, WorkingSetBytes: ptr.To(uint64(1 << 30)), UsageBytes: ptr.To(uint64(2 << 30))},
		},
		Pods: []statsv1alpha1.PodStats{
			{
				PodRef:    statsv1alpha1.PodReference{Name: "web-" + node, Namespace: "acme-demo", UID: "site-uid"},
				StartTime: t0,
				Containers: []statsv1alpha1.ContainerStats{{
					Name: "app", StartTime: t0,
					CPU:    &statsv1alpha1.CPUStats{Time: t0, UsageCoreNanoSeconds: ptr.To(uint64(2e9))},
					Memory: &statsv1alpha1.MemoryStats{Time: t0, WorkingSetBytes: ptr.To(uint64(4096))},
				}},
				CPU:         &statsv1alpha1.CPUStats{Time: t0, UsageCoreNanoSeconds: ptr.To(uint64(2e9))},
				Memory:      &statsv1alpha1.MemoryStats{Time: t0, WorkingSetBytes: ptr.To(uint64(4096))},
				VolumeStats: []statsv1alpha1.VolumeStats{{Name: "data", PVCRef: &statsv1alpha1.PVCReference{Name: "data", Namespace: "acme-demo"}}},
			},
			{PodRef: statsv1alpha1.PodReference{Name: "x", Namespace: "other-demo", UID: "u2"}, StartTime: t0},
		},
	}
}

// world is the fixture of the server tests: site1 (PerNode: node1 and node2 are virtual
// nodes site1-node1 and site1-node2) runs host pod demo/web-1 on node1; site2 (Aggregate:
// virtual node site2 stands for n1 and n2) runs demo/web-n1 and demo/web-n2.
type world struct {
	site1, site2 *fakeSite
	resolver     *fakeResolver

	mu      sync.Mutex
	logsURL *url.URL
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{site1: newFakeSite(t, "site1"), site2: newFakeSite(t, "site2")}
	w.resolver = &fakeResolver{
		pods: map[string]*PodTarget{
			"demo/web-1": {Node: "site1-node1", Site: w.site1.conn, Namespace: "acme-demo", Name: "web-1", SiteNode: "node1"},
		},
		nodes: map[string]*NodeTarget{
			"site1-node1": {Site: w.site1.conn, SiteNodes: []string{"node1"}},
			"site1-node2": {Site: w.site1.conn, SiteNodes: []string{"node2"}},
			"site2":       {Site: w.site2.conn, SiteNodes: []string{"n1", "n2"}},
		},
		hostPods: map[string]HostPod{
			"site1/acme-demo/web-node1": {Namespace: "demo", Name: "web-1", UID: "uid-1"},
			"site2/acme-demo/web-n1":    {Namespace: "demo", Name: "web-n1", UID: "uid-n1"},
			"site2/acme-demo/web-n2":    {Namespace: "demo", Name: "web-n2", UID: "uid-n2"},
		},
		nodePods: map[string][]*corev1.Pod{
			"site1-node1": {{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "demo"}}},
		},
	}
	w.site1.mux.HandleFunc("GET /api/v1/namespaces/acme-demo/pods/web-1/log", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.logsURL = r.URL
		w.mu.Unlock()
		if r.URL.Query().Get("container") == "missing" {
			writeStatus(rw, http.StatusBadRequest, metav1.StatusReasonBadRequest, "container missing is not valid for pod web-1")
			return
		}
		_, _ = io.WriteString(rw, "line 1\nline 2\n")
	})
	for _, n := range []string{"node1", "node2"} {
		w.site1.mux.HandleFunc("GET /api/v1/nodes/"+n+"/proxy/stats/summary", func(rw http.ResponseWriter, _ *http.Request) {
			_ = json.NewEncoder(rw).Encode(siteNodeSummary(n, 100))
		})
		w.site1.mux.HandleFunc("GET /api/v1/nodes/"+n+"/proxy/metrics/resource", func(rw http.ResponseWriter, _ *http.Request) {
			_, _ = fmt.Fprintf(rw, `# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 12.5 1767323045000
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="acme-demo",pod="web-%s"} 2 1767323045000
container_cpu_usage_seconds_total{container="db",namespace="other-demo",pod="x"} 3 1767323045000
# HELP scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
`, n)
		})
	}
	// site2's kubelets have no resource metrics: they are made from the summaries.
	for i, n := range []string{"n1", "n2"} {
		w.site2.mux.HandleFunc("GET /api/v1/nodes/"+n+"/proxy/stats/summary", func(rw http.ResponseWriter, _ *http.Request) {
			_ = json.NewEncoder(rw).Encode(siteNodeSummary(n, uint64(100*(i+1))))
		})
	}
	return w
}

func TestServeHTTP(t *testing.T) {
	w := newWorld(t)
	host := newFakeHost(t)
	ca := newTestCA(t, "apiserver-kubelet-client")
	// No caching: every request makes its own SubjectAccessReview.
	ts := newTestServer(t, Config{Resolver: w.resolver, Auth: AuthConfig{Host: host, ClientCA: ca.pem, CacheTTL: time.Nanosecond}})
	other := newTestCA(t, "admin")

	type sar struct{ name, sub, verb string }
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		token    string
		cert     *testCA
		wantCode int
		wantBody string
		wantSAR  *sar
	}{
		{name: "anonymous", path: "/containerLogs/demo/web-1/app", wantCode: 401},
		{name: "unknown token", path: "/containerLogs/demo/web-1/app", token: "nope", wantCode: 401},
		{name: "certificate of another CA", path: "/containerLogs/demo/web-1/app", cert: &other, wantCode: 401},
		{name: "logs", path: "/containerLogs/demo/web-1/app", token: "admin-token", wantCode: 200, wantBody: "line 1\nline 2\n",
			wantSAR: &sar{"site1-node1", "proxy", "get"}},
		{name: "logs with client certificate", path: "/containerLogs/demo/web-1/app", cert: &ca, wantCode: 200,
			wantSAR: &sar{"site1-node1", "proxy", "get"}},
		{name: "logs forbidden", path: "/containerLogs/demo/web-1/app", token: "alice-token", wantCode: 403, wantBody: "user=alice"},
		{name: "unknown pod", path: "/containerLogs/demo/nope/app", token: "admin-token", wantCode: 404, wantSAR: &sar{"", "proxy", "get"}},
		{name: "unknown pod, forbidden first", path: "/containerLogs/demo/nope/app", token: "alice-token", wantCode: 403},
		{name: "invalid container", path: "/containerLogs/demo/web-1/missing", token: "admin-token", wantCode: 400, wantBody: "not valid"},
		{name: "pod named under another node", path: "/nodes/site1-node2/containerLogs/demo/web-1/app", token: "admin-token", wantCode: 404,
			wantBody: "not on virtual node site1-node2"},
		{name: "logs under its node", path: "/nodes/site1-node1/containerLogs/demo/web-1/app", token: "admin-token", wantCode: 200},
		{name: "summary without a node", path: "/stats/summary", token: "admin-token", wantCode: 404, wantBody: "/nodes/<node>/stats/summary"},
		{name: "summary", path: "/nodes/site1-node1/stats/summary", token: "alice-token", wantCode: 200, wantBody: `"nodeName":"site1-node1"`,
			wantSAR: &sar{"site1-node1", "stats", "get"}},
		{name: "summary of another node forbidden", path: "/nodes/site1-node2/stats/summary", token: "alice-token", wantCode: 403},
		{name: "summary of an unknown node", path: "/nodes/site9/stats/summary", token: "admin-token", wantCode: 404},
		{name: "resource metrics", path: "/nodes/site1-node1/metrics/resource", token: "admin-token", wantCode: 200,
			wantBody: `pod="web-1"`, wantSAR: &sar{"site1-node1", "metrics", "get"}},
		{name: "pods", path: "/nodes/site1-node1/pods", token: "admin-token", wantCode: 200, wantBody: `"name":"web-1"`,
			wantSAR: &sar{"site1-node1", "proxy", "get"}},
		{name: "exec needs create even as a GET", path: "/exec/demo/web-1/app?command=ls&output=1", token: "admin-token",
			wantSAR: &sar{"site1-node1", "proxy", "create"}},
		{name: "unknown path", path: "/configz", token: "admin-token", wantCode: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cert *tls.Certificate
			if tc.cert != nil {
				cert = &tc.cert.clientCert
			}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, _ := http.NewRequestWithContext(t.Context(), method, ts.ts.URL+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := ts.client(cert).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if tc.wantCode != 0 && resp.StatusCode != tc.wantCode {
				t.Errorf("code %d, want %d: %s", resp.StatusCode, tc.wantCode, body)
			}
			if tc.wantBody != "" && !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("body %q, want it to hold %q", body, tc.wantBody)
			}
			if tc.wantSAR != nil {
				got := host.lastSAR()
				ra := got.ResourceAttributes
				if ra == nil || ra.Resource != "nodes" || ra.Name != tc.wantSAR.name || ra.Subresource != tc.wantSAR.sub || ra.Verb != tc.wantSAR.verb {
					t.Errorf("SubjectAccessReview %+v, want nodes/%s %s %s", ra, tc.wantSAR.sub, tc.wantSAR.name, tc.wantSAR.verb)
				}
			}
		})
	}
	if got := testutil.ToFloat64(ts.metrics.requests.WithLabelValues("containerLogs", "401")); got != 3 {
		t.Errorf("vk8s_kubeletapi_requests_total{handler=containerLogs,code=401} = %v, want 3", got)
	}
	if n := testutil.CollectAndCount(ts.metrics.duration); n == 0 {
		t.Error("no request duration observed")
	}
}

func TestLogOptions(t *testing.T) {
	w := newWorld(t)
	ts := newTestServer(t, Config{Resolver: w.resolver, Auth: AuthConfig{Disabled: true}})
	for _, tc := range []struct {
		query string
		want  url.Values
	}{
		{"", url.Values{"container": {"app"}}},
		{"follow=true&tailLines=5&sinceSeconds=10&timestamps=true&limitBytes=100&previous=true", url.Values{
			"container": {"app"}, "follow": {"true"}, "tailLines": {"5"}, "sinceSeconds": {"10"},
			"timestamps": {"true"}, "limitBytes": {"100"}, "previous": {"true"},
		}},
		{"sinceTime=2026-01-02T03:04:05Z", url.Values{"container": {"app"}, "sinceTime": {"2026-01-02T03:04:05Z"}}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp, err := ts.client(nil).Get(ts.ts.URL + "/containerLogs/demo/web-1/app?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("code %d", resp.StatusCode)
			}
			w.mu.Lock()
			got := w.logsURL.Query()
			w.mu.Unlock()
			if got.Encode() != tc.want.Encode() {
				t.Errorf("site got %s, want %s", got.Encode(), tc.want.Encode())
			}
		})
	}
	// Bad options are refused before the site is asked.
	resp, err := ts.client(nil).Get(ts.ts.URL + "/containerLogs/demo/web-1/app?tailLines=-1")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("tailLines=-1: code %d, want 400", resp.StatusCode)
	}
}

func TestNodeStatsAndMetrics(t *testing.T) {
	w := newWorld(t)
	ts := newTestServer(t, Config{Resolver: w.resolver, Auth: AuthConfig{Disabled: true}})
	get := func(t *testing.T, path string) []byte {
		t.Helper()
		resp, err := ts.client(nil).Get(ts.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}

	t.Run("summary per node", func(t *testing.T) {
		var s statsv1alpha1.Summary
		if err := json.Unmarshal(get(t, "/nodes/site1-node1/stats/summary"), &s); err != nil {
			t.Fatal(err)
		}
		if s.Node.NodeName != "site1-node1" || len(s.Pods) != 1 {
			t.Fatalf("node %s, pods %+v", s.Node.NodeName, s.Pods)
		}
		if ref := s.Pods[0].PodRef; ref != (statsv1alpha1.PodReference{Name: "web-1", Namespace: "demo", UID: "uid-1"}) {
			t.Errorf("pod %+v", ref)
		}
	})
	t.Run("summary aggregate", func(t *testing.T) {
		var s statsv1alpha1.Summary
		if err := json.Unmarshal(get(t, "/nodes/site2/stats/summary"), &s); err != nil {
			t.Fatal(err)
		}
		if s.Node.NodeName != "site2" || len(s.Pods) != 2 || *s.Node.CPU.UsageNanoCores != 300 {
			t.Errorf("node %s cpu %d, pods %d", s.Node.NodeName, *s.Node.CPU.UsageNanoCores, len(s.Pods))
		}
	})
	parse := func(t *testing.T, b []byte) map[string]string {
		t.Helper()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		out := map[string]string{}
		for name, f := range fams {
			for _, m := range f.Metric {
				var labels []string
				for _, l := range m.Label {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				out[name+"{"+strings.Join(labels, ",")+"}"] = fmt.Sprint(value(m))
			}
		}
		return out
	}
	t.Run("resource metrics from the site's", func(t *testing.T) {
		got := parse(t, get(t, "/nodes/site1-node1/metrics/resource"))
		want := map[string]string{
			"node_cpu_usage_seconds_total{}":                                            "12.5",
			"container_cpu_usage_seconds_total{container=app,namespace=demo,pod=web-1}": "2",
			"scrape_error{}": "0",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got %v\nwant %v", got, want)
		}
	})
	t.Run("resource metrics from the summaries, aggregate", func(t *testing.T) {
		got := parse(t, get(t, "/nodes/site2/metrics/resource"))
		n1, n2 := 100e3/1e9, 200e3/1e9 // usageCoreNanoSeconds of n1 and n2, in seconds
		for k, v := range map[string]string{
			"node_cpu_usage_seconds_total{}":                                             fmt.Sprint(n1 + n2),
			"container_cpu_usage_seconds_total{container=app,pod=web-n1,namespace=demo}": "2",
			"pod_memory_working_set_bytes{pod=web-n2,namespace=demo}":                    "4096",
			"scrape_error{}": "0",
		} {
			if got[k] != v {
				t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, sortedKeys(got))
			}
		}
		for k := range got {
			if strings.Contains(k, "other-demo") || strings.Contains(k, "acme-demo") {
				t.Errorf("site pod leaked: %s", k)
			}
		}
	})
}

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

package kubeletapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
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
			"container_cpu_usage_seconds_total{namespace=demo,pod=web-1,container=app}": "2",
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
			"container_cpu_usage_seconds_total{namespace=demo,pod=web-n1,container=app}": "2",
			"pod_memory_working_set_bytes{namespace=demo,pod=web-n2}":                    "4096",
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

// TestNodeStatsFallbacks: site3's nodes serve no stats summary, as kwok's do. kw1 serves
// resource metrics at the path its annotation names; the site's API server proxies to
// neither of kw2's endpoints (it answers 400, as it does for a node at a loopback
// address), which leaves the pods the site runs there. site4 does not answer at all.
func TestNodeStatsFallbacks(t *testing.T) {
	site3 := newFakeSite(t, "site3")
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "kw1", Annotations: map[string]string{vk8sv1.AnnotationResourceMetricsPath: "/metrics/nodes/kw1/metrics/resource"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "kw2"}},
	} {
		if err := nodes.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	site3.conn.Nodes = corelisters.NewNodeLister(nodes)
	site3.mux.HandleFunc("GET /api/v1/nodes/kw1/proxy/metrics/nodes/kw1/metrics/resource", func(rw http.ResponseWriter, r *http.Request) {
		// kwok's Metric route declares no content type, so its content negotiation
		// refuses an Accept header that does not also allow any type.
		if !strings.Contains(r.Header.Get("Accept"), "*/*") {
			http.Error(rw, "406: Not Acceptable", http.StatusNotAcceptable)
			return
		}
		_, _ = io.WriteString(rw, strings.NewReplacer(`namespace="ns",pod="p"`, `namespace="acme-demo",pod="web-3"`).Replace(kwokMetrics)+
			`container_cpu_usage_seconds_total{container="c",namespace="kube-system",pod="dns"} 9`+"\n")
	})
	site3.mux.HandleFunc("GET /api/v1/nodes/kw2/proxy/", func(rw http.ResponseWriter, _ *http.Request) {
		writeStatus(rw, http.StatusBadRequest, metav1.StatusReasonBadRequest, "address not allowed")
	})
	var listed string
	site3.mux.HandleFunc("GET /api/v1/pods", func(rw http.ResponseWriter, r *http.Request) {
		listed = r.URL.Query().Get("fieldSelector")
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(&corev1.PodList{Items: []corev1.Pod{
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "acme-demo", Name: "web-4", UID: "site-uid-4"},
				Spec:       corev1.PodSpec{NodeName: "kw2", Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &t0},
			},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "dns"}, Spec: corev1.PodSpec{NodeName: "kw2"}},
		}})
	})
	site4 := newFakeSite(t, "site4")
	site4.srv.Close()
	resolver := &fakeResolver{
		nodes: map[string]*NodeTarget{
			"site3-kw1": {Site: site3.conn, SiteNodes: []string{"kw1"}},
			"site3-kw2": {Site: site3.conn, SiteNodes: []string{"kw2"}},
			"site4-n1":  {Site: site4.conn, SiteNodes: []string{"n1"}},
		},
		hostPods: map[string]HostPod{
			"site3/acme-demo/web-3": {Namespace: "demo", Name: "web-3", UID: "uid-3"},
			"site3/acme-demo/web-4": {Namespace: "demo", Name: "web-4", UID: "uid-4"},
		},
	}
	ts := newTestServer(t, Config{Resolver: resolver, Auth: AuthConfig{Disabled: true}, SiteTimeout: 2 * time.Second})
	get := func(t *testing.T, path string, wantCode int) []byte {
		t.Helper()
		resp, err := ts.client(nil).Get(ts.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantCode {
			t.Fatalf("GET %s: %d %s, want %d", path, resp.StatusCode, b, wantCode)
		}
		return b
	}
	summary := func(t *testing.T, node string) statsv1alpha1.Summary {
		t.Helper()
		var s statsv1alpha1.Summary
		if err := json.Unmarshal(get(t, "/nodes/"+node+"/stats/summary", 200), &s); err != nil {
			t.Fatal(err)
		}
		if s.Node.NodeName != node {
			t.Errorf("node %q, want %q", s.Node.NodeName, node)
		}
		return s
	}

	t.Run("summary from resource metrics", func(t *testing.T) {
		s := summary(t, "site3-kw1")
		if s.Node.CPU == nil || *s.Node.CPU.UsageCoreNanoSeconds != 3.5e9 {
			t.Errorf("node cpu %+v, want the site node's 3.5 s", s.Node.CPU)
		}
		if len(s.Pods) != 1 || s.Pods[0].PodRef != (statsv1alpha1.PodReference{Namespace: "demo", Name: "web-3", UID: "uid-3"}) ||
			len(s.Pods[0].Containers) != 2 || *s.Pods[0].Containers[0].CPU.UsageCoreNanoSeconds != 1.25e9 {
			t.Errorf("pods %+v, want demo/web-3 with containers a and b", s.Pods)
		}
	})
	t.Run("resource metrics from the annotated path", func(t *testing.T) {
		got := string(get(t, "/nodes/site3-kw1/metrics/resource", 200))
		if !strings.Contains(got, `container_cpu_usage_seconds_total{namespace="demo",pod="web-3",container="a"} 1.25`) ||
			strings.Contains(got, "kube-system") || strings.Contains(got, "acme-demo") {
			t.Errorf("resource metrics:\n%s", got)
		}
	})
	t.Run("summary from the site's pods, with no usage", func(t *testing.T) {
		s := summary(t, "site3-kw2")
		if listed != "spec.nodeName=kw2" {
			t.Errorf("pods listed with field selector %q, want spec.nodeName=kw2", listed)
		}
		if s.Node.CPU != nil || s.Node.Memory != nil {
			t.Errorf("node usage made up: %+v %+v", s.Node.CPU, s.Node.Memory)
		}
		if len(s.Pods) != 1 || s.Pods[0].PodRef != (statsv1alpha1.PodReference{Namespace: "demo", Name: "web-4", UID: "uid-4"}) ||
			len(s.Pods[0].Containers) != 2 || s.Pods[0].CPU != nil || s.Pods[0].Containers[0].CPU != nil {
			t.Errorf("pods %+v, want demo/web-4 with containers a and b and no usage", s.Pods)
		}
	})
	t.Run("resource metrics without usage", func(t *testing.T) {
		got := string(get(t, "/nodes/site3-kw2/metrics/resource", 200))
		if strings.Contains(got, "cpu_usage") || strings.Contains(got, "memory_working_set") || !strings.Contains(got, "scrape_error 0") {
			t.Errorf("resource metrics:\n%s\nwant no usage series and scrape_error 0", got)
		}
	})
	t.Run("a site that does not answer", func(t *testing.T) {
		get(t, "/nodes/site4-n1/stats/summary", 500)
		get(t, "/nodes/site4-n1/metrics/resource", 500)
	})
}

func TestSiteAnswered(t *testing.T) {
	notFound := apierrors.NewNotFound(corev1.Resource("nodes"), "n1")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"status", notFound, true},
		{"classified", classify(notFound, "GET %s", "/stats/summary"), true},
		{"classified bad request", classify(apierrors.NewBadRequest("address not allowed"), "GET"), true},
		{"wrapped twice", fmt.Errorf("stats: %w", errors.Join(classify(notFound, "GET"))), true},
		{"no answer", fmt.Errorf("GET: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), false},
		{"timeout", classify(context.DeadlineExceeded, "GET"), false},
		{"nil", nil, false},
	} {
		if got := siteAnswered(tc.err); got != tc.want {
			t.Errorf("%s: siteAnswered(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestRunningPods: /runningpods/ holds the node's host pods that run on the site, not
// those still waiting for their site pod (nor those of other nodes, nor terminated ones).
func TestRunningPods(t *testing.T) {
	w := newWorld(t)
	pod := func(name, phase string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", UID: types.UID("uid-" + name)},
			Status: corev1.PodStatus{Phase: corev1.PodPhase(phase)}}
	}
	w.resolver.nodePods["site1-node1"] = []*corev1.Pod{pod("web-1", "Running"), pod("waiting", "Pending"), pod("moved", "Running"), pod("done", "Succeeded")}
	w.resolver.pods["demo/moved"] = &PodTarget{Node: "site1-node2", Site: w.site1.conn}
	w.resolver.pods["demo/done"] = &PodTarget{Node: "site1-node1", Site: w.site1.conn}
	ts := newTestServer(t, Config{Resolver: w.resolver, Auth: AuthConfig{Disabled: true}})
	for _, path := range []string{"/nodes/site1-node1/runningpods/", "/nodes/site1-node1/runningpods"} {
		resp, err := ts.client(nil).Get(ts.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var list corev1.PodList
		err = json.NewDecoder(resp.Body).Decode(&list)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		var names []string
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		if len(names) != 1 || names[0] != "web-1" {
			t.Errorf("GET %s: %v, want web-1 alone", path, names)
		}
	}
}

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

package sitereg

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestConnKey(t *testing.T) {
	base := func(t *testing.T) *rest.Config {
		cfg, err := restConfigFromKubeconfig(testKubeconfig(t, "https://site1:6443", []byte("CA"), "tok", nil))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tc := range []struct {
		name  string
		other func(t *testing.T) *rest.Config
		same  bool
	}{
		{"same kubeconfig", base, true},
		{"other context and user names", func(t *testing.T) *rest.Config {
			cfg, err := restConfigFromKubeconfig(testKubeconfig(t, "https://site1:6443", []byte("CA"), "tok", func(c *clientcmdapi.Config) {
				c.AuthInfos = map[string]*clientcmdapi.AuthInfo{"admin": {Token: "tok"}}
				c.Contexts = map[string]*clientcmdapi.Context{"site1-slice": {Cluster: "c", AuthInfo: "admin"}}
				c.CurrentContext = "site1-slice"
			}))
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		}, true},
		{"trailing slash and case", func(t *testing.T) *rest.Config {
			cfg := base(t)
			cfg.Host = "https://SITE1:6443/"
			return cfg
		}, true},
		{"client tuning does not matter", func(t *testing.T) *rest.Config {
			cfg := base(t)
			cfg.QPS, cfg.Burst, cfg.UserAgent = 1, 2, "x"
			return cfg
		}, true},
		{"other server", func(t *testing.T) *rest.Config {
			cfg := base(t)
			cfg.Host = "https://site2:6443"
			return cfg
		}, false},
		{"other token", func(t *testing.T) *rest.Config {
			cfg := base(t)
			cfg.BearerToken = "tok2"
			return cfg
		}, false},
		{"other CA", func(t *testing.T) *rest.Config {
			cfg := base(t)
			cfg.CAData = []byte("CA2")
			return cfg
		}, false},
		{"client certificate instead of token", func(t *testing.T) *rest.Config {
			cfg := base(t)
			cfg.BearerToken, cfg.CertData, cfg.KeyData = "", []byte("cert"), []byte("key")
			return cfg
		}, false},
		{"impersonation", func(t *testing.T) *rest.Config {
			cfg := base(t)
			cfg.Impersonate = rest.ImpersonationConfig{UserName: "someone", Extra: map[string][]string{"a": {"b"}}}
			return cfg
		}, false},
		{"fields do not run together", func(t *testing.T) *rest.Config {
			cfg := base(t)
			cfg.Username, cfg.Password = "ab", "c"
			return cfg
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := connKey(base(t)), connKey(tc.other(t))
			if (a == b) != tc.same {
				t.Errorf("keys equal = %v, want %v", a == b, tc.same)
			}
		})
	}
	// Username "a"+"bc" must differ from "ab"+"c".
	x, y := base(t), base(t)
	x.Username, x.Password = "a", "bc"
	y.Username, y.Password = "ab", "c"
	if connKey(x) == connKey(y) {
		t.Error("connKey runs fields together")
	}
}

func TestSiteNodeLister(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range []*corev1.Node{
		node("node1", true, "1", "1Gi", map[string]string{"zone": "a"}),
		node("node2", true, "1", "1Gi", map[string]string{"zone": "b"}),
		node("node3", true, "1", "1Gi", map[string]string{"zone": "a"}),
	} {
		if err := idx.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	l := siteNodeLister{base: corelisters.NewNodeLister(idx), sel: labels.SelectorFromSet(labels.Set{"zone": "a"})}
	list, err := l.List(labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"node1", "node3"}) {
		t.Errorf("List: %v, want node1 node3", names)
	}
	list, _ = l.List(labels.SelectorFromSet(labels.Set{corev1.LabelHostname: "node3"}))
	if len(list) != 1 || list[0].Name != "node3" {
		t.Errorf("List with a selector: %v, want node3", list)
	}
	if n, err := l.Get("node1"); err != nil || n.Name != "node1" {
		t.Errorf("Get(node1): %v %v", n, err)
	}
	if _, err := l.Get("node2"); !apierrors.IsNotFound(err) {
		t.Errorf("Get(node2) of another site: %v, want NotFound", err)
	}
	if _, err := l.Get("node9"); !apierrors.IsNotFound(err) {
		t.Errorf("Get(node9): %v, want NotFound", err)
	}
}

func TestNodesChangedNotifiesMatchingSites(t *testing.T) {
	var got []string
	c := &conn{
		sites: map[string]labels.Selector{
			"all":   labels.Everything(),
			"zoneA": labels.SelectorFromSet(labels.Set{"zone": "a"}),
			"zoneB": labels.SelectorFromSet(labels.Set{"zone": "b"}),
		},
		notify: func(sites []string) { got = append(got, sites...) },
	}
	a := node("n1", true, "1", "1Gi", map[string]string{"zone": "a"})
	b := node("n1", true, "1", "1Gi", map[string]string{"zone": "b"})
	for _, tc := range []struct {
		name string
		objs []any
		want []string
	}{
		{"add in zone a", []any{a}, []string{"all", "zoneA"}},
		{"relabel from a to b", []any{a, b}, []string{"all", "zoneA", "zoneB"}},
		{"tombstone", []any{cache.DeletedFinalStateUnknown{Key: "n1", Obj: b}}, []string{"all", "zoneB"}},
		{"no site of the node", []any{node("n2", true, "1", "1Gi", map[string]string{"zone": "c"})}, []string{"all"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			c.nodesChanged(tc.objs...)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("notified %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSubscriberCoalesces(t *testing.T) {
	s := newSubscriber()
	s.mark([]string{"a", "b"})
	s.mark([]string{"b"})
	s.mark([]string{"a"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.run(ctx)
	var got []string
	for len(got) < 2 {
		select {
		case ev := <-s.out:
			got = append(got, ev.Object.GetName())
		case <-time.After(5 * time.Second):
			t.Fatalf("got %v, want a and b", got)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("delivered %v, want a and b once each", got)
	}
	select {
	case ev := <-s.out:
		t.Errorf("extra request %s", ev.Object.GetName())
	default:
	}
}

// TestWriteWatch: slow failed writes stall the site's writes, a write left waiting stalls
// them from the threshold on, reads never do, and an answered write ends the stall.
func TestWriteWatch(t *testing.T) {
	var changes atomic.Int32
	w := &writeWatch{threshold: 50 * time.Millisecond, now: time.Now, inflight: map[uint64]writeCall{}, changed: func() { changes.Add(1) }}
	release := make(chan struct{})
	rt := w.wrap(roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		switch req.URL.Path {
		case "/slow-500":
			time.Sleep(80 * time.Millisecond)
			return &http.Response{StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error", Body: http.NoBody}, nil
		case "/hang":
			<-release
			return nil, errors.New("context deadline exceeded")
		case "/slow-read":
			time.Sleep(80 * time.Millisecond)
		}
		return &http.Response{StatusCode: http.StatusCreated, Status: "201 Created", Body: http.NoBody}, nil
	}))
	call := func(method, path string) {
		req, _ := http.NewRequest(method, "https://site"+path, nil)
		if resp, err := rt.RoundTrip(req); err == nil {
			_ = resp.Body.Close()
		}
	}
	call(http.MethodPost, "/fast")
	call(http.MethodGet, "/slow-read")
	if err := w.stalled(); err != nil || changes.Load() != 0 {
		t.Fatalf("after a fast write and a slow read: stalled %v, %d changes", err, changes.Load())
	}
	call(http.MethodPost, "/slow-500")
	if err := w.stalled(); err == nil || !strings.Contains(err.Error(), "POST /slow-500 failed after") || changes.Load() != 1 {
		t.Fatalf("after a slow failed write: stalled %v, %d changes", err, changes.Load())
	}
	call(http.MethodPatch, "/ok")
	if err := w.stalled(); err != nil || changes.Load() != 2 {
		t.Fatalf("after an answered write: stalled %v, %d changes", err, changes.Load())
	}
	done := make(chan struct{})
	go func() { call(http.MethodPost, "/hang"); close(done) }()
	time.Sleep(120 * time.Millisecond)
	if err := w.stalled(); err == nil || !strings.Contains(err.Error(), "POST /hang has waited") || changes.Load() != 3 {
		t.Fatalf("with a write waiting past the threshold: stalled %v, %d changes", err, changes.Load())
	}
	close(release)
	<-done
	if err := w.stalled(); err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Errorf("after the hanging write failed: stalled %v", err)
	}
}

// TestCloseEndsEveryConnection: closing a connection ends its TCP connections, the one
// that carries the node watch too, and its client fails from then on, so nothing goes on
// with the credentials of a connection no Site uses.
func TestCloseEndsEveryConnection(t *testing.T) {
	srv := newFakeAPIServer(t, "tok", node("n1", true, "1", "1Gi", nil))
	cfg, err := restConfigFromKubeconfig(testKubeconfig(t, srv.URL, srv.caPEM(), "tok", nil))
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c, err := newConn(connKey(cfg), cfg, 50, 100, nil, time.Minute, func([]string) {}, m)
	if err != nil {
		t.Fatal(err)
	}
	tcp := m.tcp.WithLabelValues(ShortKey(c.key))
	if res := c.probe(t.Context(), 5*time.Second, 0, time.Now, func(time.Duration, error) {}); res.err != nil || res.clusterID != "uid-tok" {
		t.Fatalf("probe: %+v", res)
	}
	if _, err := c.startInformer(t.Context(), logr.Discard()); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return c.synced() != nil && srv.watches.Load() == 1, nil
	}); err != nil {
		t.Fatalf("node watch not served: %v", err)
	}
	if n := c.dialer.count(); n == 0 || testutil.ToFloat64(tcp) != float64(n) {
		t.Fatalf("%d open TCP connections, gauge %v; want some, counted", n, testutil.ToFloat64(tcp))
	}

	c.close()
	if n := c.dialer.count(); n != 0 || testutil.ToFloat64(tcp) != 0 {
		t.Errorf("after close: %d open TCP connections, gauge %v; want none", n, testutil.ToFloat64(tcp))
	}
	if err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return srv.watches.Load() == 0 && srv.conns.Load() == 0, nil
	}); err != nil {
		t.Errorf("the site still has %d TCP connections of the closed connection, serving %d node watches", srv.conns.Load(), srv.watches.Load())
	}
	if _, err := c.client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{}); !errors.Is(err, errConnClosed) {
		t.Errorf("a request on the closed connection: %v, want errConnClosed", err)
	}
}

// TestSharedConnectionLabelAndLevel: a connection's site label and the Pod Security level of
// its site namespaces follow its Sites as they come and go, and reading them allocates
// nothing, whatever the number of Sites: every call to the site and every Get reads them
// (each pod's stats, when metrics-server scrapes), and at 300 Sites on one connection
// computing them on each read made garbage in proportion to pods times Sites.
func TestSharedConnectionLabelAndLevel(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c, err := newConn("k", &rest.Config{Host: "https://127.0.0.1:1"}, 50, 100, nil, time.Minute, func([]string) {}, m)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.namespacePodSecurity(); got != vk8sv1.PodSecurityBaseline {
		t.Errorf("level without Sites %q, want baseline", got)
	}
	c.setSite("b", labels.Everything(), vk8sv1.PodSecurityPrivileged)
	c.setSite("a", labels.Everything(), vk8sv1.PodSecurityRestricted)
	for i := range 300 {
		c.setSite("s"+strconv.Itoa(i), labels.Everything(), vk8sv1.PodSecurityBaseline)
	}
	if got := c.namespacePodSecurity(); got != vk8sv1.PodSecurityRestricted {
		t.Errorf("level %q, want restricted (Site a's)", got)
	}
	if got := c.siteLabel(); !strings.HasPrefix(got, "a,b,s0,s1,") {
		t.Errorf("label %.20q..., want the Sites in name order", got)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = c.namespacePodSecurity(), c.siteLabel() }); n != 0 {
		t.Errorf("%v allocations a read at 302 Sites, want none", n)
	}
	c.dropSite("a")
	if got := c.namespacePodSecurity(); got != vk8sv1.PodSecurityBaseline {
		t.Errorf("level after Site a left %q, want baseline", got)
	}
	if got := c.siteLabel(); !strings.HasPrefix(got, "b,s0,") {
		t.Errorf("label after Site a left %.20q..., want it gone", got)
	}
}

// TestSelectsNode: with sharding, a replica takes a site pod for an orphan only when one
// of its own Sites on the connection runs the pod's node; SelectsNode says so from the
// connection's node cache and its Sites' selectors, and no for a node it does not know.
func TestSelectsNode(t *testing.T) {
	r, err := New(Config{MetricsRegisterer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c, err := newConn("k", &rest.Config{Host: "https://127.0.0.1:1"}, 50, 100, nil, time.Minute, func([]string) {}, m)
	if err != nil {
		t.Fatal(err)
	}
	c.informer = cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Node{}, 0, cache.Indexers{})
	for _, n := range []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"pool": "mine"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{"pool": "theirs"}}},
	} {
		if err := c.informer.GetIndexer().Add(n); err != nil {
			t.Fatal(err)
		}
	}
	c.setSite("mine", labels.SelectorFromSet(labels.Set{"pool": "mine"}), vk8sv1.PodSecurityBaseline)
	r.conns["k"] = c
	for node, want := range map[string]bool{"n1": true, "n2": false, "n3": false, "": false} {
		if got := r.SelectsNode("k", node); got != want {
			t.Errorf("SelectsNode(k, %q) = %v, want %v", node, got, want)
		}
	}
	if r.SelectsNode("other", "n1") {
		t.Error("SelectsNode of an unknown connection: true, want false")
	}
}

// TestExists: a Site the host has exists whichever replica owns it (here none); one
// being deleted or never made does not, and a registry without a host cache says it
// cannot tell.
func TestExists(t *testing.T) {
	deleting := testSite("leaving", "s", nil)
	deleting.Finalizers = []string{"test/keep"}
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	env := newTestEnvWith(t, Config{Owns: func(string) bool { return false }}, testSite("theirs", "s", nil), deleting)
	for site, want := range map[string]bool{"theirs": true, "leaving": false, "gone": false} {
		got, err := env.r.Exists(t.Context(), site)
		if err != nil || got != want {
			t.Errorf("Exists(%s) = %v, %v; want %v", site, got, err, want)
		}
	}
	r, err := New(Config{MetricsRegisterer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Exists(t.Context(), "theirs"); err == nil {
		t.Error("Exists without a host cache: no error")
	}
}

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
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/api/scheme"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"short heartbeat", Config{HeartbeatInterval: 10 * time.Millisecond}, "HeartbeatInterval 10ms"},
		{"probe longer than heartbeat", Config{HeartbeatInterval: 2 * time.Second, ProbeTimeout: 5 * time.Second}, "ProbeTimeout 5s"},
		{"negative probe timeout", Config{ProbeTimeout: -time.Second}, "ProbeTimeout -1s"},
		{"negative concurrency", Config{MaxConcurrentReconciles: -1}, "MaxConcurrentReconciles -1"},
		{"negative burst", Config{Burst: -1}, "Burst -1"},
		{"bad name", Config{ControllerName: "Site Registry"}, `ControllerName "Site Registry"`},
		{"every problem at once", Config{HeartbeatInterval: time.Millisecond, MaxConcurrentReconciles: -2}, "MaxConcurrentReconciles -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.MetricsRegisterer = prometheus.NewRegistry()
			r, err := New(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if r.cfg.HeartbeatInterval != DefaultHeartbeatInterval || r.cfg.ProbeTimeout != DefaultProbeTimeout || r.cfg.MaxConcurrentReconciles != DefaultMaxConcurrentReconciles {
					t.Errorf("defaults not applied: %+v", r.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewSharesMetricsOfOneRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := New(Config{MetricsRegisterer: reg})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{MetricsRegisterer: reg})
	if err != nil {
		t.Fatalf("second registry on one registerer: %v", err)
	}
	if a.metrics.connected != b.metrics.connected {
		t.Error("the second registry did not reuse the registered metrics")
	}
}

// fakeAPIServer is the smallest API server a site connection needs: /version, list and
// watch of nodes, and the kube-system namespace (the cluster's identity), behind bearer
// tokens.
type fakeAPIServer struct {
	*httptest.Server
	clusterID string
	mu        sync.Mutex
	tokens    []string
	nodes     []corev1.Node
	// claims are the ConfigMaps written (the tenant claim), writes the paths written to.
	claims map[string][]byte
	writes []string
	// watches counts the node watches being served, conns the open TCP connections.
	watches atomic.Int32
	conns   atomic.Int32
}

// allow makes the server accept token too.
func (f *fakeAPIServer) allow(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = append(f.tokens, token)
}

// written returns the paths written to so far.
func (f *fakeAPIServer) written() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.writes)
}

// newFakeAPIServer serves a cluster whose identity is its token.
func newFakeAPIServer(t *testing.T, token string, nodes ...*corev1.Node) *fakeAPIServer {
	t.Helper()
	f := &fakeAPIServer{tokens: []string{token}, clusterID: "uid-" + token, claims: map[string][]byte{}}
	for _, n := range nodes {
		f.nodes = append(f.nodes, *n)
	}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS failures are what some tests want
	f.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			f.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			f.conns.Add(-1)
		}
	}
	f.EnableHTTP2 = true // as API servers do: a watch ended leaves its TCP connection open
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPIServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
}

func (f *fakeAPIServer) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	allowed := slices.Contains(f.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if r.Method != http.MethodGet {
		f.writes = append(f.writes, r.Method+" "+r.URL.Path)
	}
	f.mu.Unlock()
	if !allowed {
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Reason: metav1.StatusReasonUnauthorized, Code: 401, Message: "Unauthorized",
		})
		return
	}
	f.mu.Lock()
	nodes := slices.Clone(f.nodes)
	f.mu.Unlock()
	for i := range nodes {
		nodes[i].APIVersion, nodes[i].Kind = "v1", "Node"
		nodes[i].ResourceVersion = "1"
	}
	switch {
	case r.URL.Path == "/version":
		_, _ = w.Write([]byte(`{"major":"1","minor":"35","gitVersion":"v1.35.4"}`))
	case r.URL.Path == "/api/v1/namespaces/kube-system":
		_ = json.NewEncoder(w).Encode(corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: types.UID(f.clusterID)},
		})
	case r.URL.Path == "/api/v1/nodes" && r.URL.Query().Get("watch") == "true":
		f.watches.Add(1)
		defer f.watches.Add(-1)
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		if r.URL.Query().Get("sendInitialEvents") == "true" {
			for i := range nodes {
				_ = enc.Encode(map[string]any{"type": "ADDED", "object": &nodes[i]})
			}
			_ = enc.Encode(map[string]any{"type": "BOOKMARK", "object": &corev1.Node{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
				ObjectMeta: metav1.ObjectMeta{ResourceVersion: "1",
					Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
			}})
		}
		if flusher != nil {
			flusher.Flush()
		}
		<-r.Context().Done()
	case r.URL.Path == "/api/v1/nodes":
		_ = json.NewEncoder(w).Encode(corev1.NodeList{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"},
			ListMeta: metav1.ListMeta{ResourceVersion: "1"},
			Items:    nodes,
		})
	case r.Method == http.MethodPost && (r.URL.Path == "/api/v1/namespaces" || strings.HasSuffix(r.URL.Path, "/configmaps")):
		// client-go may send protobuf; the answers are JSON.
		raw, _ := io.ReadAll(r.Body)
		obj, _, err := clientgoscheme.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body, _ := json.Marshal(obj)
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			f.mu.Lock()
			f.claims[cm.Name] = body
			f.mu.Unlock()
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	case strings.Contains(r.URL.Path, "/configmaps/"):
		f.mu.Lock()
		body, ok := f.claims[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
		f.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: 404,
			})
			return
		}
		_, _ = w.Write(body)
	default:
		http.NotFound(w, r)
	}
}

// testEnv is a Registry wired to a fake host client, started, with a private metrics
// registry and a fake event recorder.
type testEnv struct {
	r        *Registry
	host     client.Client
	recorder *events.FakeRecorder
	metrics  *prometheus.Registry
}

func newTestEnv(t *testing.T, objs ...client.Object) *testEnv {
	t.Helper()
	return newTestEnvWith(t, Config{}, objs...)
}

// newTestEnvWith is newTestEnv with cfg (its metrics registerer and intervals are set).
func newTestEnvWith(t *testing.T, cfg Config, objs ...client.Object) *testEnv {
	t.Helper()
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	host := fake.NewClientBuilder().WithScheme(s).
		WithStatusSubresource(&vk8sv1.Site{}).
		WithIndex(&vk8sv1.Site{}, secretRefIndex, indexSecretRef).
		WithObjects(objs...).Build()
	reg := prometheus.NewRegistry()
	// A probe that fails (an unknown CA, say) fails at once; the timeout only has to
	// outlast a handshake on a loaded machine (2 s did not, once, in a full run).
	cfg.MetricsRegisterer, cfg.HeartbeatInterval, cfg.ProbeTimeout = reg, 10*time.Second, 8*time.Second
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := events.NewFakeRecorder(100)
	r.client, r.apiReader, r.recorder = host, host, rec
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &testEnv{r: r, host: host, recorder: rec, metrics: reg}
}

func (e *testEnv) reconcile(t *testing.T, site string) (ctrl.Result, *vk8sv1.Site) {
	t.Helper()
	res, err := e.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Name: site}})
	if err != nil {
		t.Fatalf("Reconcile %s: %v", site, err)
	}
	got := &vk8sv1.Site{}
	if err := e.host.Get(t.Context(), client.ObjectKey{Name: site}, got); err != nil {
		t.Fatal(err)
	}
	return res, got
}

// events drains the recorded events.
func (e *testEnv) events() []string {
	var out []string
	for {
		select {
		case ev := <-e.recorder.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func testSite(name, secret string, selector map[string]string) *vk8sv1.Site {
	return &vk8sv1.Site{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
		Spec: vk8sv1.SiteSpec{
			KubeconfigSecretRef: vk8sv1.SecretKeyReference{Namespace: "vk8s-system", Name: secret, Key: "kubeconfig"},
			NodeMode:            vk8sv1.NodeModePerNode,
			NodeSelector:        selector,
		},
	}
}

func testSecret(name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "vk8s-system"}, Data: data}
}

func condition(t *testing.T, s *vk8sv1.Site, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(s.Status.Conditions, typ)
	if c == nil {
		t.Fatalf("site %s has no %s condition: %+v", s.Name, typ, s.Status.Conditions)
	}
	return *c
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestReconcileFailuresBecomeConditionsAndOneEvent(t *testing.T) {
	good := newFakeAPIServer(t, "good")
	for _, tc := range []struct {
		name    string
		secret  *corev1.Secret
		reason  string
		message string
	}{
		{"secret missing", nil, ReasonSecretNotFound, "Secret vk8s-system/s-kubeconfig not found"},
		{"key missing", testSecret("s-kubeconfig", map[string][]byte{"config": []byte("x")}), ReasonSecretKeyNotFound, `no key "kubeconfig" (it has [config])`},
		{"not a kubeconfig", testSecret("s-kubeconfig", map[string][]byte{"kubeconfig": []byte("hello")}), ReasonInvalidKubeconfig, "cannot be used"},
		{"undecodable certificate", testSecret("s-kubeconfig", map[string][]byte{"kubeconfig": testKubeconfig(t, good.URL, good.caPEM(), "", func(c *clientcmdapi.Config) {
			c.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("junk"), ClientKeyData: []byte("junk")}
		})}), ReasonInvalidKubeconfig, "cannot be used"},
		{"bad token", testSecret("s-kubeconfig", map[string][]byte{"kubeconfig": testKubeconfig(t, good.URL, good.caPEM(), "made-up", nil)}), ReasonUnauthorized, "rejected the credentials"},
		{"unknown CA", testSecret("s-kubeconfig", map[string][]byte{"kubeconfig": testKubeconfig(t, good.URL, nil, "good", nil)}), ReasonTLSError, "certificate-authority-data"},
		{"nothing listens", testSecret("s-kubeconfig", map[string][]byte{"kubeconfig": testKubeconfig(t, "https://"+closedPort(t), nil, "good", nil)}), ReasonUnreachable, "connection refused"},
		{"bad node selector", testSecret("s-kubeconfig", map[string][]byte{"kubeconfig": testKubeconfig(t, good.URL, good.caPEM(), "good", nil)}), ReasonInvalidNodeSelector, "spec.nodeSelector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := testSite("s", "s-kubeconfig", nil)
			if tc.reason == ReasonInvalidNodeSelector {
				site.Spec.NodeSelector = map[string]string{"not a label!": "x"}
			}
			objs := []client.Object{site}
			if tc.secret != nil {
				objs = append(objs, tc.secret)
			}
			env := newTestEnv(t, objs...)
			res, got := env.reconcile(t, "s")
			if res.RequeueAfter < 9*time.Second {
				t.Errorf("RequeueAfter %s, want about the heartbeat interval", res.RequeueAfter)
			}
			c, r := condition(t, got, vk8sv1.ConditionConnected), condition(t, got, vk8sv1.ConditionReady)
			if c.Status != metav1.ConditionFalse || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) {
				t.Errorf("Connected %s/%s %q, want False/%s containing %q", c.Status, c.Reason, c.Message, tc.reason, tc.message)
			}
			if r.Status != metav1.ConditionFalse || r.Reason != tc.reason {
				t.Errorf("Ready %s/%s, want False/%s", r.Status, r.Reason, tc.reason)
			}
			if got.Status.ObservedGeneration != 1 {
				t.Errorf("observedGeneration %d", got.Status.ObservedGeneration)
			}
			if evs := env.events(); len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning "+tc.reason+" ") {
				t.Errorf("events %q, want one Warning %s", evs, tc.reason)
			}
			if _, err := env.r.Get("s"); !errors.Is(err, ErrSiteNotConnected) {
				t.Errorf("Get: %v, want ErrSiteNotConnected", err)
			}
			if v := testutil.ToFloat64(env.r.metrics.connected.WithLabelValues("s")); v != 0 {
				t.Errorf("site_connected %v, want 0", v)
			}
			// The next heartbeat finds the same problem: no second Event.
			env.reconcile(t, "s")
			if evs := env.events(); len(evs) != 0 {
				t.Errorf("second reconcile recorded %q, want no event", evs)
			}
		})
	}
}

func TestReconcileSharesConnectionsAndFollowsChanges(t *testing.T) {
	nodes := []*corev1.Node{
		node("node1", true, "15800m", "62Gi", nil), node("node2", true, "15800m", "62Gi", nil), node("node3", true, "15800m", "62Gi", nil),
	}
	site1 := newFakeAPIServer(t, "t1", nodes...)
	site2 := newFakeAPIServer(t, "t2", nodes[:2]...)
	kc1 := testKubeconfig(t, site1.URL, site1.caPEM(), "t1", nil)
	// The same access spelt differently: other context and user names.
	kc1b := testKubeconfig(t, site1.URL, site1.caPEM(), "t1", func(c *clientcmdapi.Config) {
		c.Contexts["other"] = c.Contexts["ctx"]
		c.CurrentContext = "other"
	})
	kc2 := testKubeconfig(t, site2.URL, site2.caPEM(), "t2", nil)
	env := newTestEnv(t,
		testSecret("a", map[string][]byte{"kubeconfig": kc1}),
		testSecret("b", map[string][]byte{"kubeconfig": kc1b}),
		testSecret("c", map[string][]byte{"kubeconfig": kc2}),
		testSite("whole", "a", nil),
		testSite("slice", "b", map[string]string{corev1.LabelHostname: "node1"}),
		testSite("other", "c", nil),
	)
	connections := func() float64 { return testutil.ToFloat64(env.r.metrics.connections) }

	_, whole := env.reconcile(t, "whole")
	_, slice := env.reconcile(t, "slice")
	_, other := env.reconcile(t, "other")
	for _, tc := range []struct {
		site    *vk8sv1.Site
		count   int32
		virtual []string
		cpu     string
	}{
		{whole, 3, []string{"whole-node1", "whole-node2", "whole-node3"}, "47400m"},
		{slice, 1, []string{"slice-node1"}, "15800m"},
		{other, 2, []string{"other-node1", "other-node2"}, "31600m"},
	} {
		s := tc.site
		if c := condition(t, s, vk8sv1.ConditionConnected); c.Status != metav1.ConditionTrue {
			t.Errorf("%s: Connected %s %s: %s", s.Name, c.Status, c.Reason, c.Message)
		}
		if c := condition(t, s, vk8sv1.ConditionReady); c.Status != metav1.ConditionTrue || c.Reason != ReasonNodesReady {
			t.Errorf("%s: Ready %s %s: %s", s.Name, c.Status, c.Reason, c.Message)
		}
		cpu := s.Status.Allocatable[corev1.ResourceCPU]
		if s.Status.NodeCount != tc.count || !slices.Equal(s.Status.VirtualNodes, tc.virtual) || s.Status.KubernetesVersion != "v1.35.4" || cpu.String() != tc.cpu {
			t.Errorf("%s: nodeCount %d virtualNodes %v version %s cpu %s, want %d %v v1.35.4 %s",
				s.Name, s.Status.NodeCount, s.Status.VirtualNodes, s.Status.KubernetesVersion, cpu.String(), tc.count, tc.virtual, tc.cpu)
		}
		if s.Status.LastHeartbeatTime == nil {
			t.Errorf("%s: no lastHeartbeatTime", s.Name)
		}
	}
	if evs := env.events(); len(evs) != 3 {
		t.Errorf("events %q, want one Normal Connected per site", evs)
	}
	if got := connections(); got != 2 {
		t.Errorf("connections %v, want 2 (whole and slice share one)", got)
	}
	if hb := testutil.ToFloat64(env.r.metrics.heartbeat.WithLabelValues("other")); float64(other.Status.LastHeartbeatTime.Unix()) > hb || hb > float64(time.Now().Unix()+1) {
		t.Errorf("site_last_heartbeat_timestamp_seconds{site=other} %v, want the heartbeat %s", hb, other.Status.LastHeartbeatTime)
	}
	// The probe's calls count under the site: its /version and its node list.
	for _, verb := range []string{"GET", "LIST"} {
		if v := siteCalls(t, env.metrics, "other", verb, "200"); v < 1 {
			t.Errorf("site_requests_total{site=other,verb=%s,code=200} = %v, want at least 1", verb, v)
		}
	}

	// The node informer enqueues the sites whose nodes it saw.
	seen := map[string]bool{}
	var err error
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		select {
		case ev := <-env.r.self.out:
			seen[ev.Object.GetName()] = true
		default:
		}
		return seen["whole"] && seen["other"], nil
	})
	if err != nil {
		t.Errorf("reconcile requests from the node informers for %v, want whole and other", seen)
	}

	cw, err := env.r.Get("whole")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := env.r.Get("slice")
	if err != nil {
		t.Fatal(err)
	}
	if cw.Key != cs.Key || cw.Client != cs.Client {
		t.Error("whole and slice do not share their connection")
	}
	// Key gives Get's key without building a Conn: the kubelet API asks it per pod.
	if key, err := env.r.Key("slice"); err != nil || key != cs.Key {
		t.Errorf("Key(slice) = %q, %v; want %q", key, err, cs.Key)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = env.r.Key("slice") }); n != 0 {
		t.Errorf("Key allocates %v times a call, want none", n)
	}
	if _, err := env.r.Key("nosuch"); !errors.Is(err, ErrSiteNotConnected) {
		t.Errorf("Key of an unknown Site: %v, want ErrSiteNotConnected", err)
	}
	if list, _ := cs.Nodes.List(labels.Everything()); len(list) != 1 {
		t.Errorf("slice's node lister shows %d nodes, want 1", len(list))
	}
	if cw.KubernetesVersion != "v1.35.4" || cw.Server != site1.URL {
		t.Errorf("Conn %+v", cw)
	}

	// A second reconcile without change writes nothing and records nothing.
	before := whole.ResourceVersion
	if _, again := env.reconcile(t, "whole"); again.ResourceVersion != before {
		t.Error("an unchanged site's status was written again")
	}

	// The slice's Secret moves to site2's kubeconfig, another cluster: refused, and the
	// slice keeps what its status said about site1.
	setSecret := func(kc []byte) {
		t.Helper()
		sec := &corev1.Secret{}
		if err := env.host.Get(t.Context(), client.ObjectKey{Namespace: "vk8s-system", Name: "b"}, sec); err != nil {
			t.Fatal(err)
		}
		sec.Data["kubeconfig"] = kc
		if err := env.host.Update(t.Context(), sec); err != nil {
			t.Fatal(err)
		}
	}
	if slice.Status.ClusterID != "uid-t1" {
		t.Errorf("slice's clusterID %q, want site1's, uid-t1", slice.Status.ClusterID)
	}
	setSecret(kc2)
	_, slice = env.reconcile(t, "slice")
	c := condition(t, slice, vk8sv1.ConditionConnected)
	if c.Status != metav1.ConditionFalse || c.Reason != ReasonClusterChanged {
		t.Errorf("slice's Connected %s %s, want False %s", c.Status, c.Reason, ReasonClusterChanged)
	}
	for _, want := range []string{"vk8s-system/b", site2.URL, "cluster ID uid-t2", "cluster ID uid-t1", "Point the Secret back", "delete the Site and create it again"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q does not say %q", c.Message, want)
		}
	}
	if slice.Status.ClusterID != "uid-t1" || slice.Status.NodeCount != 1 || !slices.Equal(slice.Status.VirtualNodes, []string{"slice-node1"}) {
		t.Errorf("refused slice: clusterID %q, %d %v; want site1's as they were", slice.Status.ClusterID, slice.Status.NodeCount, slice.Status.VirtualNodes)
	}
	if _, err := env.r.Get("slice"); !errors.Is(err, ErrSiteDown) {
		t.Errorf("Get(slice) on another cluster: %v, want ErrSiteDown", err)
	}
	if _, err := env.r.Key("slice"); !errors.Is(err, ErrSiteDown) {
		t.Errorf("Key(slice) on another cluster: %v, want ErrSiteDown", err)
	}
	if evs := env.events(); len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning "+ReasonClusterChanged) {
		t.Errorf("events %q, want one Warning %s", evs, ReasonClusterChanged)
	}
	// A heartbeat later: still refused, without reading the Secret or probing again.
	if _, again := env.reconcile(t, "slice"); condition(t, again, vk8sv1.ConditionConnected).Reason != ReasonClusterChanged {
		t.Errorf("slice after a heartbeat: %+v", again.Status.Conditions)
	}
	if got := connections(); got != 2 {
		t.Errorf("connections %v, want 2 (site1's for whole, site2's for other)", got)
	}

	// Back to site1, with other credentials (a rotated token): the slice moves to a
	// connection of its own, and site1's stays for whole.
	site1.allow("t1-rotated")
	setSecret(testKubeconfig(t, site1.URL, site1.caPEM(), "t1-rotated", nil))
	_, slice = env.reconcile(t, "slice")
	if c := condition(t, slice, vk8sv1.ConditionConnected); c.Status != metav1.ConditionTrue {
		t.Errorf("slice back on site1: Connected %s %s: %s", c.Status, c.Reason, c.Message)
	}
	if cs, err := env.r.Get("slice"); err != nil || cs.Server != site1.URL || cs.Key == cw.Key {
		t.Errorf("slice's connection after the rotation: %+v, %v; want site1 with a key of its own", cs, err)
	}
	if got := connections(); got != 3 {
		t.Errorf("connections %v, want 3", got)
	}

	// Deleting "whole" and "other" closes their connections; the slice keeps site2's.
	for _, name := range []string{"whole", "other"} {
		if err := env.host.Delete(t.Context(), &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := connections(); got != 1 {
		t.Errorf("connections %v after deleting two sites, want 1 (the slice's)", got)
	}
	if _, err := env.r.Get("whole"); !errors.Is(err, ErrSiteNotConnected) {
		t.Errorf("Get of a deleted site: %v, want ErrSiteNotConnected", err)
	}
	if _, err := env.r.Get("slice"); err != nil {
		t.Errorf("Get(slice): %v", err)
	}
	if n := testutil.CollectAndCount(env.metrics, "vk8s_sitereg_site_connected"); n != 1 {
		t.Errorf("%d site_connected series, want 1 (deleted sites drop theirs)", n)
	}
	if n := testutil.CollectAndCount(env.metrics, "vk8s_sitereg_tcp_connections"); n != 1 {
		t.Errorf("%d tcp_connections series, want 1 (closed connections drop theirs)", n)
	}
	// Deleted sites drop their call series, and shared connections the series of the
	// Sites they served together.
	for _, site := range []string{"whole", "other", "slice,whole", "other,slice"} {
		if v := siteCalls(t, env.metrics, site, "", ""); v != 0 {
			t.Errorf("site_requests_total{site=%q} = %v after the change, want no series", site, v)
		}
	}
	if v := siteCalls(t, env.metrics, "slice", "", ""); v == 0 {
		t.Error("site_requests_total{site=slice} has no calls")
	}

}

// A reconcile that reads a Site from a cache that has not seen the last status write yet
// must not take the site for new: no second Event, no moved transition time.
func TestReconcileWithStaleCacheRecordsNoSecondEvent(t *testing.T) {
	env := newTestEnv(t, testSite("s", "missing", nil))
	_, first := env.reconcile(t, "s")
	if evs := env.events(); len(evs) != 1 {
		t.Fatalf("first reconcile: events %q, want one", evs)
	}
	fresh := env.r.client
	env.r.client = interceptor.NewClient(fresh.(client.WithWatch), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := c.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			if s, ok := obj.(*vk8sv1.Site); ok {
				s.Status = vk8sv1.SiteStatus{} // as the cache had it before the first write
			}
			return nil
		},
	})
	env.r.now = func() time.Time { return time.Now().Add(time.Hour) }
	_, second := env.reconcile(t, "s")
	if evs := env.events(); len(evs) != 0 {
		t.Errorf("reconcile from a stale cache recorded %q, want nothing", evs)
	}
	a, b := condition(t, first, vk8sv1.ConditionConnected), condition(t, second, vk8sv1.ConditionConnected)
	if !a.LastTransitionTime.Equal(&b.LastTransitionTime) {
		t.Errorf("lastTransitionTime moved from %s to %s", a.LastTransitionTime, b.LastTransitionTime)
	}
}

func TestWatchTellsStatusChangesAndDeletions(t *testing.T) {
	env := newTestEnv(t, testSite("s", "missing", nil))
	watch := env.r.Watch()
	next := func(what string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			select {
			case ev := <-watch:
				return ev.Object.GetName() == "s", nil
			default:
				return false, nil
			}
		})
		if err != nil {
			t.Fatalf("no request for s on the Watch channel after %s", what)
		}
	}
	env.reconcile(t, "s")
	next("its first status")
	if err := env.host.Delete(t.Context(), &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "s"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Name: "s"}}); err != nil {
		t.Fatal(err)
	}
	next("its deletion")
}

// A heartbeat that changes nothing but lastHeartbeatTime is not news for the watchers: with
// 1,000 Sites it would wake every watcher 33 times a second for nothing.
func TestWatchSkipsHeartbeats(t *testing.T) {
	site := newFakeAPIServer(t, "t", node("node1", true, "16", "64Gi", nil))
	env := newTestEnv(t,
		testSecret("kc", map[string][]byte{"kubeconfig": testKubeconfig(t, site.URL, site.caPEM(), "t", nil)}),
		testSite("s", "kc", nil),
	)
	now := time.Now()
	env.r.now = func() time.Time { return now }
	watch := env.r.Watch()
	// requests counts the requests for s until the channel has been quiet for quiet.
	requests := func(quiet time.Duration) int {
		n := 0
		for {
			select {
			case ev := <-watch:
				if ev.Object.GetName() == "s" {
					n++
				}
			case <-time.After(quiet):
				return n
			}
		}
	}
	_, first := env.reconcile(t, "s")
	if n := requests(500 * time.Millisecond); n == 0 {
		t.Fatal("no request for s after its first status")
	}
	now = now.Add(env.r.cfg.HeartbeatInterval)
	_, second := env.reconcile(t, "s")
	if second.Status.LastHeartbeatTime.Equal(first.Status.LastHeartbeatTime) {
		t.Fatalf("lastHeartbeatTime stayed at %s: the second reconcile did not probe", first.Status.LastHeartbeatTime)
	}
	if n := requests(500 * time.Millisecond); n != 0 {
		t.Errorf("%d requests for s after a heartbeat that changed nothing else, want 0", n)
	}
}

// Sites that share a cluster share its site namespaces, whose Pod Security level is the
// strictest of theirs; a change of a Site's level reaches Get, PodSecurity and the
// watchers.
func TestPodSecurityOfSharedConnection(t *testing.T) {
	api := newFakeAPIServer(t, "t", node("node1", true, "16", "64Gi", nil), node("node2", true, "16", "64Gi", nil))
	whole := testSite("whole", "kc", nil)
	whole.Spec.PodSecurity.Enforce = vk8sv1.PodSecurityPrivileged
	slice := testSite("slice", "kc", map[string]string{corev1.LabelHostname: "node1"}) // no level: baseline
	env := newTestEnv(t, testSecret("kc", map[string][]byte{"kubeconfig": testKubeconfig(t, api.URL, api.caPEM(), "t", nil)}), whole, slice)
	watch := env.r.Watch()
	env.reconcile(t, "whole")
	env.reconcile(t, "slice")

	check := func(what string, wantWhole, wantSlice, wantNamespaces vk8sv1.PodSecurityLevel) {
		t.Helper()
		cw, err := env.r.Get("whole")
		if err != nil {
			t.Fatal(err)
		}
		cs, err := env.r.Get("slice")
		if err != nil {
			t.Fatal(err)
		}
		if cw.PodSecurity != wantWhole || cs.PodSecurity != wantSlice {
			t.Errorf("%s: PodSecurity whole %q slice %q, want %q %q", what, cw.PodSecurity, cs.PodSecurity, wantWhole, wantSlice)
		}
		if cw.NamespacePodSecurity != wantNamespaces || cs.NamespacePodSecurity != wantNamespaces || env.r.PodSecurity(cw.Key) != wantNamespaces {
			t.Errorf("%s: NamespacePodSecurity whole %q slice %q, PodSecurity(key) %q, want %q",
				what, cw.NamespacePodSecurity, cs.NamespacePodSecurity, env.r.PodSecurity(cw.Key), wantNamespaces)
		}
	}
	check("at first", vk8sv1.PodSecurityPrivileged, vk8sv1.PodSecurityBaseline, vk8sv1.PodSecurityBaseline)
	if got := env.r.PodSecurity("no such connection"); got != vk8sv1.PodSecurityBaseline {
		t.Errorf("PodSecurity of an unknown connection = %q, want baseline", got)
	}

	// Drain what the first statuses and the node informer sent.
	for drained := false; !drained; {
		select {
		case <-watch:
		case <-time.After(300 * time.Millisecond):
			drained = true
		}
	}
	// The slice allows privileged pods too (the API server bumps the generation of a
	// spec change): the namespaces follow, and the watchers hear of it.
	s := &vk8sv1.Site{}
	if err := env.host.Get(t.Context(), client.ObjectKey{Name: "slice"}, s); err != nil {
		t.Fatal(err)
	}
	s.Spec.PodSecurity.Enforce = vk8sv1.PodSecurityPrivileged
	s.Generation++
	if err := env.host.Update(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	env.reconcile(t, "slice")
	check("after the slice changed", vk8sv1.PodSecurityPrivileged, vk8sv1.PodSecurityPrivileged, vk8sv1.PodSecurityPrivileged)
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		select {
		case ev := <-watch:
			return ev.Object.GetName() == "slice", nil
		default:
			return false, nil
		}
	})
	if err != nil {
		t.Error("no request for slice on the Watch channel after its spec.podSecurity changed")
	}

	// A Site that goes takes its level with it.
	if err := env.host.Delete(t.Context(), &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "whole"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Name: "whole"}}); err != nil {
		t.Fatal(err)
	}
	if err := env.host.Get(t.Context(), client.ObjectKey{Name: "slice"}, s); err != nil {
		t.Fatal(err)
	}
	s.Spec.PodSecurity.Enforce = vk8sv1.PodSecurityRestricted
	s.Generation++
	if err := env.host.Update(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	env.reconcile(t, "slice")
	cs, err := env.r.Get("slice")
	if err != nil {
		t.Fatal(err)
	}
	if cs.PodSecurity != vk8sv1.PodSecurityRestricted || cs.NamespacePodSecurity != vk8sv1.PodSecurityRestricted {
		t.Errorf("slice alone: PodSecurity %q NamespacePodSecurity %q, want restricted", cs.PodSecurity, cs.NamespacePodSecurity)
	}
}

// TestReconcileNodeNameCollisions: Site a's node b-c and Site a-b's node c are both virtual
// node a-b-c. The older Site a has it; a-b is not Ready (NodeNameCollision, naming Site a
// and the node), its status leaves a-b-c out, and Collisions tells the virtual nodes so.
// When a is deleted, a-b is woken and has the name.
func TestReconcileNodeNameCollisions(t *testing.T) {
	first := newFakeAPIServer(t, "t1", node("b-c", true, "1", "1Gi", nil), node("d", true, "1", "1Gi", nil))
	second := newFakeAPIServer(t, "t2", node("c", true, "1", "1Gi", nil), node("e", true, "1", "1Gi", nil))
	older, younger := testSite("a", "kc1", nil), testSite("a-b", "kc2", nil)
	older.CreationTimestamp = metav1.NewTime(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	younger.CreationTimestamp = metav1.NewTime(older.CreationTimestamp.Add(time.Minute))
	env := newTestEnv(t,
		testSecret("kc1", map[string][]byte{"kubeconfig": testKubeconfig(t, first.URL, first.caPEM(), "t1", nil)}),
		testSecret("kc2", map[string][]byte{"kubeconfig": testKubeconfig(t, second.URL, second.caPEM(), "t2", nil)}),
		older, younger,
	)
	watch := env.r.Watch()

	_, a := env.reconcile(t, "a")
	_, ab := env.reconcile(t, "a-b")
	if r := condition(t, a, vk8sv1.ConditionReady); r.Status != metav1.ConditionTrue || !slices.Equal(a.Status.VirtualNodes, []string{"a-b-c", "a-d"}) {
		t.Errorf("a: Ready %s %s, virtualNodes %v; want True with a-b-c and a-d", r.Status, r.Reason, a.Status.VirtualNodes)
	}
	r := condition(t, ab, vk8sv1.ConditionReady)
	if r.Status != metav1.ConditionFalse || r.Reason != ReasonNodeNameCollision || !slices.Equal(ab.Status.VirtualNodes, []string{"a-b-e"}) {
		t.Errorf("a-b: Ready %s %s, virtualNodes %v; want False %s with a-b-e only", r.Status, r.Reason, ab.Status.VirtualNodes, ReasonNodeNameCollision)
	}
	if want := "a-b-c (its node c) is Site a's (its node b-c)"; !strings.Contains(r.Message, want) {
		t.Errorf("a-b: Ready message %q does not say %q", r.Message, want)
	}
	if evs := env.events(); !slices.ContainsFunc(evs, func(e string) bool { return strings.HasPrefix(e, "Warning NodeNameCollision") }) {
		t.Errorf("events %q, want a Warning NodeNameCollision", evs)
	}
	cols, err := env.r.Collisions(t.Context(), ab, []string{"a-b-c", "a-b-e"})
	if err != nil || !slices.Equal(cols, []Collision{{Name: "a-b-c", Node: "c", Keeper: "a", KeeperNode: "b-c"}}) {
		t.Errorf("Collisions(a-b) = %+v, %v; want a-b-c kept by a", cols, err)
	}
	if cols, err := env.r.Collisions(t.Context(), a, []string{"a-b-c", "a-d"}); err != nil || len(cols) != 0 {
		t.Errorf("Collisions(a) = %+v, %v; want none", cols, err)
	}
	// Reconciled again, each keeps what it has.
	if _, again := env.reconcile(t, "a-b"); !slices.Equal(again.Status.VirtualNodes, []string{"a-b-e"}) {
		t.Errorf("a-b reconciled again: virtualNodes %v", again.Status.VirtualNodes)
	}

	// Let the node informers' first requests pass, then delete a.
	for quiet := false; !quiet; {
		select {
		case <-watch:
		case <-env.r.self.out:
		case <-time.After(300 * time.Millisecond):
			quiet = true
		}
	}
	if err := env.host.Delete(t.Context(), older); err != nil {
		t.Fatal(err)
	}
	if _, err := env.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	woken := map[string]bool{}
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		select {
		case ev := <-watch:
			woken["watch "+ev.Object.GetName()] = true
		case ev := <-env.r.self.out:
			woken["registry "+ev.Object.GetName()] = true
		default:
		}
		return woken["watch a-b"] && woken["registry a-b"], nil
	})
	if err != nil {
		t.Errorf("requests after a was deleted: %v; want a-b for the registry and the watchers", woken)
	}
	_, ab = env.reconcile(t, "a-b")
	if r := condition(t, ab, vk8sv1.ConditionReady); r.Status != metav1.ConditionTrue || !slices.Equal(ab.Status.VirtualNodes, []string{"a-b-c", "a-b-e"}) {
		t.Errorf("a-b after a is gone: Ready %s %s, virtualNodes %v; want True with a-b-c and a-b-e", r.Status, r.Reason, ab.Status.VirtualNodes)
	}
	if evs := env.events(); !slices.ContainsFunc(evs, func(e string) bool { return strings.HasPrefix(e, "Normal NodesReady") }) {
		t.Errorf("events %q, want a Normal NodesReady", evs)
	}
}

// TestReconcileHostOwnNodeCollision: a virtual node name that is a Node of the host itself
// (no vk8s.io/site label: a kubelet's) is not the Site's: the Site is Ready=False with
// NodeNameCollision and leaves the Node alone; a virtual node of that name is no collision.
func TestReconcileHostOwnNodeCollision(t *testing.T) {
	site := newFakeAPIServer(t, "t1", node("node1", true, "1", "1Gi", nil), node("node2", true, "1", "1Gi", nil))
	own := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "host-node1", Labels: map[string]string{corev1.LabelHostname: "host-node1"}}}
	virtual := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "host-node2", Labels: map[string]string{vk8sv1.LabelSite: "host"}}}
	env := newTestEnv(t,
		testSecret("kc1", map[string][]byte{"kubeconfig": testKubeconfig(t, site.URL, site.caPEM(), "t1", nil)}),
		testSite("host", "kc1", nil), own, virtual,
	)
	_, got := env.reconcile(t, "host")
	r := condition(t, got, vk8sv1.ConditionReady)
	if r.Status != metav1.ConditionFalse || r.Reason != ReasonNodeNameCollision || !slices.Equal(got.Status.VirtualNodes, []string{"host-node2"}) {
		t.Errorf("host: Ready %s %s, virtualNodes %v; want False %s with host-node2 only", r.Status, r.Reason, got.Status.VirtualNodes, ReasonNodeNameCollision)
	}
	if want := "host-node1 (its node node1) is a Node of the host itself"; !strings.Contains(r.Message, want) {
		t.Errorf("Ready message %q does not say %q", r.Message, want)
	}
	cols, err := env.r.Collisions(t.Context(), got, []string{"host-node1", "host-node2", "host-node3"})
	if err != nil || !slices.Equal(cols, []Collision{{Name: "host-node1", Node: "node1", HostNode: true}}) {
		t.Errorf("Collisions = %+v, %v; want host-node1, a Node of the host", cols, err)
	}
}

// TestClusterChangedIsRefused: a Site whose Secret changes to a kubeconfig of another
// cluster is refused (ClusterChanged) and nothing is written on that cluster, not even the
// tenant claim; pointing the Secret back connects it again, and a Site created again
// takes the other cluster on purpose.
func TestClusterChangedIsRefused(t *testing.T) {
	a := newFakeAPIServer(t, "ta", node("n1", true, "1", "1Gi", nil))
	b := newFakeAPIServer(t, "tb", node("n1", true, "1", "1Gi", nil))
	kcA := testKubeconfig(t, a.URL, a.caPEM(), "ta", nil)
	kcB := testKubeconfig(t, b.URL, b.caPEM(), "tb", nil)
	env := newTestEnvWith(t, Config{Claim: &Claim{Tenant: "vk8s", HostID: "host-uid", HostName: "host"}},
		testSecret("s", map[string][]byte{"kubeconfig": kcA}), testSite("s", "s", nil))
	setSecret := func(kc []byte) {
		t.Helper()
		sec := &corev1.Secret{}
		if err := env.host.Get(t.Context(), client.ObjectKey{Namespace: "vk8s-system", Name: "s"}, sec); err != nil {
			t.Fatal(err)
		}
		sec.Data["kubeconfig"] = kc
		if err := env.host.Update(t.Context(), sec); err != nil {
			t.Fatal(err)
		}
	}
	connected := func(s *vk8sv1.Site) {
		t.Helper()
		if c := condition(t, s, vk8sv1.ConditionConnected); c.Status != metav1.ConditionTrue {
			t.Fatalf("Connected %s %s: %s", c.Status, c.Reason, c.Message)
		}
		if _, err := env.r.Get(s.Name); err != nil {
			t.Fatalf("Get: %v", err)
		}
	}

	_, s := env.reconcile(t, "s")
	connected(s)
	if s.Status.ClusterID != "uid-ta" || !slices.Contains(a.written(), "POST /api/v1/namespaces/vk8s-system/configmaps") {
		t.Errorf("clusterID %q, writes on a %v; want uid-ta and the claim", s.Status.ClusterID, a.written())
	}

	setSecret(kcB)
	_, s = env.reconcile(t, "s")
	if c := condition(t, s, vk8sv1.ConditionConnected); c.Reason != ReasonClusterChanged {
		t.Errorf("Connected %s %s, want %s", c.Status, c.Reason, ReasonClusterChanged)
	}
	if r := condition(t, s, vk8sv1.ConditionReady); r.Status != metav1.ConditionFalse || r.Reason != ReasonClusterChanged {
		t.Errorf("Ready %s %s, want False %s", r.Status, r.Reason, ReasonClusterChanged)
	}
	if _, err := env.r.Get("s"); !errors.Is(err, ErrSiteDown) {
		t.Errorf("Get: %v, want ErrSiteDown", err)
	}
	if w := b.written(); len(w) != 0 {
		t.Errorf("the refused cluster was written to: %v", w)
	}
	if s.Status.ClusterID != "uid-ta" || !slices.Equal(s.Status.VirtualNodes, []string{"s-n1"}) {
		t.Errorf("status after the refusal: clusterID %q virtualNodes %v; want a's as they were", s.Status.ClusterID, s.Status.VirtualNodes)
	}
	if got := testutil.ToFloat64(env.r.metrics.connections); got != 0 {
		t.Errorf("connections %v, want 0: the refused one is closed, and so is a's, which no Site uses", got)
	}

	setSecret(kcA)
	_, s = env.reconcile(t, "s")
	connected(s)

	// Deleted and created again, the Site may go to b.
	if err := env.host.Delete(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if _, err := env.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Name: "s"}}); err != nil {
		t.Fatal(err)
	}
	setSecret(kcB)
	if err := env.host.Create(t.Context(), testSite("s", "s", nil)); err != nil {
		t.Fatal(err)
	}
	_, s = env.reconcile(t, "s")
	connected(s)
	if s.Status.ClusterID != "uid-tb" {
		t.Errorf("clusterID %q of the Site created again, want uid-tb", s.Status.ClusterID)
	}
}

// siteCalls sums vk8s_sitereg_site_requests_total over the series of a site, verb and
// code (empty: any).
func siteCalls(t *testing.T, reg *prometheus.Registry, site, verb, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != "vk8s_sitereg_site_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["site"] == site && (verb == "" || labels["verb"] == verb) && (code == "" || labels["code"] == code) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestOwnsLetsGoAndTakesOn: with Config.Owns (the replicas share the Sites), a Site another
// replica owns is neither connected nor given a status here; once owned it is, and the
// watchers hear of it; owned by another again, its connection closes, the watchers hear of
// it, and its status is left to the new owner.
func TestOwnsLetsGoAndTakesOn(t *testing.T) {
	site := newFakeAPIServer(t, "t", node("node1", true, "16", "64Gi", nil))
	var owned atomic.Bool
	env := newTestEnvWith(t, Config{Owns: func(string) bool { return owned.Load() }},
		testSecret("kc", map[string][]byte{"kubeconfig": testKubeconfig(t, site.URL, site.caPEM(), "t", nil)}),
		testSite("s", "kc", nil),
	)
	watch := env.r.Watch()
	heard := func() bool {
		select {
		case ev := <-watch:
			return ev.Object.GetName() == "s"
		case <-time.After(500 * time.Millisecond):
			return false
		}
	}
	connections := func() float64 { return testutil.ToFloat64(env.r.metrics.connections) }

	_, s := env.reconcile(t, "s")
	if len(s.Status.Conditions) != 0 || connections() != 0 {
		t.Fatalf("a Site another replica owns: conditions %v, %v connections; want none", s.Status.Conditions, connections())
	}
	if _, err := env.r.Get("s"); !errors.Is(err, ErrSiteNotConnected) {
		t.Errorf("Get of a Site another replica owns = %v, want ErrSiteNotConnected", err)
	}

	owned.Store(true)
	env.r.OwnershipChanged("s")
	_, s = env.reconcile(t, "s")
	if c := condition(t, s, vk8sv1.ConditionConnected); c.Status != metav1.ConditionTrue || connections() != 1 {
		t.Fatalf("the Site taken on: Connected %s %s, %v connections", c.Status, c.Message, connections())
	}
	if !heard() {
		t.Error("the watchers did not hear of the Site taken on")
	}

	owned.Store(false)
	_, before := env.reconcile(t, "s")
	if connections() != 0 {
		t.Errorf("%v connections after the Site went to another replica, want 0", connections())
	}
	if _, err := env.r.Get("s"); !errors.Is(err, ErrSiteNotConnected) {
		t.Errorf("Get of a Site gone to another replica = %v, want ErrSiteNotConnected", err)
	}
	if !heard() {
		t.Error("the watchers did not hear of the Site gone to another replica")
	}
	_, after := env.reconcile(t, "s")
	if !equality.Semantic.DeepEqual(before.Status, after.Status) {
		t.Errorf("the status of a Site another replica owns changed here:\n%+v\n%+v", before.Status, after.Status)
	}
}

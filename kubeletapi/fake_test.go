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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vk8s-io/vk8s/sitereg"
)

// fakeResolver is the Resolver of the tests: tables of host pods, virtual nodes and site
// pods.
type fakeResolver struct {
	pods     map[string]*PodTarget  // host "ns/name"
	nodes    map[string]*NodeTarget // virtual node
	hostPods map[string]HostPod     // "site/ns/name" of the site pod
	nodePods map[string][]*corev1.Pod

	mu       sync.Mutex
	sitePods map[string]*corev1.Pod // "site/ns/name"
}

func (f *fakeResolver) Pod(_ context.Context, namespace, name string) (*PodTarget, error) {
	t, ok := f.pods[namespace+"/"+name]
	if !ok {
		return nil, errdefs.NotFoundf("host pod %s/%s", namespace, name)
	}
	return t, nil
}

func (f *fakeResolver) Node(_ context.Context, name string) (*NodeTarget, error) {
	t, ok := f.nodes[name]
	if !ok {
		return nil, errdefs.NotFoundf("virtual node %s", name)
	}
	return t, nil
}

func (f *fakeResolver) NodePods(_ context.Context, name string) ([]*corev1.Pod, error) {
	return f.nodePods[name], nil
}

func (f *fakeResolver) SitePod(site, namespace, name string) (*corev1.Pod, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.sitePods[site+"/"+namespace+"/"+name]
	return p, ok
}

// setSitePod puts p in the cache of site's pods, or removes namespace/name when p is nil.
func (f *fakeResolver) setSitePod(site, namespace, name string, p *corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sitePods == nil {
		f.sitePods = map[string]*corev1.Pod{}
	}
	key := site + "/" + namespace + "/" + name
	if p == nil {
		delete(f.sitePods, key)
		return
	}
	f.sitePods[key] = p
}

func (f *fakeResolver) HostPod(site, namespace, name string) (HostPod, bool) {
	p, ok := f.hostPods[site+"/"+namespace+"/"+name]
	return p, ok
}

// fakeSite is a site API server: handlers the test registers, and a connection to it.
type fakeSite struct {
	mux  *http.ServeMux
	srv  *httptest.Server
	conn *sitereg.Conn
}

func newFakeSite(t *testing.T, name string) *fakeSite {
	t.Helper()
	fs := &fakeSite{mux: http.NewServeMux()}
	fs.srv = httptest.NewServer(fs.mux)
	t.Cleanup(fs.srv.Close)
	cfg := &rest.Config{Host: fs.srv.URL}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fs.conn = &sitereg.Conn{Site: name, Config: cfg, Client: cs}
	return fs
}

// writeStatus answers as an API server does when it refuses.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"` + msg + `","reason":"` + string(reason) + `","code":` + itoa(code) + `}`))
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

// fakeHost is the host's API server for auth: tokens "admin-token" (user admin) and
// "alice-token" (user alice) are valid; admin (and apiserver-kubelet-client) may do
// anything, alice only read the stats of site1-node1. Every SubjectAccessReview is
// recorded. (client-go's fake clientset cannot serve them: the webhooks use the REST
// client directly.)
type fakeHost struct {
	kubernetes.Interface
	mu   sync.Mutex
	sars []authorizationv1.SubjectAccessReviewSpec
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	h := &fakeHost{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", func(w http.ResponseWriter, r *http.Request) {
		tr := &authenticationv1.TokenReview{}
		if err := json.NewDecoder(r.Body).Decode(tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch tr.Spec.Token {
		case "admin-token":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "admin"}}
		case "alice-token":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "alice"}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(tr)
	})
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/subjectaccessreviews", func(w http.ResponseWriter, r *http.Request) {
		sar := &authorizationv1.SubjectAccessReview{}
		if err := json.NewDecoder(r.Body).Decode(sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.sars = append(h.sars, sar.Spec)
		h.mu.Unlock()
		ra := sar.Spec.ResourceAttributes
		switch {
		case sar.Spec.User == "admin" || sar.Spec.User == "apiserver-kubelet-client":
			sar.Status.Allowed = true
		case sar.Spec.User == "alice" && ra != nil && ra.Subresource == "stats" && ra.Name == "site1-node1":
			sar.Status.Allowed = true
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sar)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	h.Interface = cs
	return h
}

func (h *fakeHost) lastSAR() authorizationv1.SubjectAccessReviewSpec {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sars) == 0 {
		return authorizationv1.SubjectAccessReviewSpec{}
	}
	return h.sars[len(h.sars)-1]
}

// testCA is a client CA and a client certificate it signed.
type testCA struct {
	pem        []byte
	clientCert tls.Certificate
}

func newTestCA(t *testing.T, clientCN string) testCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-client-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: clientCN, Organization: []string{"system:masters"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return testCA{
		pem:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		clientCert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
	}
}

// testServer is a Server behind an httptest TLS server (the shared endpoint), with a
// fresh metrics registry.
type testServer struct {
	*Server
	ts  *httptest.Server
	reg *prometheus.Registry
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	if cfg.TLS.validate() != nil {
		cfg.TLS = TLSConfig{SelfSigned: true}
	}
	cfg.MetricsRegisterer = reg
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s)
	ts.TLS = s.tlsCfg.Clone()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return &testServer{Server: s, ts: ts, reg: reg}
}

// client returns an HTTPS client of ts that presents cert when it is not nil.
func (ts *testServer) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a test's self-signed server
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
}

// restConfig is a client configuration for ts as the host API server's kubelet client.
func (ts *testServer) restConfig(token string) *rest.Config {
	return &rest.Config{Host: ts.ts.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

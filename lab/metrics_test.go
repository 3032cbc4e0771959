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

package lab

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestMetricsServerArgs(t *testing.T) {
	f := metricsServerFiles{
		Kubeconfig: "/lab/host/kubeconfig.yaml", CertDir: "/lab/metrics-server",
		TLSCert: "/lab/metrics-server/serving.crt", TLSKey: "/lab/metrics-server/serving.key",
		KubeletCA: "/lab/host/pki/ca.crt", ClientCert: "/lab/host/pki/admin.crt", ClientKey: "/lab/host/pki/admin.key",
		ClientCA: "/lab/host/pki/ca.crt", FrontProxyName: "kwok-admin",
	}
	args := metricsServerArgs(f, 4443, 15*time.Second)
	for _, want := range []string{
		"--kubeconfig=/lab/host/kubeconfig.yaml",
		"--authentication-kubeconfig=/lab/host/kubeconfig.yaml",
		"--authorization-kubeconfig=/lab/host/kubeconfig.yaml",
		"--client-ca-file=/lab/host/pki/ca.crt",
		"--requestheader-client-ca-file=/lab/host/pki/ca.crt",
		"--requestheader-allowed-names=kwok-admin",
		"--bind-address=127.0.0.1",
		"--secure-port=4443",
		"--cert-dir=/lab/metrics-server",
		"--tls-cert-file=/lab/metrics-server/serving.crt",
		"--tls-private-key-file=/lab/metrics-server/serving.key",
		"--kubelet-use-node-status-port",
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority=/lab/host/pki/ca.crt",
		"--kubelet-client-certificate=/lab/host/pki/admin.crt",
		"--kubelet-client-key=/lab/host/pki/admin.key",
		"--metric-resolution=15s",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("metrics-server args %v: missing %s", args, want)
		}
	}
	for _, a := range args {
		if strings.Contains(a, "insecure") {
			t.Errorf("metrics-server args: %s; the lab verifies the provider's certificate", a)
		}
	}
}

func TestEnsureServingCert(t *testing.T) {
	dir := t.TempDir()
	crtPath, keyPath := filepath.Join(dir, "ms", "serving.crt"), filepath.Join(dir, "ms", "serving.key")
	now := time.Now()
	first, renewed, err := ensureServingCert(crtPath, keyPath, now)
	if err != nil || !renewed {
		t.Fatalf("first ensureServingCert: renewed %v, error %v; want a new certificate", renewed, err)
	}
	if info, err := os.Stat(keyPath); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want mode 0600", info, err)
	}
	again, renewed, err := ensureServingCert(crtPath, keyPath, now)
	if err != nil || renewed || !bytes.Equal(first, again) {
		t.Errorf("second ensureServingCert: renewed %v, error %v, same bundle %v; want the same certificate kept", renewed, err, bytes.Equal(first, again))
	}
	if _, renewed, _ := ensureServingCert(crtPath, keyPath, now.Add(340*24*time.Hour)); !renewed {
		t.Error("a certificate 25 days before expiry was kept; want it renewed")
	}
	if err := os.WriteFile(crtPath, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, renewed, err := ensureServingCert(crtPath, keyPath, now); err != nil || !renewed {
		t.Errorf("garbage certificate: renewed %v, error %v; want a new one", renewed, err)
	}
}

// TestMetricsServerLiveVerifiesTLS serves /livez with the generated certificate and checks
// that the probe trusts it through the CA bundle alone, under the aggregator's server name,
// and refuses a server with another certificate.
func TestMetricsServerLiveVerifiesTLS(t *testing.T) {
	dir := t.TempDir()
	serve := func(name string) int {
		crt, key := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if _, _, err := ensureServingCert(crt, key, time.Now()); err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{ReadHeaderTimeout: time.Second, ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/livez" {
				http.NotFound(w, r)
			}
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().(*net.TCPAddr).Port
	}
	port, otherPort := serve("ms"), serve("other")
	bundle, err := os.ReadFile(filepath.Join(dir, "ms.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !metricsServerLive(t.Context(), port, bundle) {
		t.Error("metricsServerLive = false for a server with the lab's certificate")
	}
	if metricsServerLive(t.Context(), otherPort, bundle) {
		t.Error("metricsServerLive = true for a server whose certificate the bundle does not sign")
	}
	if metricsServerLive(t.Context(), 0, bundle) {
		t.Error("metricsServerLive = true without a port")
	}
}

func TestMetricsAPIObjects(t *testing.T) {
	svc := metricsService(4443)
	if svc.Namespace != "kube-system" || svc.Name != "metrics-server" || svc.Spec.Type != corev1.ServiceTypeExternalName ||
		svc.Spec.ExternalName != "127.0.0.1" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 4443 {
		t.Errorf("Service: %+v", svc)
	}
	as := metricsAPIService(4443, []byte("PEM"))
	if as.GetName() != "v1beta1.metrics.k8s.io" || as.GetKind() != "APIService" || as.GetAPIVersion() != "apiregistration.k8s.io/v1" {
		t.Errorf("APIService: %s %s %s", as.GetAPIVersion(), as.GetKind(), as.GetName())
	}
	for path, want := range map[string]any{
		"group": "metrics.k8s.io", "version": "v1beta1",
		"caBundle": base64.StdEncoding.EncodeToString([]byte("PEM")),
	} {
		if got, _, _ := unstructured.NestedFieldNoCopy(as.Object, "spec", path); got != want {
			t.Errorf("spec.%s = %v, want %v", path, got, want)
		}
	}
	for path, want := range map[string]any{"namespace": "kube-system", "name": "metrics-server", "port": int64(4443)} {
		if got, _, _ := unstructured.NestedFieldNoCopy(as.Object, "spec", "service", path); got != want {
			t.Errorf("spec.service.%s = %v, want %v", path, got, want)
		}
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(as.Object, "spec", "insecureSkipTLSVerify"); ok {
		t.Error("spec.insecureSkipTLSVerify is set; want the caBundle verified")
	}
}

func TestAPIServiceAvailable(t *testing.T) {
	cond := func(status, reason, message string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": []any{
			map[string]any{"type": "Available", "status": status, "reason": reason, "message": message},
		}}}}
	}
	for _, tc := range []struct {
		name   string
		obj    *unstructured.Unstructured
		ok     bool
		reason string
	}{
		{"available", cond("True", "Passed", "all checks passed"), true, ""},
		{"failing", cond("False", "FailedDiscoveryCheck", "x509: certificate signed by unknown authority"), false, "FailedDiscoveryCheck: x509"},
		{"no status yet", &unstructured.Unstructured{Object: map[string]any{}}, false, "no Available condition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := APIServiceAvailable(tc.obj)
			if ok != tc.ok || !strings.Contains(reason, tc.reason) {
				t.Errorf("APIServiceAvailable = %v, %q; want %v, %q", ok, reason, tc.ok, tc.reason)
			}
		})
	}
}

func TestCertCommonName(t *testing.T) {
	dir := t.TempDir()
	crt := filepath.Join(dir, "serving.crt")
	if _, _, err := ensureServingCert(crt, filepath.Join(dir, "serving.key"), time.Now()); err != nil {
		t.Fatal(err)
	}
	// client-go names its self-signed certificates <host>@<unix time>.
	if cn, err := certCommonName(crt); err != nil || !strings.HasPrefix(cn, metricsServerDNSName+"@") {
		t.Errorf("certCommonName = %q, %v; want %s@<time>", cn, err, metricsServerDNSName)
	}
	if _, err := certCommonName(filepath.Join(dir, "absent.crt")); err == nil {
		t.Error("certCommonName of a missing file: no error")
	}
}

func TestMetricsServerPIDIgnoresOtherProcesses(t *testing.T) {
	l, err := New(Config{Name: "pids", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if pid := l.metricsServer().pid(); pid != 0 {
		t.Errorf("no pid file: metricsServer().pid() = %d, want 0", pid)
	}
	// This test process is alive but is not a metrics-server.
	if err := writeFile(l.metricsServerPIDPath(), []byte(strconv.Itoa(os.Getpid()))); err != nil {
		t.Fatal(err)
	}
	if pid := l.metricsServer().pid(); pid != 0 {
		t.Errorf("pid file naming another process: metricsServer().pid() = %d, want 0", pid)
	}
	if err := l.metricsServer().stop(t.Context()); err != nil {
		t.Fatalf("metricsServer().stop: %v", err)
	}
	if _, err := os.Stat(l.metricsServerPIDPath()); !os.IsNotExist(err) {
		t.Errorf("pid file after stop: %v, want it removed", err)
	}
	if _, ok := l.metricsServer().status(); ok {
		t.Error("metricsServer().status() reports a process without a pid file")
	}
}

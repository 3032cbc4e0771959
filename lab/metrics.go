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
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// The lab runs metrics-server (built by hack/tools.sh) against the host, out of cluster, so
// that `kubectl top` and the HPA on the host read the provider's /metrics/resource:
//
//   - it scrapes every virtual node at the address and port the node advertises
//     (--kubelet-use-node-status-port, InternalIP), verifying the provider's serving
//     certificate against the host CA (the lab's kubelet-serving signer) and presenting the
//     host's admin certificate, which the provider authenticates against that CA;
//   - it serves metrics.k8s.io on a loopback port with a certificate the lab generates, and
//     the APIService v1beta1.metrics.k8s.io points the host's aggregator at it through an
//     ExternalName Service (kube-system/metrics-server, externalName 127.0.0.1). Without
//     --enable-aggregator-routing the aggregator dials a Service's ClusterIP, which nothing
//     routes out of cluster, or an ExternalName's host and the APIService's port; endpoints
//     could not be loopback anyway. The aggregator verifies the certificate against the
//     APIService's caBundle with the name metrics-server.kube-system.svc;
//   - it trusts the aggregator's front-proxy certificate (kwokctl: the admin certificate) to
//     name the user in X-Remote-* headers, so it authorizes the user who asked.
const (
	// MetricsServerComponent names the lab's metrics-server process in pid and log files and
	// in Status.
	MetricsServerComponent = "metrics-server"
	// MetricsAPIService is the APIService the lab registers with the host.
	MetricsAPIService = "v1beta1.metrics.k8s.io"

	metricsServerNamespace = "kube-system"
	metricsServerService   = "metrics-server"
	// metricsServerAddress is where metrics-server listens and where the aggregator dials it.
	metricsServerAddress = "127.0.0.1"
	// defaultMetricsResolution is metrics-server's scrape interval unless
	// Config.MetricsResolution says otherwise; minMetricsResolution is metrics-server's least.
	defaultMetricsResolution = 15 * time.Second
	minMetricsResolution     = 10 * time.Second
	// metricsServerCertRenewal is how long before expiry the lab makes a new serving cert.
	metricsServerCertRenewal = 30 * 24 * time.Hour
	// apiServiceTimeout bounds the wait for the host's aggregator to find metrics-server.
	apiServiceTimeout = time.Minute
)

// metricsServerDNSName is the name the aggregator expects in metrics-server's certificate.
const metricsServerDNSName = metricsServerService + "." + metricsServerNamespace + ".svc"

var apiServiceGVK = schema.GroupVersionKind{Group: "apiregistration.k8s.io", Version: "v1", Kind: "APIService"}

// metricsServerState is what the lab records about the running metrics-server.
type metricsServerState struct {
	Binary      string `json:"binary"`
	BinaryMTime int64  `json:"binaryMTime"`
	SecurePort  int    `json:"securePort"`
	// Args are its flags; a lab whose code passes others restarts it.
	Args []string `json:"args"`
}

func (l *Lab) metricsServerDir() string { return filepath.Join(l.cfg.Dir, MetricsServerComponent) }
func (l *Lab) metricsServerStatePath() string {
	return filepath.Join(l.metricsServerDir(), "state.json")
}
func (l *Lab) metricsServerPIDPath() string {
	return filepath.Join(l.cfg.Dir, "pids", MetricsServerComponent+".pid")
}
func (l *Lab) metricsServerLogPath() string {
	return filepath.Join(l.cfg.Dir, "logs", MetricsServerComponent+".log")
}

// metricsServerFiles are the files metrics-server is started with.
type metricsServerFiles struct {
	Kubeconfig string // the host's
	CertDir    string
	// TLSCert and TLSKey are its serving certificate (with its CA) and key.
	TLSCert, TLSKey string
	// KubeletCA verifies the provider's serving certificate: the host's kubelet-serving signer.
	KubeletCA string
	// ClientCert and ClientKey are what it presents to the provider.
	ClientCert, ClientKey string
	// ClientCA verifies client certificates, the host aggregator's front-proxy one included.
	ClientCA string
	// FrontProxyName is the common name of the certificate the host's aggregator proxies
	// with (kwokctl: the admin certificate, --proxy-client-cert-file).
	FrontProxyName string
}

// metricsServerArgs are metrics-server's flags in the lab.
func metricsServerArgs(f metricsServerFiles, port int, resolution time.Duration) []string {
	return []string{
		"--kubeconfig=" + f.Kubeconfig,
		// Out of cluster there is no in-cluster config to delegate authn/authz with.
		"--authentication-kubeconfig=" + f.Kubeconfig,
		"--authorization-kubeconfig=" + f.Kubeconfig,
		// The CAs as files rather than from kube-system/extension-apiserver-authentication,
		// which has no requestheader CA because kwokctl sets no --requestheader-client-ca-file:
		// so the aggregator's front-proxy certificate is trusted to name the user (X-Remote-*
		// headers) and metrics-server authorizes the user, not the aggregator.
		"--client-ca-file=" + f.ClientCA,
		"--requestheader-client-ca-file=" + f.ClientCA,
		"--requestheader-allowed-names=" + f.FrontProxyName,
		"--bind-address=" + metricsServerAddress,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + f.CertDir,
		"--tls-cert-file=" + f.TLSCert,
		"--tls-private-key-file=" + f.TLSKey,
		"--kubelet-use-node-status-port",
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority=" + f.KubeletCA,
		"--kubelet-client-certificate=" + f.ClientCert,
		"--kubelet-client-key=" + f.ClientKey,
		"--metric-resolution=" + resolution.String(),
		// The virtual nodes only: the host's own kwok nodes serve no metrics in the lab.
		"--node-selector=" + vk8sv1.LabelType + "=" + vk8sv1.TypeVirtualKubelet,
		// V(1) logs one line per scrape cycle with the node and pod counts.
		"--v=1",
	}
}

// ensureMetricsServer runs metrics-server against the host, unless it already runs with the
// same binary, flags and certificate, registers it as the host's metrics.k8s.io, and waits
// until the host's aggregator reports it Available.
func (l *Lab) ensureMetricsServer(ctx context.Context) error {
	bin, err := l.cfg.Tools.Path(MetricsServerComponent)
	if err != nil {
		return err
	}
	info, err := os.Stat(bin)
	if err != nil {
		return err
	}
	kubeconfig, err := l.Kubeconfig("host")
	if err != nil {
		return err
	}
	files := metricsServerFiles{
		Kubeconfig: kubeconfig,
		CertDir:    l.metricsServerDir(),
		TLSCert:    filepath.Join(l.metricsServerDir(), "serving.crt"),
		TLSKey:     filepath.Join(l.metricsServerDir(), "serving.key"),
		KubeletCA:  l.CACertPath("host"),
		ClientCert: filepath.Join(l.pkiDir("host"), "admin.crt"),
		ClientKey:  filepath.Join(l.pkiDir("host"), "admin.key"),
		ClientCA:   l.CACertPath("host"),
	}
	// kwokctl's API server proxies to aggregated APIs with the admin certificate.
	if files.FrontProxyName, err = certCommonName(files.ClientCert); err != nil {
		return fmt.Errorf("host front-proxy certificate: %w", err)
	}
	caBundle, renewed, err := ensureServingCert(files.TLSCert, files.TLSKey, time.Now())
	if err != nil {
		return fmt.Errorf("%s serving certificate: %w", MetricsServerComponent, err)
	}
	st, _ := l.readMetricsServerState()
	if pid := l.metricsServer().pid(); !renewed && pid > 0 && st.Binary == bin && st.BinaryMTime == info.ModTime().UnixNano() &&
		slices.Equal(st.Args, metricsServerArgs(files, st.SecurePort, l.cfg.MetricsResolution)) && metricsServerLive(ctx, st.SecurePort, caBundle) {
		l.logf("%s: running", MetricsServerComponent)
	} else {
		if st, err = l.startMetricsServer(ctx, bin, info.ModTime().UnixNano(), files, st.SecurePort, caBundle); err != nil {
			return err
		}
	}
	return l.registerMetricsAPI(ctx, st.SecurePort, caBundle)
}

// startMetricsServer (re)starts metrics-server, on the port it had when that is free, and
// waits until it is live.
func (l *Lab) startMetricsServer(ctx context.Context, bin string, mtime int64, files metricsServerFiles, port int, caBundle []byte) (metricsServerState, error) {
	if err := l.metricsServer().stop(ctx); err != nil {
		return metricsServerState{}, err
	}
	if !portFree(port) {
		ports, err := freePorts(1)
		if err != nil {
			return metricsServerState{}, err
		}
		port = ports[0]
	}
	st := metricsServerState{Binary: bin, BinaryMTime: mtime, SecurePort: port, Args: metricsServerArgs(files, port, l.cfg.MetricsResolution)}
	if err := os.MkdirAll(filepath.Dir(l.metricsServerLogPath()), 0o755); err != nil {
		return st, err
	}
	logFile, err := os.OpenFile(l.metricsServerLogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return st, err
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(bin, st.Args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own session: it outlives `vk8s lab up`, as kwokctl's processes do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	l.logf("%s: starting on %s:%d (log %s)", MetricsServerComponent, metricsServerAddress, port, l.metricsServerLogPath())
	if err := cmd.Start(); err != nil {
		return st, fmt.Errorf("start %s: %w", MetricsServerComponent, err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it dies while we wait
	if err := writeFile(l.metricsServerPIDPath(), []byte(strconv.Itoa(cmd.Process.Pid))); err != nil {
		_ = cmd.Process.Kill()
		return st, err
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return st, err
	}
	if err := writeFile(l.metricsServerStatePath(), raw); err != nil {
		return st, err
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if !ProcessRunning(cmd.Process.Pid) {
			return false, errors.New("it exited")
		}
		return metricsServerLive(ctx, port, caBundle), nil
	})
	if err != nil {
		// Not left half-started: the next Up starts it afresh.
		_ = l.metricsServer().stop(ctx)
		return st, fmt.Errorf("%s is not live: %w; log: %s\n%s", MetricsServerComponent, err, l.metricsServerLogPath(), l.metricsServerLogTail())
	}
	return st, nil
}

func (l *Lab) metricsServerLogTail() string {
	raw, _ := os.ReadFile(l.metricsServerLogPath())
	return tail(string(raw), 10)
}

func (l *Lab) readMetricsServerState() (metricsServerState, error) {
	var st metricsServerState
	raw, err := os.ReadFile(l.metricsServerStatePath())
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(raw, &st)
}

// metricsServerLive says whether metrics-server answers /livez with 200 over TLS verified
// against the lab's CA for it. /livez, unlike /readyz, does not wait for the first metrics,
// which kwok sites without resource metrics never give.
func metricsServerLive(ctx context.Context, port int, caBundle []byte) bool {
	if port <= 0 {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		return false
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: metricsServerDNSName, MinVersion: tls.VersionTLS12},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s/livez", net.JoinHostPort(metricsServerAddress, strconv.Itoa(port))), nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// portFree says whether nothing listens on the loopback port.
func portFree(port int) bool {
	if port <= 0 {
		return false
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(metricsServerAddress, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// ensureServingCert returns the CA bundle of metrics-server's serving certificate, making
// a new self-signed CA and certificate when there is none, or when the one there does not
// name metrics-server.kube-system.svc or expires within metricsServerCertRenewal; renewed
// says it did.
func ensureServingCert(certPath, keyPath string, now time.Time) (caBundle []byte, renewed bool, err error) {
	if pem, err := os.ReadFile(certPath); err == nil && servingCertValid(pem, now) {
		if _, err := os.Stat(keyPath); err == nil {
			return pem, false, nil
		}
	}
	// The certificate file holds the serving certificate followed by its CA.
	crt, key, err := certutil.GenerateSelfSignedCertKey(metricsServerDNSName, []net.IP{net.ParseIP(metricsServerAddress)}, []string{"localhost"})
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(certPath, crt, 0o644); err != nil {
		return nil, false, err
	}
	return crt, true, nil
}

// certCommonName is the common name of the first certificate in a PEM file.
func certCommonName(path string) (string, error) {
	certs, err := certutil.CertsFromFile(path)
	if err != nil {
		return "", err
	}
	if certs[0].Subject.CommonName == "" {
		return "", fmt.Errorf("%s: certificate without a common name", path)
	}
	return certs[0].Subject.CommonName, nil
}

// servingCertValid says whether the first certificate of pem serves metricsServerDNSName
// and lives past the renewal margin.
func servingCertValid(pem []byte, now time.Time) bool {
	certs, err := certutil.ParseCertsPEM(pem)
	if err != nil || len(certs) == 0 {
		return false
	}
	leaf := certs[0]
	return leaf.VerifyHostname(metricsServerDNSName) == nil && now.Add(metricsServerCertRenewal).Before(leaf.NotAfter)
}

// metricsService is the Service the APIService names: an ExternalName for the loopback
// address, which the host's aggregator dials with the APIService's port.
func metricsService(port int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: metricsServerNamespace, Name: metricsServerService, Labels: map[string]string{"app.kubernetes.io/name": MetricsServerComponent}},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: metricsServerAddress,
			Ports:        []corev1.ServicePort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}},
		},
	}
}

// metricsAPIService is the APIService v1beta1.metrics.k8s.io for metrics-server on port.
func metricsAPIService(port int, caBundle []byte) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(apiServiceGVK)
	u.SetName(MetricsAPIService)
	u.SetLabels(map[string]string{"app.kubernetes.io/name": MetricsServerComponent})
	u.Object["spec"] = map[string]any{
		"group":                "metrics.k8s.io",
		"version":              "v1beta1",
		"groupPriorityMinimum": int64(100),
		"versionPriority":      int64(100),
		"caBundle":             base64.StdEncoding.EncodeToString(caBundle),
		"service": map[string]any{
			"namespace": metricsServerNamespace,
			"name":      metricsServerService,
			"port":      int64(port),
		},
	}
	return u
}

// registerMetricsAPI applies the Service and the APIService and waits until the host's
// aggregator reports the APIService Available.
func (l *Lab) registerMetricsAPI(ctx context.Context, port int, caBundle []byte) error {
	c, err := l.Client("host")
	if err != nil {
		return err
	}
	want := metricsService(port)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: want.Namespace, Name: want.Name}}
	if err := apply(ctx, c, svc, func() {
		svc.Labels = want.Labels
		svc.Spec = want.Spec
	}); err != nil {
		return err
	}
	wantAS := metricsAPIService(port, caBundle)
	as := &unstructured.Unstructured{}
	as.SetGroupVersionKind(apiServiceGVK)
	as.SetName(wantAS.GetName())
	if err := apply(ctx, c, as, func() {
		as.SetLabels(wantAS.GetLabels())
		as.Object["spec"] = wantAS.Object["spec"]
	}); err != nil {
		return err
	}
	var reason string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, apiServiceTimeout, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(apiServiceGVK)
		if err := c.Get(ctx, client.ObjectKey{Name: MetricsAPIService}, got); err != nil {
			reason = err.Error()
			return false, nil
		}
		var ok bool
		ok, reason = APIServiceAvailable(got)
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("APIService %s not Available after %s: %s; %s log: %s\n%s", MetricsAPIService, apiServiceTimeout, reason,
			MetricsServerComponent, l.metricsServerLogPath(), l.metricsServerLogTail())
	}
	l.logf("%s: APIService %s Available", MetricsServerComponent, MetricsAPIService)
	return nil
}

// APIServiceAvailable says whether an APIService's Available condition is True and, when
// not, the condition's reason and message.
func APIServiceAvailable(u *unstructured.Unstructured) (bool, string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Available" {
			continue
		}
		if m["status"] == "True" {
			return true, ""
		}
		return false, fmt.Sprintf("%v: %v", m["reason"], m["message"])
	}
	return false, "no Available condition yet"
}

// MetricsServerLog is the path of the lab's metrics-server log.
func (l *Lab) MetricsServerLog() string { return l.metricsServerLogPath() }

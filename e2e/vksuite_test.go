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
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	vke2e "github.com/virtual-kubelet/virtual-kubelet/test/e2e"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/kubeletapi"
	"github.com/vk8s-io/vk8s/lab"
)

// kubeletExposure is where the shared provider (startProvider) serves its kubelet API.
type kubeletExposure struct {
	// address is advertised in the virtual nodes (and named in the serving certificate).
	address string
	// bind is the IP listened on.
	bind string
	// nodePorts, when set, gives every virtual node a port of its own.
	nodePorts kubeletapi.PortRange
}

// loopbackKubelet is how the provider runs for most tests: one port on loopback, which
// the host's API server dials for logs and exec.
var loopbackKubelet = kubeletExposure{address: "127.0.0.1", bind: "127.0.0.1"}

// providerKubelet is the exposure startProvider runs the provider with; guarded by
// providerMu.
var providerKubelet = loopbackKubelet

// suiteNodePorts are the virtual nodes' kubelet ports while TestVirtualKubeletSuite runs.
// Another lab on the machine may use the range too: a busy port is skipped.
var suiteNodePorts = kubeletapi.PortRange{First: 22000, Last: 22999}

const (
	// suiteNode is the virtual node the suite runs against.
	suiteNode = "site1-node1"
	// suiteNamespace is where the suite creates its pods.
	suiteNamespace = "vk-suite"
	// suiteKubeletPort is the port the suite reads stats and resource metrics at
	// (virtual-kubelet's framework asks for https:<node>:10250 through a pod proxy).
	suiteKubeletPort = 10250
)

// restartProvider runs the shared provider again, with its kubelet API exposed as k.
func restartProvider(t *testing.T, k kubeletExposure) {
	t.Helper()
	stopProvider()
	providerMu.Lock()
	providerKubelet = k
	providerMu.Unlock()
	startProvider(t)
}

// TestVirtualKubeletSuite runs virtual-kubelet's importable provider suite
// (github.com/virtual-kubelet/virtual-kubelet/test/e2e) against virtual node site1-node1:
// pods bound to the node by name, /pods and /runningpods/ through the host's node proxy,
// stats and resource metrics, graceful and forced deletion, optional and mandatory missing
// ConfigMaps and Secrets.
//
// The suite reads the node as the host's API server reaches it, so the provider runs for
// it as in production: every virtual node on a port of its own (the node proxy does not
// say which node a request is for), at the machine's address (the API server proxies only
// to global unicast addresses, never to loopback).
//
// The suite's framework reads /stats/summary and /metrics/resource through a pod proxy,
// namespaces/<ns>/pods/https:<node>:10250/proxy/..., since it expects virtual-kubelet to
// run as a pod named after its node that answers anyone. vk8s refuses anonymous requests,
// and pod proxies carry no credentials, so Setup stands in for that pod: a pod object
// named site1-node1 that no scheduler or kubelet touches (a scheduling gate holds it),
// with the machine's address as its IP, and at that address's port 10250 a reverse proxy
// that accepts only local connections and passes the two read-only paths on to the host's
// node proxy (nodes/site1-node1/proxy/...) with the test's credentials. Every answer still
// comes from the provider's kubelet API, authenticated and authorized as the host's API
// server is.
func TestVirtualKubeletSuite(t *testing.T) {
	skipShort(t)
	addr, ok := lab.AdvertiseAddress()
	if !ok {
		t.Skip("this machine has no global unicast IPv4 address: the host's API server proxies to no virtual node")
	}
	startProvider(t) // the virtual nodes exist before the provider is restarted
	host := hostClient(t)
	waitAllVirtualNodes(t, host)
	restartProvider(t, kubeletExposure{address: addr, bind: addr, nodePorts: suiteNodePorts})
	t.Cleanup(func() { restartProvider(t, loopbackKubelet) })

	hostCfg, err := fleet.RESTConfig("host")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(hostCfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, suiteNode+" served on a port of its own at "+addr, func(ctx context.Context) (bool, error) {
		n := &corev1.Node{}
		if err := host.Get(ctx, client.ObjectKey{Name: suiteNode}, n); err != nil {
			return false, nil
		}
		if !suiteNodePorts.Contains(n.Status.DaemonEndpoints.KubeletEndpoint.Port) ||
			!slices.Contains(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: addr}) {
			return false, nil
		}
		// The node proxy answers once the provider's serving certificate is issued.
		_, err := cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", suiteNode, "proxy", "pods").DoRaw(ctx)
		return err == nil, nil
	})

	_, sitesProxy := fleet.SiteNodeIP()
	t.Run("the sites' kwok serves simulated resource metrics through their API servers", func(t *testing.T) {
		if !sitesProxy {
			t.Skip("the site nodes are at loopback, where their API servers proxy to none (the lab could not make its kubelet network)")
		}
		site := clientset(t, "site1")
		// As vk8s reads it: the node proxy, at the path the node's annotation names.
		n, err := site.CoreV1().Nodes().Get(t.Context(), "node1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := n.Annotations[vk8sv1.AnnotationResourceMetricsPath]
		body, err := site.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/node1/proxy", p).DoRaw(t.Context())
		if err != nil || !strings.Contains(string(body), "node_cpu_usage_seconds_total") || !strings.Contains(string(body), "node_memory_working_set_bytes") {
			t.Errorf("GET nodes/node1/proxy%s on site1: %v\n%s", p, err, body)
		}
	})

	kubeconfig, err := fleet.Kubeconfig("host")
	if err != nil {
		t.Fatal(err)
	}
	var stopStandIn func()
	suite := vke2e.NewEndToEndTestSuite(vke2e.EndToEndTestSuiteConfig{
		Kubeconfig:   kubeconfig,
		Namespace:    suiteNamespace,
		NodeName:     suiteNode,
		WatchTimeout: time.Minute,
		Setup: func() error {
			var err error
			stopStandIn, err = standInKubeletPod(t.Context(), cs, hostCfg, addr)
			return err
		},
		Teardown: func() error {
			if stopStandIn != nil {
				stopStandIn()
			}
			err := cs.CoreV1().Namespaces().Delete(context.Background(), suiteNamespace, metav1.DeleteOptions{})
			return client.IgnoreNotFound(err)
		},
		// Resource metrics need the sites' API servers to reach their nodes, which the lab's
		// kubelet network gives (lab/kubeletnet.go); where the lab could not make it,
		// the kubeletapi unit tests cover /metrics/resource (docs/kubeletapi.md).
		ShouldSkipTest: func(name string) bool { return name == "TestGetMetricsResource" && !sitesProxy },
	})
	suite.Run(t)
}

// standInKubeletPod creates the suite's namespace and, in it, the pod virtual-kubelet's
// framework expects to find the kubelet endpoint of suiteNode at: a pod named after the
// node whose IP is addr, with a reverse proxy at addr:10250 that passes GET /stats/summary
// and GET /metrics/resource on to the host's node proxy. The proxy accepts connections
// from this machine only. The returned func stops it.
func standInKubeletPod(ctx context.Context, cs kubernetes.Interface, hostCfg *rest.Config, addr string) (func(), error) {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: suiteNamespace}}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	pod, err := cs.CoreV1().Pods(suiteNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: suiteNode, Labels: map[string]string{"vk8s.io/e2e": "kubelet-stand-in"}},
		Spec: corev1.PodSpec{
			// Neither scheduled nor run: it only tells the pod proxy where the node's
			// kubelet endpoint is.
			SchedulingGates: []corev1.PodSchedulingGate{{Name: "vk8s.io/e2e-stand-in"}},
			Containers: []corev1.Container{{
				Name: "kubelet", Image: "vk8s.io/e2e-stand-in",
				Ports: []corev1.ContainerPort{{Name: "kubelet", ContainerPort: suiteKubeletPort}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	pod.Status.PodIP = addr
	pod.Status.PodIPs = []corev1.PodIP{{IP: addr}}
	if _, err := cs.CoreV1().Pods(suiteNamespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return nil, err
	}

	target, err := url.Parse(hostCfg.Host)
	if err != nil {
		return nil, err
	}
	transport, err := rest.TransportFor(hostCfg)
	if err != nil {
		return nil, err
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = target.Scheme, target.Host
			r.Out.URL.Path = "/api/v1/nodes/" + suiteNode + "/proxy" + r.In.URL.Path
			r.Out.URL.RawPath = ""
			r.Out.Host = ""
		},
		Transport: transport,
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(addr, []net.IP{net.ParseIP(addr)}, nil)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	// Another test process on this machine may hold the port for a while.
	var ln net.Listener
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
		var lerr error
		ln, lerr = net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(suiteKubeletPort)))
		if lerr != nil {
			fmt.Fprintf(os.Stderr, "e2e: kubelet stand-in: %v; trying again\n", lerr)
		}
		return lerr == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubelet stand-in: listen on %s:%d: %w", addr, suiteKubeletPort, err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || (!ip.IsLoopback() && !ip.Equal(net.ParseIP(addr))) {
				http.Error(w, "the kubelet stand-in answers this machine only", http.StatusForbidden)
				return
			}
			if r.Method != http.MethodGet || (r.URL.Path != "/stats/summary" && r.URL.Path != api.MetricsResourceRouteSuffix) {
				http.NotFound(w, r)
				return
			}
			proxy.ServeHTTP(w, r)
		}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "e2e: kubelet stand-in:", err)
		}
	}()
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

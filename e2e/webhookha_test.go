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
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/webhook"
	"github.com/vk8s-io/vk8s/webhook/certs"
)

// serviceProxy plays a Service in front of webhook replicas: it passes each TCP
// connection (TLS included) to the next ready backend, round robin, as kube-proxy does.
type serviceProxy struct {
	ln net.Listener

	mu       sync.Mutex
	backends []int
	next     int
	served   map[int]int
}

func startServiceProxy(t *testing.T) *serviceProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &serviceProxy{ln: ln, served: map[int]int{}}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(conn)
		}
	}()
	return p
}

func (p *serviceProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// set makes ports the ready backends, as the endpoints of a Service.
func (p *serviceProxy) set(ports ...int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends = ports
}

func (p *serviceProxy) serve(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	p.mu.Lock()
	if len(p.backends) == 0 {
		p.mu.Unlock()
		return
	}
	port := p.backends[p.next%len(p.backends)]
	p.next++
	p.served[port]++
	p.mu.Unlock()
	backend, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return
	}
	defer func() { _ = backend.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(backend, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, backend); done <- struct{}{} }()
	<-done
}

func (p *serviceProxy) connections(port int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served[port]
}

// TestWebhookReplicasShareTheCA runs two webhook replicas behind one address, as a
// Deployment of two behind its Service, and replaces both one after the other, as a
// rolling update does. Admissions run all the while and none may fail: every replica
// serves a certificate of the one CA in the configurations, kept in a Secret. With a CA per
// replica, the configurations trust whichever replica published last and the other
// replica's admissions fail.
func TestWebhookReplicasShareTheCA(t *testing.T) {
	skipShort(t)
	c := hostClient(t)
	const name = "vk8s-webhook-ha"
	caSecret := types.NamespacedName{Namespace: lab.SystemNamespace, Name: name + "-ca"}
	proxy := startServiceProxy(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = c.Delete(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}})
		_ = c.Delete(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}})
		_ = c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: caSecret.Namespace, Name: caSecret.Name}})
	})

	// replica starts one replica on a port of its own and adds it to the endpoints once it
	// is ready, beside others; the configurations name the proxy.
	replica := func(others ...int) (*webhookRun, int) {
		port := webhookFreePort(t)
		if len(others) == 0 {
			// The first: nothing answers before it.
			proxy.set(port)
		}
		wh := webhookStart(t, func(cfg *webhook.Config) {
			// Configurations and a CA of its own, beside the chart's: the lab's admin.
			cfg.Host = adminConfig(t)
			cfg.Configurations = webhook.ConfigurationsRegister
			cfg.Port = port
			cfg.URL = fmt.Sprintf("https://127.0.0.1:%d", proxy.port())
			cfg.ConfigurationName = name
			cfg.CASecret = caSecret
			cfg.LeaderElection = true
			// Certificates rotate during the test too.
			cfg.CALifetime, cfg.CertLifetime, cfg.CAPropagationDelay = time.Minute, 15*time.Second, 5*time.Second
			cfg.ResyncInterval = 5 * time.Second
		})
		t.Cleanup(wh.stop)
		proxy.set(append(others, port)...)
		return wh, port
	}

	// The first replica alone, then the second beside it: two endpoints.
	a, portA := replica()
	b, portB := replica(portA)

	var probes, failures atomic.Int64
	var lastErr atomic.Value
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		for ctx.Err() == nil {
			err := webhookProbe(ctx, c)
			if ctx.Err() != nil {
				return
			}
			probes.Add(1)
			if err != nil {
				failures.Add(1)
				lastErr.Store(err.Error())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(5 * time.Second)

	// Rolling update: each old replica leaves the endpoints before it stops; its
	// replacement joins once ready.
	proxy.set(portB)
	a.stop()
	_, portA2 := replica(portB)
	time.Sleep(5 * time.Second)
	proxy.set(portA2)
	b.stop()
	_, portB2 := replica(portA2)
	time.Sleep(10 * time.Second)
	stop()
	<-probesDone

	t.Logf("%d admissions through two replicas and a rolling update of both; connections per replica: first %d, second %d, replacements %d and %d",
		probes.Load(), proxy.connections(portA), proxy.connections(portB), proxy.connections(portA2), proxy.connections(portB2))
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d admissions failed; last: %v", n, probes.Load(), lastErr.Load())
	}
	// The API server keeps its connection while it can: it moves when a replica stops or
	// the CA bundle changes, so not every replica needs to have answered; the first and
	// one of the replacements must have.
	if proxy.connections(portA) == 0 || proxy.connections(portA2)+proxy.connections(portB2) == 0 {
		t.Errorf("admissions did not go through the first replica and a replacement: the test did not reach them")
	}
	if probes.Load() < 50 {
		t.Errorf("only %d admissions ran", probes.Load())
	}

	// The configurations trust exactly the CAs kept in the Secret.
	sec := &corev1.Secret{}
	if err := c.Get(t.Context(), caSecret, sec); err != nil {
		t.Fatal(err)
	}
	if sec.Labels[vk8sv1.LabelManagedBy] != vk8sv1.ManagedByVK8s || len(sec.Data[certs.SecretKeyKeys]) == 0 {
		t.Errorf("Secret %s: labels %v, keys %v", caSecret, sec.Labels, slices.Sorted(maps.Keys(sec.Data)))
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	waitFor(t, "the configurations to carry the Secret's CAs", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(sec), sec); err != nil {
			return false, err
		}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, vwc); err != nil {
			return false, err
		}
		for _, w := range vwc.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, sec.Data[certs.SecretKeyCerts]) {
				return false, nil
			}
		}
		return true, nil
	})
}

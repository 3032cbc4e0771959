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
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes/fake"
)

func TestNew(t *testing.T) {
	valid := func() Config {
		return Config{
			Resolver: &fakeResolver{}, Address: ":10250", Auth: AuthConfig{Disabled: true}, TLS: TLSConfig{SelfSigned: true},
			MetricsRegisterer: prometheus.NewRegistry(),
		}
	}
	host := fake.NewClientset()
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "valid"},
		{name: "no resolver", change: func(c *Config) { c.Resolver = nil }, wantErr: "Resolver is required"},
		{name: "no port", change: func(c *Config) { c.Address = "localhost" }, wantErr: "want host:port"},
		{name: "bad node ports", change: func(c *Config) { c.NodePorts = PortRange{20, 10} }, wantErr: "NodePorts"},
		{name: "node ports hold the shared port", change: func(c *Config) { c.NodePorts = PortRange{10000, 11000} }, wantErr: "holds the port"},
		{name: "no auth", change: func(c *Config) { c.Auth = AuthConfig{} }, wantErr: "Auth.Host is required"},
		{name: "auth disabled and configured", change: func(c *Config) { c.Auth.Host = host }, wantErr: "choose one"},
		{name: "auth", change: func(c *Config) { c.Auth = AuthConfig{Host: host} }},
		{name: "bad client CA", change: func(c *Config) { c.Auth = AuthConfig{Host: host, ClientCA: []byte("nope")} }, wantErr: "ClientCA"},
		{name: "no certificate", change: func(c *Config) { c.TLS = TLSConfig{} }, wantErr: "exactly one"},
		{name: "two certificates", change: func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = "a", "b" }, wantErr: "exactly one"},
		{name: "half a pair", change: func(c *Config) { c.TLS = TLSConfig{CertFile: "a"} }, wantErr: "go together"},
		{name: "missing files", change: func(c *Config) { c.TLS = TLSConfig{CertFile: "/nonexistent", KeyFile: "/nonexistent"} }, wantErr: "TLS.CertFile"},
		{name: "empty CSR", change: func(c *Config) { c.TLS = TLSConfig{CSR: &CSRConfig{}} },
			wantErr: "Host is required\nTLS.CSR.Name is required\nTLS.CSR: at least one of IPs and DNSNames"},
		{name: "CSR", change: func(c *Config) {
			c.TLS = TLSConfig{CSR: &CSRConfig{Host: host, Name: "vk8s", IPs: []net.IP{net.ParseIP("192.0.2.1")}}}
		}},
		{name: "negative timeout", change: func(c *Config) { c.SiteTimeout = -time.Second }, wantErr: "SiteTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			if tc.change != nil {
				tc.change(&cfg)
			}
			_, err := New(cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestRun serves the shared endpoint and virtual nodes' own ports for real.
func TestRun(t *testing.T) {
	w := newWorld(t)
	// Below Linux's ephemeral range (32768-60999), where outgoing connections and the
	// lab's components (kwokctl counts down from 32767) take ports, and above the lab's
	// node ports (21000-24999): the preferred port must be free for the assertion below.
	first := int32(25000 + rand.IntN(5000))
	s, err := New(Config{
		Resolver: w.resolver, Address: "127.0.0.1:0", NodePorts: PortRange{first, first + 20},
		Auth: AuthConfig{Disabled: true}, TLS: TLSConfig{SelfSigned: true}, MetricsRegisterer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ep1, err := s.AddNode("site1-node1", first+3)
	if err != nil {
		t.Fatal(err)
	}
	if ep1.Port != first+3 || ep1.Annotations[vk8sv1.AnnotationResourceMetricsPath] != "/nodes/site1-node1/metrics/resource" {
		t.Errorf("endpoint %+v", ep1)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.Addr() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	shared := s.Addr().String()

	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // self-signed
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(addr, path string) (int, string) {
		resp, err := client.Get("https://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	at := func(port int32) string { return fmt.Sprintf("127.0.0.1:%d", port) }

	ep2, err := s.AddNode("site1-node2", first+3)
	if err != nil || ep2.Port == first+3 || !s.cfg.NodePorts.Contains(ep2.Port) {
		t.Fatalf("second node: %+v, %v", ep2, err)
	}
	for _, tc := range []struct {
		name     string
		addr     string
		path     string
		wantCode int
		wantBody string
	}{
		{"node port answers for its node", at(ep1.Port), "/stats/summary", 200, `"nodeName":"site1-node1"`},
		{"node port, node named", at(ep1.Port), "/nodes/site1-node1/metrics/resource", 200, `pod="web-1"`},
		{"node port, another node named", at(ep1.Port), "/nodes/site1-node2/stats/summary", 404, "serves virtual node site1-node1"},
		{"node port, its pod", at(ep1.Port), "/containerLogs/demo/web-1/app", 200, "line 1"},
		{"node port added while running", at(ep2.Port), "/pods", 200, `"kind":"PodList"`},
		{"node port, another node's pod", at(ep2.Port), "/containerLogs/demo/web-1/app", 404, "not on virtual node site1-node2"},
		{"shared port, no node", shared, "/stats/summary", 404, "/nodes/<node>"},
		{"shared port, node named", shared, "/nodes/site1-node2/stats/summary", 200, `"nodeName":"site1-node2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(tc.addr, tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("%d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}

	s.RemoveNode("site1-node2")
	tr.CloseIdleConnections()
	if code, body := get(at(ep2.Port), "/pods"); code != 0 {
		t.Errorf("removed node's port still answers: %d %s", code, body)
	}
	if err := s.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestAddNodeSharedPort(t *testing.T) {
	s, err := New(Config{
		Resolver: &fakeResolver{}, Address: "127.0.0.1:10250", Auth: AuthConfig{Disabled: true},
		TLS: TLSConfig{SelfSigned: true}, MetricsRegisterer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := s.AddNode("site1", 30000)
	if err != nil || ep.Port != 10250 || ep.Annotations[vk8sv1.AnnotationResourceMetricsPath] != "/nodes/site1/metrics/resource" {
		t.Errorf("%+v, %v", ep, err)
	}
}

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

package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	publish := func(context.Context, []byte) error { return nil }
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{DNSNames: []string{"a.b.svc"}, Publish: publish}},
		{name: "no publish", cfg: Config{DNSNames: []string{"a"}}, wantErr: "certificate authority: Publish is required"},
		{name: "no names", cfg: Config{Publish: publish}, wantErr: "certificate authority: the serving certificate needs at least one DNS name or IP address"},
		{
			name:    "delay too long",
			cfg:     Config{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Publish: publish, CALifetime: 30 * time.Second, PropagationDelay: 10 * time.Second},
			wantErr: "certificate authority: the propagation delay 10s must be under a third of the CA lifetime 30s",
		},
		{
			name:    "negative",
			cfg:     Config{DNSNames: []string{"a"}, Publish: publish, CertLifetime: -time.Second},
			wantErr: "certificate authority: lifetimes, the propagation delay and the reload interval must be positive",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c, err := a.GetCertificate(nil); c != nil || err == nil {
				t.Fatalf("a certificate before Run: %v, %v", c, err)
			}
			if err := a.start(t.Context()); err != nil {
				t.Fatal(err)
			}
			c, _ := a.GetCertificate(nil)
			if c == nil || c.Leaf == nil || c.Leaf.DNSNames[0] != "a.b.svc" {
				t.Fatalf("serving certificate %+v", c)
			}
			ca, serving := a.Expiry()
			if got := time.Until(ca).Round(time.Hour); got != DefaultCALifetime {
				t.Errorf("CA lifetime %s, want %s", got, DefaultCALifetime)
			}
			if got := time.Until(serving).Round(time.Hour); got != DefaultCertLifetime {
				t.Errorf("serving lifetime %s, want %s", got, DefaultCertLifetime)
			}
		})
	}
}

func TestServingCertificateNeverOutlivesItsCA(t *testing.T) {
	a, err := New(Config{
		DNSNames: []string{"x"}, Publish: func(context.Context, []byte) error { return nil },
		CALifetime: time.Hour, CertLifetime: 10 * time.Hour, PropagationDelay: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ca, serving := a.Expiry()
	if !serving.Equal(ca) {
		t.Errorf("serving certificate expires %s, its CA %s: want the CA's expiry", serving, ca)
	}
}

// TestRotationKeepsHandshakesWorking plays the API server: it trusts only what was last
// published, and handshakes continuously while the serving certificate rotates several
// times and the CA at least twice. No handshake may fail.
func TestRotationKeepsHandshakesWorking(t *testing.T) {
	rotate(t, 1, func(int) Store { return nil })
}

// TestReplicasShareTheCA runs two replicas on one Store, as a rolling update or a
// Deployment of two does: each publishes, the API server trusts whichever bundle came
// last and calls either replica. No handshake may fail.
func TestReplicasShareTheCA(t *testing.T) {
	store := &MemoryStore{}
	rotate(t, 2, func(int) Store { return store })
}

func rotate(t *testing.T, replicas int, store func(i int) Store) {
	var (
		mu      sync.Mutex
		trusted *x509.CertPool
		bundles int
	)
	var issued sync.Map
	var urls []string
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, replicas)
	for i := range replicas {
		a, err := New(Config{
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			// Certificates hold whole seconds, so this is as short as lifetimes go.
			CALifetime:       3 * time.Second,
			CertLifetime:     1500 * time.Millisecond,
			PropagationDelay: 200 * time.Millisecond,
			// Replicas read the Store at least once a second, as the webhook does every
			// minute against lifetimes of months.
			ReloadInterval: time.Second,
			Store:          store(i),
			Publish: func(_ context.Context, bundle []byte) error {
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(bundle) {
					return errors.New("bad bundle")
				}
				mu.Lock()
				trusted, bundles = pool, bundles+1
				mu.Unlock()
				return nil
			},
			OnIssue: func(kind Kind, _ time.Time) {
				n, _ := issued.LoadOrStore(kind, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		// Not httptest's StartTLS: it adds a certificate of its own, which Go prefers to
		// GetCertificate when the client sends no server name.
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: a.GetCertificate})
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() { _ = srv.Close() }()
		urls = append(urls, "https://"+ln.Addr().String())
		go func() { done <- a.Run(ctx) }()
	}

	deadline := time.Now().Add(6500 * time.Millisecond)
	handshakes := 0
	for time.Now().Before(deadline) {
		mu.Lock()
		pool, n := trusted, bundles
		mu.Unlock()
		if n < replicas {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// A new client per request: the API server's connections come and go too.
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		url := urls[handshakes%replicas]
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("handshake %d with %s failed: %v", handshakes, url, err)
		}
		_ = resp.Body.Close()
		handshakes++
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	for range replicas {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	count := func(k Kind) int32 {
		n, ok := issued.Load(k)
		if !ok {
			return 0
		}
		return n.(*atomic.Int32).Load()
	}
	// One CA at the start, then a rotation every 2 s or so, by one replica each time.
	if count(KindCA) < 3 || count(KindCA) > 5 || count(KindServing) < int32(6*replicas) {
		t.Errorf("issued %d CAs and %d serving certificates in 6.5s; want 3 to 5 CAs and rotations", count(KindCA), count(KindServing))
	}
	mu.Lock()
	defer mu.Unlock()
	// Each CA rotation publishes twice: with the new CA, and when the old one expired.
	if bundles < 3 {
		t.Errorf("published %d bundles, want at least 3", bundles)
	}
	t.Logf("%d handshakes, %d CAs, %d serving certificates, %d bundles", handshakes, count(KindCA), count(KindServing), bundles)
}

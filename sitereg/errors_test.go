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
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestProbeFailure(t *testing.T) {
	const server, secret = "https://10.0.0.1:6443", "vk8s-system/site1-kubeconfig"
	urlErr := func(err error) error { return &url.Error{Op: "Get", URL: server + "/version", Err: err} }
	refused := urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	for _, tc := range []struct {
		name, reason string
		err          error
		inMessage    []string
	}{
		{"401", ReasonUnauthorized, apierrors.NewUnauthorized("Unauthorized"), []string{server, secret, "401"}},
		{"403", ReasonForbidden, apierrors.NewForbidden(corev1.Resource("nodes"), "", errors.New("denied")), []string{secret, "list", "403"}},
		{"connection refused", ReasonUnreachable, refused, []string{server, "connection refused", "server URL"}},
		{"wrapped refused", ReasonUnreachable, fmt.Errorf("probe: %w", refused), []string{"connection refused"}},
		{"timeout", ReasonUnreachable, fmt.Errorf("get: %w", context.DeadlineExceeded), []string{"deadline exceeded"}},
		{"dns", ReasonUnreachable, urlErr(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "site.invalid"}}), []string{"no such host"}},
		{"503", ReasonUnreachable, apierrors.NewServiceUnavailable("down"), []string{server}},
		{"unknown CA", ReasonTLSError, urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), []string{"certificate-authority-data", secret}},
		{"wrong host name", ReasonTLSError, urlErr(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}), []string{"server name"}},
		{"500", ReasonProbeFailed, apierrors.NewInternalError(errors.New("etcd down")), []string{"etcd down"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := probeFailure(server, secret, tc.err)
			if got.reason != tc.reason {
				t.Fatalf("reason %s, want %s (%s)", got.reason, tc.reason, got.message)
			}
			for _, s := range tc.inMessage {
				if !strings.Contains(got.message, s) {
					t.Errorf("message %q does not contain %q", got.message, s)
				}
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("siteError does not wrap its cause")
			}
		})
	}
}

// testKubeconfig returns a kubeconfig for server with a token, after mutate changed it.
func testKubeconfig(t *testing.T, server string, ca []byte, token string, mutate func(*clientcmdapi.Config)) []byte {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["ctx"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "ctx"
	if mutate != nil {
		mutate(cfg)
	}
	raw, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestRESTConfigFromKubeconfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    func(t *testing.T) []byte
		wantErr string
	}{
		{"token", func(t *testing.T) []byte { return testKubeconfig(t, "https://s:6443", nil, "tok", nil) }, ""},
		{"garbage", func(*testing.T) []byte { return []byte("{not yaml: [") }, "parse"},
		{"empty", func(*testing.T) []byte { return nil }, "no current-context"},
		{"unknown current context", func(t *testing.T) []byte {
			return testKubeconfig(t, "https://s:6443", nil, "tok", func(c *clientcmdapi.Config) { c.CurrentContext = "other" })
		}, `current-context "other" is not one of the contexts [ctx]`},
		{"no server", func(t *testing.T) []byte { return testKubeconfig(t, "", nil, "tok", nil) }, "no server"},
		{"certificate files", func(t *testing.T) []byte {
			return testKubeconfig(t, "https://s:6443", nil, "", func(c *clientcmdapi.Config) {
				c.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificate: "/etc/cert.pem", ClientKey: "/etc/key.pem"}
			})
		}, "use client-certificate-data"},
		{"token file", func(t *testing.T) []byte {
			return testKubeconfig(t, "https://s:6443", nil, "", func(c *clientcmdapi.Config) {
				c.AuthInfos["u"] = &clientcmdapi.AuthInfo{TokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token"}
			})
		}, "tokenFile"},
		{"CA file", func(t *testing.T) []byte {
			return testKubeconfig(t, "https://s:6443", nil, "tok", func(c *clientcmdapi.Config) { c.Clusters["c"].CertificateAuthority = "/ca.pem" })
		}, "certificate-authority-data"},
		{"exec plugin", func(t *testing.T) []byte {
			return testKubeconfig(t, "https://s:6443", nil, "", func(c *clientcmdapi.Config) {
				c.AuthInfos["u"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "aws", APIVersion: "client.authentication.k8s.io/v1"}}
			})
		}, "exec credential plugin"},
		{"files in another context are fine", func(t *testing.T) []byte {
			return testKubeconfig(t, "https://s:6443", nil, "tok", func(c *clientcmdapi.Config) {
				c.AuthInfos["other"] = &clientcmdapi.AuthInfo{TokenFile: "/x"}
			})
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := restConfigFromKubeconfig(tc.data(t))
			if tc.wantErr == "" {
				if err != nil || cfg.Host != "https://s:6443" || cfg.BearerToken != "tok" {
					t.Fatalf("config %+v, error %v", cfg, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestReasonOf(t *testing.T) {
	se := clusterChanged("s", "ns/secret", "https://site:6443", "uid-a", "uid-b")
	wrapped := fmt.Errorf("site s: %w: %w: %w", ErrSiteNotConnected, ErrSiteDown, se)
	if reason, message, ok := ReasonOf(wrapped); !ok || reason != ReasonClusterChanged || message != se.message {
		t.Errorf("ReasonOf = %q %q %v, want %s and its message", reason, message, ok, ReasonClusterChanged)
	}
	if _, _, ok := ReasonOf(fmt.Errorf("site s: %w: not probed yet", ErrSiteNotConnected)); ok {
		t.Error("ReasonOf an error without a site failure: ok")
	}
	for _, want := range []string{"ns/secret", "https://site:6443", "cluster ID uid-b", "cluster ID uid-a", "Site s", "Point the Secret back", "delete the Site and create it again"} {
		if !strings.Contains(se.message, want) {
			t.Errorf("ClusterChanged message %q does not say %q", se.message, want)
		}
	}
}

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
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/certificate"
)

// statusLog records what a csrSource reports.
type statusLog struct {
	mu  sync.Mutex
	all []CertificateStatus
}

func (l *statusLog) add(s CertificateStatus) {
	l.mu.Lock()
	l.all = append(l.all, s)
	l.mu.Unlock()
}

func (l *statusLog) last() CertificateStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		return CertificateStatus{}
	}
	return l.all[len(l.all)-1]
}

// newCSRHost is a host clientset whose API server names CSRs (generateName) and, when
// signer is set, signs approved kubelet-serving CSRs as kube-controller-manager does.
func newCSRHost(t *testing.T, approvalErr error, sign bool) *fake.Clientset {
	t.Helper()
	cs := fake.NewClientset()
	cs.PrependReactor("create", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		csr := a.(k8stesting.CreateAction).GetObject().(*certificatesv1.CertificateSigningRequest)
		if csr.Name == "" {
			csr.Name = csr.GenerateName + "abcde"
		}
		return false, nil, nil
	})
	cs.PrependReactor("update", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "approval" {
			return false, nil, nil
		}
		if approvalErr != nil {
			return true, nil, approvalErr
		}
		csr := a.(k8stesting.UpdateAction).GetObject().(*certificatesv1.CertificateSigningRequest)
		if sign {
			csr.Status.Certificate = signCSR(t, csr.Spec.Request)
		}
		return false, nil, nil
	})
	return cs
}

var (
	signerOnce sync.Once
	signerKey  *ecdsa.PrivateKey
	signerCert *x509.Certificate
)

// signCSR issues the certificate a request asks for, from a test CA.
func signCSR(t *testing.T, request []byte) []byte {
	t.Helper()
	signerOnce.Do(func() {
		signerKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubelet-serving-ca"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &signerKey.PublicKey, signerKey)
		signerCert, _ = x509.ParseCertificate(der)
	})
	block, _ := pem.Decode(request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Error(err)
		return nil
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: req.Subject,
		DNSNames: req.DNSNames, IPAddresses: req.IPAddresses,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, req.PublicKey, signerKey)
	if err != nil {
		t.Error(err)
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCSRApproval(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "certificates.k8s.io", Resource: "signers"}, "kubernetes.io/kubelet-serving", nil)
	for _, tc := range []struct {
		name        string
		approvalErr error
		disable     bool
		wantReason  string
		wantMessage string
		wantAproved bool
	}{
		{name: "approves its own request", wantReason: ReasonApproved, wantMessage: "waiting for signer", wantAproved: true},
		{name: "may not approve", approvalErr: forbidden, wantReason: ReasonWaitingForApproval, wantMessage: "RBAC"},
		{name: "approval disabled", disable: true, wantReason: ReasonWaitingForApproval, wantMessage: "kubectl certificate approve csr-abcde"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := newCSRHost(t, tc.approvalErr, false)
			var log statusLog
			src, err := newCSRSource(CSRConfig{Host: host, Name: "vk8s", IPs: []net.IP{net.ParseIP("192.0.2.1")},
				DisableApproval: tc.disable, OnStatus: log.add}, logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			csrs := approvingClient{Interface: host, src: src}.CertificatesV1().CertificateSigningRequests()
			created, err := csrs.Create(t.Context(), &certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-"},
				Spec:       certificatesv1.CertificateSigningRequestSpec{SignerName: certificatesv1.KubeletServingSignerName},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st := log.last()
			if st.Reason != tc.wantReason || !strings.Contains(st.Message, tc.wantMessage) || st.Request != created.Name || st.Ready {
				t.Errorf("status %+v, want %s with %q", st, tc.wantReason, tc.wantMessage)
			}
			got, err := host.CertificatesV1().CertificateSigningRequests().Get(t.Context(), created.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			approved := false
			for _, c := range got.Status.Conditions {
				approved = approved || (c.Type == certificatesv1.CertificateApproved && c.Status == corev1.ConditionTrue)
			}
			if approved != tc.wantAproved {
				t.Errorf("approved %v, want %v", approved, tc.wantAproved)
			}
		})
	}
}

// TestCSRSource runs client-go's certificate manager against a host that signs: the
// server ends up serving a certificate for system:node:<name> with the configured SANs.
func TestCSRSource(t *testing.T) {
	host := newCSRHost(t, nil, true)
	var log statusLog
	dir := t.TempDir()
	src, err := newCSRSource(CSRConfig{
		Host: host, Name: "vk8s-provider", IPs: []net.IP{net.ParseIP("192.0.2.1")}, DNSNames: []string{"vk8s.example"},
		CertDir: dir, OnStatus: log.add,
	}, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.get(); err == nil {
		t.Error("a certificate before any was issued")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); src.run(ctx) }()
	defer func() { cancel(); <-done }()

	var cert *tls.Certificate
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := src.get(); err == nil {
			cert = c
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cert == nil {
		t.Fatalf("no certificate; last status %+v", log.last())
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "system:node:vk8s-provider" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "system:nodes" ||
		len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) || len(leaf.DNSNames) != 1 {
		t.Errorf("certificate subject %v IPs %v names %v", leaf.Subject, leaf.IPAddresses, leaf.DNSNames)
	}
	var reasons []string
	for _, s := range log.all {
		reasons = append(reasons, s.Reason)
	}
	if st := log.last(); !st.Ready || st.Reason != ReasonIssued || st.NotAfter.IsZero() || strings.Join(reasons, ",") != "Approved,Issued" {
		t.Errorf("statuses %v, last %+v", reasons, st)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "vk8s-kubelet-server-*.pem")); len(files) == 0 {
		t.Error("certificate not kept in CertDir")
	}
	csrs, _ := host.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if len(csrs.Items) != 1 || csrs.Items[0].Spec.SignerName != certificatesv1.KubeletServingSignerName {
		t.Errorf("requests %+v", csrs.Items)
	}
	for _, u := range csrs.Items[0].Spec.Usages {
		if u != certificatesv1.UsageDigitalSignature && u != certificatesv1.UsageServerAuth {
			t.Errorf("usage %s: the kubelet-serving signer refuses it", u)
		}
	}
}

func TestMemoryStore(t *testing.T) {
	s := &memoryStore{}
	_, err := s.Current()
	//nolint:errorlint // client-go's certificate manager asserts the type without unwrapping, so must the test.
	if _, ok := err.(*certificate.NoCertKeyError); !ok {
		t.Fatalf("empty store: %v, want *NoCertKeyError (the manager requests a certificate only then)", err)
	}
	certPEM, keyPEM := selfSigned(t)
	c, err := s.Update(certPEM, keyPEM)
	if err != nil || c.Leaf == nil {
		t.Fatalf("%v %v", c, err)
	}
	if cur, err := s.Current(); err != nil || cur != c {
		t.Errorf("current %v, %v", cur, err)
	}
	if _, err := s.Update([]byte("x"), keyPEM); err == nil {
		t.Error("garbage accepted")
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestFileSourceReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func() []byte {
		c, k := selfSigned(t)
		if err := os.WriteFile(certFile, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, k, 0o600); err != nil {
			t.Fatal(err)
		}
		return c
	}
	write()
	src, err := newCertSource(TLSConfig{CertFile: certFile, KeyFile: keyFile}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	first, _ := src.get()
	second := write()
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(certFile, later, later); err != nil {
		t.Fatal(err)
	}
	fs := src.(*fileSource)
	fs.mu.Lock()
	fs.checked = time.Time{} // as if the check interval had passed
	fs.mu.Unlock()
	got, _ := src.get()
	block, _ := pem.Decode(second)
	if got == first || string(got.Certificate[0]) != string(block.Bytes) {
		t.Error("changed files not reloaded")
	}
}

func TestMain(m *testing.M) {
	// client-go's fake clientset cannot stream a watch list's initial events; without this
	// the certificate manager's wait for its CSR would first time out after 10s.
	_ = os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}

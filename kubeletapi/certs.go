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
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certsv1client "k8s.io/client-go/kubernetes/typed/certificates/v1"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate"
	"k8s.io/klog/v2"
)

// TLSConfig chooses where the serving certificate comes from: exactly one of a
// certificate/key file pair, a CertificateSigningRequest to the host's kubelet-serving
// signer, or a self-signed certificate.
type TLSConfig struct {
	// CertFile and KeyFile are a PEM certificate (chain) and key. They are read again when
	// the files change (checked at most every 30s), so a certificate renewed on disk (by
	// cert-manager, say) needs no restart.
	CertFile string
	KeyFile  string
	// CSR requests the certificate from the host's kubernetes.io/kubelet-serving signer and
	// rotates it before it expires.
	CSR *CSRConfig
	// SelfSigned serves a self-signed certificate for SelfSignedHosts (IPs or names). Only
	// for tests: the host's API server cannot verify it.
	SelfSigned      bool
	SelfSignedHosts []string
}

// CSRConfig configures the serving certificate issued by the host's
// kubernetes.io/kubelet-serving signer. The provider files a CertificateSigningRequest for
// CN system:node:<Name>, O system:nodes and the SANs below, approves it itself when its RBAC
// allows (update certificatesigningrequests/approval and approve on signers
// kubernetes.io/kubelet-serving), and otherwise waits until someone approves it
// (kubectl certificate approve), reporting through OnStatus that it waits. The
// certificate is renewed at 70-90% of its lifetime, without a restart.
type CSRConfig struct {
	// Host is the host cluster's clientset. Required.
	Host kubernetes.Interface
	// Name makes the certificate's common name system:node:<Name>. Required; a DNS
	// subdomain (the provider's name, e.g. vk8s-provider).
	Name string
	// IPs and DNSNames are the certificate's subject alternative names: every address
	// virtual nodes advertise. At least one.
	IPs      []net.IP
	DNSNames []string
	// CertDir keeps the key and certificate across restarts (files
	// vk8s-kubelet-server-*.pem); a restart without it files a new request. Empty: memory.
	CertDir string
	// DisableApproval leaves approval to someone else; the provider only waits.
	DisableApproval bool
	// Lifetime is the lifetime requested (spec.expirationSeconds; the signer may cap it).
	// Zero: the signer's default.
	Lifetime time.Duration
	// OnStatus, when set, is called each time the certificate's state changes, e.g. to set
	// a condition. It must not block.
	OnStatus func(CertificateStatus)
}

// Reasons of CertificateStatus.
const (
	// ReasonIssued: a certificate from the signer is being served.
	ReasonIssued = "Issued"
	// ReasonApproved: the provider approved its request; the signer has not issued it yet
	// (is kube-controller-manager's signer for kubernetes.io/kubelet-serving configured?).
	ReasonApproved = "Approved"
	// ReasonWaitingForApproval: the request waits for someone to approve it.
	ReasonWaitingForApproval = "WaitingForApproval"
)

// CertificateStatus says where the serving certificate from the CSR stands.
type CertificateStatus struct {
	// Ready is true when a certificate is being served.
	Ready bool
	// Reason is one of the Reason* constants.
	Reason string
	// Message says what happens and, when the provider waits, what to do.
	Message string
	// Request is the name of the last CertificateSigningRequest.
	Request string
	// NotAfter is when the served certificate expires.
	NotAfter time.Time
}

func (c TLSConfig) validate() error {
	n := 0
	if c.CertFile != "" || c.KeyFile != "" {
		n++
		if c.CertFile == "" || c.KeyFile == "" {
			return errors.New("TLS: CertFile and KeyFile go together")
		}
	}
	if c.CSR != nil {
		n++
		if err := c.CSR.validate(); err != nil {
			return err
		}
	}
	if c.SelfSigned {
		n++
	}
	if n != 1 {
		return errors.New("TLS: choose exactly one of CertFile/KeyFile, CSR and SelfSigned")
	}
	return nil
}

func (c *CSRConfig) validate() error {
	var errs []error
	if c.Host == nil {
		errs = append(errs, errors.New("TLS.CSR.Host is required"))
	}
	if c.Name == "" {
		errs = append(errs, errors.New("TLS.CSR.Name is required"))
	}
	if len(c.IPs) == 0 && len(c.DNSNames) == 0 {
		errs = append(errs, errors.New("TLS.CSR: at least one of IPs and DNSNames is required"))
	}
	if c.Lifetime < 0 || (c.Lifetime > 0 && c.Lifetime < 10*time.Minute) {
		errs = append(errs, fmt.Errorf("TLS.CSR.Lifetime %s: want zero or at least 10m", c.Lifetime))
	}
	return errors.Join(errs...)
}

// certSource gives the certificate to serve.
type certSource interface {
	// get returns the current certificate, or an error when there is none yet.
	get() (*tls.Certificate, error)
	// run keeps the certificate current until ctx ends.
	run(ctx context.Context)
}

func newCertSource(c TLSConfig, log logr.Logger) (certSource, error) {
	switch {
	case c.SelfSigned:
		hosts := c.SelfSignedHosts
		if len(hosts) == 0 {
			hosts = []string{"127.0.0.1", "localhost"}
		}
		var ips []net.IP
		var names []string
		for _, h := range hosts[1:] {
			if ip := net.ParseIP(h); ip != nil {
				ips = append(ips, ip)
			} else {
				names = append(names, h)
			}
		}
		certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey(hosts[0], ips, names)
		if err != nil {
			return nil, fmt.Errorf("self-signed certificate: %w", err)
		}
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("self-signed certificate: %w", err)
		}
		return staticSource{&kp}, nil
	case c.CertFile != "":
		f := &fileSource{certFile: c.CertFile, keyFile: c.KeyFile, log: log}
		if err := f.load(); err != nil {
			return nil, err
		}
		return f, nil
	default:
		return newCSRSource(*c.CSR, log)
	}
}

type staticSource struct{ cert *tls.Certificate }

func (s staticSource) get() (*tls.Certificate, error) { return s.cert, nil }
func (s staticSource) run(context.Context)            {}

// fileSource serves a certificate/key file pair and reads it again when the files change.
type fileSource struct {
	certFile, keyFile string
	log               logr.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	mod     time.Time
	checked time.Time
}

const fileCheckInterval = 30 * time.Second

func (f *fileSource) load() error {
	st, err := os.Stat(f.certFile)
	if err != nil {
		return fmt.Errorf("TLS.CertFile: %w", err)
	}
	kp, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s, key %s: %w", f.certFile, f.keyFile, err)
	}
	f.cert, f.mod = &kp, st.ModTime()
	return nil
}

func (f *fileSource) get() (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) >= fileCheckInterval {
		f.checked = time.Now()
		if st, err := os.Stat(f.certFile); err == nil && !st.ModTime().Equal(f.mod) {
			old := f.cert
			if err := f.load(); err != nil {
				// Keep serving the old pair: the files may be half written.
				f.cert = old
				f.log.Error(err, "reload serving certificate; keeping the previous one")
			} else {
				f.log.Info("serving certificate reloaded", "file", f.certFile)
			}
		}
	}
	return f.cert, nil
}

func (f *fileSource) run(context.Context) {}

// csrSource gets its certificate from client-go's certificate manager.
type csrSource struct {
	cfg   CSRConfig
	log   logr.Logger
	store certificate.Store

	mu      sync.Mutex
	manager certificate.Manager
	status  CertificateStatus
}

func newCSRSource(c CSRConfig, log logr.Logger) (*csrSource, error) {
	s := &csrSource{cfg: c, log: log.WithName("serving-certificate")}
	var store certificate.Store = &memoryStore{}
	if c.CertDir != "" {
		fs, err := certificate.NewFileStore("vk8s-kubelet-server", c.CertDir, c.CertDir, "", "")
		if err != nil {
			return nil, fmt.Errorf("TLS.CSR.CertDir: %w", err)
		}
		store = fs
	}
	s.store = notifyingStore{Store: store, updated: s.issued}
	return s, nil
}

// template is the request the kubelet-serving signer accepts: CN system:node:<name>, O
// system:nodes, only DNS and IP SANs.
func (s *csrSource) template() *x509.CertificateRequest {
	return &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + s.cfg.Name, Organization: []string{"system:nodes"}},
		DNSNames:    s.cfg.DNSNames,
		IPAddresses: s.cfg.IPs,
	}
}

func (s *csrSource) run(ctx context.Context) {
	ctx = klog.NewContext(ctx, s.log)
	mcfg := &certificate.Config{
		ClientsetFn: func(*tls.Certificate) (kubernetes.Interface, error) {
			return approvingClient{Interface: s.cfg.Host, src: s}, nil
		},
		Template:   s.template(),
		SignerName: certificatesv1.KubeletServingSignerName,
		// ECDSA keys: key encipherment has no meaning for them.
		Usages:           []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		CertificateStore: s.store,
		Name:             "vk8s-kubelet-serving",
		Ctx:              &ctx,
	}
	if s.cfg.Lifetime > 0 {
		mcfg.RequestedCertificateLifetime = &s.cfg.Lifetime
	}
	m, err := certificate.NewManager(mcfg)
	if err != nil {
		s.log.Error(err, "serving certificate manager")
		return
	}
	s.mu.Lock()
	s.manager = m
	s.mu.Unlock()
	m.Start()
	<-ctx.Done()
	m.Stop()
}

func (s *csrSource) get() (*tls.Certificate, error) {
	s.mu.Lock()
	m, st := s.manager, s.status
	s.mu.Unlock()
	if m != nil {
		if c := m.Current(); c != nil {
			return c, nil
		}
	}
	if st.Message != "" {
		return nil, fmt.Errorf("no serving certificate yet: %s", st.Message)
	}
	return nil, errors.New("no serving certificate yet")
}

func (s *csrSource) setStatus(st CertificateStatus) {
	s.mu.Lock()
	s.status = st
	s.mu.Unlock()
	s.log.Info("serving certificate", "reason", st.Reason, "request", st.Request, "message", st.Message)
	if s.cfg.OnStatus != nil {
		s.cfg.OnStatus(st)
	}
}

// issued is called when the store takes a new certificate.
func (s *csrSource) issued(c *tls.Certificate) {
	st := CertificateStatus{Ready: true, Reason: ReasonIssued, Message: "serving a certificate from signer " + certificatesv1.KubeletServingSignerName}
	s.mu.Lock()
	st.Request = s.status.Request
	s.mu.Unlock()
	if c.Leaf != nil {
		st.NotAfter = c.Leaf.NotAfter
	}
	s.setStatus(st)
}

// requested is called when the manager has filed csr: it approves it when it may.
func (s *csrSource) requested(ctx context.Context, csrs certsv1client.CertificateSigningRequestInterface, csr *certificatesv1.CertificateSigningRequest) {
	s.mu.Lock()
	ready := s.status.Ready
	s.mu.Unlock()
	st := CertificateStatus{Ready: ready, Request: csr.Name}
	wait := fmt.Sprintf("approve it with: kubectl certificate approve %s", csr.Name)
	if s.cfg.DisableApproval {
		st.Reason, st.Message = ReasonWaitingForApproval, fmt.Sprintf("CertificateSigningRequest %s waits for approval; %s", csr.Name, wait)
		s.setStatus(st)
		return
	}
	err := approve(ctx, csrs, csr)
	switch {
	case err == nil:
		st.Reason, st.Message = ReasonApproved, fmt.Sprintf("approved CertificateSigningRequest %s; waiting for signer %s to issue it", csr.Name, certificatesv1.KubeletServingSignerName)
	case apierrors.IsForbidden(err):
		st.Reason, st.Message = ReasonWaitingForApproval, fmt.Sprintf(
			"CertificateSigningRequest %s waits for approval: this provider may not approve it (RBAC: update certificatesigningrequests/approval, approve signers/%s); %s",
			csr.Name, certificatesv1.KubeletServingSignerName, wait)
	default:
		st.Reason, st.Message = ReasonWaitingForApproval, fmt.Sprintf("CertificateSigningRequest %s waits for approval: approving it failed: %v; %s", csr.Name, err, wait)
	}
	s.setStatus(st)
}

func approve(ctx context.Context, csrs certsv1client.CertificateSigningRequestInterface, csr *certificatesv1.CertificateSigningRequest) error {
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:           certificatesv1.CertificateApproved,
		Status:         corev1.ConditionTrue,
		Reason:         "VK8sProviderApproved",
		Message:        "the vk8s provider approved the serving certificate of its kubelet API",
		LastUpdateTime: metav1.Now(),
	})
	_, err := csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
	return err
}

// approvingClient is the host clientset the certificate manager uses: a request it files
// is approved (or reported waiting) at once, so only the provider's own requests are ever
// approved, without watching anybody else's.
type approvingClient struct {
	kubernetes.Interface
	src *csrSource
}

func (c approvingClient) CertificatesV1() certsv1client.CertificatesV1Interface {
	return approvingCertificates{CertificatesV1Interface: c.Interface.CertificatesV1(), src: c.src}
}

type approvingCertificates struct {
	certsv1client.CertificatesV1Interface
	src *csrSource
}

func (c approvingCertificates) CertificateSigningRequests() certsv1client.CertificateSigningRequestInterface {
	return approvingCSRs{CertificateSigningRequestInterface: c.CertificatesV1Interface.CertificateSigningRequests(), src: c.src}
}

type approvingCSRs struct {
	certsv1client.CertificateSigningRequestInterface
	src *csrSource
}

func (c approvingCSRs) Create(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, opts metav1.CreateOptions) (*certificatesv1.CertificateSigningRequest, error) {
	out, err := c.CertificateSigningRequestInterface.Create(ctx, csr, opts)
	if err == nil {
		c.src.requested(ctx, c.CertificateSigningRequestInterface, out)
	}
	return out, err
}

// memoryStore keeps the certificate in memory only.
type memoryStore struct {
	mu   sync.Mutex
	cert *tls.Certificate
}

func (s *memoryStore) Current() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert == nil {
		e := certificate.NoCertKeyError("no serving certificate yet")
		return nil, &e
	}
	return s.cert, nil
}

func (s *memoryStore) Update(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	s.cert = &c
	s.mu.Unlock()
	return &c, nil
}

// notifyingStore reports each certificate it takes.
type notifyingStore struct {
	certificate.Store
	updated func(*tls.Certificate)
}

func (s notifyingStore) Update(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := s.Store.Update(certPEM, keyPEM)
	if err == nil {
		s.updated(c)
	}
	return c, err
}

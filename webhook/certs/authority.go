package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Defaults of Config.
const (
	DefaultCALifetime       = 365 * 24 * time.Hour
	DefaultCertLifetime     = 30 * 24 * time.Hour
	DefaultPropagationDelay = 10 * time.Second
)

// Kind names a certificate of the Authority, for OnIssue.
type Kind string

// The certificates an Authority issues.
const (
	KindCA      Kind = "ca"
	KindServing Kind = "serving"
)

// backdate is how far before now a certificate becomes valid, for clocks a little behind.
const backdate = time.Minute

// Config configures an Authority.
type Config struct {
	// DNSNames and IPAddresses are the serving certificate's subject alternative names;
	// at least one is required.
	DNSNames    []string
	IPAddresses []net.IP
	// CALifetime is how long a CA is valid; it is renewed when a third remains.
	// Zero: DefaultCALifetime.
	CALifetime time.Duration
	// CertLifetime is how long a serving certificate is valid (never beyond its CA); it is
	// renewed when a third remains. Zero: DefaultCertLifetime.
	CertLifetime time.Duration
	// PropagationDelay is how long a new CA is published before the serving certificate
	// it signs is served. Zero: DefaultPropagationDelay. It must be under a third of
	// CALifetime.
	PropagationDelay time.Duration
	// Publish makes the API server trust caBundle (PEM, newest CA first). Run calls it at
	// start and on every change of the bundle, and retries it until it succeeds; a
	// rotation waits for it. Required.
	Publish func(ctx context.Context, caBundle []byte) error
	// OnIssue, when set, is called after each certificate is issued, for metrics.
	OnIssue func(kind Kind, notAfter time.Time)
	// Logger logs rotations and publish failures. Zero: discard.
	Logger logr.Logger
	// Clock is the time source. Nil: the real clock.
	Clock clock.WithTicker
}

// keyPair is a CA: its certificate, key and PEM encoding.
type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// Authority issues and rotates the webhook's CA and serving certificate.
type Authority struct {
	cfg Config
	log logr.Logger

	mu sync.RWMutex
	// cas are the CAs in the published bundle, newest first; cas[0] signs new certificates.
	cas []*keyPair
	// serving is the certificate GetCertificate returns, and servingRenew when to renew it.
	serving      *tls.Certificate
	servingAfter time.Time
	servingRenew time.Time
}

// New validates cfg and returns an Authority that already holds a CA and a serving
// certificate, so GetCertificate works before Run publishes the bundle.
func New(cfg Config) (*Authority, error) {
	if cfg.Publish == nil {
		return nil, errors.New("certificate authority: Publish is required")
	}
	if len(cfg.DNSNames) == 0 && len(cfg.IPAddresses) == 0 {
		return nil, errors.New("certificate authority: the serving certificate needs at least one DNS name or IP address")
	}
	if cfg.CALifetime == 0 {
		cfg.CALifetime = DefaultCALifetime
	}
	if cfg.CertLifetime == 0 {
		cfg.CertLifetime = DefaultCertLifetime
	}
	if cfg.PropagationDelay == 0 {
		cfg.PropagationDelay = DefaultPropagationDelay
	}
	switch {
	case cfg.CALifetime < 0 || cfg.CertLifetime < 0 || cfg.PropagationDelay < 0:
		return nil, errors.New("certificate authority: lifetimes and the propagation delay must be positive")
	case cfg.PropagationDelay >= cfg.CALifetime/3:
		return nil, fmt.Errorf("certificate authority: the propagation delay %s must be under a third of the CA lifetime %s", cfg.PropagationDelay, cfg.CALifetime)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	a := &Authority{cfg: cfg, log: cfg.Logger}
	if a.log.GetSink() == nil {
		a.log = logr.Discard()
	}
	ca, err := a.newCA()
	if err != nil {
		return nil, err
	}
	a.cas = []*keyPair{ca}
	if err := a.issueServing(); err != nil {
		return nil, err
	}
	return a, nil
}

// GetCertificate returns the current serving certificate; it is tls.Config's
// GetCertificate.
func (a *Authority) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.serving, nil
}

// CABundle returns the PEM of the CAs the API server must trust, newest first.
func (a *Authority) CABundle() []byte {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.bundleLocked()
}

func (a *Authority) bundleLocked() []byte {
	var b bytes.Buffer
	for _, ca := range a.cas {
		b.Write(ca.pem)
	}
	return b.Bytes()
}

// Expiry returns when the current CA and serving certificate expire.
func (a *Authority) Expiry() (ca, serving time.Time) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cas[0].cert.NotAfter, a.servingAfter
}

// Run publishes the CA bundle, then renews the serving certificate and the CA before they
// expire, until ctx ends. It returns nil when ctx ends.
func (a *Authority) Run(ctx context.Context) error {
	if !a.publish(ctx) {
		return nil
	}
	for {
		a.mu.RLock()
		caRenew := a.renewAt(a.cas[0].cert.NotBefore.Add(backdate), a.cas[0].cert.NotAfter)
		next := caRenew
		if a.servingRenew.Before(next) {
			next = a.servingRenew
		}
		for _, old := range a.cas[1:] {
			if old.cert.NotAfter.Before(next) {
				next = old.cert.NotAfter
			}
		}
		a.mu.RUnlock()

		if d := next.Sub(a.cfg.Clock.Now()); d > 0 {
			t := a.cfg.Clock.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C():
			}
		}
		now := a.cfg.Clock.Now()
		switch {
		case !now.Before(caRenew):
			if !a.rotateCA(ctx) {
				return nil
			}
		case !now.Before(a.servingRenew):
			if err := a.issueServing(); err != nil {
				// Only randomness or encoding can fail here; try again shortly.
				a.log.Error(err, "Renewing the serving certificate failed")
				if !a.sleep(ctx, time.Second) {
					return nil
				}
			}
		}
		if a.pruneExpired() && !a.publish(ctx) {
			return nil
		}
	}
}

// rotateCA publishes a new CA beside the current one, waits for the API server to see it,
// and then serves a certificate it signs. It returns false when ctx ended.
func (a *Authority) rotateCA(ctx context.Context) bool {
	ca, err := a.newCA()
	if err != nil {
		a.log.Error(err, "Creating a new CA failed")
		return a.sleep(ctx, time.Second)
	}
	a.mu.Lock()
	a.cas = append([]*keyPair{ca}, a.cas...)
	a.mu.Unlock()
	a.log.Info("Publishing a new CA beside the current one", "notAfter", ca.cert.NotAfter)
	if !a.publish(ctx) || !a.sleep(ctx, a.cfg.PropagationDelay) {
		return false
	}
	if err := a.issueServing(); err != nil {
		a.log.Error(err, "Issuing a serving certificate from the new CA failed")
		return a.sleep(ctx, time.Second)
	}
	return true
}

// pruneExpired drops expired CAs from the bundle (never the current one) and says whether
// it dropped any.
func (a *Authority) pruneExpired() bool {
	now := a.cfg.Clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	kept := a.cas[:1]
	for _, ca := range a.cas[1:] {
		if now.Before(ca.cert.NotAfter) {
			kept = append(kept, ca)
		}
	}
	pruned := len(kept) != len(a.cas)
	a.cas = kept
	return pruned
}

// publish calls Publish with the current bundle until it succeeds; false when ctx ended.
func (a *Authority) publish(ctx context.Context) bool {
	backoff := 500 * time.Millisecond
	for {
		err := a.cfg.Publish(ctx, a.CABundle())
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		a.log.Error(err, "Publishing the CA bundle failed; retrying", "after", backoff)
		if !a.sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (a *Authority) sleep(ctx context.Context, d time.Duration) bool {
	t := a.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// renewAt is when a certificate valid from notBefore to notAfter is renewed: when a third
// of its lifetime remains.
func (a *Authority) renewAt(notBefore, notAfter time.Time) time.Time {
	return notAfter.Add(-notAfter.Sub(notBefore) / 3)
}

// newCA creates a self-signed CA valid for CALifetime.
func (a *Authority) newCA() (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create CA key: %w", err)
	}
	now := a.cfg.Clock.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: fmt.Sprintf("vk8s-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(a.cfg.CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	cert, der, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	if a.cfg.OnIssue != nil {
		a.cfg.OnIssue(KindCA, cert.NotAfter)
	}
	return &keyPair{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// issueServing issues a serving certificate from the current CA and serves it.
func (a *Authority) issueServing() error {
	a.mu.RLock()
	ca := a.cas[0]
	a.mu.RUnlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("create serving key: %w", err)
	}
	now := a.cfg.Clock.Now()
	// Certificates hold whole seconds; truncating here keeps the renewal point honest.
	notAfter := now.Add(a.cfg.CertLifetime).Truncate(time.Second)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	name := "vk8s-webhook"
	if len(a.cfg.DNSNames) > 0 {
		name = a.cfg.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		DNSNames:    a.cfg.DNSNames,
		IPAddresses: a.cfg.IPAddresses,
		NotBefore:   now.Add(-backdate),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cert, der, err := sign(tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("issue serving certificate: %w", err)
	}
	serving := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
	a.mu.Lock()
	a.serving = serving
	a.servingAfter = notAfter
	// The renewal point counts from now, not from the backdated NotBefore.
	a.servingRenew = a.renewAt(now, notAfter)
	a.mu.Unlock()
	a.log.V(1).Info("Serving a new certificate", "notAfter", notAfter, "ca", ca.cert.Subject.CommonName)
	if a.cfg.OnIssue != nil {
		a.cfg.OnIssue(KindServing, notAfter)
	}
	return nil
}

// sign creates the certificate tmpl for pub, signed by parent's key.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, []byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, der, nil
}

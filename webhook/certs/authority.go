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
	"bytes"
	"cmp"
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
	DefaultReloadInterval   = time.Minute
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
	// Store keeps the CAs for every replica of the webhook. Nil: a MemoryStore, the CAs
	// of this process alone.
	Store Store
	// ReloadInterval is how often the Store is read for a CA another replica created.
	// Zero: DefaultReloadInterval.
	ReloadInterval time.Duration
	// Clock is the time source. Nil: the real clock.
	Clock clock.WithTicker
}

// keyPair is a CA: its certificate, key and their PEM encoding.
type keyPair struct {
	cert   *x509.Certificate
	key    crypto.Signer
	stored StoredCA
}

// created is when the CA was made (its NotBefore is backdated).
func (ca *keyPair) created() time.Time { return ca.cert.NotBefore.Add(backdate) }

// Authority issues and rotates the webhook's CA and serving certificate.
type Authority struct {
	cfg Config
	log logr.Logger

	mu sync.RWMutex
	// cas are the unexpired CAs of the Store, newest first, as last loaded or saved, and
	// version is the Store's version of them.
	cas     []*keyPair
	version string
	// published is the bundle last handed to Publish.
	published []byte
	// serving is the certificate GetCertificate returns, servingCA the CA that signed it,
	// and servingRenew when to renew it.
	serving      *tls.Certificate
	servingCA    *keyPair
	servingAfter time.Time
	servingRenew time.Time
}

// New validates cfg and returns an Authority. It holds no certificate until Run has
// loaded (or created) the CA.
func New(cfg Config) (*Authority, error) {
	if cfg.Publish == nil {
		return nil, errors.New("certificate authority: Publish is required")
	}
	if len(cfg.DNSNames) == 0 && len(cfg.IPAddresses) == 0 {
		return nil, errors.New("certificate authority: the serving certificate needs at least one DNS name or IP address")
	}
	cfg.CALifetime = cmp.Or(cfg.CALifetime, DefaultCALifetime)
	cfg.CertLifetime = cmp.Or(cfg.CertLifetime, DefaultCertLifetime)
	cfg.PropagationDelay = cmp.Or(cfg.PropagationDelay, DefaultPropagationDelay)
	cfg.ReloadInterval = cmp.Or(cfg.ReloadInterval, DefaultReloadInterval)
	switch {
	case cfg.CALifetime < 0 || cfg.CertLifetime < 0 || cfg.PropagationDelay < 0 || cfg.ReloadInterval < 0:
		return nil, errors.New("certificate authority: lifetimes, the propagation delay and the reload interval must be positive")
	case cfg.PropagationDelay >= cfg.CALifetime/3:
		return nil, fmt.Errorf("certificate authority: the propagation delay %s must be under a third of the CA lifetime %s", cfg.PropagationDelay, cfg.CALifetime)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Store == nil {
		cfg.Store = &MemoryStore{}
	}
	a := &Authority{cfg: cfg, log: cfg.Logger}
	if a.log.GetSink() == nil {
		a.log = logr.Discard()
	}
	return a, nil
}

// GetCertificate returns the current serving certificate; it is tls.Config's
// GetCertificate.
func (a *Authority) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.serving == nil {
		return nil, errors.New("no serving certificate yet: the CA is being loaded")
	}
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
		b.Write(ca.stored.Cert)
	}
	return b.Bytes()
}

// Expiry returns when the current CA and serving certificate expire (zero before Run
// loaded them).
func (a *Authority) Expiry() (ca, serving time.Time) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if len(a.cas) > 0 {
		ca = a.cas[0].cert.NotAfter
	}
	return ca, a.servingAfter
}

// Run loads the CA from the Store (creating it when there is none), publishes the bundle
// and serves a certificate; then it renews the serving certificate and the CA before they
// expire, and follows the CAs other replicas store, until ctx ends. It returns nil when
// ctx ends.
func (a *Authority) Run(ctx context.Context) error {
	if a.Load(ctx) != nil {
		return nil
	}
	lastReload := a.cfg.Clock.Now()
	for {
		now := a.cfg.Clock.Now()
		a.mu.RLock()
		signer, current := a.signerLocked(now), a.cas[0]
		switchTo, renew := a.servingCA != signer, a.servingRenew
		reassert := switchTo && a.servingCA != nil
		a.mu.RUnlock()
		if reassert {
			// Before serving from a new CA, write the bundle again: a replica that had not
			// loaded the new CA yet may have written its older bundle meanwhile.
			a.published = nil
		}
		if !a.publish(ctx) {
			return nil
		}
		caRenew := a.renewAt(current.created(), current.cert.NotAfter)
		switch {
		case switchTo || !now.Before(renew):
			if err := a.issueServing(signer); err != nil {
				// Only randomness or encoding can fail here; try again shortly.
				a.log.Error(err, "Issuing a serving certificate failed")
				if !a.sleep(ctx, time.Second) {
					return nil
				}
			}
			continue
		case !now.Before(caRenew):
			if err := a.rotateCA(ctx); err != nil && !errors.Is(err, ErrConflict) {
				a.log.Error(err, "Renewing the CA failed; retrying")
				if !a.sleep(ctx, time.Second) {
					return nil
				}
			}
			// On a conflict another replica renewed it: the reload below finds its CA.
		default:
			next := earliest(caRenew, renew, lastReload.Add(a.cfg.ReloadInterval))
			a.mu.RLock()
			for _, ca := range a.cas {
				next = earliest(next, ca.cert.NotAfter)
				if ca != a.servingCA && a.servingCA != nil && ca.created().After(a.servingCA.created()) {
					// When a newer CA may be served.
					next = earliest(next, ca.created().Add(a.cfg.PropagationDelay))
				}
			}
			a.mu.RUnlock()
			if !a.sleepUntil(ctx, next) {
				return nil
			}
		}
		if err := a.reload(ctx); err != nil {
			a.log.Error(err, "Reading the stored CAs failed; keeping the ones loaded")
		}
		// Publish after every reload, which also repairs configurations someone changed.
		a.published = nil
		lastReload = a.cfg.Clock.Now()
	}
}

// Load loads the CA from the Store, or creates and stores it when there is none, and
// serves a certificate it signs, retrying until it succeeds; it returns ctx's error when
// ctx ends first. Run calls it when it was not called before; calling it first lets the
// HTTPS server answer before Run publishes the bundle. It does not publish.
func (a *Authority) Load(ctx context.Context) error {
	a.mu.RLock()
	loaded := a.serving != nil
	a.mu.RUnlock()
	for backoff := 500 * time.Millisecond; !loaded; backoff = min(2*backoff, 30*time.Second) {
		err := a.start(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrConflict):
			// Another replica created the CA at the same time: load it.
			continue
		}
		a.log.Error(err, "Loading the CA failed; retrying", "after", backoff)
		if !a.sleep(ctx, backoff) {
			return ctx.Err()
		}
	}
	return nil
}

// start loads the CAs, creates the first one when the Store holds none, and serves a
// certificate.
func (a *Authority) start(ctx context.Context) error {
	if err := a.reload(ctx); err != nil {
		return err
	}
	if len(a.cas) == 0 {
		if err := a.rotateCA(ctx); err != nil {
			return err
		}
	}
	a.mu.RLock()
	signer := a.signerLocked(a.cfg.Clock.Now())
	a.mu.RUnlock()
	return a.issueServing(signer)
}

// signerLocked is the CA that signs serving certificates at now: the newest one that the
// API server has had PropagationDelay to trust, or the oldest when none has (the first
// CA). a.mu is held.
func (a *Authority) signerLocked(now time.Time) *keyPair {
	for _, ca := range a.cas {
		if !now.Before(ca.created().Add(a.cfg.PropagationDelay)) {
			return ca
		}
	}
	return a.cas[len(a.cas)-1]
}

// reload reads the Store and keeps its unexpired CAs.
func (a *Authority) reload(ctx context.Context) error {
	stored, version, err := a.cfg.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("load the CAs: %w", err)
	}
	now := a.cfg.Clock.Now()
	var cas []*keyPair
	for i, s := range stored {
		ca, err := parseCA(s)
		if err != nil {
			a.log.Error(err, "Ignoring a stored CA that does not parse", "index", i)
			continue
		}
		if now.Before(ca.cert.NotAfter) {
			cas = append(cas, ca)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Keep this process's parsed CAs (servingCA compares by pointer).
	for i, ca := range cas {
		for _, have := range a.cas {
			if bytes.Equal(have.cert.Raw, ca.cert.Raw) {
				cas[i] = have
			}
		}
	}
	a.cas, a.version = cas, version
	return nil
}

// rotateCA stores a new CA before the current ones. The serving certificate moves to it
// PropagationDelay later (signerLocked). ErrConflict: another replica stored first.
func (a *Authority) rotateCA(ctx context.Context) error {
	ca, err := a.newCA()
	if err != nil {
		return err
	}
	a.mu.RLock()
	cas := append([]*keyPair{ca}, a.cas...)
	version := a.version
	a.mu.RUnlock()
	stored := make([]StoredCA, len(cas))
	for i, c := range cas {
		stored[i] = c.stored
	}
	version, err = a.cfg.Store.Save(ctx, stored, version)
	if err != nil {
		return fmt.Errorf("store the new CA: %w", err)
	}
	if a.cfg.OnIssue != nil {
		a.cfg.OnIssue(KindCA, ca.cert.NotAfter)
	}
	a.mu.Lock()
	a.cas, a.version = cas, version
	a.mu.Unlock()
	if len(cas) > 1 {
		a.log.Info("Published a new CA beside the current one", "notAfter", ca.cert.NotAfter)
	} else {
		a.log.Info("Created the CA", "notAfter", ca.cert.NotAfter)
	}
	return nil
}

// publish calls Publish with the current bundle until it succeeds, when it differs from
// the one last published; false when ctx ended.
func (a *Authority) publish(ctx context.Context) bool {
	bundle := a.CABundle()
	if bytes.Equal(bundle, a.published) {
		return true
	}
	backoff := 500 * time.Millisecond
	for {
		err := a.cfg.Publish(ctx, bundle)
		if err == nil {
			a.published = bundle
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
	return a.sleepUntil(ctx, a.cfg.Clock.Now().Add(d))
}

func (a *Authority) sleepUntil(ctx context.Context, t time.Time) bool {
	d := t.Sub(a.cfg.Clock.Now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := a.cfg.Clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C():
		return true
	}
}

func earliest(t time.Time, more ...time.Time) time.Time {
	for _, u := range more {
		if u.Before(t) {
			t = u
		}
	}
	return t
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
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return &keyPair{cert: cert, key: key, stored: StoredCA{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}}, nil
}

// issueServing issues a serving certificate signed by ca and serves it.
func (a *Authority) issueServing(ca *keyPair) error {
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
	a.serving, a.servingCA = serving, ca
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

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
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"sync"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// StoredCA is a CA as a Store keeps it: its certificate and private key, PEM.
type StoredCA struct {
	Cert []byte
	Key  []byte
}

// ErrConflict is Store.Save's error when the stored CAs changed since they were loaded:
// another replica saved first.
var ErrConflict = errors.New("the stored CAs changed since they were loaded")

// Store keeps the CAs where every replica of the webhook reads them, so that all serve
// certificates of one CA bundle. Methods are called from one goroutine at a time.
type Store interface {
	// Load returns the stored CAs, newest first, and the version Save compares with; no
	// CAs and version "" when none is stored.
	Load(ctx context.Context) (cas []StoredCA, version string, err error)
	// Save stores cas, newest first, when the stored version is still version (""
	// when none was stored), and returns the new version. It returns ErrConflict when
	// another replica saved first.
	Save(ctx context.Context, cas []StoredCA, version string) (string, error)
}

// MemoryStore is a Store in memory: the CAs of one process.
type MemoryStore struct {
	mu      sync.Mutex
	cas     []StoredCA
	version int
}

// Load implements Store.
func (m *MemoryStore) Load(context.Context) ([]StoredCA, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.version == 0 {
		return nil, "", nil
	}
	return m.cas, strconv.Itoa(m.version), nil
}

// Save implements Store.
func (m *MemoryStore) Save(_ context.Context, cas []StoredCA, version string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if (m.version == 0 && version != "") || (m.version != 0 && version != strconv.Itoa(m.version)) {
		return "", ErrConflict
	}
	m.cas = cas
	m.version++
	return strconv.Itoa(m.version), nil
}

// Keys of the Secret of a SecretStore: the CAs' certificates and their keys, PEM, newest
// first and in the same order. ca.crt is the bundle the API server trusts.
const (
	SecretKeyCerts = "ca.crt"
	SecretKeyKeys  = "ca.key"
)

// SecretStore keeps the CAs in one Secret of the host cluster, which every replica of the
// webhook reads and writes (optimistic concurrency through its resourceVersion). It
// creates the Secret when it is missing; the namespace must exist.
type SecretStore struct {
	// Secrets is the host's Secrets API.
	Secrets corev1client.SecretsGetter
	// Namespace and Name of the Secret.
	Namespace string
	Name      string
}

// Load implements Store.
func (s *SecretStore) Load(ctx context.Context) ([]StoredCA, string, error) {
	sec, err := s.Secrets.Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("get Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	certs := splitPEM(sec.Data[SecretKeyCerts])
	keys := splitPEM(sec.Data[SecretKeyKeys])
	if len(certs) != len(keys) {
		// Written by hand, or cut: start over with a new CA rather than guess the pairs.
		return nil, sec.ResourceVersion, nil
	}
	cas := make([]StoredCA, len(certs))
	for i := range certs {
		cas[i] = StoredCA{Cert: certs[i], Key: keys[i]}
	}
	return cas, sec.ResourceVersion, nil
}

// Save implements Store.
func (s *SecretStore) Save(ctx context.Context, cas []StoredCA, version string) (string, error) {
	var certs, keys bytes.Buffer
	for _, ca := range cas {
		certs.Write(ca.Cert)
		keys.Write(ca.Key)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: version,
			Labels: map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{SecretKeyCerts: certs.Bytes(), SecretKeyKeys: keys.Bytes()},
	}
	secrets := s.Secrets.Secrets(s.Namespace)
	var err error
	if version == "" {
		sec, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
	} else {
		sec, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	}
	switch {
	case apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) || (version != "" && apierrors.IsNotFound(err)):
		return "", ErrConflict
	case err != nil:
		return "", fmt.Errorf("write Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return sec.ResourceVersion, nil
}

// splitPEM returns each PEM block of b, encoded on its own.
func splitPEM(b []byte) [][]byte {
	var out [][]byte
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		out = append(out, pem.EncodeToMemory(block))
	}
}

// parseCA parses a stored CA.
func parseCA(s StoredCA) (*keyPair, error) {
	cb, _ := pem.Decode(s.Cert)
	kb, _ := pem.Decode(s.Key)
	if cb == nil || kb == nil {
		return nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	var key crypto.Signer
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		var k any
		k, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err == nil {
			var ok bool
			if key, ok = k.(crypto.Signer); !ok {
				err = fmt.Errorf("a %T key cannot sign", k)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("the certificate is not a CA")
	}
	return &keyPair{cert: cert, key: key, stored: s}, nil
}

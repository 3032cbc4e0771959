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
	"slices"
	"strings"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ErrSiteNotConnected says a site has no working connection: it is not registered (yet), its
// kubeconfig cannot be read, or its API server did not answer the last probe. Get wraps it;
// test with errors.Is.
var ErrSiteNotConnected = errors.New("site not connected")

// ErrSiteDown is wrapped, besides ErrSiteNotConnected, when the site is known not to work:
// its last probe failed or its kubeconfig cannot be used. A site that is only not
// reconciled, probed or synced yet (the provider is starting) is not down.
var ErrSiteDown = errors.New("site down")

// Reasons of the Connected and Ready conditions of a Site. A failed connection gives both
// conditions the same reason, so `kubectl get sites` and `kubectl describe site` agree.
const (
	// ReasonConnected: the site's API server answered the last probe.
	ReasonConnected = "Connected"
	// ReasonSecretNotFound: the Secret that spec.kubeconfigSecretRef names does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyNotFound: the Secret exists but has no data under the referenced key.
	ReasonSecretKeyNotFound = "SecretKeyNotFound"
	// ReasonInvalidKubeconfig: the kubeconfig does not parse, has no usable context, or
	// refers to files or credential plugins (a Secret must be self-contained).
	ReasonInvalidKubeconfig = "InvalidKubeconfig"
	// ReasonInvalidNodeSelector: spec.nodeSelector is not a valid label selector.
	ReasonInvalidNodeSelector = "InvalidNodeSelector"
	// ReasonUnauthorized: the site's API server rejected the credentials (401).
	ReasonUnauthorized = "Unauthorized"
	// ReasonForbidden: the credentials authenticate but may not list nodes (403).
	ReasonForbidden = "Forbidden"
	// ReasonTLSError: the TLS handshake failed (unknown CA, wrong server name, bad
	// certificate).
	ReasonTLSError = "TLSError"
	// ReasonUnreachable: no answer from the site's API server (refused, timed out, DNS).
	ReasonUnreachable = "Unreachable"
	// ReasonProbeFailed: the API server answered the probe with an unexpected error.
	ReasonProbeFailed = "ProbeFailed"
	// ReasonTenantInUse: another host serves this provider's tenant on the site cluster
	// (Claim); the site is not used.
	ReasonTenantInUse = "TenantInUse"
	// ReasonClusterChanged: the kubeconfig now reaches another cluster than the one the
	// Site was registered with (status.clusterID); the site is not used until the Secret
	// points back at it, or the Site is created again.
	ReasonClusterChanged = "ClusterChanged"

	// ReasonNodesReady: Ready=True, at least one of the site's nodes is Ready.
	ReasonNodesReady = "NodesReady"
	// ReasonNoReadyNodes: connected, but none of the site's nodes is Ready (or the node
	// selector matches none).
	ReasonNoReadyNodes = "NoReadyNodes"
	// ReasonNodeNamesTooLong: Ready=False, a virtual node's name <site>-<node> is longer
	// than a Node's kubernetes.io/hostname label allows (63 characters): it could never
	// register.
	ReasonNodeNamesTooLong = "NodeNamesTooLong"
	// ReasonNodeNameCollision: Ready=False, a virtual node name of the Site is also
	// another Site's ("<site>-<node>" of Site a's node b-c and Site a-b's node c, or Site
	// a's node b and Site a-b's Aggregate node), and the other Site keeps it: the one that
	// has the virtual node already, else the older. This Site's node is not registered.
	ReasonNodeNameCollision = "NodeNameCollision"
	// ReasonWritesTimingOut: Ready=False, the site's API server answers reads but its
	// writes time out or hang (Config.WriteStallThreshold).
	ReasonWritesTimingOut = "WritesTimingOut"
	// ReasonNodesNotSynced: connected, but the node list has not been read yet.
	ReasonNodesNotSynced = "NodesNotSynced"
)

// siteError is a failure to connect to a site, with the condition reason it maps to and a
// message that says what is wrong and how to fix it.
type siteError struct {
	reason  string
	message string
	err     error
}

func (e *siteError) Error() string { return e.reason + ": " + e.message }
func (e *siteError) Unwrap() error { return e.err }

func newSiteError(reason string, err error, format string, args ...any) *siteError {
	return &siteError{reason: reason, message: fmt.Sprintf(format, args...), err: err}
}

// ReasonOf returns the condition reason and message of the site failure err wraps (Get's
// errors do when the Site's kubeconfig cannot be used or is refused), and whether it
// wraps one.
func ReasonOf(err error) (reason, message string, ok bool) {
	var se *siteError
	if errors.As(err, &se) {
		return se.reason, se.message, true
	}
	return "", "", false
}

// probeFailure maps an error from a call to a site's API server (server) made with the
// credentials of Secret secret ("ns/name") to a condition reason and message.
func probeFailure(server, secret string, err error) *siteError {
	var se *siteError
	switch {
	case errors.As(err, &se):
		return se
	case apierrors.IsUnauthorized(err):
		return newSiteError(ReasonUnauthorized, err,
			"the API server at %s rejected the credentials (401 Unauthorized): put a valid client certificate or token in the kubeconfig in Secret %s",
			server, secret)
	case apierrors.IsForbidden(err):
		return newSiteError(ReasonForbidden, err,
			"the credentials in Secret %s may not list nodes at %s (403 Forbidden): grant the kubeconfig's user get, list and watch on nodes (and what vk8s needs on the site)",
			secret, server)
	case isTLSError(err):
		return newSiteError(ReasonTLSError, err,
			"TLS with the API server at %s failed: %v: check certificate-authority-data and the server name in the kubeconfig in Secret %s",
			server, rootCause(err), secret)
	case isUnreachable(err):
		return newSiteError(ReasonUnreachable, err,
			"cannot reach the API server at %s: %v: check the server URL in the kubeconfig in Secret %s, the network path, and that the site's API server runs",
			server, rootCause(err), secret)
	default:
		return newSiteError(ReasonProbeFailed, err,
			"the API server at %s answered the probe with an error: %v: check the site's API server", server, err)
	}
}

// IsTLSError says whether err is a failure of TLS with an API server (unknown authority,
// wrong host name, a server that does not speak TLS).
func IsTLSError(err error) bool { return isTLSError(err) }

// IsUnreachable says whether err means the API server did not answer: refused, reset,
// unresolved, timed out or unavailable.
func IsUnreachable(err error) bool { return isUnreachable(err) }

func isTLSError(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		record           tls.RecordHeaderError
	)
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verification) || errors.As(err, &record)
}

func isUnreachable(err error) bool {
	var (
		netErr net.Error
		dnsErr *net.DNSError
		opErr  *net.OpError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &dnsErr), errors.As(err, &opErr):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsServiceUnavailable(err):
		return true
	}
	return false
}

// rootCause is the innermost error of err's chain, which names the actual network or TLS
// failure without the URL and verb client-go wraps around it.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// restConfigFromKubeconfig builds a client configuration from the kubeconfig a Secret
// holds. The kubeconfig must be self-contained: paths to files and credential plugins
// (exec, auth-provider) would run or read things on the host where vk8s runs, so they are
// refused.
func restConfigFromKubeconfig(data []byte) (*rest.Config, error) {
	raw, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := checkSelfContained(raw); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkSelfContained refuses a kubeconfig whose current context refers to files or
// credential plugins.
func checkSelfContained(raw *clientcmdapi.Config) error {
	if raw.CurrentContext == "" {
		return errors.New("no current-context")
	}
	ctx, ok := raw.Contexts[raw.CurrentContext]
	if !ok {
		names := make([]string, 0, len(raw.Contexts))
		for n := range raw.Contexts {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("current-context %q is not one of the contexts %v", raw.CurrentContext, names)
	}
	c, ok := raw.Clusters[ctx.Cluster]
	if !ok {
		return fmt.Errorf("context %q names cluster %q, which is not in the kubeconfig", raw.CurrentContext, ctx.Cluster)
	}
	if c.Server == "" {
		return fmt.Errorf("cluster %q has no server", ctx.Cluster)
	}
	var refs []string
	if c.CertificateAuthority != "" {
		refs = append(refs, "certificate-authority (use certificate-authority-data)")
	}
	if u, ok := raw.AuthInfos[ctx.AuthInfo]; ok {
		if u.ClientCertificate != "" {
			refs = append(refs, "client-certificate (use client-certificate-data)")
		}
		if u.ClientKey != "" {
			refs = append(refs, "client-key (use client-key-data)")
		}
		if u.TokenFile != "" {
			refs = append(refs, "tokenFile (use token)")
		}
		if u.Exec != nil {
			refs = append(refs, "exec credential plugin (use a token or client certificate)")
		}
		if u.AuthProvider != nil {
			refs = append(refs, "auth-provider plugin (use a token or client certificate)")
		}
	}
	if len(refs) > 0 {
		return fmt.Errorf("context %q is not self-contained: %s", raw.CurrentContext, strings.Join(refs, ", "))
	}
	return nil
}

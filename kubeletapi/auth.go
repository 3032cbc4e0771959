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
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
)

// AuthConfig configures how requests are authenticated and authorized, as a kubelet does
// with webhook authentication and authorization: a client certificate signed by the host's
// client CA, or a bearer token the host's TokenReview accepts; then a SubjectAccessReview
// on the virtual node (resource nodes, subresource proxy, log, stats or metrics). Requests
// without credentials are refused with 401; requests not allowed, with 403.
type AuthConfig struct {
	// Host is the host cluster's clientset, for TokenReviews and SubjectAccessReviews.
	// Required unless Disabled.
	Host kubernetes.Interface
	// ClientCA is the PEM bundle of the host's client CA (the kube-apiserver's
	// --client-ca-file, which signs the client certificate it presents to kubelets, its
	// --kubelet-client-certificate). Empty: client certificates are not accepted, only
	// bearer tokens.
	ClientCA []byte
	// CacheTTL is how long a token review is cached, and an allowed access review.
	// Zero: 2m and 5m, as a kubelet. A denied access review is cached for 30s.
	CacheTTL time.Duration
	// Disabled lets every request through without authentication or authorization. Only
	// for tests.
	Disabled bool
}

func (c AuthConfig) validate() error {
	switch {
	case c.Disabled && (c.Host != nil || len(c.ClientCA) > 0):
		return errors.New("auth: Disabled with Host or ClientCA set: choose one")
	case !c.Disabled && c.Host == nil:
		return errors.New("Auth.Host is required (or Auth.Disabled, for tests)")
	}
	return nil
}

// newAuth builds virtual-kubelet's webhook Auth for c; nil when c.Disabled. The node name
// it is given is not used: attributes are made per request (requestAttributes).
func newAuth(c AuthConfig) (nodeutil.Auth, error) {
	if c.Disabled {
		return nil, nil
	}
	return nodeutil.WebhookAuth(c.Host, "", func(w *nodeutil.WebhookAuthConfig) error {
		// No anonymous authenticator: a request without credentials is refused.
		w.AuthnConfig.Anonymous = nil
		if c.CacheTTL > 0 {
			w.AuthnConfig.CacheTTL = c.CacheTTL
			w.AuthzConfig.AllowCacheTTL = c.CacheTTL
		}
		if len(c.ClientCA) > 0 {
			ca, err := dynamiccertificates.NewStaticCAContent("host-client-ca", c.ClientCA)
			if err != nil {
				return fmt.Errorf("Auth.ClientCA: %w", err)
			}
			w.AuthnConfig.ClientCertificateCAContentProvider = ca
		}
		return nil
	})
}

// requestAttributes are what a kubelet checks: the verb from the method, resource nodes
// named after the virtual node, and the subresource from the kubelet path (path is the
// request's path below /nodes/<node> when it has that prefix). Exec, attach and
// port-forward need create whatever the method, since a WebSocket upgrade is a GET.
func requestAttributes(u user.Info, r *http.Request, node, path string, streaming bool) authorizer.Attributes {
	verb := "get"
	switch r.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	}
	if streaming {
		verb = "create"
	}
	return authorizer.AttributesRecord{
		User:            u,
		Verb:            verb,
		APIVersion:      "v1",
		Resource:        "nodes",
		Subresource:     kubeletSubresource(path),
		Name:            node,
		ResourceRequest: true,
		Path:            path,
	}
}

// kubeletSubresource maps a kubelet path to the subresource of nodes a kubelet checks.
func kubeletSubresource(path string) string {
	for _, s := range []struct{ prefix, sub string }{{"/stats", "stats"}, {"/metrics", "metrics"}, {"/logs", "log"}} {
		if path == s.prefix || strings.HasPrefix(path, s.prefix+"/") {
			return s.sub
		}
	}
	return "proxy"
}

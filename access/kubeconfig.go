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

package access

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Defaults and bounds of a Request.
const (
	// DefaultUser is the ServiceAccount a kubeconfig is for when the request names none.
	DefaultUser = "vk8s-user"
	// DefaultTTL is how long the token of a kubeconfig lives when the request does not say.
	DefaultTTL = 24 * time.Hour
	// MinTTL is the shortest token the TokenRequest API issues.
	MinTTL = 10 * time.Minute
	// MaxTTL is the longest token the TokenRequest API accepts (2^32 seconds); the API
	// server may issue a shorter one (kube-apiserver --service-account-max-token-expiration).
	MaxTTL = (1 << 32) * time.Second
)

// rolePrefix starts the names of the Role and the RoleBinding of a user.
const rolePrefix = "vk8s-kubeconfig-"

// Request asks for a kubeconfig for one vK8s namespace.
type Request struct {
	// Namespace is the vK8s namespace.
	Namespace string
	// User names the ServiceAccount in Namespace the kubeconfig authenticates as; the Role
	// and the RoleBinding are RoleName(User).
	User string
	// TTL is how long the token lives.
	TTL time.Duration
}

// Validate says what is wrong with r, naming the flag and the fix.
func (r Request) Validate() error {
	var errs []error
	if r.Namespace == "" {
		errs = append(errs, errors.New("--namespace is required: the vK8s namespace the kubeconfig is for (kubectl get virtualkubernetes -A lists them)"))
	} else if msgs := validation.IsDNS1123Label(r.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--namespace %q is not a namespace name: %s", r.Namespace, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Label(r.User); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--user %q: %s (it names a ServiceAccount and labels its Role)", r.User, strings.Join(msgs, "; ")))
	}
	switch {
	case r.TTL < MinTTL:
		errs = append(errs, fmt.Errorf("--ttl %s: the API server issues tokens of at least %s; ask for %s or more", r.TTL, MinTTL, MinTTL))
	case r.TTL > MaxTTL:
		errs = append(errs, fmt.Errorf("--ttl %s: the API server issues tokens of at most 2^32 seconds; ask for less (the default is %s)", r.TTL, DefaultTTL))
	case r.TTL%time.Second != 0:
		errs = append(errs, fmt.Errorf("--ttl %s: a token lives whole seconds; drop the fraction", r.TTL))
	}
	return errors.Join(errs...)
}

// RoleName names the Role and the RoleBinding of user.
func RoleName(user string) string { return rolePrefix + user }

// Cluster is the host as the admin's kubeconfig reaches it.
type Cluster struct {
	// Name is the cluster's name in the admin's kubeconfig ("vk8s" when it has none).
	Name string
	// Server is the API server's URL.
	Server string
	// CAData is the PEM of the CAs the server's certificate is checked against (none: the
	// system's).
	CAData []byte
	// TLSServerName is the name the server's certificate is checked for, when it is not
	// the URL's host.
	TLSServerName string
	// InsecureSkipTLSVerify is the admin's choice not to check the server's certificate.
	InsecureSkipTLSVerify bool
	// ProxyURL is the proxy the admin reaches the server through.
	ProxyURL string
}

// Kubeconfig returns a kubeconfig with one cluster, one user and one context: token is
// the bearer token of ServiceAccount user in namespace, and the context's namespace is
// namespace, so kubectl and Helm work there without -n. The context and the user are
// named "<namespace>/<user>@<cluster>", so that kubeconfigs of several namespaces and
// hosts merge (KUBECONFIG=a:b) without clashing.
func Kubeconfig(c Cluster, namespace, user, token string) *clientcmdapi.Config {
	cluster := c.Name
	if cluster == "" {
		cluster = "vk8s"
	}
	name := namespace + "/" + user + "@" + cluster
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{
		Server:                   c.Server,
		CertificateAuthorityData: c.CAData,
		TLSServerName:            c.TLSServerName,
		InsecureSkipTLSVerify:    c.InsecureSkipTLSVerify,
		ProxyURL:                 c.ProxyURL,
	}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: name, Namespace: namespace}
	cfg.CurrentContext = name
	return cfg
}

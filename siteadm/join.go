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

package siteadm

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/translate"
)

// Defaults of JoinConfig.
const (
	// DefaultTokenTTL is how long the token join issues lives; the provider renews it at
	// half of that.
	DefaultTokenTTL = 7 * 24 * time.Hour
	// DefaultSiteTimeout bounds each call to the site, so that an unreachable site fails
	// fast.
	DefaultSiteTimeout = 10 * time.Second
	// DefaultWait is how long join waits for the Site to be Connected and Ready.
	DefaultWait = 3 * time.Minute
	// minTokenTTL is the shortest token the TokenRequest API issues.
	minTokenTTL = 10 * time.Minute
	// refusalGrace is how long the Site may report a refusal (Connected=False) before join
	// gives up: the first probe may race the site's caches of the new ServiceAccount.
	refusalGrace = 20 * time.Second
)

// JoinConfig says which Site join makes.
type JoinConfig struct {
	// Name of the Site.
	Name string
	// Type, NodeMode, Labels and NodeSelector are the Site's (empty: the Site's defaults).
	Type         vk8sv1.SiteType
	NodeMode     vk8sv1.NodeMode
	Labels       map[string]string
	NodeSelector map[string]string
	// Tenant is the host's tenant (the provider's --tenant).
	Tenant string
	// SecretNamespace holds the Site's kubeconfig Secret in the host; the provider renews
	// tokens only in its own namespace. Empty: Namespace.
	SecretNamespace string
	// TokenTTL is the lifetime of the site token. Zero: DefaultTokenTTL.
	TokenTTL time.Duration
	// SiteTimeout bounds each call to the site. Zero: DefaultSiteTimeout.
	SiteTimeout time.Duration
	// Wait is how long to wait for the Site to be Connected and Ready. Zero: DefaultWait.
	Wait time.Duration
	// Progress receives a line per step; nil: none.
	Progress io.Writer
}

func (cfg *JoinConfig) defaults() {
	cfg.SecretNamespace = cmp.Or(cfg.SecretNamespace, Namespace)
	cfg.TokenTTL = cmp.Or(cfg.TokenTTL, DefaultTokenTTL)
	cfg.SiteTimeout = cmp.Or(cfg.SiteTimeout, DefaultSiteTimeout)
	cfg.Wait = cmp.Or(cfg.Wait, DefaultWait)
	cfg.Type = cmp.Or(cfg.Type, vk8sv1.SiteTypeCustomerEdge)
	cfg.NodeMode = cmp.Or(cfg.NodeMode, vk8sv1.NodeModePerNode)
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
}

// Validate refuses a JoinConfig the host or the site would refuse, naming the field.
func (cfg *JoinConfig) Validate() error {
	invalid := func(format string, args ...any) error { return newError(CauseInvalid, nil, format, args...) }
	if errs := validation.IsDNS1123Label(cfg.Name); len(errs) > 0 {
		return invalid("Site name %q: %s", cfg.Name, strings.Join(errs, "; "))
	}
	if err := translate.ValidTenant(cfg.Tenant); err != nil {
		return invalid("--tenant: %v", err)
	}
	if err := validAccountName(cfg.Tenant, cfg.Name); err != nil {
		return invalid("%v", err)
	}
	if cfg.Type != "" && cfg.Type != vk8sv1.SiteTypeRegionalEdge && cfg.Type != vk8sv1.SiteTypeCustomerEdge {
		return invalid("--type %q: use %s or %s", cfg.Type, vk8sv1.SiteTypeRegionalEdge, vk8sv1.SiteTypeCustomerEdge)
	}
	if cfg.NodeMode != "" && cfg.NodeMode != vk8sv1.NodeModePerNode && cfg.NodeMode != vk8sv1.NodeModeAggregate {
		return invalid("--node-mode %q: use %s or %s", cfg.NodeMode, vk8sv1.NodeModePerNode, vk8sv1.NodeModeAggregate)
	}
	for flag, m := range map[string]map[string]string{"--labels": cfg.Labels, "--node-selector": cfg.NodeSelector} {
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range m {
				if !yield(k) {
					return
				}
			}
		}) {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				return invalid("%s: key %q: %s", flag, k, strings.Join(errs, "; "))
			}
			if errs := validation.IsValidLabelValue(m[k]); len(errs) > 0 {
				return invalid("%s: value %q of %s: %s", flag, m[k], k, strings.Join(errs, "; "))
			}
		}
	}
	if cfg.TokenTTL != 0 && cfg.TokenTTL < minTokenTTL {
		return invalid("--token-ttl %s: the site issues tokens of %s or longer", cfg.TokenTTL, minTokenTTL)
	}
	return nil
}

// siteClient is the site administrator's client, with every call bounded by timeout.
func siteClient(admin *rest.Config, timeout time.Duration) (*rest.Config, kubernetes.Interface, error) {
	cfg := rest.CopyConfig(admin)
	if err := rest.LoadTLSFiles(cfg); err != nil {
		return nil, nil, newError(CauseInvalid, err, "the site kubeconfig: %v", err)
	}
	cfg.Timeout = timeout
	cfg.UserAgent = "vk8s-site-join"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, newError(CauseInvalid, err, "the site kubeconfig: %v", err)
	}
	return cfg, c, nil
}

// undo is what join made, to remove when a later step fails.
type undo struct {
	steps []func(ctx context.Context) error
}

func (u *undo) add(f func(ctx context.Context) error) { u.steps = append(u.steps, f) }

// run removes, newest first, everything recorded; it runs even when ctx is done.
func (u *undo) run(ctx context.Context, progress io.Writer) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for i := len(u.steps) - 1; i >= 0; i-- {
		if err := u.steps[i](ctx); err != nil && !apierrors.IsNotFound(err) {
			fmt.Fprintf(progress, "rollback: %v\n", err)
		}
	}
}

// EnsureAccount creates on the site, or brings back to what NewSiteObjects says, the
// ServiceAccount, ClusterRole and ClusterRoleBinding of Site site of tenant, in namespace
// Namespace (created when missing). The lab registers its sites through it on every `lab
// up`.
func EnsureAccount(ctx context.Context, c kubernetes.Interface, tenant, site string) error {
	return ensureAccount(ctx, c, tenant, site, nil)
}

// ensureAccount is EnsureAccount recording in u, when not nil, each object it created.
func ensureAccount(ctx context.Context, c kubernetes.Interface, tenant, site string, u *undo) error {
	want := NewSiteObjects(tenant, site)
	if _, err := c.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s}}}
		if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", Namespace, err)
		} else if err == nil && u != nil {
			u.add(func(ctx context.Context) error {
				return c.CoreV1().Namespaces().Delete(ctx, Namespace, metav1.DeleteOptions{})
			})
		}
	} else if err != nil {
		return fmt.Errorf("get namespace %s: %w", Namespace, err)
	}
	sas := c.CoreV1().ServiceAccounts(Namespace)
	if _, err := sas.Create(ctx, want.ServiceAccount, metav1.CreateOptions{}); err == nil {
		if u != nil {
			u.add(func(ctx context.Context) error {
				return sas.Delete(ctx, want.ServiceAccount.Name, metav1.DeleteOptions{})
			})
		}
	} else if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ServiceAccount %s/%s: %w", Namespace, want.ServiceAccount.Name, err)
	}
	roles := c.RbacV1().ClusterRoles()
	if _, err := roles.Create(ctx, want.ClusterRole, metav1.CreateOptions{}); err == nil {
		if u != nil {
			u.add(func(ctx context.Context) error {
				return roles.Delete(ctx, want.ClusterRole.Name, metav1.DeleteOptions{})
			})
		}
	} else if apierrors.IsAlreadyExists(err) {
		have, err := roles.Get(ctx, want.ClusterRole.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get ClusterRole %s: %w", want.ClusterRole.Name, err)
		}
		have.Labels, have.Rules = want.ClusterRole.Labels, want.ClusterRole.Rules
		if _, err := roles.Update(ctx, have, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update ClusterRole %s: %w", want.ClusterRole.Name, err)
		}
	} else {
		return fmt.Errorf("create ClusterRole %s: %w", want.ClusterRole.Name, err)
	}
	bindings := c.RbacV1().ClusterRoleBindings()
	if _, err := bindings.Create(ctx, want.ClusterRoleBinding, metav1.CreateOptions{}); err == nil {
		if u != nil {
			u.add(func(ctx context.Context) error {
				return bindings.Delete(ctx, want.ClusterRoleBinding.Name, metav1.DeleteOptions{})
			})
		}
	} else if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ClusterRoleBinding %s: %w", want.ClusterRoleBinding.Name, err)
	}
	return nil
}

// IssueToken issues a bound token of ttl for the ServiceAccount of Site site of tenant.
func IssueToken(ctx context.Context, c kubernetes.Interface, tenant, site string, ttl time.Duration, now time.Time) (Token, error) {
	name := AccountName(tenant, site)
	tr, err := c.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, name, tokenRequest(ttl), metav1.CreateOptions{})
	if err != nil {
		return Token{}, fmt.Errorf("issue a token for ServiceAccount %s/%s: %w", Namespace, name, err)
	}
	return Token{Value: tr.Status.Token, Issued: now, Expires: tr.Status.ExpirationTimestamp.Time}, nil
}

func tokenRequest(ttl time.Duration) *authenticationv1.TokenRequest {
	return &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl.Seconds()))}}
}

// Register makes the site side of Site site of tenant (EnsureAccount) and returns a
// kubeconfig for it: current, when it is given (a Site Secret's, with its annotations
// ann) and its token still works and is not due for renewal, else one with a new token of
// ttl. admin is the site administrator's configuration. The lab registers its sites
// through it, so that the provider it runs has exactly the rights join gives.
func Register(ctx context.Context, admin *rest.Config, tenant, site string, ttl time.Duration, current []byte, ann map[string]string) ([]byte, Token, error) {
	cfg, c, err := siteClient(admin, DefaultSiteTimeout)
	if err != nil {
		return nil, Token{}, err
	}
	if err := ensureAccount(ctx, c, tenant, site, nil); err != nil {
		return nil, Token{}, siteFailure(cfg.Host, "making the site's ServiceAccount", err)
	}
	if due, ok, err := RenewDue(ann, time.Now()); ok && !due && err == nil && works(ctx, current, cfg.Host) {
		issued, _ := time.Parse(time.RFC3339, ann[vk8sv1.AnnotationTokenIssued])
		expires, _ := time.Parse(time.RFC3339, ann[vk8sv1.AnnotationTokenExpiration])
		return current, Token{Issued: issued, Expires: expires}, nil
	}
	tok, err := IssueToken(ctx, c, tenant, site, ttl, time.Now())
	if err != nil {
		return nil, Token{}, siteFailure(cfg.Host, "issuing its token", err)
	}
	kc, err := Kubeconfig(site, AccountName(tenant, site), cfg, tok.Value)
	return kc, tok, err
}

// works says whether kubeconfig reaches server and its credentials are taken.
func works(ctx context.Context, kubeconfig []byte, server string) bool {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil || cfg.Host != server {
		return false
	}
	cfg.Timeout = DefaultSiteTimeout
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false
	}
	_, err = c.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	return err == nil
}

// Joined says what Join made.
type Joined struct {
	Site   *vk8sv1.Site
	Secret *corev1.Secret
	Token  Token
	Server string
}

// Join makes Site cfg.Name of the cluster that admin (the site administrator's
// configuration) reaches: on the site, the ServiceAccount, ClusterRole and
// ClusterRoleBinding of Permissions and a token; in the host (host), the Secret with a
// kubeconfig of that token and the Site. It checks first what it can (the name is free in
// the host, the site answers and takes the credentials, no other host serves the tenant
// there, nothing of an earlier join is left), and removes what it made when a step fails
// or the Site does not get Connected within cfg.Wait: it leaves nothing half-made. It
// then waits until the Site's virtual nodes are Ready.
func Join(ctx context.Context, host client.Client, admin *rest.Config, cfg JoinConfig) (*Joined, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	siteCfg, site, err := siteClient(admin, cfg.SiteTimeout)
	if err != nil {
		return nil, err
	}
	return join(ctx, host, siteCfg, site, cfg)
}

// join is Join with the site's client made, cfg validated and defaulted.
func join(ctx context.Context, host client.Client, siteCfg *rest.Config, site kubernetes.Interface, cfg JoinConfig) (*Joined, error) {
	out := cfg.Progress
	server := siteCfg.Host

	// Checks before anything is made.
	fmt.Fprintf(out, "checking the host: Site %s and Secret %s/%s are free\n", cfg.Name, cfg.SecretNamespace, SecretName(cfg.Name))
	hostID, err := checkHost(ctx, host, cfg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "checking the site at %s\n", server)
	if err := checkSite(ctx, site, server, hostID, cfg); err != nil {
		return nil, err
	}

	u := &undo{}
	fail := func(err error) (*Joined, error) {
		fmt.Fprintf(out, "join failed: removing what it made\n")
		u.run(ctx, out)
		return nil, err
	}
	name := AccountName(cfg.Tenant, cfg.Name)
	fmt.Fprintf(out, "creating on the site: ServiceAccount %s/%s, ClusterRole and ClusterRoleBinding %s\n", Namespace, name, name)
	if err := ensureAccount(ctx, site, cfg.Tenant, cfg.Name, u); err != nil {
		return fail(siteFailure(server, "making the site's ServiceAccount", err))
	}
	tok, err := IssueToken(ctx, site, cfg.Tenant, cfg.Name, cfg.TokenTTL, time.Now())
	if err != nil {
		return fail(siteFailure(server, "issuing its token", err))
	}
	kc, err := Kubeconfig(cfg.Name, name, siteCfg, tok.Value)
	if err != nil {
		return fail(err)
	}
	secret := HostSecret(cfg.SecretNamespace, cfg.Tenant, cfg.Name, kc, tok)
	fmt.Fprintf(out, "creating in the host: Secret %s/%s (token until %s), Site %s\n", secret.Namespace, secret.Name,
		tok.Expires.UTC().Format(time.RFC3339), cfg.Name)
	if err := host.Create(ctx, secret); err != nil {
		return fail(hostFailure("create Secret "+secret.Namespace+"/"+secret.Name, err))
	}
	u.add(func(ctx context.Context) error { return host.Delete(ctx, secret) })
	s := NewSite(cfg)
	if err := host.Create(ctx, s); err != nil {
		return fail(hostFailure("create Site "+cfg.Name, err))
	}
	u.add(func(ctx context.Context) error { return host.Delete(ctx, s) })

	if err := waitConnected(ctx, host, cfg, out); err != nil {
		return fail(err)
	}
	joined := &Joined{Site: s, Secret: secret, Token: tok, Server: server}
	if err := waitReady(ctx, host, cfg, out); err != nil {
		return joined, err
	}
	if err := host.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
		return joined, hostFailure("read Site "+cfg.Name, err)
	}
	return joined, nil
}

// hostFailure names a failed call to the host.
func hostFailure(what string, err error) error {
	switch {
	case apierrors.IsAlreadyExists(err):
		return newError(CauseNameTaken, err, "%s: it already exists: choose another Site name, or `vk8s site leave` the Site first", what)
	case meta.IsNoMatchError(err):
		return newError(CauseInvalid, err, "%s: the host has no vk8s.io CRDs: install vk8s (helm install vk8s charts/vk8s) first", what)
	}
	return fmt.Errorf("%s in the host: %w", what, err)
}

// checkHost refuses a name the host already uses and returns the host's identity.
func checkHost(ctx context.Context, host client.Client, cfg JoinConfig) (string, error) {
	s := &vk8sv1.Site{}
	err := host.Get(ctx, client.ObjectKey{Name: cfg.Name}, s)
	switch {
	case err == nil:
		return "", newError(CauseNameTaken, nil,
			"Site %s already exists in the host (its kubeconfig is in Secret %s/%s): choose another name, or `vk8s site leave %s` first",
			cfg.Name, s.Spec.KubeconfigSecretRef.Namespace, s.Spec.KubeconfigSecretRef.Name, cfg.Name)
	case meta.IsNoMatchError(err):
		return "", hostFailure("get Site "+cfg.Name, err)
	case !apierrors.IsNotFound(err):
		return "", fmt.Errorf("get Site %s in the host: %w", cfg.Name, err)
	}
	sec := &corev1.Secret{}
	err = host.Get(ctx, client.ObjectKey{Namespace: cfg.SecretNamespace, Name: SecretName(cfg.Name)}, sec)
	switch {
	case err == nil:
		return "", newError(CauseNameTaken, nil,
			"Secret %s/%s already exists in the host, and join would write Site %s's kubeconfig there: delete it, or choose another Site name",
			cfg.SecretNamespace, SecretName(cfg.Name), cfg.Name)
	case apierrors.IsNotFound(err):
	default:
		return "", fmt.Errorf("get Secret %s/%s in the host: %w", cfg.SecretNamespace, SecretName(cfg.Name), err)
	}
	ns := &corev1.Namespace{}
	if err := host.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, ns); err != nil {
		return "", fmt.Errorf("read the host's identity (namespace %s): %w", metav1.NamespaceSystem, err)
	}
	return string(ns.UID), nil
}

// checkSite checks that the site answers, takes the administrator's credentials, serves
// the tenant for no other host, and holds nothing of an earlier join of the name.
func checkSite(ctx context.Context, site kubernetes.Interface, server, hostID string, cfg JoinConfig) error {
	if _, err := site.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{}); err != nil {
		return siteFailure(server, "reading namespace kube-system", err)
	}
	claim, err := site.CoreV1().ConfigMaps(sitereg.ClaimNamespace).Get(ctx, sitereg.ClaimName(cfg.Tenant), metav1.GetOptions{})
	switch {
	case err == nil:
		if id := claim.Data[sitereg.ClaimKeyHostID]; id != hostID {
			return newError(CauseJoinedElsewhere, nil,
				"the cluster at %s is already joined to another host, %s (cluster ID %s), for tenant %q, as ConfigMap %s/%s on the site says: "+
					"two hosts with one tenant would delete each other's pods. Leave it there first (vk8s site leave, against that host); "+
					"or, if that host no longer uses the site, delete the ConfigMap; or give this host another tenant (the provider's --tenant, and --tenant here)",
				server, claim.Data[sitereg.ClaimKeyHostName], id, cfg.Tenant, sitereg.ClaimNamespace, claim.Name)
		}
	case apierrors.IsNotFound(err):
	default:
		return siteFailure(server, "reading the tenant claim", err)
	}
	want := NewSiteObjects(cfg.Tenant, cfg.Name)
	var left []string
	if _, err := site.CoreV1().ServiceAccounts(Namespace).Get(ctx, want.ServiceAccount.Name, metav1.GetOptions{}); err == nil {
		left = append(left, "ServiceAccount "+Namespace+"/"+want.ServiceAccount.Name)
	} else if !apierrors.IsNotFound(err) {
		return siteFailure(server, "reading ServiceAccounts", err)
	}
	if _, err := site.RbacV1().ClusterRoles().Get(ctx, want.ClusterRole.Name, metav1.GetOptions{}); err == nil {
		left = append(left, "ClusterRole "+want.ClusterRole.Name)
	} else if !apierrors.IsNotFound(err) {
		return siteFailure(server, "reading ClusterRoles", err)
	}
	if _, err := site.RbacV1().ClusterRoleBindings().Get(ctx, want.ClusterRoleBinding.Name, metav1.GetOptions{}); err == nil {
		left = append(left, "ClusterRoleBinding "+want.ClusterRoleBinding.Name)
	} else if !apierrors.IsNotFound(err) {
		return siteFailure(server, "reading ClusterRoleBindings", err)
	}
	if len(left) > 0 {
		return newError(CauseLeftovers, nil,
			"the site at %s already has %s: a Site %s of tenant %q was joined to it and not left. If no host uses it any more, "+
				"delete them on the site (kubectl delete -n %s serviceaccount %s; kubectl delete clusterrole,clusterrolebinding %s); or choose another Site name",
			server, strings.Join(left, ", "), cfg.Name, cfg.Tenant, Namespace, want.ServiceAccount.Name, want.ClusterRole.Name)
	}
	return nil
}

// terminal are the reasons of Connected=False that waiting does not cure.
var terminal = []string{
	sitereg.ReasonUnauthorized, sitereg.ReasonForbidden, sitereg.ReasonTLSError, sitereg.ReasonUnreachable,
	sitereg.ReasonTenantInUse, sitereg.ReasonClusterChanged, sitereg.ReasonInvalidKubeconfig, sitereg.ReasonInvalidNodeSelector,
	sitereg.ReasonNodeNameCollision, sitereg.ReasonNodeNamesTooLong,
}

// waitConnected waits until the provider reports the Site Connected, printing each change
// of its condition; a refusal that lasts refusalGrace, or no Connected within cfg.Wait,
// fails.
func waitConnected(ctx context.Context, host client.Client, cfg JoinConfig, out io.Writer) error {
	deadline := time.Now().Add(cfg.Wait)
	var last string
	var refusedSince time.Time
	for {
		s := &vk8sv1.Site{}
		if err := host.Get(ctx, client.ObjectKey{Name: cfg.Name}, s); err != nil {
			return fmt.Errorf("read Site %s: %w", cfg.Name, err)
		}
		c := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected)
		now := "waiting for the provider to report on it"
		if c != nil {
			now = fmt.Sprintf("Connected=%s (%s)", c.Status, c.Reason)
		}
		if now != last {
			fmt.Fprintf(out, "Site %s: %s\n", cfg.Name, now)
			last = now
		}
		switch {
		case c != nil && c.Status == metav1.ConditionTrue:
			return nil
		case c != nil && c.Status == metav1.ConditionFalse && slices.Contains(terminal, c.Reason):
			if refusedSince.IsZero() {
				refusedSince = time.Now()
			} else if time.Since(refusedSince) >= refusalGrace {
				return newError(CauseNotConnected, nil, "the provider cannot use Site %s: %s: %s", cfg.Name, c.Reason, c.Message)
			}
		default:
			refusedSince = time.Time{}
		}
		if time.Now().After(deadline) {
			if c == nil {
				return newError(CauseNotConnected, nil,
					"no provider reported on Site %s within %s: is vk8s's provider running in the host (kubectl -n vk8s-system get pods), with tenant %q?",
					cfg.Name, cfg.Wait, cfg.Tenant)
			}
			return newError(CauseNotConnected, nil, "Site %s is not Connected after %s: %s: %s", cfg.Name, cfg.Wait, c.Reason, c.Message)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitReady waits until the Site is Ready and every one of its virtual nodes is, printing
// each node as it gets Ready.
func waitReady(ctx context.Context, host client.Client, cfg JoinConfig, out io.Writer) error {
	deadline := time.Now().Add(cfg.Wait)
	ready := map[string]bool{}
	for {
		s := &vk8sv1.Site{}
		if err := host.Get(ctx, client.ObjectKey{Name: cfg.Name}, s); err != nil {
			return fmt.Errorf("read Site %s: %w", cfg.Name, err)
		}
		all := len(s.Status.VirtualNodes) > 0
		for _, name := range s.Status.VirtualNodes {
			n := &corev1.Node{}
			ok := host.Get(ctx, client.ObjectKey{Name: name}, n) == nil && translate.NodeReady(n)
			if ok && !ready[name] {
				fmt.Fprintf(out, "virtual node %s Ready\n", name)
			}
			ready[name] = ok
			all = all && ok
		}
		c := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionReady)
		if all && c != nil && c.Status == metav1.ConditionTrue {
			return nil
		}
		if time.Now().After(deadline) {
			msg := "no Ready condition"
			if c != nil {
				msg = c.Reason + ": " + c.Message
			}
			return fmt.Errorf("the Site %s joined and is Connected, but is not Ready after %s (%s); it stays: `kubectl get site %s -o yaml` tells more, `vk8s site leave %s` removes it",
				cfg.Name, cfg.Wait, msg, cfg.Name, cfg.Name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

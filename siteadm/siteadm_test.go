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
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlfake "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
)

func TestPermissions(t *testing.T) {
	account := AccountName("vk8s", "site1")
	if account != "vk8s-vk8s-site1" {
		t.Errorf("AccountName = %q", account)
	}
	tokens := 0
	for _, p := range Permissions(account) {
		r := p.Rule
		if p.Why == "" {
			t.Errorf("rule %v says not why", r)
		}
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			for _, v := range list {
				if v == "*" {
					t.Errorf("rule %v has a wildcard", r)
				}
			}
		}
		if len(r.Resources) == 1 && r.Resources[0] == "serviceaccounts/token" {
			tokens++
			if len(r.ResourceNames) != 1 || r.ResourceNames[0] != account {
				t.Errorf("token rule %v: want resourceNames [%s]", r, account)
			}
		} else if len(r.ResourceNames) > 0 {
			t.Errorf("rule %v is limited by name; only the token rule should be", r)
		}
	}
	if tokens != 1 {
		t.Errorf("%d token rules, want 1", tokens)
	}
	objs := NewSiteObjects("vk8s", "site1")
	if objs.ClusterRoleBinding.RoleRef.Name != objs.ClusterRole.Name || objs.ClusterRoleBinding.Subjects[0].Name != objs.ServiceAccount.Name ||
		objs.ClusterRoleBinding.Subjects[0].Namespace != Namespace || objs.ServiceAccount.Namespace != Namespace {
		t.Errorf("objects do not fit together: %+v", objs)
	}
}

// TestPermissionsDocumented: docs/install.md's site table lists every rule.
func TestPermissionsDocumented(t *testing.T) {
	raw, err := os.ReadFile("../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, p := range Permissions("ACCOUNT") {
		for _, res := range p.Rule.Resources {
			if !strings.Contains(doc, "`"+res+"`") {
				t.Errorf("docs/install.md does not name site resource %s", res)
			}
		}
	}
}

func TestKubeconfig(t *testing.T) {
	admin := &rest.Config{Host: "https://site1.example:6443", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("CA"), ServerName: "api.site1"}}
	kc, err := Kubeconfig("site1", "vk8s-vk8s-site1", admin, "TOKEN")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != admin.Host || string(cfg.CAData) != "CA" || cfg.ServerName != "api.site1" || cfg.BearerToken != "TOKEN" || len(cfg.CertData) > 0 {
		t.Errorf("kubeconfig gives %+v", cfg)
	}
	if _, err := Kubeconfig("site1", "a", &rest.Config{Host: "https://x", TLSClientConfig: rest.TLSClientConfig{CAFile: "/ca.crt"}}, "T"); err == nil {
		t.Error("a CA file not read: no error")
	}
}

func TestRenewDue(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ann := TokenAnnotations("acc", Token{Issued: issued, Expires: issued.Add(48 * time.Hour)})
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		now     time.Time
		due, ok bool
		err     bool
	}{
		{"fresh", ann, issued.Add(time.Hour), false, true, false},
		{"half", ann, issued.Add(24 * time.Hour), true, true, false},
		{"expired", ann, issued.Add(72 * time.Hour), true, true, false},
		{"not join's", map[string]string{}, issued, false, false, false},
		{"bad time", map[string]string{vk8sv1.AnnotationSiteServiceAccount: "vk8s-system/a", vk8sv1.AnnotationTokenExpiration: "soon"}, issued, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			due, ok, err := RenewDue(tc.ann, tc.now)
			if due != tc.due || ok != tc.ok || (err != nil) != tc.err {
				t.Errorf("RenewDue = %v, %v, %v; want %v, %v, error %v", due, ok, err, tc.due, tc.ok, tc.err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := JoinConfig{Name: "site1", Tenant: "vk8s"}
	for _, tc := range []struct {
		name   string
		mutate func(*JoinConfig)
		want   string
	}{
		{"ok", func(*JoinConfig) {}, ""},
		{"name", func(c *JoinConfig) { c.Name = "Site_1" }, `Site name "Site_1"`},
		{"tenant", func(c *JoinConfig) { c.Tenant = "a-b" }, "--tenant"},
		{"type", func(c *JoinConfig) { c.Type = "Edge" }, `--type "Edge"`},
		{"mode", func(c *JoinConfig) { c.NodeMode = "One" }, `--node-mode "One"`},
		{"label key", func(c *JoinConfig) { c.Labels = map[string]string{"a b": "x"} }, `--labels: key "a b"`},
		{"selector value", func(c *JoinConfig) { c.NodeSelector = map[string]string{"pool": "a b"} }, `--node-selector: value "a b"`},
		{"ttl", func(c *JoinConfig) { c.TokenTTL = time.Minute }, "--token-ttl 1m0s"},
		{"long name", func(c *JoinConfig) { c.Name = strings.Repeat("a", 63); c.Tenant = strings.Repeat("b", 20) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || CauseOf(err) != CauseInvalid):
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestSiteFailure(t *testing.T) {
	gr := schema.GroupResource{Resource: "namespaces"}
	for _, tc := range []struct {
		name  string
		err   error
		cause string
		says  string
	}{
		{"401", apierrors.NewUnauthorized("no"), CauseUnauthorized, "401 Unauthorized"},
		{"403", apierrors.NewForbidden(gr, "kube-system", errors.New("no")), CauseForbidden, "cluster-admin"},
		{"refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, CauseUnreachable, "cannot reach"},
		{"timeout", context.DeadlineExceeded, CauseUnreachable, "cannot reach"},
		{"other", apierrors.NewInternalError(errors.New("etcd")), "", "etcd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := siteFailure("https://site:6443", "reading", tc.err)
			if CauseOf(err) != tc.cause || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "https://site:6443") {
				t.Errorf("%v: cause %q, want %q saying %q", err, CauseOf(err), tc.cause, tc.says)
			}
		})
	}
}

// joinEnv is a host and a site of fake clients.
type joinEnv struct {
	host client.Client
	site *fake.Clientset
}

func newJoinEnv(t *testing.T, hostObjs []client.Object) *joinEnv {
	t.Helper()
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	ks := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceSystem, UID: "host-id"}}
	host := ctrlfake.NewClientBuilder().WithScheme(s).WithObjects(append(hostObjs, ks)...).WithStatusSubresource(&vk8sv1.Site{}).Build()
	site := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceSystem, UID: "site-id"}})
	site.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{
			Token: "TOKEN", ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour)),
		}}, nil
	})
	return &joinEnv{host: host, site: site}
}

func (e *joinEnv) join(t *testing.T, cfg JoinConfig) error {
	t.Helper()
	cfg.Tenant = "vk8s"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.defaults()
	cfg.Wait = 2 * time.Second
	_, err := join(t.Context(), e.host, &rest.Config{Host: "https://site:6443"}, e.site, cfg)
	return err
}

// nothingMade checks that neither side holds anything of a join of site1.
func (e *joinEnv) nothingMade(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	name := AccountName("vk8s", "site1")
	if _, err := e.site.CoreV1().ServiceAccounts(Namespace).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ServiceAccount on the site: %v", err)
	}
	if _, err := e.site.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole on the site: %v", err)
	}
	if _, err := e.site.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRoleBinding on the site: %v", err)
	}
	if _, err := e.site.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s on the site: %v", Namespace, err)
	}
	if err := e.host.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: SecretName("site1")}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret in the host: %v", err)
	}
}

func TestJoinRefusals(t *testing.T) {
	t.Run("name taken", func(t *testing.T) {
		e := newJoinEnv(t, []client.Object{&vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "site1"}}})
		err := e.join(t, JoinConfig{Name: "site1"})
		if CauseOf(err) != CauseNameTaken || !strings.Contains(err.Error(), "Site site1 already exists") {
			t.Errorf("error %v, want NameTaken", err)
		}
		e.nothingMade(t)
	})
	t.Run("joined to another host", func(t *testing.T) {
		claim := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: sitereg.ClaimNamespace, Name: sitereg.ClaimName("vk8s")},
			Data: map[string]string{sitereg.ClaimKeyHostID: "other", sitereg.ClaimKeyHostName: "https://other-host:6443"}}
		e := newJoinEnv(t, nil)
		if _, err := e.site.CoreV1().ConfigMaps(claim.Namespace).Create(t.Context(), claim, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		err := e.join(t, JoinConfig{Name: "site1"})
		if CauseOf(err) != CauseJoinedElsewhere || !strings.Contains(err.Error(), "https://other-host:6443") {
			t.Errorf("error %v, want JoinedElsewhere naming the other host", err)
		}
		if _, err := e.site.RbacV1().ClusterRoles().Get(t.Context(), AccountName("vk8s", "site1"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ClusterRole on the site: %v", err)
		}
	})
	t.Run("Site refused by the host: rolled back", func(t *testing.T) {
		e := newJoinEnv(t, nil)
		e.host = interceptor.NewClient(e.host.(client.WithWatch), interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if _, ok := obj.(*vk8sv1.Site); ok {
					return apierrors.NewInvalid(schema.GroupKind{Group: "vk8s.io", Kind: "Site"}, obj.GetName(), nil)
				}
				return c.Create(ctx, obj, opts...)
			},
		})
		if err := e.join(t, JoinConfig{Name: "site1"}); err == nil {
			t.Fatal("no error")
		}
		e.nothingMade(t)
	})
	t.Run("never Connected: rolled back", func(t *testing.T) {
		e := newJoinEnv(t, nil)
		err := e.join(t, JoinConfig{Name: "site1"})
		if CauseOf(err) != CauseNotConnected || !strings.Contains(err.Error(), "no provider reported") {
			t.Errorf("error %v, want NotConnected", err)
		}
		e.nothingMade(t)
		if err := e.host.Get(t.Context(), client.ObjectKey{Name: "site1"}, &vk8sv1.Site{}); !apierrors.IsNotFound(err) {
			t.Errorf("Site in the host: %v", err)
		}
	})
}

func TestJoinMakes(t *testing.T) {
	e := newJoinEnv(t, nil)
	// The provider's part: the Site Connected and Ready, its virtual node Ready.
	go func() {
		ctx := t.Context()
		for ctx.Err() == nil {
			s := &vk8sv1.Site{}
			if e.host.Get(ctx, client.ObjectKey{Name: "site1"}, s) == nil {
				s.Status.Conditions = []metav1.Condition{
					{Type: vk8sv1.ConditionConnected, Status: metav1.ConditionTrue, Reason: "Connected", LastTransitionTime: metav1.Now()},
					{Type: vk8sv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "NodesReady", LastTransitionTime: metav1.Now()},
				}
				s.Status.VirtualNodes = []string{"site1-node1"}
				_ = e.host.Status().Update(ctx, s)
				n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "site1-node1"},
					Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
				_ = e.host.Create(ctx, n)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if err := e.join(t, JoinConfig{Name: "site1", Labels: map[string]string{"region": "eu"}}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	name := AccountName("vk8s", "site1")
	role, err := e.site.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(role.Rules) != fmt.Sprint(Rules(name)) {
		t.Errorf("ClusterRole rules %v", role.Rules)
	}
	b, err := e.site.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
	if err != nil || b.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Namespace: Namespace, Name: name}) {
		t.Errorf("ClusterRoleBinding %v, %v", b, err)
	}
	sec := &corev1.Secret{}
	if err := e.host.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: SecretName("site1")}, sec); err != nil {
		t.Fatal(err)
	}
	if sec.Annotations[vk8sv1.AnnotationSiteServiceAccount] != Namespace+"/"+name || len(sec.Data[SecretKey]) == 0 {
		t.Errorf("Secret %v", sec)
	}
	s := &vk8sv1.Site{}
	if err := e.host.Get(ctx, client.ObjectKey{Name: "site1"}, s); err != nil {
		t.Fatal(err)
	}
	if s.Labels["region"] != "eu" || s.Spec.KubeconfigSecretRef.Name != sec.Name || s.Spec.Type != vk8sv1.SiteTypeCustomerEdge {
		t.Errorf("Site %+v", s)
	}
}

func TestPodNames(t *testing.T) {
	pods := []corev1.Pod{}
	for _, n := range []string{"c", "a", "b"} {
		pods = append(pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: n}})
	}
	if got := podNames(pods, 2); got != "ns/a, ns/b and 1 more" {
		t.Errorf("podNames = %q", got)
	}
}

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
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestRequestValidate(t *testing.T) {
	ok := Request{Namespace: "demo", User: DefaultUser, TTL: DefaultTTL}
	if err := ok.Validate(); err != nil {
		t.Fatalf("%+v: %v", ok, err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Request)
		want []string
	}{
		{"no namespace", func(r *Request) { r.Namespace = "" }, []string{"--namespace is required", "kubectl get virtualkubernetes -A"}},
		{"a namespace that cannot be one", func(r *Request) { r.Namespace = "Demo_1" }, []string{`--namespace "Demo_1"`}},
		{"no user", func(r *Request) { r.User = "" }, []string{`--user ""`}},
		{"a user that is not a DNS label", func(r *Request) { r.User = "team.a" }, []string{`--user "team.a"`, "ServiceAccount"}},
		{"a user too long for its label", func(r *Request) { r.User = strings.Repeat("a", 64) }, []string{"--user", "63"}},
		{"a TTL below the API's minimum", func(r *Request) { r.TTL = 5 * time.Minute }, []string{"--ttl 5m0s", "at least 10m0s"}},
		{"a negative TTL", func(r *Request) { r.TTL = -time.Hour }, []string{"--ttl -1h0m0s"}},
		{"a TTL above the API's maximum", func(r *Request) { r.TTL = MaxTTL + time.Second }, []string{"at most 2^32 seconds"}},
		{"a fraction of a second", func(r *Request) { r.TTL = time.Hour + time.Millisecond }, []string{"whole seconds"}},
		{"everything at once", func(r *Request) { *r = Request{} }, []string{"--namespace is required", `--user ""`, "--ttl 0s"}},
	} {
		r := ok
		tc.edit(&r)
		err := r.Validate()
		if err == nil {
			t.Errorf("%s: %+v is accepted", tc.name, r)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, w)
			}
		}
	}
	for _, ttl := range []time.Duration{MinTTL, MaxTTL, 90 * 24 * time.Hour} {
		r := ok
		r.TTL = ttl
		if err := r.Validate(); err != nil {
			t.Errorf("--ttl %s: %v", ttl, err)
		}
	}
}

func TestKubeconfigReachesTheHostAsTheUserInTheNamespace(t *testing.T) {
	cluster := Cluster{Name: "lab-host", Server: "https://127.0.0.1:6443", CAData: []byte("-----BEGIN CERTIFICATE-----\n"), TLSServerName: "kubernetes"}
	raw, err := clientcmd.Write(*Kubeconfig(cluster, "demo", "team-a", "TOKEN"))
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := clientcmd.Load(raw)
	if err != nil {
		t.Fatal(err)
	}
	cc := clientcmd.NewDefaultClientConfig(*loaded, nil)
	cfg, err := cc.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != cluster.Server || string(cfg.CAData) != string(cluster.CAData) || cfg.ServerName != "kubernetes" || cfg.BearerToken != "TOKEN" || cfg.Insecure {
		t.Errorf("client configuration %+v, want the host's server and CA and the token", cfg)
	}
	if cfg.CertData != nil || cfg.KeyData != nil || cfg.Username != "" || cfg.Impersonate.UserName != "" {
		t.Errorf("client configuration %+v carries more than the token", cfg)
	}
	if ns, _, err := cc.Namespace(); err != nil || ns != "demo" {
		t.Errorf("namespace %q (%v), want demo: kubectl and Helm work there without -n", ns, err)
	}
	if loaded.CurrentContext != "demo/team-a@lab-host" || len(loaded.Contexts) != 1 || len(loaded.AuthInfos) != 1 || len(loaded.Clusters) != 1 {
		t.Errorf("kubeconfig %s: want one cluster lab-host, one user and one context demo/team-a@lab-host", raw)
	}

	// A kubeconfig without a cluster name, and one of an admin who skips TLS checks.
	loaded, _ = clientcmd.Load(mustWrite(t, Kubeconfig(Cluster{Server: "https://h", InsecureSkipTLSVerify: true}, "demo", "u", "T")))
	if c := loaded.Clusters["vk8s"]; c == nil || !c.InsecureSkipTLSVerify || loaded.CurrentContext != "demo/u@vk8s" {
		t.Errorf("kubeconfig %+v: want cluster vk8s, insecure as the admin's", loaded)
	}
}

func mustWrite(t *testing.T, cfg *clientcmdapi.Config) []byte {
	t.Helper()
	raw, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestObjects(t *testing.T) {
	sa, role, binding := Objects(Request{Namespace: "demo", User: "team-a", TTL: DefaultTTL})
	for _, o := range []interface {
		GetNamespace() string
		GetName() string
		GetLabels() map[string]string
	}{sa, role, binding} {
		if o.GetNamespace() != "demo" || o.GetLabels()[vk8sv1.LabelKubeconfigUser] != "team-a" || o.GetLabels()[vk8sv1.LabelManagedBy] != vk8sv1.ManagedByVK8s {
			t.Errorf("%T %s/%s labels %v: want in demo, labelled for team-a and managed by vk8s", o, o.GetNamespace(), o.GetName(), o.GetLabels())
		}
	}
	if sa.Name != "team-a" || role.Name != "vk8s-kubeconfig-team-a" || binding.Name != role.Name {
		t.Errorf("names %s, %s, %s", sa.Name, role.Name, binding.Name)
	}
	if binding.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}) ||
		len(binding.Subjects) != 1 || binding.Subjects[0] != (rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "demo", Name: "team-a"}) {
		t.Errorf("RoleBinding %+v: want Role %s bound to ServiceAccount demo/team-a", binding, role.Name)
	}
	if len(role.Rules) != len(Rules()) {
		t.Errorf("Role has %d rules, want Rules()'s %d", len(role.Rules), len(Rules()))
	}
}

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
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// hostWith is a fake host with namespaces demo (a vK8s namespace), plain (none),
// unlabelled (a VirtualKubernetes the webhook has not labelled yet) and leaving (its
// VirtualKubernetes being deleted), plus objs.
func hostWith(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) client.Client {
	t.Helper()
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	vkNS := func(name string, labelled bool) *corev1.Namespace {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if labelled {
			ns.Labels = map[string]string{vk8sv1.LabelVirtualKubernetes: "vk"}
		}
		return ns
	}
	vk := func(ns string) *vk8sv1.VirtualKubernetes {
		return &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vk"}}
	}
	leaving := vk("leaving")
	leaving.Finalizers = []string{"vk8s.io/site-namespaces"}
	leaving.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	objs = append(objs, vkNS("demo", true), vk("demo"), vkNS("plain", false), vkNS("unlabelled", false), vk("unlabelled"),
		vkNS("leaving", true), leaving)
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(funcs).Build()
}

var (
	lab  = Cluster{Name: "lab-host", Server: "https://127.0.0.1:6443", CAData: []byte("CA")}
	demo = Request{Namespace: "demo", User: "team-a", TTL: time.Hour}
)

// exists says which of req's objects c holds.
func exists(t *testing.T, c client.Client, req Request) []string {
	t.Helper()
	var have []string
	sa, role, binding := Objects(req)
	for _, obj := range []client.Object{sa, role, binding} {
		err := c.Get(t.Context(), client.ObjectKeyFromObject(obj), obj)
		if err == nil {
			have = append(have, describe(obj))
		} else if !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	return have
}

func TestGrantMakesTheObjectsAndAKubeconfig(t *testing.T) {
	c := hostWith(t, interceptor.Funcs{})
	got, err := Grant(t.Context(), c, lab, demo)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"created ServiceAccount demo/team-a", "created Role demo/vk8s-kubeconfig-team-a", "created RoleBinding demo/vk8s-kubeconfig-team-a"}
	if !slices.Equal(got.Changes, want) {
		t.Errorf("changes %q, want %q", got.Changes, want)
	}
	cfg, err := clientcmd.Load(got.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if u := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]; u == nil || u.Token != "fake-token" || got.Expires.IsZero() {
		t.Errorf("kubeconfig %s, expires %v: want the TokenRequest's token and expiry", got.Kubeconfig, got.Expires)
	}
	role := &rbacv1.Role{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: "demo", Name: "vk8s-kubeconfig-team-a"}, role); err != nil || len(role.Rules) != len(Rules()) {
		t.Errorf("Role: %d rules, %v", len(role.Rules), err)
	}

	// Again: nothing changes but the token; a Role edited by hand is put back.
	if got, err = Grant(t.Context(), c, lab, demo); err != nil || len(got.Changes) != 0 {
		t.Errorf("second run: changes %q, %v; want none", got.Changes, err)
	}
	role.Rules = role.Rules[:1]
	if err := c.Update(t.Context(), role); err != nil {
		t.Fatal(err)
	}
	if got, err = Grant(t.Context(), c, lab, demo); err != nil || !slices.Equal(got.Changes, []string{"updated Role demo/vk8s-kubeconfig-team-a"}) {
		t.Errorf("run after an edit: changes %q, %v; want the Role updated", got.Changes, err)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(role), role); err != nil || len(role.Rules) != len(Rules()) {
		t.Errorf("Role after the run: %d rules, %v; want them back", len(role.Rules), err)
	}
}

func TestGrantRefusesCreatingNothing(t *testing.T) {
	taken := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "taken"}}
	otherUsers := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "vk8s-kubeconfig-bob",
		Labels: map[string]string{vk8sv1.LabelKubeconfigUser: "alice"}}}
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"no such namespace", Request{Namespace: "nowhere", User: "u", TTL: time.Hour}, "namespace nowhere not found"},
		{"not a vK8s namespace", Request{Namespace: "plain", User: "u", TTL: time.Hour}, "namespace plain is not a vK8s namespace (it has no VirtualKubernetes), so its pods would run on the host"},
		{"not labelled yet", Request{Namespace: "unlabelled", User: "u", TTL: time.Hour}, "not yet the label vk8s.io/virtual-kubernetes"},
		{"leaving vK8s", Request{Namespace: "leaving", User: "u", TTL: time.Hour}, "VirtualKubernetes vk is being deleted"},
		{"a ServiceAccount it did not make", Request{Namespace: "demo", User: "taken", TTL: time.Hour},
			"ServiceAccount demo/taken exists and was not made by vk8s kubeconfig for user taken"},
		{"a Role made for another user", Request{Namespace: "demo", User: "bob", TTL: time.Hour}, "Role demo/vk8s-kubeconfig-bob exists"},
		{"a bad TTL", Request{Namespace: "demo", User: "u", TTL: time.Minute}, "--ttl 1m0s"},
	} {
		c := hostWith(t, interceptor.Funcs{}, taken.DeepCopy(), otherUsers.DeepCopy())
		before := exists(t, c, tc.req)
		_, err := Grant(t.Context(), c, lab, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one that says %q", tc.name, err, tc.want)
		}
		if after := exists(t, c, tc.req); !slices.Equal(before, after) {
			t.Errorf("%s: the run left %q (before: %q)", tc.name, after, before)
		}
	}
}

func TestGrantUndoesWhatItCreatedWhenAWriteFails(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts/token"}, "team-a", nil)
	// The ServiceAccount was made by an earlier run: it stays; the Role and RoleBinding this
	// run created go.
	sa, _, _ := Objects(demo)
	c := hostWith(t, interceptor.Funcs{
		SubResourceCreate: func(context.Context, client.Client, string, client.Object, client.Object, ...client.SubResourceCreateOption) error {
			return forbidden
		},
	}, sa)
	_, err := Grant(t.Context(), c, lab, demo)
	if err == nil || !strings.Contains(err.Error(), "request a token of ServiceAccount demo/team-a") {
		t.Fatalf("error %v, want the TokenRequest's", err)
	}
	if have := exists(t, c, demo); !slices.Equal(have, []string{"ServiceAccount demo/team-a"}) {
		t.Errorf("after the failed run: %q, want only the ServiceAccount that was there before", have)
	}

	// A delete that fails too is named, with what is left.
	c = hostWith(t, interceptor.Funcs{
		SubResourceCreate: func(context.Context, client.Client, string, client.Object, client.Object, ...client.SubResourceCreateOption) error {
			return forbidden
		},
		Delete: func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error { return forbidden },
	})
	_, err = Grant(t.Context(), c, lab, demo)
	if err == nil || !strings.Contains(err.Error(), "RoleBinding demo/vk8s-kubeconfig-team-a was created and is left: delete it") {
		t.Errorf("error %v, want it to name what is left", err)
	}
}

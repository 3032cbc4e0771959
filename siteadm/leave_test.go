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
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
)

// leaveEnv is a host with Site site1 (joined, on the cluster of ID site-id) and its
// virtual node, and that site with what join made there.
func leaveEnv(t *testing.T, hostObjs ...client.Object) (client.Client, *fake.Clientset) {
	t.Helper()
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "site1"},
		Spec:   vk8sv1.SiteSpec{KubeconfigSecretRef: vk8sv1.SecretKeyReference{Namespace: Namespace, Name: SecretName("site1"), Key: SecretKey}},
		Status: vk8sv1.SiteStatus{ClusterID: "site-id"}}
	secret := HostSecret(Namespace, "vk8s", "site1", []byte("kc"), Token{})
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "site1-node1", Labels: map[string]string{vk8sv1.LabelSite: "site1"}}}
	host := ctrlfake.NewClientBuilder().WithScheme(s).WithObjects(append(hostObjs, site, secret, node)...).
		WithIndex(&corev1.Pod{}, "spec.nodeName", func(o client.Object) []string { return []string{o.(*corev1.Pod).Spec.NodeName} }).Build()
	objs := NewSiteObjects("vk8s", "site1")
	sc := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceSystem, UID: "site-id"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vk8s-demo", Labels: map[string]string{vk8sv1.LabelTenant: "vk8s", vk8sv1.LabelHostNamespace: "demo"}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: sitereg.ClaimNamespace, Name: sitereg.ClaimName("vk8s")}},
		objs.ServiceAccount, objs.ClusterRole, objs.ClusterRoleBinding,
	)
	return host, sc
}

func TestLeaveRefusesWithPods(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-0"}, Spec: corev1.PodSpec{NodeName: "site1-node1"}}
	host, sc := leaveEnv(t, pod)
	err := leave(t.Context(), host, sc, "https://site:6443", LeaveConfig{Name: "site1", Tenant: "vk8s"})
	if CauseOf(err) != CausePodsRunning || !strings.Contains(err.Error(), "demo/web-0") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("error %v, want PodsRunning naming demo/web-0 and --force", err)
	}
	if err := host.Get(t.Context(), client.ObjectKey{Name: "site1"}, &vk8sv1.Site{}); err != nil {
		t.Errorf("Site after a refused leave: %v", err)
	}
	if _, err := sc.CoreV1().ServiceAccounts(Namespace).Get(t.Context(), AccountName("vk8s", "site1"), metav1.GetOptions{}); err != nil {
		t.Errorf("ServiceAccount after a refused leave: %v", err)
	}
}

func TestLeaveRefusesAnotherCluster(t *testing.T) {
	host, sc := leaveEnv(t)
	other := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceSystem, UID: "other-id"}})
	err := leave(t.Context(), host, other, "https://other:6443", LeaveConfig{Name: "site1", Tenant: "vk8s"})
	if CauseOf(err) != CauseInvalid || !strings.Contains(err.Error(), "not Site site1's") {
		t.Fatalf("error %v, want Invalid naming the other cluster", err)
	}
	if err := host.Get(t.Context(), client.ObjectKey{Name: "site1"}, &vk8sv1.Site{}); err != nil {
		t.Errorf("Site after a refused leave: %v", err)
	}
	_ = sc
}

func TestLeaveUndoesBothSides(t *testing.T) {
	host, sc := leaveEnv(t)
	if err := leave(t.Context(), host, sc, "https://site:6443", LeaveConfig{Name: "site1", Tenant: "vk8s"}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, obj := range []client.Object{&vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "site1"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: SecretName("site1")}}} {
		if err := host.Get(ctx, client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s in the host: %v", obj, obj.GetName(), err)
		}
	}
	name := AccountName("vk8s", "site1")
	for what, get := range map[string]func() (runtime.Object, error){
		"ServiceAccount": func() (runtime.Object, error) {
			return sc.CoreV1().ServiceAccounts(Namespace).Get(ctx, name, metav1.GetOptions{})
		},
		"ClusterRole": func() (runtime.Object, error) { return sc.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}) },
		"ClusterRoleBinding": func() (runtime.Object, error) {
			return sc.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		},
		"the claim": func() (runtime.Object, error) {
			return sc.CoreV1().ConfigMaps(sitereg.ClaimNamespace).Get(ctx, sitereg.ClaimName("vk8s"), metav1.GetOptions{})
		},
		"the site namespace": func() (runtime.Object, error) {
			return sc.CoreV1().Namespaces().Get(ctx, "vk8s-demo", metav1.GetOptions{})
		},
		"vk8s-system": func() (runtime.Object, error) {
			return sc.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
		},
	} {
		if _, err := get(); !apierrors.IsNotFound(err) {
			t.Errorf("%s on the site: %v, want gone", what, err)
		}
	}
}

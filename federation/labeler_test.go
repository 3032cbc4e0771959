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

package federation

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestNamespaceLabeler(t *testing.T) {
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fresh"}},
		&vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: "fresh", Name: "edge"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/all-sites"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "stale", Labels: map[string]string{vk8sv1.LabelVirtualKubernetes: "gone"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	).Build()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &namespaceLabeler{client: c, now: func() time.Time { return clock }, unbacked: map[string]time.Time{}}
	reconcileNS := func(name string) reconcile.Result {
		t.Helper()
		res, err := l.Reconcile(t.Context(), reconcile.Request{NamespacedName: client.ObjectKey{Name: name}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	label := func(name string) (string, bool) {
		n := &corev1.Namespace{}
		_ = c.Get(t.Context(), client.ObjectKey{Name: name}, n)
		v, ok := n.Labels[vk8sv1.LabelVirtualKubernetes]
		return v, ok
	}
	reconcileNS("fresh")
	if v, _ := label("fresh"); v != "edge" {
		t.Errorf("fresh: label %q, want edge", v)
	}
	// A label without a VirtualKubernetes stays for the grace period (its creation may be
	// on the way), then goes.
	if res := reconcileNS("stale"); res.RequeueAfter != labelGrace {
		t.Errorf("requeue after %s, want %s", res.RequeueAfter, labelGrace)
	}
	if _, ok := label("stale"); !ok {
		t.Error("the label went at once")
	}
	clock = clock.Add(labelGrace)
	reconcileNS("stale")
	if _, ok := label("stale"); ok {
		t.Error("the label stayed after the grace period")
	}
	reconcileNS("plain")
	if _, ok := label("plain"); ok {
		t.Error("a namespace without VirtualKubernetes was labelled")
	}
}

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

package provider

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
)

// A pod's new version shares with the cached one what did not change, and keeps its own
// of what did; the managedFields go as before.
func TestShareUnchanged(t *testing.T) {
	store := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc)
	transform := shareUnchanged(store, crcache.TransformStripManagedFields())
	version := func(uid, image, app string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: types.UID("u" + uid), Labels: map[string]string{"app": app},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
			Spec: corev1.PodSpec{NodeName: "site1-node1", Containers: []corev1.Container{{Name: "c", Image: image}}},
		}
	}
	first, err := transform(version("1", "nginx:1", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(first); err != nil {
		t.Fatal(err)
	}
	old := first.(*corev1.Pod)

	status, _ := transform(version("1", "nginx:1", "a"))
	same := status.(*corev1.Pod)
	if &same.Spec.Containers[0] != &old.Spec.Containers[0] || !sameMap(same.Labels, old.Labels) {
		t.Error("a status-only version does not share the cached version's spec and labels")
	}
	if same.ManagedFields != nil {
		t.Error("managedFields were kept")
	}

	changed, _ := transform(version("1", "nginx:2", "b"))
	c := changed.(*corev1.Pod)
	if &c.Spec.Containers[0] == &old.Spec.Containers[0] || c.Spec.Containers[0].Image != "nginx:2" ||
		sameMap(c.Labels, old.Labels) || c.Labels["app"] != "b" {
		t.Errorf("a changed version shares what changed: image %s, labels %v", c.Spec.Containers[0].Image, c.Labels)
	}

	other, _ := transform(version("2", "nginx:1", "a"))
	if &other.(*corev1.Pod).Spec.Containers[0] == &old.Spec.Containers[0] {
		t.Error("another pod of the same name (a new UID) shares the cached pod's spec")
	}
	if old.Spec.Containers[0].Image != "nginx:1" || old.Labels["app"] != "a" {
		t.Errorf("the cached version changed: %s, %v", old.Spec.Containers[0].Image, old.Labels)
	}
}

// sameMap says whether a and b are the same map, not only equal ones.
func sameMap(a, b map[string]string) bool {
	return a != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

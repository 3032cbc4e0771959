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

package sitestorage

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// A lab site's class is its default, binds on first consumer as most clusters' default
// does, and its volumes may be used on any node of the site.
func TestClassAndVolume(t *testing.T) {
	c := Class()
	if c.Annotations[vk8sv1.AnnotationDefaultStorageClass] != "true" || *c.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("class %+v: want the default, WaitForFirstConsumer", c)
	}
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "vk8s-shop", Name: "www-web-0"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	pv, err := volume("pvc-9", claim, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.String() != "1Gi" || pv.Spec.NodeAffinity != nil || pv.Spec.HostPath == nil {
		t.Errorf("volume %+v: want 1Gi, no node affinity", pv.Spec)
	}
	claim.Spec.Resources.Requests = nil
	if _, err := volume("pvc-9", claim, c); err == nil {
		t.Error("a claim without a size got a volume")
	}
}

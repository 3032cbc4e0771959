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

package storage

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestVolume(t *testing.T) {
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "data-db-0"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}}}
	pv, err := Volume("pvc-1", claim, Class(false))
	if err != nil {
		t.Fatal(err)
	}
	if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.String() != "5Gi" || pv.Spec.AccessModes[0] != corev1.ReadWriteOnce ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("volume spec %+v: want 5Gi, RWO, Delete", pv.Spec)
	}
	if csi := pv.Spec.CSI; csi == nil || csi.Driver != vk8sv1.StorageProvisioner || csi.VolumeHandle != "shop/data-db-0" {
		t.Errorf("volume source %+v: want the claim named under driver %s", pv.Spec.PersistentVolumeSource, vk8sv1.StorageProvisioner)
	}
	// Any virtual node, and only those.
	req := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0]
	if req.Key != vk8sv1.LabelSite || req.Operator != corev1.NodeSelectorOpExists {
		t.Errorf("node affinity %+v: want %s Exists", req, vk8sv1.LabelSite)
	}

	claim.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"disk": "ssd"}}
	if _, err := Volume("pvc-1", claim, Class(false)); err == nil || !strings.Contains(err.Error(), "remove the selector") {
		t.Errorf("a claim with a selector: %v; want an error that says to remove it", err)
	}
}

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

package webhook

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func storageClass(name, provisioner string, isDefault bool) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner}
	if isDefault {
		sc.Annotations = map[string]string{vk8sv1.AnnotationDefaultStorageClass: "true"}
	}
	return sc
}

func claim(namespace string, class *string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
}

// A claim in a vK8s namespace is a claim on the sites: it gets a StorageClass of vk8s'
// provisioner, or is refused naming the classes it may have.
func TestClaimStorageClass(t *testing.T) {
	host := []client.Object{
		storageClass("vk8s", vk8sv1.StorageProvisioner, false),
		storageClass("fast", vk8sv1.StorageProvisioner, false),
		storageClass("gp3", "ebs.csi.aws.com", true),
		storageClass("io2", "ebs.csi.aws.com", false),
	}
	for _, tc := range []struct {
		name      string
		objects   []client.Object
		namespace string
		class     *string
		want      string // the class after admission; "" for unchanged
		denied    string // a part of the rejection
		warning   bool
	}{
		{name: "no class: vk8s", objects: host, namespace: ns, want: "vk8s"},
		{name: `"": vk8s`, objects: host, namespace: ns, class: ptr.To(""), want: "vk8s"},
		{name: "a class of vk8s' provisioner stays", objects: host, namespace: ns, class: ptr.To("fast")},
		{name: "the host's default, written by the API server: vk8s", objects: host, namespace: ns, class: ptr.To("gp3"), want: "vk8s", warning: true},
		{name: "another provisioner's class is refused", objects: host, namespace: ns, class: ptr.To("io2"),
			denied: `spec.storageClassName: invalid value "io2": StorageClass "io2" provisions host volumes (provisioner ebs.csi.aws.com)`},
		{name: "an unknown class is refused, naming the classes", objects: host, namespace: ns, class: ptr.To("gold"),
			denied: `spec.storageClassName: invalid value "gold": the host has no StorageClass of that name; leave spec.storageClassName out (the sites' default storage), or name a StorageClass of provisioner sites.vk8s.io (fast, vk8s)`},
		{name: "vk8s' default class wins", objects: append([]client.Object{storageClass("sites", vk8sv1.StorageProvisioner, true)}, host...), namespace: ns, want: "sites"},
		{name: "no class of vk8s' provisioner: refused", objects: []client.Object{storageClass("gp3", "ebs.csi.aws.com", true)}, namespace: ns,
			denied: "the host has no StorageClass of provisioner sites.vk8s.io"},
		{name: "outside vK8s namespaces nothing changes", objects: host, namespace: "plain", class: ptr.To("io2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.objects...)
			c := claim(tc.namespace, tc.class)
			req := e.request(admissionv1.Create, c, nil)
			resp := e.a.admitClaim(t.Context(), req)
			if tc.denied != "" {
				if resp.Allowed || !strings.Contains(resp.Result.Message, tc.denied) {
					t.Fatalf("allowed %v, message %q; want denied with %q", resp.Allowed, message(resp), tc.denied)
				}
				return
			}
			got := &corev1.PersistentVolumeClaim{}
			patched(t, req, resp, got)
			want := tc.class
			if tc.want != "" {
				want = &tc.want
			}
			if ptr.Deref(got.Spec.StorageClassName, "<nil>") != ptr.Deref(want, "<nil>") {
				t.Errorf("storageClassName %v, want %v", ptr.Deref(got.Spec.StorageClassName, "<nil>"), ptr.Deref(want, "<nil>"))
			}
			if (len(resp.Warnings) > 0) != tc.warning {
				t.Errorf("warnings %q, want some: %v", resp.Warnings, tc.warning)
			}
		})
	}
}

// A StatefulSet whose claim templates name a class its claims could not have is refused
// before anything is created.
func TestStatefulSetClaimTemplates(t *testing.T) {
	e := newEnv(t, storageClass("vk8s", vk8sv1.StorageProvisioner, true))
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: podTemplate("db"), VolumeClaimTemplates: []corev1.PersistentVolumeClaim{*claim("", nil), *claim("", ptr.To("premium"))}}}
	_, resp := admit(e, sts, nil)
	want := `spec.volumeClaimTemplates[1].spec.storageClassName: invalid value "premium": the host has no StorageClass of that name`
	if resp.Allowed || !strings.Contains(resp.Result.Message, want) {
		t.Fatalf("allowed %v, %q; want denied with %q", resp.Allowed, message(resp), want)
	}
	sts.Spec.VolumeClaimTemplates[1].Spec.StorageClassName = nil
	if _, resp := admit(e, sts, nil); !resp.Allowed {
		t.Errorf("claim templates without a class denied: %s", resp.Result.Message)
	}
}

func message(resp admission.Response) string {
	if resp.Result == nil {
		return ""
	}
	return resp.Result.Message
}

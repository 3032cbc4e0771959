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

package translate

import (
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// SiteCopy is the object to keep on the site for a host object of kind (KindConfigMap, ...)
// that a pod references or that is mirrored to every site of its namespace: its content,
// in the site namespace, labelled with the tenant and the host namespace, with the labels
// and annotations it carries of the host object recorded in AnnotationLastApplied
// (CopyUpdate). A Secret that holds a host service-account token is refused: the host's
// credentials never leave the host.
func SiteCopy(kind string, host metav1.Object, siteNamespace, tenant string) (metav1.Object, error) {
	out, err := siteCopy(kind, host, siteNamespace, tenant)
	if err != nil {
		return nil, err
	}
	record(out, copyApplied(out))
	return out, nil
}

func siteCopy(kind string, host metav1.Object, siteNamespace, tenant string) (metav1.Object, error) {
	meta := metav1.ObjectMeta{
		Name:      host.GetName(),
		Namespace: siteNamespace,
		Labels:    labelsFor(host.GetLabels(), tenant, host.GetNamespace()),
	}
	switch h := host.(type) {
	case *corev1.ConfigMap:
		return &corev1.ConfigMap{ObjectMeta: meta, Data: h.Data, BinaryData: h.BinaryData, Immutable: h.Immutable}, nil
	case *corev1.Secret:
		if h.Type == corev1.SecretTypeServiceAccountToken {
			// The host's credentials never leave the host.
			return nil, fmt.Errorf("secret %s/%s holds a host service-account token and is not copied to sites; "+
				"use the site's ServiceAccount token instead", h.Namespace, h.Name)
		}
		return &corev1.Secret{ObjectMeta: meta, Type: h.Type, Data: h.Data, Immutable: h.Immutable}, nil
	case *corev1.ServiceAccount:
		return &corev1.ServiceAccount{ObjectMeta: meta, AutomountServiceAccountToken: h.AutomountServiceAccountToken,
			ImagePullSecrets: h.ImagePullSecrets}, nil
	case *corev1.PersistentVolumeClaim:
		// The claim as the user wrote it; the site binds it to a volume of its own.
		return &corev1.PersistentVolumeClaim{ObjectMeta: meta, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: h.Spec.AccessModes, Resources: h.Spec.Resources, StorageClassName: h.Spec.StorageClassName,
			VolumeMode: h.Spec.VolumeMode, Selector: h.Spec.Selector, VolumeAttributesClassName: h.Spec.VolumeAttributesClassName,
		}}, nil
	case *corev1.Service:
		return siteService(meta, h), nil
	case *rbacv1.Role:
		return &rbacv1.Role{ObjectMeta: meta, Rules: h.Rules}, nil
	case *rbacv1.RoleBinding:
		return siteRoleBinding(meta, h, tenant), nil
	case *networkingv1.NetworkPolicy:
		return siteNetworkPolicy(meta, h, tenant), nil
	}
	return nil, fmt.Errorf("%s %s/%s: %T cannot be copied", kind, host.GetNamespace(), host.GetName(), host)
}

// content is what a copy must agree on with the host object.
func content(obj metav1.Object) any {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		return []any{o.Labels, o.Data, o.BinaryData}
	case *corev1.Secret:
		return []any{o.Labels, o.Type, o.Data}
	case *corev1.ServiceAccount:
		return []any{o.Labels, o.AutomountServiceAccountToken, o.ImagePullSecrets}
	case *corev1.PersistentVolumeClaim:
		// Only the requested size may change (expansion).
		return []any{o.Labels, o.Spec.Resources.Requests}
	case *corev1.Service:
		return serviceContent(o)
	case *rbacv1.Role:
		return []any{o.Labels, o.Rules}
	case *rbacv1.RoleBinding:
		return []any{o.Labels, o.RoleRef, o.Subjects}
	case *networkingv1.NetworkPolicy:
		return []any{o.Labels, o.Spec}
	}
	return obj
}

// labelsFor are the labels of a copy: the host object's and vk8s' own.
func labelsFor(host map[string]string, tenant, hostNamespace string) map[string]string {
	out := maps.Clone(host)
	if out == nil {
		out = map[string]string{}
	}
	out[vk8sv1.LabelTenant] = tenant
	out[vk8sv1.LabelHostNamespace] = hostNamespace
	return out
}

// copyOwnLabels are the labels vk8s gives its copies (labelsFor).
var copyOwnLabels = []string{vk8sv1.LabelTenant, vk8sv1.LabelHostNamespace}

// copyApplied is what a copy carries of its host object's labels and annotations.
func copyApplied(obj metav1.Object) applied {
	labels := maps.Clone(obj.GetLabels())
	for _, k := range copyOwnLabels {
		delete(labels, k)
	}
	return applied{Labels: labels, Annotations: siteAnnotations(obj.GetAnnotations())}
}

// CopyUpdate returns want, the SiteCopy of a host object, as the update of have, its copy
// on the site, and whether have needs that update (SameCopy). Labels and annotations are
// merged three-way, as a site pod's (SiteUpdate): what the host object set, changed or
// dropped since vk8s last wrote the copy (its AnnotationLastApplied) is written, and what
// the site added or rewrote (its admission, a policy engine, a cloud's load balancer
// controller) stays. The content a copy keeps in step (data, rules, spec) is the host's,
// whatever the site did to it. A copy without a record (made before vk8s kept one) is read
// as if vk8s had written the site's values of the host object's keys, and gets one.
func CopyUpdate(want, have metav1.Object) (metav1.Object, bool) {
	ro, ok := want.(runtime.Object)
	if !ok {
		return want, !SameCopy(want, have)
	}
	out := ro.DeepCopyObject().(metav1.Object)
	now := copyApplied(want)
	last, ok := recorded(have.GetAnnotations())
	if !ok {
		last = applied{Labels: pick(have.GetLabels(), now.Labels), Annotations: pick(have.GetAnnotations(), now.Annotations)}
	}
	live := maps.Clone(have.GetLabels())
	for _, k := range copyOwnLabels {
		delete(live, k)
	}
	labels := threeWay(last.Labels, now.Labels, live)
	for _, k := range copyOwnLabels {
		labels[k] = want.GetLabels()[k]
	}
	out.SetLabels(labels)
	annotations := threeWay(last.Annotations, now.Annotations, siteAnnotations(have.GetAnnotations()))
	annotations[vk8sv1.AnnotationLastApplied] = want.GetAnnotations()[vk8sv1.AnnotationLastApplied]
	out.SetAnnotations(annotations)
	return out, !SameCopy(out, have)
}

// SameCopy reports whether a copy on the site already is want, a SiteCopy made into an
// update of it by CopyUpdate: the same labels and annotations, and the content a copy
// keeps in step with its host object.
func SameCopy(want, have metav1.Object) bool {
	return maps.Equal(want.GetAnnotations(), have.GetAnnotations()) &&
		equality.Semantic.DeepEqual(content(want), content(have))
}

package translate

import (
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// SiteCopy is the object to keep on the site for a host object of kind (KindConfigMap, ...)
// that a pod references or that is mirrored to every site of its namespace: its content,
// in the site namespace, labelled with the tenant and the host namespace. A Secret that
// holds a host service-account token is refused: the host's credentials never leave the
// host.
func SiteCopy(kind string, host metav1.Object, siteNamespace, tenant string) (metav1.Object, error) {
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

// SameCopy reports whether a copy on the site already carries what want, the SiteCopy of
// the host object, has: the labels, the content a copy keeps in step, and want's
// annotations (the copy may have more: what the site adds is kept).
func SameCopy(want, have metav1.Object) bool {
	for k, v := range want.GetAnnotations() {
		if got, ok := have.GetAnnotations()[k]; !ok || got != v {
			return false
		}
	}
	return equality.Semantic.DeepEqual(content(want), content(have))
}

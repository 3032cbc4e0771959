package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// IsolationPolicyName names the NetworkPolicy vk8s keeps in every site namespace of a vK8s
// namespace.
const IsolationPolicyName = "vk8s-isolation"

// SiteNamespace is the namespace on a site that holds the pods of host namespace ns:
// <tenant>-<ns>, shortened with a stable hash when longer than a namespace may be.
func SiteNamespace(tenant, ns string) string {
	name := tenant + "-" + ns
	if len(name) <= validation.DNS1123LabelMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:])[:10]
	return strings.TrimRight(name[:validation.DNS1123LabelMaxLength-len(suffix)-1], "-") + "-" + suffix
}

// Namespace returns the site namespace vk8s creates for host namespace hostNamespace.
func Namespace(tenant, hostNamespace string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   SiteNamespace(tenant, hostNamespace),
		Labels: map[string]string{vk8sv1.LabelTenant: tenant, vk8sv1.LabelHostNamespace: hostNamespace},
	}}
}

// CreatedByVK8s reports whether obj (a site namespace, or a pod or copy in one) is what
// vk8s created for hostNamespace of tenant: it carries the labels vk8s sets. vk8s never
// labels an object it finds, so one that a site administrator made (a namespace that
// existed before, a pod of the same name) is never taken for one, changed or deleted.
func CreatedByVK8s(obj metav1.Object, tenant, hostNamespace string) bool {
	l := obj.GetLabels()
	return l[vk8sv1.LabelTenant] == tenant && l[vk8sv1.LabelHostNamespace] == hostNamespace
}

// IsolationPolicy returns the NetworkPolicy of the site namespace of hostNamespace: every
// pod there accepts ingress only from pods of the same namespace. Egress is not limited.
func IsolationPolicy(tenant, hostNamespace string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{
			Name:      IsolationPolicyName,
			Namespace: SiteNamespace(tenant, hostNamespace),
			Labels:    map[string]string{vk8sv1.LabelTenant: tenant, vk8sv1.LabelHostNamespace: hostNamespace, vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}},
		},
	}
}

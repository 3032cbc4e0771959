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
	"cmp"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Kinds vk8s keeps on every site of a vK8s namespace (package mirror), besides the
// ConfigMaps and ServiceAccounts that pods reference.
const (
	KindService       = "Service"
	KindRole          = "Role"
	KindRoleBinding   = "RoleBinding"
	KindNetworkPolicy = "NetworkPolicy"
)

// Mirrored says whether objects of kind go to every site of a vK8s namespace (package
// mirror): the kinds of NamespaceKinds whose fate is FateMirrored (Services, ConfigMaps,
// ServiceAccounts, Roles, RoleBindings and NetworkPolicies).
// Secrets go only where a pod uses them, and PersistentVolumeClaims where their pod runs.
func Mirrored(kind string) bool {
	return slices.ContainsFunc(NamespaceKinds, func(k NamespaceKind) bool { return k.Kind == kind && k.Fate == FateMirrored })
}

// Skipped says whether a host object of a mirrored kind stays on the host: what every
// namespace has of its own on a site (the "default" ServiceAccount, the kube-root-ca.crt
// ConfigMap).
func Skipped(kind, name string) bool {
	return (kind == KindServiceAccount && name == "default") || (kind == KindConfigMap && name == "kube-root-ca.crt")
}

// copiedAnnotations are the host object's annotations a copy keeps: not kubectl's
// last-applied configuration, which describes the host object, and not vk8s' own.
func copiedAnnotations(in map[string]string) map[string]string {
	out := maps.Clone(in)
	maps.DeleteFunc(out, func(k, _ string) bool {
		return k == corev1.LastAppliedConfigAnnotation || strings.HasPrefix(k, "vk8s.io/")
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

// siteService is a host Service on a site: site-local, since its selector picks the site's
// own pods (a site pod carries its host pod's labels). The addresses are the site's: the
// cluster IP ("None" stays, so a headless Service keeps its StatefulSet's DNS names) and
// node ports are left for the site to allocate, and external IPs, which are host
// addresses, are dropped.
func siteService(meta metav1.ObjectMeta, h *corev1.Service) *corev1.Service {
	meta.Annotations = copiedAnnotations(h.Annotations)
	s := h.Spec
	out := &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{
		Type:                          s.Type,
		Selector:                      maps.Clone(s.Selector),
		Ports:                         slices.Clone(s.Ports),
		SessionAffinity:               s.SessionAffinity,
		SessionAffinityConfig:         s.SessionAffinityConfig.DeepCopy(),
		PublishNotReadyAddresses:      s.PublishNotReadyAddresses,
		ExternalName:                  s.ExternalName,
		ExternalTrafficPolicy:         s.ExternalTrafficPolicy,
		InternalTrafficPolicy:         s.InternalTrafficPolicy,
		LoadBalancerSourceRanges:      slices.Clone(s.LoadBalancerSourceRanges),
		LoadBalancerClass:             s.LoadBalancerClass,
		AllocateLoadBalancerNodePorts: s.AllocateLoadBalancerNodePorts,
		TrafficDistribution:           s.TrafficDistribution,
	}}
	for i := range out.Spec.Ports {
		out.Spec.Ports[i].NodePort = 0
	}
	if s.ClusterIP == corev1.ClusterIPNone {
		out.Spec.ClusterIP = corev1.ClusterIPNone
	}
	return out
}

// serviceContent is what a site Service must agree on with its host Service: the fields
// siteService sets, as the API server defaults them, with the addresses the site
// allocated left out. Annotations are compared apart (SameCopy): a site may add its own.
func serviceContent(s *corev1.Service) any {
	spec := s.Spec.DeepCopy()
	for i := range spec.Ports {
		spec.Ports[i].NodePort = 0
	}
	if spec.ClusterIP != corev1.ClusterIPNone {
		spec.ClusterIP = ""
	}
	spec.ClusterIPs, spec.IPFamilies, spec.IPFamilyPolicy, spec.HealthCheckNodePort, spec.ExternalIPs = nil, nil, nil, 0, nil
	if spec.Type != corev1.ServiceTypeNodePort && spec.Type != corev1.ServiceTypeLoadBalancer {
		// The API server defaults it only where it applies.
		spec.ExternalTrafficPolicy = ""
	}
	if spec.InternalTrafficPolicy == nil {
		local := corev1.ServiceInternalTrafficPolicyCluster
		spec.InternalTrafficPolicy = &local
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer {
		if spec.ExternalTrafficPolicy == "" {
			spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}
	}
	if spec.Type == corev1.ServiceTypeLoadBalancer && spec.AllocateLoadBalancerNodePorts == nil {
		allocate := true
		spec.AllocateLoadBalancerNodePorts = &allocate
	}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if spec.Type == corev1.ServiceTypeExternalName {
		spec.Ports, spec.Selector, spec.SessionAffinity, spec.InternalTrafficPolicy = nil, nil, "", nil
	}
	return []any{s.Labels, spec}
}

// siteRoleBinding is a host RoleBinding on a site. A ServiceAccount subject names the
// site namespace of its host namespace, where its copy is, and so does the group of a
// namespace's ServiceAccounts (system:serviceaccounts:<namespace>). Users and other
// groups are host identities: a site knows its own under those names, so the copy leaves
// them out (SiteSubject).
func siteRoleBinding(meta metav1.ObjectMeta, h *rbacv1.RoleBinding, tenant string) *rbacv1.RoleBinding {
	out := &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: h.RoleRef}
	for _, s := range h.Subjects {
		if site, ok := SiteSubject(s, h.Namespace, tenant); ok {
			out.Subjects = append(out.Subjects, site)
		}
	}
	return out
}

// serviceAccountsGroup is the prefix of the group of a namespace's ServiceAccounts.
const serviceAccountsGroup = "system:serviceaccounts:"

// SiteSubject is subject of a RoleBinding in host namespace on a site, and whether it has
// one: a ServiceAccount, or the group of a namespace's ServiceAccounts, of the site
// namespace of its namespace; no User or other Group.
func SiteSubject(s rbacv1.Subject, namespace, tenant string) (rbacv1.Subject, bool) {
	switch {
	case s.Kind == rbacv1.ServiceAccountKind:
		s.Namespace = SiteNamespace(tenant, cmp.Or(s.Namespace, namespace))
		return s, true
	case s.Kind == rbacv1.GroupKind && strings.HasPrefix(s.Name, serviceAccountsGroup):
		s.Name = serviceAccountsGroup + SiteNamespace(tenant, strings.TrimPrefix(s.Name, serviceAccountsGroup))
		return s, true
	}
	return rbacv1.Subject{}, false
}

// SubjectNamespace is the host namespace whose ServiceAccounts subject of a RoleBinding in
// namespace names (a ServiceAccount, or the group of a namespace's ServiceAccounts), or
// "" for a User or another Group.
func SubjectNamespace(s rbacv1.Subject, namespace string) string {
	switch {
	case s.Kind == rbacv1.ServiceAccountKind:
		return cmp.Or(s.Namespace, namespace)
	case s.Kind == rbacv1.GroupKind && strings.HasPrefix(s.Name, serviceAccountsGroup):
		return strings.TrimPrefix(s.Name, serviceAccountsGroup)
	}
	return ""
}

// siteNetworkPolicy is a host NetworkPolicy on a site. A peer's namespace selector on
// kubernetes.io/metadata.name names host namespaces: it is turned into the names of their
// site namespaces. Other namespace selectors select on the site's namespaces' labels and
// are kept as written.
func siteNetworkPolicy(meta metav1.ObjectMeta, h *networkingv1.NetworkPolicy, tenant string) *networkingv1.NetworkPolicy {
	out := &networkingv1.NetworkPolicy{ObjectMeta: meta, Spec: *h.Spec.DeepCopy()}
	peers := func(ps []networkingv1.NetworkPolicyPeer) {
		for i := range ps {
			if sel := ps[i].NamespaceSelector; sel != nil {
				if v, ok := sel.MatchLabels[corev1.LabelMetadataName]; ok {
					sel.MatchLabels[corev1.LabelMetadataName] = SiteNamespace(tenant, v)
				}
				for j := range sel.MatchExpressions {
					if e := &sel.MatchExpressions[j]; e.Key == corev1.LabelMetadataName {
						for k := range e.Values {
							e.Values[k] = SiteNamespace(tenant, e.Values[k])
						}
					}
				}
			}
		}
	}
	for i := range out.Spec.Ingress {
		peers(out.Spec.Ingress[i].From)
	}
	for i := range out.Spec.Egress {
		peers(out.Spec.Egress[i].To)
	}
	return out
}

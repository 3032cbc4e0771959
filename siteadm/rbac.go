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
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Namespace holds, on a site, the ServiceAccounts vk8s uses there and the tenant claims
// (sitereg.ClaimNamespace).
const Namespace = "vk8s-system"

// AccountName is the name of the ServiceAccount, ClusterRole and ClusterRoleBinding that
// Site site of tenant tenant uses on its cluster: vk8s-<tenant>-<site>. The tenant is in
// the name so that hosts of other tenants can join the same cluster under the same Site
// name.
func AccountName(tenant, site string) string { return "vk8s-" + tenant + "-" + site }

// validAccountName refuses a Site name whose account name the site would refuse.
func validAccountName(tenant, site string) error {
	name := AccountName(tenant, site)
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("the site's ServiceAccount would be named %q: %v: choose a shorter Site name", name, errs)
	}
	return nil
}

// Permission is one rule of the site ClusterRole and why the provider needs it.
type Permission struct {
	Rule rbacv1.PolicyRule
	// Why says which calls of vk8s use it (docs/install.md#site-permissions).
	Why string
}

var (
	readWrite = []string{"get", "list", "watch", "create", "update", "delete"}
	read      = []string{"get", "list", "watch"}
)

// Permissions are the rules of the ClusterRole of account (AccountName) on a site: what
// the provider's site calls use (sitereg, provider, mirror, tenancy, vnode, kubeletapi),
// and nothing more. The e2e suite runs the provider with exactly these rights (the lab
// joins its sites with them) and fails on any call they refuse.
func Permissions(account string) []Permission {
	core := func(verbs []string, resources ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: resources, Verbs: verbs}
	}
	return []Permission{
		{core(read, "nodes"),
			"the site's nodes, the virtual nodes' source (sitereg's node informer; the probe lists one)"},
		{core([]string{"get"}, "nodes/proxy"),
			"`kubectl top` and the stats summary: the site kubelets' /stats/summary and resource metrics through the API server (kubeletapi)"},
		{core([]string{"get", "list", "create", "update", "delete"}, "namespaces"),
			"the site namespaces `<tenant>-<namespace>` (created, their Pod Security labels, deleted when empty), `kube-system`'s UID (the cluster's identity), `vk8s-system` for the tenant claim (tenancy, provider, sitereg)"},
		{core(readWrite, "pods"),
			"the site pods: created, updated (labels, images, deadline), deleted; an informer of the tenant's pods; the pods of a node for its stats (provider, kubeletapi)"},
		{core([]string{"get"}, "pods/log"),
			"`kubectl logs` (kubeletapi)"},
		{core([]string{"get", "create"}, "pods/exec", "pods/attach", "pods/portforward"),
			"`kubectl exec`, `attach`, `port-forward`, `cp` (kubeletapi; `get` for the WebSocket upgrade)"},
		{core(readWrite, "configmaps", "secrets", "serviceaccounts", "persistentvolumeclaims"),
			"copies of what pods use (provider), of a vK8s namespace's ConfigMaps and ServiceAccounts (mirror); the tenant claim ConfigMap `vk8s-system/tenant-<tenant>` (sitereg); each namespace's `default` ServiceAccount (tenancy)"},
		{core(readWrite, "services"),
			"site-local copies of a vK8s namespace's Services, their load balancers read back (mirror)"},
		{rbacv1.PolicyRule{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
			"each site's endpoints of a Service, counted on the host Service (mirror)"},
		{rbacv1.PolicyRule{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: readWrite},
			"the isolation NetworkPolicy of each site namespace (tenancy) and copies of a vK8s namespace's NetworkPolicies (mirror)"},
		{rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"roles", "rolebindings"}, Verbs: readWrite},
			"copies of a vK8s namespace's Roles and RoleBindings (mirror)"},
		{rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"roles"}, Verbs: []string{"escalate"}},
			"a copied Role may grant what vk8s itself may not (deployments, say): Kubernetes refuses to create it without `escalate`"},
		{rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"roles", "clusterroles"}, Verbs: []string{"bind"}},
			"likewise a copied RoleBinding, which may name a Role or a ClusterRole (`edit`, `view`) with rights vk8s lacks"},
		{rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}, ResourceNames: []string{account}},
			"the provider renews its own token (TokenRequest) before it expires; only for this ServiceAccount"},
	}
}

// Rules are the rules of Permissions.
func Rules(account string) []rbacv1.PolicyRule {
	perms := Permissions(account)
	out := make([]rbacv1.PolicyRule, len(perms))
	for i, p := range perms {
		out[i] = p.Rule
	}
	return out
}

// objectLabels mark what join makes on a site and in the host.
func objectLabels(tenant, site string) map[string]string {
	return map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s, vk8sv1.LabelTenant: tenant, vk8sv1.LabelSite: site}
}

// SiteObjects are what join makes on the site cluster for Site site of tenant tenant: the
// ServiceAccount the provider uses there, its ClusterRole (Permissions) and the
// ClusterRoleBinding between them.
type SiteObjects struct {
	ServiceAccount     *corev1.ServiceAccount
	ClusterRole        *rbacv1.ClusterRole
	ClusterRoleBinding *rbacv1.ClusterRoleBinding
}

// NewSiteObjects returns the site objects of Site site of tenant tenant.
func NewSiteObjects(tenant, site string) SiteObjects {
	name := AccountName(tenant, site)
	labels := objectLabels(tenant, site)
	return SiteObjects{
		ServiceAccount: &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels}},
		ClusterRole:    &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Rules: Rules(name)},
		ClusterRoleBinding: &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: Namespace, Name: name}},
		},
	}
}

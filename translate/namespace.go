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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
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
// <tenant>-<ns>. The mapping is injective for tenants that ValidTenant accepts: a tenant
// has no '-', so the first '-' ends it; a name longer than a namespace may be is cut and
// ends with '-' and 16 hex digits of its SHA-256, and so is a 63-character name that ends
// that way, so that no host namespace can take the shortened name of another.
func SiteNamespace(tenant, ns string) string {
	name := tenant + "-" + ns
	if len(name) < validation.DNS1123LabelMaxLength || (len(name) == validation.DNS1123LabelMaxLength && !hashedName.MatchString(name)) {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:])[:hashLen]
	return name[:validation.DNS1123LabelMaxLength-hashLen-1] + "-" + suffix
}

// hashLen is the number of hex digits that end a shortened site namespace name.
const hashLen = 16

// hashedName matches a 63-character name shaped as SiteNamespace shortens one.
var hashedName = regexp.MustCompile(`-[0-9a-f]{16}$`)

// tenantName is what ValidTenant accepts.
var tenantName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// ValidTenant checks a tenant name: 1 to 20 lowercase letters and digits. A '-' would make
// <tenant>-<namespace> ambiguous (prod + eu-shop and prod-eu + shop are both
// prod-eu-shop).
func ValidTenant(tenant string) error {
	if !tenantName.MatchString(tenant) {
		return fmt.Errorf("tenant %q: use 1 to 20 lowercase letters and digits (site namespaces are <tenant>-<namespace>; "+
			"a '-' in the tenant would make them ambiguous: prod + eu-shop and prod-eu + shop are both prod-eu-shop)", tenant)
	}
	return nil
}

// Namespace returns the site namespace vk8s creates for host namespace hostNamespace, with
// the Pod Security labels of level (PodSecurityLabels).
func Namespace(tenant, hostNamespace string, level vk8sv1.PodSecurityLevel) *corev1.Namespace {
	l := PodSecurityLabels(level)
	l[vk8sv1.LabelTenant] = tenant
	l[vk8sv1.LabelHostNamespace] = hostNamespace
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SiteNamespace(tenant, hostNamespace), Labels: l}}
}

// podSecurityRank orders the levels from the most permissive.
var podSecurityRank = map[vk8sv1.PodSecurityLevel]int{
	vk8sv1.PodSecurityPrivileged: 0, vk8sv1.PodSecurityBaseline: 1, vk8sv1.PodSecurityRestricted: 2,
}

// SitePodSecurity is the Pod Security level a Site asks for its namespaces:
// spec.podSecurity.enforce, baseline when it is unset or unknown (the CRD defaults it, but
// a Site read before the CRD had the field, or built in a test, has none).
func SitePodSecurity(site *vk8sv1.Site) vk8sv1.PodSecurityLevel {
	if _, ok := podSecurityRank[site.Spec.PodSecurity.Enforce]; ok {
		return site.Spec.PodSecurity.Enforce
	}
	return vk8sv1.PodSecurityBaseline
}

// StrictestPodSecurity returns the strictest of levels, baseline when there are none. Sites
// that are node-selected parts of one cluster share its site namespaces, whose level must
// be no weaker than any of them asks.
func StrictestPodSecurity(levels ...vk8sv1.PodSecurityLevel) vk8sv1.PodSecurityLevel {
	if len(levels) == 0 {
		return vk8sv1.PodSecurityBaseline
	}
	out := vk8sv1.PodSecurityPrivileged
	for _, l := range levels {
		r, ok := podSecurityRank[l]
		if !ok {
			l, r = vk8sv1.PodSecurityBaseline, podSecurityRank[vk8sv1.PodSecurityBaseline]
		}
		if r > podSecurityRank[out] {
			out = l
		}
	}
	return out
}

// PodSecurityLabels returns the Pod Security Admission labels of a site namespace at level:
// enforce, warn and audit at that level, each at version latest (the site's own Kubernetes
// version). An unknown level is baseline.
func PodSecurityLabels(level vk8sv1.PodSecurityLevel) map[string]string {
	if _, ok := podSecurityRank[level]; !ok {
		level = vk8sv1.PodSecurityBaseline
	}
	v := string(level)
	return map[string]string{
		vk8sv1.LabelPodSecurityEnforce: v, vk8sv1.LabelPodSecurityEnforceVersion: vk8sv1.PodSecurityVersionLatest,
		vk8sv1.LabelPodSecurityWarn: v, vk8sv1.LabelPodSecurityWarnVersion: vk8sv1.PodSecurityVersionLatest,
		vk8sv1.LabelPodSecurityAudit: v, vk8sv1.LabelPodSecurityAuditVersion: vk8sv1.PodSecurityVersionLatest,
	}
}

// WithPodSecurity returns a copy of a site namespace with the Pod Security labels of level,
// and whether any label changed (nil and false when none did). Call it only for a
// namespace vk8s created (CreatedByVK8s): a site administrator's keeps its own labels.
func WithPodSecurity(ns *corev1.Namespace, level vk8sv1.PodSecurityLevel) (*corev1.Namespace, bool) {
	want := PodSecurityLabels(level)
	changed := false
	for k, v := range want {
		if have, ok := ns.Labels[k]; !ok || have != v {
			changed = true
		}
	}
	if !changed {
		return nil, false
	}
	out := ns.DeepCopy()
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	maps.Copy(out.Labels, want)
	return out, true
}

// podSecurityMarker starts the level in the message of a refusal by Pod Security
// Admission: `pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged
// (container "c" must not set securityContext.privileged=true)`.
const podSecurityMarker = `violates PodSecurity "`

// PodSecurityViolation reports whether a site's refusal message is its Pod Security
// Admission's, and the level it enforced ("baseline" of "baseline:latest").
func PodSecurityViolation(message string) (level string, ok bool) {
	_, rest, ok := strings.Cut(message, podSecurityMarker)
	if !ok {
		return "", false
	}
	end := strings.IndexAny(rest, `:"`)
	if end <= 0 {
		return "", false
	}
	return rest[:end], true
}

// PodSecurityRefusal is what vk8s knows when a site's Pod Security Admission refused a pod.
type PodSecurityRefusal struct {
	// Site is the pod's site.
	Site string
	// Namespace is the site namespace.
	Namespace string
	// Created says vk8s created the namespace, so that its level is the Sites' setting.
	Created bool
	// SiteLevel is the Site's spec.podSecurity.enforce (SitePodSecurity).
	SiteLevel vk8sv1.PodSecurityLevel
	// NamespaceLevel is the level vk8s gives the namespaces of the site's cluster (the
	// strictest of the Sites that share it).
	NamespaceLevel vk8sv1.PodSecurityLevel
	// Level is the level the site enforced, from its message (PodSecurityViolation).
	Level string
	// Message is the site's message: which checks the pod failed.
	Message string
}

// PodSecurityDocs explains the levels and their checks.
const PodSecurityDocs = "https://kubernetes.io/docs/concepts/security/pod-security-standards/"

// HostMessage is the refusal as the host pod's condition and Event say it: the site, the
// namespace and its level, the checks the pod failed, and the fix.
func (r PodSecurityRefusal) HostMessage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "site %s refused the pod: namespace %s there enforces Pod Security level %q", r.Site, r.Namespace, r.Level)
	switch {
	case !r.Created:
		fmt.Fprintf(&b, " (its own labels: vk8s did not create the namespace and leaves them alone)")
	case r.NamespaceLevel != r.SiteLevel:
		fmt.Fprintf(&b, " (Site %s asks for %q, but other Sites on the same cluster share the namespace, which takes the strictest of their levels: kubectl get sites -o wide shows them)",
			r.Site, r.SiteLevel)
	default:
		fmt.Fprintf(&b, " (Site %s spec.podSecurity.enforce)", r.Site)
	}
	fmt.Fprintf(&b, ": %s; ", r.Message)
	switch {
	case !r.Created:
		fmt.Fprintf(&b, "change the pod to meet %q (%s), or ask the site's administrator to change the namespace's labels", r.Level, PodSecurityDocs)
	case r.NamespaceLevel != r.SiteLevel:
		fmt.Fprintf(&b, "change the pod to meet %q (%s), or set spec.podSecurity.enforce of every Site on that cluster to a level it meets (privileged allows every pod)",
			r.Level, PodSecurityDocs)
	default:
		fmt.Fprintf(&b, "change the pod to meet %q (%s), or set the Site's spec.podSecurity.enforce to a level it meets "+
			`(privileged allows every pod: kubectl patch site %s --type merge -p '{"spec":{"podSecurity":{"enforce":"privileged"}}}')`,
			r.Level, PodSecurityDocs, r.Site)
	}
	b.WriteString("; vk8s retries with backoff")
	return b.String()
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

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

package access

import (
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/component-helpers/auth/rbac/validation"

	"github.com/vk8s-io/vk8s/translate"
)

// allows says whether rules allow verb on group/resource (a subresource as
// "pods/exec"), by RBAC's own comparison.
func allows(rules []rbacv1.PolicyRule, verb, group, resource string) bool {
	ok, _ := validation.Covers(rules, []rbacv1.PolicyRule{{Verbs: []string{verb}, APIGroups: []string{group}, Resources: []string{resource}}})
	return ok
}

func TestRulesLetKubectlAndHelmWorkInTheNamespace(t *testing.T) {
	rules := Rules()
	for _, tc := range []struct {
		what                  string
		verb, group, resource string
	}{
		{"kubectl get pods", "list", "", "pods"},
		{"kubectl get pods -w", "watch", "", "pods"},
		{"kubectl apply a Deployment", "patch", "apps", "deployments"},
		{"kubectl create a Deployment", "create", "apps", "deployments"},
		{"kubectl delete a StatefulSet", "delete", "apps", "statefulsets"},
		{"kubectl delete pods --all", "deletecollection", "", "pods"},
		{"kubectl scale", "patch", "apps", "deployments/scale"},
		{"kubectl scale sts", "update", "apps", "statefulsets/scale"},
		{"kubectl logs", "get", "", "pods/log"},
		{"kubectl exec (WebSocket)", "get", "", "pods/exec"},
		{"kubectl exec (SPDY)", "create", "", "pods/exec"},
		{"kubectl attach", "create", "", "pods/attach"},
		{"kubectl port-forward", "create", "", "pods/portforward"},
		{"kubectl evict (eviction)", "create", "", "pods/eviction"},
		{"kubectl get events", "list", "", "events"},
		{"kubectl events", "watch", "events.k8s.io", "events"},
		{"kubectl rollout history sts", "list", "apps", "controllerrevisions"},
		{"Helm's release Secrets", "create", "", "secrets"},
		{"Helm's release Secrets", "list", "", "secrets"},
		{"Helm upgrade of release Secrets", "update", "", "secrets"},
		{"a chart's ServiceAccount", "create", "", "serviceaccounts"},
		{"a chart's Role", "create", "rbac.authorization.k8s.io", "roles"},
		{"a chart's RoleBinding", "create", "rbac.authorization.k8s.io", "rolebindings"},
		{"a chart's hook Job", "create", "batch", "jobs"},
		{"a chart's CronJob", "create", "batch", "cronjobs"},
		{"a chart's PodDisruptionBudget", "create", "policy", "poddisruptionbudgets"},
		{"a chart's NetworkPolicy", "create", "networking.k8s.io", "networkpolicies"},
		{"a chart's claim", "create", "", "persistentvolumeclaims"},
		{"a chart's HPA", "create", "autoscaling", "horizontalpodautoscalers"},
		{"an Override", "create", "vk8s.io", "overrides"},
		{"a VirtualSite", "create", "vk8s.io", "virtualsites"},
		{"kubectl get vk8s", "get", "vk8s.io", "virtualkubernetes"},
		{"kubectl get quota", "list", "", "resourcequotas"},
		{"kubectl auth can-i --as", "create", "authorization.k8s.io", "localsubjectaccessreviews"},
	} {
		if !allows(rules, tc.verb, tc.group, tc.resource) {
			t.Errorf("%s: %s %s/%s is not allowed", tc.what, tc.verb, tc.group, tc.resource)
		}
	}
}

func TestRulesRefuseWhatWouldEscapeTheNamespaceOrItsLimits(t *testing.T) {
	rules := Rules()
	for _, tc := range []struct {
		why                   string
		verb, group, resource string
	}{
		{"a token of its own would outlive --ttl", "create", "", "serviceaccounts/token"},
		{"impersonation", "impersonate", "", "serviceaccounts"},
		{"deleting the VirtualKubernetes would run the namespace's pods on the host", "delete", "vk8s.io", "virtualkubernetes"},
		{"changing the VirtualKubernetes' virtual-site is the admin's", "update", "vk8s.io", "virtualkubernetes"},
		{"the admin's quota", "update", "", "resourcequotas"},
		{"the admin's limits", "delete", "", "limitranges"},
		{"the host's Events are the controllers'", "create", "", "events"},
		{"the host's EndpointSlices are the controller's", "update", "discovery.k8s.io", "endpointslices"},
		{"a pod's status is the provider's", "update", "", "pods/status"},
		{"the host cannot reach a site's pod", "get", "", "pods/proxy"},
		{"kubectl debug: no ephemeral containers on the sites", "patch", "", "pods/ephemeralcontainers"},
		{"an Ingress stays on the host unseen", "create", "networking.k8s.io", "ingresses"},
		{"escalation", "escalate", "rbac.authorization.k8s.io", "roles"},
		{"escalation", "bind", "rbac.authorization.k8s.io", "roles"},
	} {
		if allows(rules, tc.verb, tc.group, tc.resource) {
			t.Errorf("%s %s/%s is allowed; it must not be: %s", tc.verb, tc.group, tc.resource, tc.why)
		}
	}
	for _, r := range rules {
		for _, s := range slices.Concat(r.APIGroups, r.Resources, r.Verbs) {
			if strings.Contains(s, "*") {
				t.Errorf("rule %v has a wildcard", r)
			}
		}
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %v names resources or URLs", r)
		}
	}
}

// TestRulesFollowTheKinds: every kind of translate.NamespaceKinds is granted, a kind added
// there is granted every verb with it, and every exception names a kind of the list.
func TestRulesFollowTheKinds(t *testing.T) {
	rules := Rules()
	for _, k := range translate.NamespaceKinds {
		if !allows(rules, "get", k.Group, k.Resource) && !allows(rules, "create", k.Group, k.Resource) {
			t.Errorf("kind %s (%s/%s) of a vK8s namespace is not granted", k.Kind, k.Group, k.Resource)
		}
	}
	for key, u := range uses {
		if u.why == "" {
			t.Errorf("uses[%s] does not say why", key)
		}
		if !slices.ContainsFunc(translate.NamespaceKinds, func(k translate.NamespaceKind) bool { return k.Group+"/"+k.Resource == key }) {
			t.Errorf("uses names %s, which translate.NamespaceKinds does not list", key)
		}
	}
	widgets := translate.NamespaceKind{Group: "example.com", Resource: "widgets", Kind: "Widget", Fate: translate.FateMirrored}
	more := RulesFor(append(slices.Clone(translate.NamespaceKinds), widgets))
	for _, verb := range writeVerbs {
		if !allows(more, verb, "example.com", "widgets") {
			t.Errorf("a kind added to translate.NamespaceKinds is not granted %s", verb)
		}
	}
	if len(more) != len(rules)+1 {
		t.Errorf("one more kind in a new group gives %d rules, want %d", len(more), len(rules)+1)
	}
}

func TestRulesAreStable(t *testing.T) {
	a, b := Rules(), Rules()
	if !slices.EqualFunc(a, b, func(x, y rbacv1.PolicyRule) bool {
		return slices.Equal(x.APIGroups, y.APIGroups) && slices.Equal(x.Resources, y.Resources) && slices.Equal(x.Verbs, y.Verbs)
	}) {
		t.Errorf("two calls gave different rules (a Role updated at every run):\n%v\n%v", a, b)
	}
	for i := 1; i < len(a); i++ {
		if a[i-1].APIGroups[0] > a[i].APIGroups[0] {
			t.Errorf("rules are not sorted by group: %v before %v", a[i-1].APIGroups, a[i].APIGroups)
		}
	}
}

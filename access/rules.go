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
	"cmp"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/vk8s-io/vk8s/translate"
)

// The verbs of a rule.
var (
	// writeVerbs are everything kubectl and Helm do with an object they own.
	writeVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	// readVerbs are what reading, watching and waiting need.
	readVerbs = []string{"get", "list", "watch"}
	// createVerbs are for request-like kinds, which are only ever created.
	createVerbs = []string{"create"}
)

// use is how the kubeconfig's user may use a kind of the namespace, where it is not
// writeVerbs.
type use struct {
	verbs []string
	// why says why (the reader's; a test checks it is there).
	why string
}

// uses are the kinds of translate.NamespaceKinds the user may not write, by
// "group/resource". Every other kind a vK8s namespace holds, the user may write, so a kind
// added to that list is granted with it (RulesFor).
var uses = map[string]use{
	"/events":                         {readVerbs, "Events describe the host's objects; their controllers write them"},
	"events.k8s.io/events":            {readVerbs, "Events describe the host's objects; their controllers write them"},
	"/endpoints":                      {readVerbs, "the host's endpoints controllers write them; traffic is served on the sites"},
	"discovery.k8s.io/endpointslices": {readVerbs, "the host's EndpointSlice controller writes them; traffic is served on the sites"},
	"apps/controllerrevisions":        {readVerbs, "the StatefulSet and DaemonSet controllers write them (kubectl rollout history reads them)"},
	"/limitranges":                    {readVerbs, "the admin's limits on the namespace, as Kubernetes' own admin and edit roles leave them"},
	"/resourcequotas":                 {readVerbs, "the admin's limits on the namespace, as Kubernetes' own admin and edit roles leave them"},
	"vk8s.io/virtualkubernetes":       {readVerbs, "it makes the namespace a vK8s namespace: without it, new pods would run on the host's nodes"},
	"authorization.k8s.io/localsubjectaccessreviews": {createVerbs, "a question to the API server, only ever created"},
}

// subresources are the subresources kubectl needs in a namespace, with their verbs.
// Not granted: serviceaccounts/token (a user who can mint tokens makes --ttl
// meaningless), pods/ephemeralcontainers (kubectl debug: vk8s does not add them to a
// running site pod), pods/proxy and services/proxy (the host cannot reach the sites' addresses), and
// the status subresources (the controllers' and vk8s').
var subresources = []struct {
	group, resource string
	verbs           []string
}{
	{"", "pods/log", []string{"get"}},                                  // kubectl logs
	{"", "pods/exec", []string{"get", "create"}},                       // kubectl exec (GET for WebSockets, POST for SPDY)
	{"", "pods/attach", []string{"get", "create"}},                     // kubectl attach, run -it
	{"", "pods/portforward", []string{"get", "create"}},                // kubectl port-forward
	{"", "pods/eviction", []string{"create"}},                          // kubectl drain's way of deleting a pod, PDBs respected
	{"apps", "deployments/scale", []string{"get", "update", "patch"}},  // kubectl scale
	{"apps", "replicasets/scale", []string{"get", "update", "patch"}},  // kubectl scale
	{"apps", "statefulsets/scale", []string{"get", "update", "patch"}}, // kubectl scale
}

// Rules are the rules of the Role that `vk8s kubeconfig` binds: RulesFor the kinds a
// vK8s namespace holds (translate.NamespaceKinds).
func Rules() []rbacv1.PolicyRule {
	return RulesFor(translate.NamespaceKinds)
}

// RulesFor returns the rules that let a user use kinds in one namespace as kubectl and
// Helm do: every verb on the kinds they own (Helm keeps its releases in Secrets of the
// namespace), read on those the host's controllers or the admin write, create on
// requests, and the subresources of kubectl logs, exec, attach, port-forward, scale and
// eviction. One rule per API group and set of verbs, sorted, so that the Role is the same
// at every run.
func RulesFor(kinds []translate.NamespaceKind) []rbacv1.PolicyRule {
	type key struct{ group, verbs string }
	resources := map[key][]string{}
	add := func(group, resource string, verbs []string) {
		k := key{group, strings.Join(verbs, ",")}
		if !slices.Contains(resources[k], resource) {
			resources[k] = append(resources[k], resource)
		}
	}
	for _, k := range kinds {
		verbs := writeVerbs
		if u, ok := uses[k.Group+"/"+k.Resource]; ok {
			verbs = u.verbs
		}
		add(k.Group, k.Resource, verbs)
	}
	for _, s := range subresources {
		add(s.group, s.resource, s.verbs)
	}
	rules := make([]rbacv1.PolicyRule, 0, len(resources))
	for k, res := range resources {
		slices.Sort(res)
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{k.group}, Resources: res, Verbs: strings.Split(k.verbs, ",")})
	}
	slices.SortFunc(rules, func(a, b rbacv1.PolicyRule) int {
		return cmp.Or(cmp.Compare(a.APIGroups[0], b.APIGroups[0]), slices.Compare(a.Resources, b.Resources))
	})
	return rules
}

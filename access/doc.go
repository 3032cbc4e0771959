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

// Package access hands a team a kubeconfig for its vK8s namespace (`vk8s kubeconfig`,
// docs/access.md): credentials that can use the kinds a vK8s namespace holds, there, and
// nothing else, so that plain kubectl and Helm work in that namespace and are refused in
// any other and on cluster-scoped objects.
//
// # What it makes
//
// In the namespace, with the admin's credentials (Grant):
//
//   - a ServiceAccount, the user (Request.User, default DefaultUser);
//   - a Role, RoleName(user), whose rules (Rules) follow translate.NamespaceKinds: every
//     verb on the kinds users own, read on those the host's controllers or the admin
//     write (Events, EndpointSlices, ControllerRevisions, quotas, the VirtualKubernetes),
//     and the subresources of kubectl logs, exec, attach, port-forward, scale and eviction;
//   - a RoleBinding of that Role to that ServiceAccount;
//
// then a token of the ServiceAccount from the TokenRequest API, which lives Request.TTL
// (the API server may issue a shorter one), in a kubeconfig (Kubeconfig) of the admin's
// server and CA whose context's namespace is the namespace.
//
// All three carry the label vk8s.io/kubeconfig-user; objects of those names without it
// are refused, not taken over. A namespace without a VirtualKubernetes is refused.
// Running Grant again brings the Role to this version's kinds and mints another token.
//
// # Pure parts and I/O
//
// Rules, Objects and Kubeconfig are pure (tested with tables, Rules by RBAC's own rule
// comparison); Grant does the I/O through a controller-runtime client (tested against a
// fake host for its refusals and its undoing, and against the lab's host in
// e2e/nskubeconfig_test.go).
package access

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

// Package plugin is `kubectl vk8s`: the fleet in kubectl's idiom. Its commands read the
// host cluster with the user's kubeconfig (k8s.io/cli-runtime's ConfigFlags: --kubeconfig,
// --context, --namespace and the rest of kubectl's connection flags) and print what
// package fleet builds from the objects, through cli-runtime's table printer.
//
//   - sites: every Site with its type, mode, conditions, nodes, allocatable and pods.
//   - status TYPE/NAME: a federated workload site by site; -w follows it.
//   - explain pod/NAME: why a pod is on its site.
//
// The vk8s binary runs them when it is invoked as kubectl-vk8s (kubectl's plugin
// mechanism, or Krew) and as `vk8s kubectl`.
//
// # Conventions
//
// As kubectl's: aligned columns, -o wide|json|yaml, --no-headers, the namespace of the
// kubeconfig's context unless -n says otherwise, a message and a non-zero exit status for
// a missing object or a kind that is not a federated workload. Resource types are
// resolved by the server's discovery, so the short names and the group-qualified names
// kubectl accepts (deploy, sts, ds, cj, deployments.apps) work here too.
package plugin

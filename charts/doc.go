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

// Package charts holds the Helm charts of vk8s (charts/vk8s) and their tests: chart_test.go
// renders the chart with the project's helm (hack/tools.sh) and checks it against the code,
// so that the two cannot drift: the webhook configurations and the kind policy against
// package webhook, the WorkloadFlavors against overrides.BuiltinFlavors, the CRDs against
// api/crds, the flags against the vk8s binary, the dashboard against the metrics the code
// registers. The e2e test TestChart installs it into the lab's host. VK8s embeds it, for
// the lab, which installs it into every lab's host.
package charts

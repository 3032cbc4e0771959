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

// Package e2e holds the end-to-end tests: they run against a real lab (package lab) that
// TestMain brings up once and tears down at the end, even when a test fails. The provider
// and the webhook run in the test process; TestMain builds the vk8s binary for the lab's
// kubelet relay. e2e/bench is the benchmark (make bench). Nothing here is linked into the
// product.
//
// They need the tools of hack/tools.sh in VK8S_TOOLS_DIR, which `make test` sets; with
// -short they are skipped.
package e2e

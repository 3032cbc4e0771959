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

// Package kwokconfig renders the configuration of the lab's clusters: kwokctl's
// KwokctlConfiguration of the host and of each site (binary runtime, local binaries,
// component flags), the kwok Stage and simulated resource metrics of the sites, and the tar
// shim of their exec. It is pure: package lab writes the files and runs the processes.
package kwokconfig

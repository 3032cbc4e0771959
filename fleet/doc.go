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

// Package fleet builds what `kubectl vk8s` shows of the fleet from the host's objects:
// the rows of `sites` (every Site with its virtual nodes, allocatable and pods), of
// `status` (a federated workload site by site: desired, ready, up to date, the Override
// and flavor applied, images, the last event) and the answer of `explain` (why a pod is on
// its site). It is pure: every function takes the objects the caller read and returns
// rows, leaving its arguments unmodified, so it is tested with plain tables; package
// plugin reads the objects and prints the rows.
//
// # What the rows read
//
// Everything comes from what vk8s records in the host: a Site's status and its virtual
// nodes (label vk8s.io/site); a workload's plan (vk8s.io/placement: the desired count of
// every site) and flavor (ves.io/workload-flavor); the site (vk8s.io/site), Override
// (vk8s.io/override), stamp (vk8s.io/override-hash) and slot (vk8s.io/slot) that
// admission wrote on each pod; and the pods' status, which the provider mirrors from the
// sites. So a row says what the host knows of a site, as of the provider's last report.
//
// # Tables
//
// SitesTable and StatusTable return metav1.Tables, which cli-runtime's table printer
// prints as kubectl prints a server's table: aligned columns, the wide ones (Priority 1)
// only with -o wide.
package fleet

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

// Package siteadm joins sites to the host and removes them (`vk8s site join`, `vk8s site
// leave`), and renews the credentials it gave them.
//
// # What join makes
//
// With the site administrator's kubeconfig, on the site: a ServiceAccount
// vk8s-system/vk8s-<tenant>-<site>, a ClusterRole of the same name with exactly the rights
// of the provider's site calls (Permissions, each documented in docs/install.md), and the
// ClusterRoleBinding between them. Then a bound token of that ServiceAccount (TokenRequest,
// DefaultTokenTTL), a self-contained kubeconfig for it, in the host a Secret
// <site>-kubeconfig holding it, and the Site. Everything is checked first (the name is
// free, the site answers and takes the credentials, no other host serves the tenant
// there) and removed again when a step fails or the Site does not get Connected: a failed
// join leaves nothing behind on either side.
//
// # Why a bound token
//
// A bound ServiceAccount token expires, names one ServiceAccount the site administrator
// can see and delete, and needs nothing of the site but the TokenRequest API. A client
// certificate would need the site's signer (kubernetes.io/kube-apiserver-client, which not
// every distribution enables) and cannot be revoked before it expires. The provider
// renews the token (Renewer) at half of its lifetime with the token itself: the site's
// ClusterRole allows creating tokens for that one ServiceAccount only.
//
// The lab registers its sites through Register, the same code, so the e2e suite runs the
// provider with exactly these rights.
package siteadm

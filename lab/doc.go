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

// Package lab runs a local fleet of real Kubernetes clusters: one host cluster and N site
// clusters whose nodes kwok simulates, all started by kwokctl's binary runtime from binaries
// built by hack/tools.sh, and vk8s against them. It is the product's embedded default
// (`vk8s lab`), and the e2e tests and the bench run on it. The configuration kwokctl and
// kwok read is rendered by package kwokconfig (pure); this package writes it, runs and
// supervises the processes (the clusters through kwokctl; the provider, the webhook,
// metrics-server and the kubelet relay as processes of its own, process.go) and registers
// the sites.
//
// # Layout
//
// A lab named NAME keeps everything under one folder (Config.Dir, by default
// $XDG_STATE_HOME/vk8s/labs/NAME): kwokctl's work folder with one cluster folder per cluster
// (kubeconfig.yaml, logs/, pids/), the kwokctl configuration files, and lab.json, which
// records what was asked so later calls know the clusters. Clusters are named NAME-host and
// NAME-site1 ... NAME-siteN; kwokctl chooses free ports, so labs with different names run
// side by side.
//
// # What Up makes
//
// Site clusters get kwok nodes node1..nodeM with realistic capacity and topology labels. The
// host gets the vk8s.io CRDs, a Site per site cluster (labels vk8s.io/lab, region and
// site-index; kubeconfig in a Secret in namespace vk8s-system) and the VirtualSite
// shared/all-sites that selects every Site, and charts/vk8s (embedded, package charts) with
// helm, without its Deployments: its ServiceAccounts, RBAC, webhook configurations and
// WorkloadFlavors (chart.go). The provider and the webhook run with tokens of the chart's
// ServiceAccounts (ComponentConfig), never as the lab's admin. Up is idempotent: it starts stopped clusters,
// creates missing ones, removes sites beyond the requested count, re-applies objects and
// upgrades the chart's release.
// With Config.Vk8sBinary it also runs that binary's provider and webhook against the host.
//
// # The kubelet network
//
// Where the machine allows it, the site nodes get an address in a network namespace of the
// lab's own, which the sites' API servers proxy to, and a relay (`vk8s lab kubelet-relay`,
// package relay) carries it to kwok on loopback (kubeletnet.go; docs/lab.md).
package lab

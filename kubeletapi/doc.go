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

// Package kubeletapi is the kubelet API of every virtual node of the vk8s provider: one
// authenticated HTTPS server that answers the host's API server (kubectl logs, exec,
// attach, port-forward, the node proxy) and metrics-server (kubectl top) for all virtual
// nodes, by calling the API servers of the sites. A site's kubelets are never dialled
// directly: everything goes through the site API server (pods/log, pods/exec, pods/attach,
// pods/portforward, nodes/proxy).
//
// The handlers are virtual-kubelet's (node/api): this package supplies the functions
// behind them, the routing between virtual nodes, authentication, authorization and the
// serving certificate.
//
// # Resolver
//
// The pod lifecycle code implements Resolver from its caches: where a host pod runs (its
// virtual node, site connection, site namespace and name), what a virtual node stands for
// (its site and real nodes: one in PerNode mode, all of the site's in Aggregate mode), the
// host pods bound to a virtual node, and which host pod a site pod runs for.
//
// # Routing
//
// The host's API server calls every virtual node at the address and port the node
// advertises, and the kubelet paths do not name the node. Requests for one pod
// (/containerLogs, /exec, /attach, /portForward) name the pod, which names its virtual
// node. Requests for a whole node (/stats/summary, /metrics/resource, /pods,
// /runningpods/) do not, and
// the host dials an IP (no SNI, and a Host header that is the address), so the server
// tells the nodes apart in two ways:
//
//   - Per-node ports (Config.NodePorts): each virtual node gets a port of its own from a
//     range (AddNode), kept stable across restarts by preferring the port its Node object
//     already advertises. Everything that talks to a kubelet then works unchanged: the node
//     proxy (kubectl get --raw /api/v1/nodes/<node>/proxy/stats/summary), metrics-server
//     of any version, Prometheus' kubelet scraping.
//   - Node-named paths on the shared port: /nodes/<node>/<kubelet path> serves that node
//     alone; every virtual node carries the annotation metrics.k8s.io/resource-metrics-path
//     = /nodes/<node>/metrics/resource, which metrics-server v0.7.0 and later follows (as
//     it does for kwok's nodes). A whole-node request without a node on the shared port is
//     answered 404 with a message saying how to ask.
//
// A request on a node's own port, or under its path, for a pod of another node gets 404,
// as a kubelet answers for a pod it does not run. docs/kubeletapi.md gives the reasons.
//
// # Authentication and authorization
//
// As a kubelet with webhook authentication and authorization (virtual-kubelet's
// nodeutil.WebhookAuth): a client certificate verified against the host's client CA, or a
// bearer token through a TokenReview; then a SubjectAccessReview on resource nodes, named
// after the virtual node (the pod's, for a pod's request), with subresource stats,
// metrics, log or proxy. Exec, attach and port-forward need verb create even when they
// arrive as a WebSocket GET. Requests without credentials get 401, others not allowed 403;
// a client is refused before it learns whether the pod or node it asked for exists.
//
// # Serving certificate
//
// TLSConfig chooses a static certificate/key pair (read again when the files change), a
// self-signed certificate (tests), or a certificate from the host's
// kubernetes.io/kubelet-serving signer: client-go's certificate manager files a
// CertificateSigningRequest (CN system:node:<name>, O system:nodes, IP and DNS SANs),
// the provider approves it itself when RBAC allows and otherwise reports through
// CSRConfig.OnStatus that it waits, and renews it before it expires. The certificate is
// served through tls.Config.GetCertificate, so renewals need no restart.
//
// # Stats and metrics
//
// /stats/summary is the site nodes' summaries (read through the site's node proxy) with
// only the pods that run for host pods, renamed to the host namespace, name and UID, and
// the node named after the virtual node; in Aggregate mode the site nodes are merged
// (HostSummary). A site node that serves no summary (kwok's) has one made from its
// resource metrics (SummaryFromMetrics), or, failing those, from the pods the site runs on
// it, listed with no usage (SummaryFromPods): numbers are never made up. /metrics/resource
// is the site nodes' own resource metrics relabelled the same way (from the path a site
// node's metrics.k8s.io/resource-metrics-path annotation names, for kwok sites), or, where
// a site node has none, made from its summary with the kubelet's names (ResourceMetrics,
// HostResourceMetrics), labelled namespace, pod, container in that order. /pods is the
// host pods bound to the virtual node, /runningpods/ those of them that run on the site.
//
// # Observability
//
// Metrics vk8s_kubeletapi_requests_total{handler,code} and
// vk8s_kubeletapi_request_duration_seconds{handler}; an OpenTelemetry span per request and
// per site call; structured logs through logr (one line per request at V(1), errors at 0).
package kubeletapi

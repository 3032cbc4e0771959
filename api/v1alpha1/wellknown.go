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

package v1alpha1

import corev1 "k8s.io/api/core/v1"

// The well-known keys: every label, annotation, taint, condition and finalizer key that
// vk8s reads or writes, declared once and imported from here. Names of objects vk8s makes
// (the isolation NetworkPolicy, the leader election Lease) and the reasons of conditions
// live with the code that makes them.

// Annotations users write on workloads (SPEC §3, compatible with existing vK8s manifests).
const (
	// AnnotationVirtualSites lists the workload's virtual-sites: "ns1/vs1, shared/vs2".
	AnnotationVirtualSites = "ves.io/virtual-sites"
	// AnnotationOverrides lists the workload's Overrides in order: "o1, o2".
	AnnotationOverrides = "ves.io/overrides"
	// AnnotationWorkloadFlavor names the workload's WorkloadFlavor.
	AnnotationWorkloadFlavor = "ves.io/workload-flavor"
)

// Labels and annotations admission writes on workloads, pods and namespaces of the host.
const (
	// LabelSite names the site of a virtual node or of a pod.
	LabelSite = "vk8s.io/site"
	// LabelOverride names the Override applied to a pod.
	LabelOverride = "vk8s.io/override"
	// LabelVirtualKubernetes marks a vK8s namespace with the name of its VirtualKubernetes.
	// The webhook configurations select namespaces by it, so no other namespace ever calls
	// the webhook.
	LabelVirtualKubernetes = "vk8s.io/virtual-kubernetes"
	// AnnotationReplicasPerSite holds R, the per-site replica count of a workload (a Job's
	// per-site parallelism).
	AnnotationReplicasPerSite = "vk8s.io/replicas-per-site"
	// AnnotationCompletionsPerSite holds a Job's per-site completions, as
	// AnnotationReplicasPerSite holds its per-site parallelism.
	AnnotationCompletionsPerSite = "vk8s.io/completions-per-site"
	// AnnotationBackoffLimitPerSite holds a Job's per-site backoffLimit: the failures a
	// site's share may have before the Job fails (its spec.backoffLimit holds the sum).
	AnnotationBackoffLimitPerSite = "vk8s.io/backoff-limit-per-site"
	// AnnotationPlacement records a workload's plan: its sites, in order, with their pod
	// counts ("site1=3,site2=3"). StatefulSets and indexed Jobs deal their ordinals out in
	// blocks in this order.
	AnnotationPlacement = "vk8s.io/placement"
	// AnnotationSlot numbers a pod among its owner's pods on its site (1, 2, ...).
	AnnotationSlot = "vk8s.io/slot"
	// AnnotationOverrideHash stamps a pod with the Override admission applied to it: a
	// short hash of the Override's name and template, or "none". The per-site rollout
	// restarts the pods whose stamp differs from their site's current Override.
	AnnotationOverrideHash = "vk8s.io/override-hash"
	// AnnotationTraceParent holds, on a pod admission placed, the W3C traceparent of the
	// admission's span (when tracing is on), so that the provider's spans for the pod join
	// the admission's trace. It is the host's: site pods do not get it.
	AnnotationTraceParent = "vk8s.io/traceparent"
)

// Labels, taints and conditions of virtual nodes.
const (
	// LabelSiteNode names the real node of the site that a PerNode virtual node stands for.
	LabelSiteNode = "vk8s.io/site-node"
	// LabelType marks virtual nodes as virtual-kubelet nodes, as other providers do.
	LabelType = "type"
	// TypeVirtualKubelet is LabelType's value.
	TypeVirtualKubelet = "virtual-kubelet"
	// TaintKey is the key of the NoSchedule taint on every virtual node; the webhook adds
	// the matching toleration to the pods it admits.
	TaintKey = "virtual-kubelet.io/provider"
	// TaintValue is the value of that taint.
	TaintValue = "vk8s"
	// TaintSiteUnreachable is the NoSchedule taint of the virtual nodes of a site that does
	// not answer: no new pod goes there, and the pods there stay (no NoExecute).
	TaintSiteUnreachable = "vk8s.io/site-unreachable"
	// TaintLeftSite is the NoSchedule taint of a virtual node that no longer stands for a
	// node of its Site (the Site was edited or deleted, or the site node went) while it
	// waits out its grace period, NotReady, with its pods: no new pod goes there.
	TaintLeftSite = "vk8s.io/left-site"
	// ConditionSiteConnected is the virtual node condition that says whether its site
	// answers.
	ConditionSiteConnected corev1.NodeConditionType = "SiteConnected"
	// AnnotationResourceMetricsPath is metrics-server's (v0.7+) per-node path of the
	// kubelet's /metrics/resource, which the kubelet API serves per virtual node.
	AnnotationResourceMetricsPath = "metrics.k8s.io/resource-metrics-path"
)

// Labels of what vk8s creates on sites (namespaces, pods, copies, the isolation
// NetworkPolicy), so several hosts can share a site and a restarted provider adopts what
// it made instead of creating it again.
const (
	// LabelTenant names the host installation that made the object.
	LabelTenant = "vk8s.io/tenant"
	// LabelHostNamespace names the host namespace the object stands for.
	LabelHostNamespace = "vk8s.io/host-namespace"
	// LabelHostPodUID is the UID of the host pod a site pod runs for.
	LabelHostPodUID = "vk8s.io/host-pod-uid"
	// LabelHostSite names the Site (the host's Site object) a site pod was created for.
	// With sharding it says which replica acts for the pod (the owner of that Site) even
	// when the Sites of one cluster share a connection and the host pod is gone. Not
	// LabelSite: host pods carry that one (admission writes it, users may select by it),
	// and it reaches the site pod among the host's labels.
	LabelHostSite = "vk8s.io/host-site"
	// AnnotationLastApplied records on a site pod what vk8s last wrote of the fields it
	// keeps following the host pod (labels, annotations, container images, the active
	// deadline), and on a copy (ConfigMap, Secret, Service, ...) its labels and
	// annotations, as JSON: a host change is applied against it, so that what the site
	// added or rewrote (its admission, its controllers) stays.
	AnnotationLastApplied = "vk8s.io/last-applied"
	// LabelManagedBy is "vk8s" on the isolation NetworkPolicy and the webhook
	// configurations vk8s manages.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByVK8s is LabelManagedBy's value.
	ManagedByVK8s = "vk8s"
	// LabelKubeconfigUser names, on the ServiceAccount, Role and RoleBinding that `vk8s
	// kubeconfig` makes in a vK8s namespace (package access), the user they are for: the
	// command updates only objects that carry it.
	LabelKubeconfigUser = "vk8s.io/kubeconfig-user"
)

// Pod Security Admission labels (Kubernetes' own keys), which vk8s sets on the site
// namespaces it creates at the level of their Site's spec.podSecurity.enforce.
const (
	// LabelPodSecurityEnforce names the level whose violations the site refuses.
	LabelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"
	// LabelPodSecurityEnforceVersion pins the version of that level's checks.
	LabelPodSecurityEnforceVersion = "pod-security.kubernetes.io/enforce-version"
	// LabelPodSecurityWarn names the level whose violations the site answers with warnings.
	LabelPodSecurityWarn = "pod-security.kubernetes.io/warn"
	// LabelPodSecurityWarnVersion pins the version of the warn level's checks.
	LabelPodSecurityWarnVersion = "pod-security.kubernetes.io/warn-version"
	// LabelPodSecurityAudit names the level whose violations the site's audit log records.
	LabelPodSecurityAudit = "pod-security.kubernetes.io/audit"
	// LabelPodSecurityAuditVersion pins the version of the audit level's checks.
	LabelPodSecurityAuditVersion = "pod-security.kubernetes.io/audit-version"
	// PodSecurityVersionLatest is the version vk8s pins: the site's own Kubernetes version.
	PodSecurityVersionLatest = "latest"
)

// Conditions of the vk8s.io kinds.
const (
	// ConditionReady says the object is in effect: a Site's cluster answers and has Ready
	// nodes, a VirtualSite's selector resolved, a VirtualKubernetes' namespaces exist, an
	// Override's sites exist, a WorkloadFlavor's limits are valid.
	ConditionReady = "Ready"
	// ConditionConnected says vk8s reached the Site's API server with its credentials.
	ConditionConnected = "Connected"
)

// Conditions vk8s writes on host pods.
const (
	// ConditionSiteSynced says whether the pod exists on its site as the host describes
	// it; False carries the site's error.
	ConditionSiteSynced corev1.PodConditionType = "vk8s.io/SiteSynced"
	// ConditionStatusStale, True, says the pod's site does not answer and its status is
	// the last the site reported.
	ConditionStatusStale corev1.PodConditionType = "vk8s.io/StatusStale"
	// ConditionSiteScheduled is the site pod's PodScheduled, as the site's scheduler
	// wrote it: False (reason Unschedulable, the scheduler's message) says why a host pod
	// bound to its virtual node is still Pending on its site. The host pod's own
	// PodScheduled says how the host placed it.
	ConditionSiteScheduled corev1.PodConditionType = "vk8s.io/SiteScheduled"
)

// Annotations and conditions vk8s writes on host Services, which run on every site of
// their namespace (package mirror).
const (
	// AnnotationSiteEndpoints counts the Ready endpoints of the Service on each site:
	// "site1=3,site2=3,site3=0".
	AnnotationSiteEndpoints = "vk8s.io/site-endpoints"
	// AnnotationSiteLoadBalancers names each site's load balancer ingress of a
	// LoadBalancer Service, as status.loadBalancer.ingress lists them all:
	// "site1=192.0.2.10,site2=lb.example.com".
	AnnotationSiteLoadBalancers = "vk8s.io/site-load-balancers"
	// ConditionSitesReady says whether the Service has a Ready endpoint on every site of its
	// namespace; the message names the sites that have none.
	ConditionSitesReady = "vk8s.io/SitesReady"
)

// Annotations vk8s writes on host Jobs, which run their share on every site (package
// federation, the Job status controller).
const (
	// AnnotationSiteSucceeded counts each site's succeeded pods against its completions:
	// "site1=2/2,site2=1/2,site3=2/2" (a bare count for a Job without completions).
	AnnotationSiteSucceeded = "vk8s.io/site-succeeded"
	// AnnotationSiteFailed counts each site's failures (failed pods, and container
	// restarts of running pods when restartPolicy is OnFailure) against its per-site
	// backoffLimit: "site1=0/6,site2=7/6,site3=0/6".
	AnnotationSiteFailed = "vk8s.io/site-failed"
	// AnnotationSiteBackoffExceeded names the site whose failures passed the per-site
	// backoffLimit. vk8s sets it with spec.backoffLimit 0, which makes the host's job
	// controller fail the Job (reason BackoffLimitExceeded); admission then leaves
	// spec.backoffLimit alone.
	AnnotationSiteBackoffExceeded = "vk8s.io/site-backoff-exceeded"
)

// Storage: the host side of the sites' volumes (package storage). A claim of a StorageClass
// whose provisioner is StorageProvisioner is Bound on the host to a PersistentVolume that
// stands for the claim's copies on the sites; each site binds its copy to a volume of its own.
const (
	// StorageClassName is the StorageClass vk8s installs on the host.
	StorageClassName = "vk8s"
	// StorageProvisioner provisions the host volumes of claims in vK8s namespaces, and is
	// the CSI driver name the host volumes carry (no node mounts them).
	StorageProvisioner = "sites.vk8s.io"
	// ParameterSiteStorageClass, a parameter of a StorageClass of StorageProvisioner, names
	// the StorageClass of the claims' copies on the sites; without it they get the site's
	// default StorageClass.
	ParameterSiteStorageClass = "siteStorageClassName"
	// AnnotationDefaultStorageClass, "true", marks a cluster's default StorageClass
	// (Kubernetes' own key): vk8s writes it on the lab's classes and reads it at admission.
	AnnotationDefaultStorageClass = "storageclass.kubernetes.io/is-default-class"
)

// Finalizers.
const (
	// FinalizerSiteNamespaces is what a VirtualKubernetes carries until vk8s has removed
	// what it made on the sites.
	FinalizerSiteNamespaces = "vk8s.io/site-namespaces"
)

// Keys of a Site kubeconfig Secret that `vk8s site join` made (package siteadm): the
// provider renews the token of such a kubeconfig before it expires.
const (
	// AnnotationSiteServiceAccount names the ServiceAccount on the site whose token the
	// kubeconfig holds, as <namespace>/<name>.
	AnnotationSiteServiceAccount = "vk8s.io/site-service-account"
	// AnnotationTokenExpiration is when that token expires (RFC 3339).
	AnnotationTokenExpiration = "vk8s.io/token-expiration"
	// AnnotationTokenIssued is when it was issued (RFC 3339): the provider renews it once
	// half of its lifetime has passed.
	AnnotationTokenIssued = "vk8s.io/token-issued"
)

// Keys of the local lab (vk8s lab).
const (
	// LabelLab names the lab on every Site it registers.
	LabelLab = "vk8s.io/lab"
	// AnnotationLabExitAfter on a host pod (the provider copies it to the site pod) makes
	// a lab site's kwok complete the pod that long (a Go duration, e.g. "5s") after it
	// runs: phase Succeeded, every container terminated with exit code 0 and reason
	// Completed. kwok's containers never exit otherwise.
	AnnotationLabExitAfter = "vk8s.io/lab-exit-after"
	// AnnotationLabExitCode on a host pod of a Job makes a lab site's kwok end the pod, as
	// it ends any Job pod, with this exit code: a code other than "0" fails the pod (phase
	// Failed, reason Error), as a real container that exits with it does.
	AnnotationLabExitCode = "vk8s.io/lab-exit-code"
)

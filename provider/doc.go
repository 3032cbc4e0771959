// Package provider is the vk8s virtual-kubelet provider: it shows every site of the site
// registry as virtual nodes in the host cluster and runs the pods bound to them on the sites.
//
// # Virtual nodes
//
// In PerNode mode each real node of a site is one host Node named <site>-<node>, carrying
// that node's capacity, allocatable, conditions and topology labels; in Aggregate mode the
// whole site is one Node named after the site, with the allocatable of its schedulable,
// Ready nodes summed. Every virtual node carries vk8s.io/site, type=virtual-kubelet and the
// taint TaintKey=vk8s:NoSchedule, which only pods that vk8s admitted tolerate. A node
// cordoned at the site, or a Site with spec.unschedulable, is unschedulable in the host.
//
// The translation from site nodes to virtual nodes is pure (package translate's
// VirtualNodes); the Nodes manager runs one virtual-kubelet NodeController per virtual node
// on top of it.
//
// # Pods
//
// translate.SitePod turns a host pod into the pod to create on its site, in namespace
// <tenant>-<namespace> (translate.SiteNamespace), pinned to the real node in PerNode mode and
// labelled with the tenant, the host namespace and the host pod's UID. Pods is the
// virtual-kubelet pod lifecycle handler that uses it, for every virtual node at once.
//
// # Site errors
//
// A site's refusal to create a pod is permanent or transient by its status code
// (permanentRejection): 422, 400 and 413 say the pod itself is unacceptable and fail the
// host pod (a ValidatingAdmissionPolicy answers 422 unless its validation says another
// reason); anything else (403 from quota, admission plugins or a policy with reason
// Forbidden, 5xx, timeouts) is retried with backoff while a condition and an Event quote
// the site.
//
// # Pods bound before their node
//
// A pod bound by hand to a virtual node that is not registered yet is picked up when the
// node appears (early.go): NodeAdded writes a condition into its status, and the update
// event passes the pod controller's filter as an Add.
package provider

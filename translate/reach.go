package translate

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// ReasonNotForSites is the reason for a host pod bound to a virtual node that vk8s does
// not run on the node's site (ReachesSite).
const ReasonNotForSites = "NotForSites"

// ReachesSite says whether a host pod bound to a virtual node may run on the node's site
// (SPEC §4, "Provider"; docs/provider.md, "What reaches a site"), and why not. What
// reaches a site:
//
//   - every pod of a vK8s namespace (managed: its namespace holds a VirtualKubernetes);
//   - a pod that tolerates vk8s' taint by its key (virtual-kubelet.io/provider), as
//     examples/pod-on-site2-node3.yaml does: it was sent to a virtual node on purpose;
//   - a pod bound to the node by hand (spec.nodeName written at creation, not by the
//     host's scheduler), unless a DaemonSet made it.
//
// Nothing else: a host-wide DaemonSet (kube-proxy, a CNI agent, a node exporter) and any
// pod that the host's scheduler put on a virtual node only because it tolerates every
// taint stay on the host, Pending, so that one host-wide manifest never runs on every
// site at once. The scheduler's binding is what sets PodScheduled=True on a pod that
// has not run yet; a pod bound by hand has no such condition until it runs.
func ReachesSite(pod *corev1.Pod, managed bool) (bool, string) {
	if managed {
		return true, ""
	}
	for _, t := range pod.Spec.Tolerations {
		if t.Key == vk8sv1.TaintKey {
			return true, ""
		}
	}
	fix := fmt.Sprintf("to run it on sites, create it in a vK8s namespace (one with a VirtualKubernetes), or tolerate the taint %s by its key", vk8sv1.TaintKey)
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil && ref.Kind == "DaemonSet" {
		return false, fmt.Sprintf("pod of DaemonSet %s in namespace %s, which vk8s does not manage: host-wide DaemonSets never run on sites; %s",
			ref.Name, pod.Namespace, fix)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
			return false, fmt.Sprintf("the host's scheduler put this pod of namespace %s, which vk8s does not manage, on virtual node %s only because it tolerates every taint; %s",
				pod.Namespace, pod.Spec.NodeName, fix)
		}
	}
	return true, ""
}

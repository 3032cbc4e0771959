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

package translate

import (
	"fmt"
	"strings"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceAccountVolumePrefix names the projected volume the host's ServiceAccount admission
// adds (kube-api-access-xxxxx); its token is the host's and means nothing on a site.
const serviceAccountVolumePrefix = "kube-api-access-"

// Target says where a host pod goes.
type Target struct {
	// Tenant names this host installation.
	Tenant string
	// Site names the Site the pod runs on (its virtual node's vk8s.io/site); the site pod
	// is labelled with it (vk8s.io/host-site).
	Site string
	// SiteNode is the real node of the site (PerNode mode); empty in Aggregate mode, where
	// the site's scheduler chooses.
	SiteNode string
}

// SitePod returns the pod to create on the site for host pod p. It keeps what the user
// wrote and drops what only makes sense in the host: the binding to the virtual node, the
// host's service-account token volume, tolerations of the virtual nodes' taint, node
// selection and priority class (the host scheduler has placed the pod already). It
// labels the pod with vk8s' own labels (the tenant, the host namespace, the host pod's
// UID, the Site), which HostLabels leaves out and SiteUpdate keeps, and records in
// AnnotationLastApplied the labels, annotations and images it writes.
func SitePod(p *corev1.Pod, t Target) (*corev1.Pod, error) {
	if t.Tenant == "" {
		return nil, fmt.Errorf("pod %s/%s: tenant is required", p.Namespace, p.Name)
	}
	if t.Site == "" {
		return nil, fmt.Errorf("pod %s/%s: site is required", p.Namespace, p.Name)
	}
	if p.UID == "" {
		return nil, fmt.Errorf("pod %s/%s: it has no UID yet", p.Namespace, p.Name)
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        p.Name,
			Namespace:   SiteNamespace(t.Tenant, p.Namespace),
			Labels:      map[string]string{},
			Annotations: map[string]string{},
		},
		Spec: *p.Spec.DeepCopy(),
	}
	for k, v := range p.Labels {
		out.Labels[k] = v
	}
	for k, v := range siteAnnotations(p.Annotations) {
		out.Annotations[k] = v
	}
	out.Labels[vk8sv1.LabelTenant] = t.Tenant
	out.Labels[vk8sv1.LabelHostNamespace] = p.Namespace
	out.Labels[vk8sv1.LabelHostPodUID] = string(p.UID)
	out.Labels[vk8sv1.LabelHostSite] = t.Site
	// What the site's admission changes of it is the site's (SiteUpdate).
	record(out, appliedOf(p))

	spec := &out.Spec
	spec.NodeName = ""
	spec.NodeSelector = nil
	spec.PriorityClassName = ""
	spec.Priority = nil
	spec.Tolerations = dropTolerations(spec.Tolerations)
	dropServiceAccountVolume(spec)
	if spec.Affinity != nil {
		spec.Affinity.NodeAffinity = nil
		if spec.Affinity.PodAffinity == nil && spec.Affinity.PodAntiAffinity == nil {
			spec.Affinity = nil
		}
	}
	if t.SiteNode != "" {
		if spec.Affinity == nil {
			spec.Affinity = &corev1.Affinity{}
		}
		// The site's scheduler still checks fit and taints on that node.
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{
						Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{t.SiteNode},
					}},
				}},
			},
		}
	}
	return out, nil
}

// dropTolerations removes the tolerations that only the host's virtual nodes need.
func dropTolerations(in []corev1.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, tol := range in {
		if tol.Key == vk8sv1.TaintKey {
			continue
		}
		out = append(out, tol)
	}
	return out
}

// isHostTokenVolume reports whether v is the token volume the host's ServiceAccount
// admission added.
func isHostTokenVolume(v corev1.Volume) bool {
	return strings.HasPrefix(v.Name, serviceAccountVolumePrefix) && v.Projected != nil
}

// dropServiceAccountVolume removes the host's token volume and its mounts: the site's
// ServiceAccount admission mounts the site's own.
func dropServiceAccountVolume(spec *corev1.PodSpec) {
	drop := map[string]bool{}
	var vols []corev1.Volume
	for _, v := range spec.Volumes {
		if isHostTokenVolume(v) {
			drop[v.Name] = true
			continue
		}
		vols = append(vols, v)
	}
	spec.Volumes = vols
	if len(drop) == 0 {
		return
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			var mounts []corev1.VolumeMount
			for _, m := range cs[i].VolumeMounts {
				if !drop[m.Name] {
					mounts = append(mounts, m)
				}
			}
			cs[i].VolumeMounts = mounts
		}
	}
}

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

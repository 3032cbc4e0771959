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
	"encoding/json"
	"maps"
	"slices"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Reasons vk8s writes into host pod statuses and conditions, and of its Events on host
// pods.
const (
	// ReasonSitePodCreated (a Normal Event): the pod was created on its site.
	ReasonSitePodCreated = "SitePodCreated"
	// ReasonSitePodDeleted: the pod was deleted on its site, not through the host, and its
	// restartPolicy is Never, so it is not created again.
	ReasonSitePodDeleted = "SitePodDeleted"
	// ReasonSiteRejected: the site refused the pod (admission, quota, validation).
	ReasonSiteRejected = "SiteRejected"
	// ReasonSiteUnreachable: the pod's site does not answer.
	ReasonSiteUnreachable = "SiteUnreachable"
	// ReasonMissingReference: a ConfigMap, Secret or ServiceAccount the pod needs is not in
	// the host namespace; the pod waits for it, as a kubelet does.
	ReasonMissingReference = "MissingReference"
	// ReasonNodeRegistered: the pod was bound to its virtual node before the node was
	// registered, and is being created on its site now that it is.
	ReasonNodeRegistered = "VirtualNodeRegistered"
	// ReasonNameConflict: the site namespace holds a pod of the same name that vk8s did not
	// create (a site administrator's); vk8s leaves it alone and the host pod waits.
	ReasonNameConflict = "SiteNameConflict"
	// ReasonPodSecurity: the site's Pod Security Admission refused the pod (the level of
	// its namespace, from the Site's spec.podSecurity); the pod waits, retried with
	// backoff, until the level allows it.
	ReasonPodSecurity = "PodSecurityRejected"
	// ReasonTerminated: the pod is gone from its site after the host deleted it.
	ReasonTerminated = "SitePodTerminated"
	// ReasonSiteUnschedulable (a Warning Event): the site's scheduler cannot place the
	// site pod (vk8s.io/SiteScheduled=False).
	ReasonSiteUnschedulable = "SiteUnschedulable"
)

// managedLabels are the labels vk8s adds to site pods; the host pod does not have them.
var managedLabels = []string{vk8sv1.LabelTenant, vk8sv1.LabelHostNamespace, vk8sv1.LabelHostPodUID, vk8sv1.LabelHostSite}

// HostStatus is the status the host pod should show for its site pod: the site's, as it
// is (phase, conditions, container and init-container statuses with restarts, pod IP,
// start time), except the QoS class, which the host computed at creation and may not
// change, the host-only conditions vk8s keeps, and PodScheduled, which says how the host
// placed the pod: the host's scheduler's condition, or none for a pod bound by hand
// (ReachesSite tells the two apart by it, also after a provider restart). The site's
// PodScheduled becomes vk8s.io/SiteScheduled, so that a pod its site cannot place says
// why on the host.
func HostStatus(host, site *corev1.Pod) corev1.PodStatus {
	out := *site.Status.DeepCopy()
	out.QOSClass = host.Status.QOSClass
	out.NominatedNodeName = host.Status.NominatedNodeName
	for i := range out.Conditions {
		if out.Conditions[i].Type == corev1.PodScheduled {
			out.Conditions[i].Type = vk8sv1.ConditionSiteScheduled
		}
	}
	out.Conditions = slices.DeleteFunc(out.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == vk8sv1.ConditionSiteSynced || c.Type == vk8sv1.ConditionStatusStale
	})
	for _, c := range host.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			out.Conditions = append([]corev1.PodCondition{c}, out.Conditions...)
		}
	}
	return out
}

// SiteUnschedulable returns the site's SiteScheduled=False condition of status when the
// host pod's last status (was) did not have it already: the moment to tell users.
func SiteUnschedulable(was, status corev1.PodStatus) (corev1.PodCondition, bool) {
	now, ok := condition(status, vk8sv1.ConditionSiteScheduled)
	if !ok || now.Status != corev1.ConditionFalse {
		return corev1.PodCondition{}, false
	}
	before, ok := condition(was, vk8sv1.ConditionSiteScheduled)
	if ok && before.Status == corev1.ConditionFalse && before.Reason == now.Reason && before.Message == now.Message {
		return corev1.PodCondition{}, false
	}
	return now, true
}

func condition(status corev1.PodStatus, t corev1.PodConditionType) (corev1.PodCondition, bool) {
	for _, c := range status.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}

// StaleStatus is the status of a host pod whose site does not answer: the last one, with
// StatusStale=True, and once the grace period is over (expired), Ready=False with reason
// SiteUnreachable, as Kubernetes marks the pods of an unreachable node.
func StaleStatus(last corev1.PodStatus, message string, expired bool, now metav1.Time) corev1.PodStatus {
	out := WithCondition(last, corev1.PodCondition{
		Type: vk8sv1.ConditionStatusStale, Status: corev1.ConditionTrue, Reason: ReasonSiteUnreachable,
		Message: message, LastTransitionTime: now,
	})
	if expired {
		out = WithCondition(out, corev1.PodCondition{
			Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: ReasonSiteUnreachable,
			Message: message, LastTransitionTime: now,
		})
	}
	return out
}

// WithCondition returns status with condition c set (replaced when one of its type is
// there; the transition time kept when the status did not change).
func WithCondition(status corev1.PodStatus, c corev1.PodCondition) corev1.PodStatus {
	out := *status.DeepCopy()
	for i := range out.Conditions {
		if out.Conditions[i].Type != c.Type {
			continue
		}
		if out.Conditions[i].Status == c.Status {
			c.LastTransitionTime = out.Conditions[i].LastTransitionTime
		}
		out.Conditions[i] = c
		return out
	}
	out.Conditions = append(out.Conditions, c)
	return out
}

// TerminatedStatus is the final status of a host pod whose site pod is gone: every
// container that has not terminated is marked terminated with reason, and the phase is
// Failed, or Succeeded when every container had already exited 0.
func TerminatedStatus(last corev1.PodStatus, pod *corev1.Pod, reason, message string, now metav1.Time) corev1.PodStatus {
	out := *last.DeepCopy()
	succeeded := true
	terminate := func(statuses []corev1.ContainerStatus, containers []corev1.Container) []corev1.ContainerStatus {
		byName := map[string]corev1.ContainerStatus{}
		for _, s := range statuses {
			byName[s.Name] = s
		}
		res := make([]corev1.ContainerStatus, 0, len(containers))
		for _, c := range containers {
			s, ok := byName[c.Name]
			if !ok {
				s = corev1.ContainerStatus{Name: c.Name, Image: c.Image}
			}
			if t := s.State.Terminated; t != nil {
				if t.ExitCode != 0 {
					succeeded = false
				}
			} else {
				succeeded = false
				s.LastTerminationState = s.State
				s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: reason, Message: message, FinishedAt: now,
				}}
			}
			s.Ready = false
			s.Started = ptr.To(false)
			res = append(res, s)
		}
		return res
	}
	out.InitContainerStatuses = terminate(out.InitContainerStatuses, pod.Spec.InitContainers)
	out.ContainerStatuses = terminate(out.ContainerStatuses, pod.Spec.Containers)
	out.Phase = corev1.PodFailed
	if succeeded {
		out.Phase = corev1.PodSucceeded
	}
	out.Reason, out.Message = reason, message
	for i := range out.Conditions {
		switch out.Conditions[i].Type {
		case corev1.PodReady, corev1.ContainersReady:
			if out.Conditions[i].Status != corev1.ConditionFalse {
				out.Conditions[i].Status = corev1.ConditionFalse
				out.Conditions[i].Reason = reason
				out.Conditions[i].LastTransitionTime = now
			}
		}
	}
	return out
}

// HostView is the host pod as its site runs it, what virtual-kubelet's pod controller
// compares with the host to decide whether to update the site: the host pod with the
// fields a pod update may change (labels, annotations, container images, active deadline)
// as vk8s last wrote them on the site pod (its AnnotationLastApplied), and the site's
// status. What the site added or rewrote is not shown, so it never looks like a change of
// the host's.
func HostView(host, site *corev1.Pod) *corev1.Pod {
	out := host.DeepCopy()
	last, recorded := lastApplied(site, appliedOf(host))
	out.Labels = sameEmpty(maps.Clone(last.Labels), host.Labels)
	out.Annotations = sameEmpty(maps.Clone(last.Annotations), host.Annotations)
	for _, k := range hostOnlyAnnotations {
		// Not on the site pod, and no difference to write there.
		if v, ok := host.Annotations[k]; ok {
			out.Annotations = maps.Clone(out.Annotations)
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	if !recorded {
		// Virtual-kubelet asks for the update that writes the record (SiteUpdate) the
		// first time it looks: a label the host drops later is then known to be vk8s'.
		out.Annotations = maps.Clone(out.Annotations)
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[vk8sv1.AnnotationLastApplied] = ""
	}
	for _, cs := range [][]corev1.Container{out.Spec.InitContainers, out.Spec.Containers} {
		for i := range cs {
			if img, ok := last.Images[cs[i].Name]; ok {
				cs[i].Image = img
			}
		}
	}
	out.Spec.ActiveDeadlineSeconds = clonePtr(last.ActiveDeadlineSeconds)
	out.Status = HostStatus(host, site)
	return out
}

// HostLabels are a site pod's labels without those vk8s added.
func HostLabels(siteLabels map[string]string) map[string]string {
	if siteLabels == nil {
		return nil
	}
	out := maps.Clone(siteLabels)
	for _, k := range managedLabels {
		delete(out, k)
	}
	return out
}

// SiteUpdate returns the site pod updated with what the host pod changed, since vk8s last
// wrote the site pod, among the fields Kubernetes lets a pod update change, and whether
// anything did. It is a three-way merge, as kubectl apply's: a label or annotation the
// host set or changed is written, one vk8s wrote before and the host no longer has is
// removed, and every other key of the site pod stays (what the site's admission or
// controllers added, or rewrote); an image is written only when the host's changed, so
// a site's registry mirror keeps its rewrite. The update records what it writes
// (AnnotationLastApplied).
func SiteUpdate(host, site *corev1.Pod) (*corev1.Pod, bool) {
	now := appliedOf(host)
	last, _ := lastApplied(site, now)
	want := site.DeepCopy()
	labels := threeWay(last.Labels, now.Labels, HostLabels(site.Labels))
	for _, k := range managedLabels {
		if v, ok := site.Labels[k]; ok {
			labels[k] = v
		}
	}
	want.Labels = labels
	want.Annotations = threeWay(last.Annotations, now.Annotations, siteAnnotations(site.Annotations))
	record(want, now)
	for _, cs := range [][]corev1.Container{want.Spec.InitContainers, want.Spec.Containers} {
		for i := range cs {
			if img, ok := now.Images[cs[i].Name]; ok && img != last.Images[cs[i].Name] {
				cs[i].Image = img
			}
		}
	}
	if !ptrEqual(now.ActiveDeadlineSeconds, last.ActiveDeadlineSeconds) {
		want.Spec.ActiveDeadlineSeconds = clonePtr(now.ActiveDeadlineSeconds)
	}
	changed := !maps.Equal(want.Labels, site.Labels) || !maps.Equal(want.Annotations, site.Annotations) ||
		!sameImages(want.Spec.Containers, site.Spec.Containers) ||
		!sameImages(want.Spec.InitContainers, site.Spec.InitContainers) ||
		!ptrEqual(want.Spec.ActiveDeadlineSeconds, site.Spec.ActiveDeadlineSeconds)
	return want, changed
}

// applied is what vk8s writes of a host pod's fields that a pod update may change, and
// that it keeps following once the site pod exists: the labels (without vk8s' own), the
// annotations, the images by container name (init containers' too: names are unique
// across both), and the active deadline. A site pod records the last one written in
// AnnotationLastApplied (encoding/json writes map keys sorted, so equal records are equal
// strings).
type applied struct {
	Labels                map[string]string `json:"labels,omitempty"`
	Annotations           map[string]string `json:"annotations,omitempty"`
	Images                map[string]string `json:"images,omitempty"`
	ActiveDeadlineSeconds *int64            `json:"activeDeadlineSeconds,omitempty"`
}

// appliedOf is what vk8s writes for host pod p.
func appliedOf(p *corev1.Pod) applied {
	return applied{
		Labels:                HostLabels(p.Labels),
		Annotations:           siteAnnotations(p.Annotations),
		Images:                images(&p.Spec),
		ActiveDeadlineSeconds: p.Spec.ActiveDeadlineSeconds,
	}
}

// record writes a into obj's AnnotationLastApplied.
func record(obj metav1.Object, a applied) {
	raw, err := json.Marshal(a)
	if err != nil {
		return // maps of strings and an integer always encode
	}
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[vk8sv1.AnnotationLastApplied] = string(raw)
	obj.SetAnnotations(annotations)
}

// recorded reads the AnnotationLastApplied of annotations, and says whether there is one
// it can read.
func recorded(annotations map[string]string) (applied, bool) {
	var a applied
	raw, ok := annotations[vk8sv1.AnnotationLastApplied]
	if !ok || json.Unmarshal([]byte(raw), &a) != nil {
		return applied{}, false
	}
	return a, true
}

// lastApplied is what vk8s last wrote on site pod site, from its AnnotationLastApplied,
// and whether it has one it can read. Without (a site pod made before vk8s kept it),
// vk8s takes the site's values of what the host pod now has (now) for its last write:
// where site and host differ the host's value is written, as vk8s did before, and what
// only the site has stays.
func lastApplied(site *corev1.Pod, now applied) (applied, bool) {
	if a, ok := recorded(site.Annotations); ok {
		return a, true
	}
	return applied{
		Labels:                pick(HostLabels(site.Labels), now.Labels),
		Annotations:           pick(site.Annotations, now.Annotations),
		Images:                images(&site.Spec),
		ActiveDeadlineSeconds: site.Spec.ActiveDeadlineSeconds,
	}, false
}

// threeWay is live with what changed from last to now: a key now has with another value
// than last's (or that last lacks) is set, a key last has and now lacks is removed, and
// every other key of live stays as it is, whatever its value.
func threeWay(last, now, live map[string]string) map[string]string {
	out := maps.Clone(live)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range now {
		if old, ok := last[k]; !ok || old != v {
			out[k] = v
		}
	}
	for k := range last {
		if _, ok := now[k]; !ok {
			delete(out, k)
		}
	}
	return out
}

// pick is the entries of m whose keys keys has; nil when none.
func pick(m, keys map[string]string) map[string]string {
	var out map[string]string
	for k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// siteAnnotations are annotations without vk8s' record, which is the site pod's own, and
// without the trace context of the host pod's admission, which is the host's: it would
// tell the site nothing, and join the site's spans of every later update of the pod to
// that one admission.
func siteAnnotations(in map[string]string) map[string]string {
	out := maps.Clone(in)
	for _, k := range hostOnlyAnnotations {
		delete(out, k)
	}
	delete(out, vk8sv1.AnnotationLastApplied)
	return out
}

// hostOnlyAnnotations are the host pod's annotations its site pod does not get.
var hostOnlyAnnotations = []string{vk8sv1.AnnotationTraceParent}

// images maps the names of a pod's containers and init containers to their images.
func images(spec *corev1.PodSpec) map[string]string {
	out := map[string]string{}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			out[c.Name] = c.Image
		}
	}
	return out
}

// sameEmpty is m, or like when both are empty: virtual-kubelet compares with cmp.Equal,
// which tells a nil map from an empty one.
func sameEmpty(m, like map[string]string) map[string]string {
	if len(m) == 0 && len(like) == 0 {
		return like
	}
	return m
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func sameImages(a, b []corev1.Container) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.Container) bool { return x.Name == y.Name && x.Image == y.Image })
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

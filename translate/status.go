package translate

import (
	"maps"
	"slices"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Reasons vk8s writes into host pod statuses and conditions.
const (
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
)

// managedLabels are the labels vk8s adds to site pods; the host pod does not have them.
var managedLabels = []string{vk8sv1.LabelTenant, vk8sv1.LabelHostNamespace, vk8sv1.LabelHostPodUID}

// HostStatus is the status the host pod should show for its site pod: the site's, as it
// is (phase, conditions, container and init-container statuses with restarts, pod IP,
// start time), except the QoS class, which the host computed at creation and may not
// change, and the host-only condition vk8s keeps.
func HostStatus(host, site *corev1.Pod) corev1.PodStatus {
	out := *site.Status.DeepCopy()
	out.QOSClass = host.Status.QOSClass
	out.NominatedNodeName = host.Status.NominatedNodeName
	out.Conditions = slices.DeleteFunc(out.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == vk8sv1.ConditionSiteSynced || c.Type == vk8sv1.ConditionStatusStale
	})
	return out
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
// taken from the site pod, and the site's status.
func HostView(host, site *corev1.Pod) *corev1.Pod {
	out := host.DeepCopy()
	out.Labels = HostLabels(site.Labels)
	out.Annotations = maps.Clone(site.Annotations)
	copyImages(out.Spec.Containers, site.Spec.Containers)
	copyImages(out.Spec.InitContainers, site.Spec.InitContainers)
	out.Spec.ActiveDeadlineSeconds = site.Spec.ActiveDeadlineSeconds
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

// SiteUpdate returns the site pod updated with what the host pod changed among the fields
// Kubernetes lets a pod update change, and whether anything did.
func SiteUpdate(host, site *corev1.Pod) (*corev1.Pod, bool) {
	want := site.DeepCopy()
	labels := maps.Clone(host.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for _, k := range managedLabels {
		if v, ok := site.Labels[k]; ok {
			labels[k] = v
		}
	}
	want.Labels = labels
	want.Annotations = maps.Clone(host.Annotations)
	copyImages(want.Spec.Containers, host.Spec.Containers)
	copyImages(want.Spec.InitContainers, host.Spec.InitContainers)
	want.Spec.ActiveDeadlineSeconds = host.Spec.ActiveDeadlineSeconds
	changed := !maps.Equal(want.Labels, site.Labels) || !maps.Equal(want.Annotations, site.Annotations) ||
		!sameImages(want.Spec.Containers, site.Spec.Containers) ||
		!sameImages(want.Spec.InitContainers, site.Spec.InitContainers) ||
		!ptrEqual(want.Spec.ActiveDeadlineSeconds, site.Spec.ActiveDeadlineSeconds)
	return want, changed
}

// copyImages sets the image of every container of dst to that of src's container of the
// same name.
func copyImages(dst, src []corev1.Container) {
	byName := map[string]string{}
	for _, c := range src {
		byName[c.Name] = c.Image
	}
	for i := range dst {
		if img, ok := byName[dst[i].Name]; ok {
			dst[i].Image = img
		}
	}
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

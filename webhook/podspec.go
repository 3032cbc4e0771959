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

package webhook

import (
	"slices"
	"strconv"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// virtualNodeToleration tolerates the taint of every virtual node.
var virtualNodeToleration = corev1.Toleration{
	Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
}

// tolerateVirtualNodes adds virtualNodeToleration unless a toleration already covers it.
func tolerateVirtualNodes(spec *corev1.PodSpec) {
	taint := &corev1.Taint{Key: vk8sv1.TaintKey, Value: vk8sv1.TaintValue, Effect: corev1.TaintEffectNoSchedule}
	for i := range spec.Tolerations {
		if spec.Tolerations[i].ToleratesTaint(logr.Discard(), taint, false) {
			return
		}
	}
	spec.Tolerations = append(spec.Tolerations, virtualNodeToleration)
}

// outageTaints are the taints the host's node lifecycle controller puts on a node that
// stops reporting: on a virtual node, when the provider is down or cannot reach the site.
var outageTaints = []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable}

// tolerateOutages makes a pod of a vK8s namespace tolerate outageTaints for ever (SPEC §4,
// "Disconnection": nothing is evicted). The API server's DefaultTolerationSeconds gives
// every pod 300 s of them: on a host whose node lifecycle controller evicts (any host with
// healthy nodes of its own), a provider down for 5 minutes would get every federated pod
// evicted and, once it is back, their site pods deleted: the whole fleet restarted. The
// pod runs on its site, whose own nodes decide its fate; the host's eviction can only
// restart it. A toleration of the taint with tolerationSeconds (the default's, or the
// manifest's) loses its limit; one without is added.
func tolerateOutages(spec *corev1.PodSpec) {
	for _, key := range outageTaints {
		taint := &corev1.Taint{Key: key, Effect: corev1.TaintEffectNoExecute}
		covered := false
		for i := range spec.Tolerations {
			t := &spec.Tolerations[i]
			if !t.ToleratesTaint(logr.Discard(), taint, false) {
				continue
			}
			t.TolerationSeconds = nil
			covered = true
		}
		if !covered {
			spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
		}
	}
}

// restrictSites makes every term of spec's required node affinity require vk8s.io/site In
// sites, in place of any vk8s.io/site requirement it had: terms are ORed, so each keeps
// its own constraints and gains the site's. Without terms it adds one.
func restrictSites(spec *corev1.PodSpec, sites []string) {
	req := corev1.NodeSelectorRequirement{Key: vk8sv1.LabelSite, Operator: corev1.NodeSelectorOpIn, Values: slices.Clone(sites)}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil || len(na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms) == 0 {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}}
	}
	terms := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i := range terms {
		exprs := slices.DeleteFunc(slices.Clone(terms[i].MatchExpressions), func(r corev1.NodeSelectorRequirement) bool {
			return r.Key == vk8sv1.LabelSite
		})
		terms[i].MatchExpressions = append(exprs, req)
	}
}

// siteRestriction returns the values of the vk8s.io/site In requirement of the first term
// of spec's required node affinity, or nil.
func siteRestriction(spec *corev1.PodSpec) []string {
	if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil || spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return nil
	}
	for _, r := range terms[0].MatchExpressions {
		if r.Key == vk8sv1.LabelSite && r.Operator == corev1.NodeSelectorOpIn {
			return r.Values
		}
	}
	return nil
}

// federatedTemplate says whether a pod template carries what workload admission adds: the
// virtual node toleration and the site restriction.
func federatedTemplate(spec *corev1.PodSpec, sites []string) bool {
	return slices.Contains(spec.Tolerations, virtualNodeToleration) && slices.Equal(siteRestriction(spec), sites)
}

// carryOver adds to out, the pod spec an Override's template made, what pod has and
// template (the pod's workload template) has not: what the API server's admission and
// the workload's controller added to the pod after it left its template. Overrides apply
// at the template level, so these must survive them:
//
//   - volumes (the ServiceAccount token volume kube-api-access-*) and their mounts: in every
//     container when the pod mounts them in every container, as ServiceAccount admission
//     does, else in the containers of the same name;
//   - containers and init containers injected by other webhooks (sidecars);
//   - tolerations (DefaultTolerationSeconds' not-ready and unreachable, the DaemonSet
//     controller's) and image pull secrets (the ServiceAccount's);
//   - the service account name, scheduler name and node name when out leaves them empty;
//   - priority and preemption policy when out keeps the pod's priority class (Priority
//     admission resolved them); it returns true when out names another class, whose
//     priority the caller must resolve;
//   - the runtime class' overhead when out keeps the pod's runtime class;
//   - the required node affinity, when the controller replaced the template's (the
//     DaemonSet controller pins each pod to its node that way).
//
// template nil means a pod without a workload: then only what admission is known to add
// (token volumes, DefaultTolerationSeconds' tolerations) counts as added.
func carryOver(out, pod, template *corev1.PodSpec) (resolvePriority bool) {
	if template == nil {
		template = bareTemplate(pod)
	}
	hasVolume := func(in []corev1.Volume, name string) bool {
		return slices.ContainsFunc(in, func(v corev1.Volume) bool { return v.Name == name })
	}
	for _, v := range pod.Volumes {
		if hasVolume(template.Volumes, v.Name) || hasVolume(out.Volumes, v.Name) {
			continue
		}
		out.Volumes = append(out.Volumes, v)
		carryMounts(out, pod, template, v.Name)
	}
	out.InitContainers = carryContainers(out.InitContainers, pod.InitContainers, template.InitContainers)
	out.Containers = carryContainers(out.Containers, pod.Containers, template.Containers)
	hasToleration := func(in []corev1.Toleration, t *corev1.Toleration) bool {
		return slices.ContainsFunc(in, func(x corev1.Toleration) bool { return x.MatchToleration(t) })
	}
	for i := range pod.Tolerations {
		if t := &pod.Tolerations[i]; !hasToleration(template.Tolerations, t) && !hasToleration(out.Tolerations, t) {
			out.Tolerations = append(out.Tolerations, *t)
		}
	}
	for _, s := range pod.ImagePullSecrets {
		if !slices.Contains(template.ImagePullSecrets, s) && !slices.Contains(out.ImagePullSecrets, s) {
			out.ImagePullSecrets = append(out.ImagePullSecrets, s)
		}
	}
	if out.ServiceAccountName == "" {
		out.ServiceAccountName, out.DeprecatedServiceAccount = pod.ServiceAccountName, pod.DeprecatedServiceAccount
	}
	if out.SchedulerName == "" {
		out.SchedulerName = pod.SchedulerName
	}
	if out.NodeName == "" {
		out.NodeName = pod.NodeName
	}
	if out.PriorityClassName == "" || out.PriorityClassName == pod.PriorityClassName {
		out.PriorityClassName, out.Priority, out.PreemptionPolicy = pod.PriorityClassName, pod.Priority, pod.PreemptionPolicy
	} else {
		out.Priority, out.PreemptionPolicy = nil, nil
		resolvePriority = true
	}
	if out.RuntimeClassName == nil || (pod.RuntimeClassName != nil && *out.RuntimeClassName == *pod.RuntimeClassName) {
		out.RuntimeClassName, out.Overhead = pod.RuntimeClassName, pod.Overhead
	}
	if podReq, tmplReq := requiredNodeAffinity(pod), requiredNodeAffinity(template); !apiequality.Semantic.DeepEqual(podReq, tmplReq) {
		if out.Affinity == nil {
			out.Affinity = &corev1.Affinity{}
		}
		if out.Affinity.NodeAffinity == nil {
			out.Affinity.NodeAffinity = &corev1.NodeAffinity{}
		}
		out.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = podReq.DeepCopy()
	}
	return resolvePriority
}

// carryMounts mounts the added volume name in out's containers as pod mounts it.
func carryMounts(out, pod, template *corev1.PodSpec, name string) {
	everywhere, path := true, ""
	var mounts []corev1.VolumeMount
	for _, cs := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		for _, c := range cs {
			i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == name })
			if i < 0 || (path != "" && c.VolumeMounts[i].MountPath != path) {
				everywhere = false
				continue
			}
			path = c.VolumeMounts[i].MountPath
			mounts = append(mounts, c.VolumeMounts[i])
		}
	}
	if path == "" {
		return
	}
	for _, cs := range [][]corev1.Container{out.InitContainers, out.Containers} {
		for i := range cs {
			c := &cs[i]
			var m *corev1.VolumeMount
			if everywhere {
				m = &mounts[0]
			} else if src := findContainer(pod, c.Name); src != nil && findContainer(template, c.Name) != nil {
				if j := slices.IndexFunc(src.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == name }); j >= 0 {
					m = &src.VolumeMounts[j]
				}
			}
			if m != nil && !slices.ContainsFunc(c.VolumeMounts, func(x corev1.VolumeMount) bool { return x.Name == name || x.MountPath == m.MountPath }) {
				c.VolumeMounts = append(c.VolumeMounts, *m)
			}
		}
	}
}

// carryContainers appends to out the containers of pod that template lacks (injected) and
// out lacks too.
func carryContainers(out, pod, template []corev1.Container) []corev1.Container {
	has := func(cs []corev1.Container, name string) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	}
	for _, c := range pod {
		if !has(template, c.Name) && !has(out, c.Name) {
			out = append(out, *c.DeepCopy())
		}
	}
	return out
}

func findContainer(spec *corev1.PodSpec, name string) *corev1.Container {
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	return nil
}

func requiredNodeAffinity(spec *corev1.PodSpec) *corev1.NodeSelector {
	if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil {
		return nil
	}
	return spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
}

// bareTemplate returns pod's spec without what admission is known to add: projected
// ServiceAccount token volumes and their mounts, and DefaultTolerationSeconds' tolerations.
func bareTemplate(pod *corev1.PodSpec) *corev1.PodSpec {
	t := pod.DeepCopy()
	token := map[string]bool{}
	t.Volumes = slices.DeleteFunc(t.Volumes, func(v corev1.Volume) bool {
		if v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil }) {
			token[v.Name] = true
		}
		return token[v.Name]
	})
	for _, cs := range [][]corev1.Container{t.InitContainers, t.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return token[m.Name] })
		}
	}
	t.Tolerations = slices.DeleteFunc(t.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Effect == corev1.TaintEffectNoExecute && tol.TolerationSeconds != nil &&
			(tol.Key == corev1.TaintNodeNotReady || tol.Key == corev1.TaintNodeUnreachable)
	})
	return t
}

// sameIdentity says whether two pods have the same name, generateName, namespace, UID and
// owner references: the webhook never changes them.
func sameIdentity(a, b *metav1.ObjectMeta) bool {
	return a.Name == b.Name && a.GenerateName == b.GenerateName && a.Namespace == b.Namespace && a.UID == b.UID &&
		apiequality.Semantic.DeepEqual(a.OwnerReferences, b.OwnerReferences)
}

// atoiNonNegative parses a non-negative decimal int.
func atoiNonNegative(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

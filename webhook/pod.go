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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/placement"
)

// podOwner is what pod admission knows of a pod's workload.
type podOwner struct {
	// kind of the pod's controller: ReplicaSet, StatefulSet, DaemonSet, Job; empty for a
	// pod without one (or with one vk8s does not know), placed as a bare pod.
	kind string
	// direct is the pod's controller; top the workload whose annotations federate the pod
	// (a ReplicaSet's Deployment, else direct).
	direct, top client.Object
	// selector and template are direct's.
	selector *metav1.LabelSelector
	template *corev1.PodTemplateSpec
}

// Placement rules, the values of the rule label of vk8s_webhook_placements_total.
const (
	ruleDeficit   = "deficit"
	ruleOrdinal   = "ordinal"
	ruleDaemonSet = "daemonset"
	ruleFewest    = "fewest"
	ruleNode      = "node"
	ruleKept      = "kept"
)

// admitPod is the mutating handler of pods created in vK8s namespaces (SPEC §4,
// "Placement at admission"): it chooses the pod's site, pins it there, and applies the
// site's Override and flavor.
func (a *admitter) admitPod(ctx context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := a.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	out, warnings, err := a.federatePod(ctx, pod, ptr.Deref(req.DryRun, false))
	switch {
	case err != nil:
		return a.answer(ctx, err)
	case out == nil:
		return admission.Allowed("left alone")
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return a.answer(ctx, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(warnings...)
}

// federatePod returns the pod to create, or nil to leave it alone. A dry run places the pod
// as a real one would be and reserves nothing.
func (a *admitter) federatePod(ctx context.Context, pod *corev1.Pod, dryRun bool) (*corev1.Pod, []string, error) {
	owner, err := a.podOwner(ctx, pod)
	if err != nil {
		return nil, nil, err
	}
	annotations, strict := pod.Annotations, federation.Strictness(federation.Strict)
	if owner.top != nil {
		// The workload's annotations were checked at its admission; what vanished since
		// must not stop its pods.
		annotations, strict = owner.top.GetAnnotations(), federation.Lenient
	}
	fed, err := a.state.Resolver.Resolve(ctx, pod.Namespace, annotations, strict)
	if err != nil || fed == nil {
		return nil, nil, err
	}
	warnings := fed.Warnings
	if owner.kind == "DaemonSet" {
		warnings = append(warnings, fed.KeepCustomerEdge()...)
	}
	if len(fed.Sites) == 0 {
		return nil, nil, noSites(fed, annotations, owner.kind == "DaemonSet")
	}
	site, slot, rule, err := a.place(ctx, pod, owner, fed, annotations, a.reserve(dryRun))
	if err != nil {
		return nil, nil, err
	}
	if site == "" {
		// Bound to a host node that is not a virtual node: not vk8s' to place.
		return nil, nil, nil
	}
	out, err := a.applySite(ctx, pod, owner, fed, site)
	if err != nil {
		return nil, nil, err
	}
	if slot > 0 {
		out.Annotations[vk8sv1.AnnotationSlot] = strconv.Itoa(slot)
		if owner.kind == "ReplicaSet" {
			// Scale-downs take the highest slots first, so every site keeps its lowest
			// ones and the per-site counts stay even (the rebalancer owns it afterwards).
			out.Annotations[corev1.PodDeletionCost] = strconv.Itoa(-slot)
		}
	}
	setTraceParent(ctx, out.Annotations)
	if !sameIdentity(&pod.ObjectMeta, &out.ObjectMeta) {
		return nil, nil, errors.New("internal error: admission would change the pod's identity")
	}
	a.metrics.placements.WithLabelValues(rule).Inc()
	if len(fed.Warnings) > 0 && owner.top != nil && a.recorder != nil {
		a.recorder.Eventf(owner.top, nil, corev1.EventTypeWarning, "FederationIncomplete", "AdmitPod", "%s", strings.Join(fed.Warnings, "; "))
	}
	return out, warnings, nil
}

// setTraceParent records the admission's span context (W3C traceparent) in a placed
// pod's annotations, so that the provider's spans for the pod join this trace. The key is
// admission's: without a span to record (tracing is off), a value the pod came with
// (copied from another pod) is removed rather than joining an unrelated trace.
func setTraceParent(ctx context.Context, annotations map[string]string) {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	if tp := c.Get("traceparent"); tp != "" {
		annotations[vk8sv1.AnnotationTraceParent] = tp
	} else {
		delete(annotations, vk8sv1.AnnotationTraceParent)
	}
}

// podOwner finds the pod's controller and the workload above it, through the cache and,
// when the cache does not have them yet, the API server.
func (a *admitter) podOwner(ctx context.Context, pod *corev1.Pod) (podOwner, error) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return podOwner{}, nil
	}
	var direct client.Object
	switch {
	case ref.Kind == "ReplicaSet" && strings.HasPrefix(ref.APIVersion, "apps/"):
		direct = &appsv1.ReplicaSet{}
	case ref.Kind == "StatefulSet" && strings.HasPrefix(ref.APIVersion, "apps/"):
		direct = &appsv1.StatefulSet{}
	case ref.Kind == "DaemonSet" && strings.HasPrefix(ref.APIVersion, "apps/"):
		direct = &appsv1.DaemonSet{}
	case ref.Kind == "Job" && strings.HasPrefix(ref.APIVersion, "batch/"):
		direct = &batchv1.Job{}
	default:
		return podOwner{}, nil
	}
	if err := a.getOwned(ctx, pod.Namespace, ref, direct); err != nil {
		return podOwner{}, err
	}
	w := asWorkload(direct)
	o := podOwner{kind: ref.Kind, direct: direct, top: direct, selector: w.selector, template: w.template}
	if up := metav1.GetControllerOfNoCopy(direct); up != nil && o.kind == "ReplicaSet" && up.Kind == "Deployment" && strings.HasPrefix(up.APIVersion, "apps/") {
		d := &appsv1.Deployment{}
		if err := a.getOwned(ctx, pod.Namespace, up, d); err != nil {
			return podOwner{}, err
		}
		o.top = d
	}
	return o, nil
}

// getOwned reads the owner ref names into obj, from the cache or else the API server, and
// checks its UID.
func (a *admitter) getOwned(ctx context.Context, namespace string, ref *metav1.OwnerReference, obj client.Object) error {
	key := client.ObjectKey{Namespace: namespace, Name: ref.Name}
	err := a.cache.Get(ctx, key, obj)
	if err == nil && obj.GetUID() == ref.UID {
		return nil
	}
	if err != nil && client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("get %s %s: %w", ref.Kind, key, err)
	}
	if err := a.api.Get(ctx, key, obj); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return federation.Invalid(reasonPlacement, "metadata.ownerReferences", ref.Kind+"/"+ref.Name,
				fmt.Sprintf("the pod's %s does not exist", ref.Kind), "create pods through an existing workload")
		}
		return fmt.Errorf("get %s %s: %w", ref.Kind, key, err)
	}
	if obj.GetUID() != ref.UID {
		return federation.Invalid(reasonPlacement, "metadata.ownerReferences", ref.Kind+"/"+ref.Name,
			fmt.Sprintf("the pod's %s was replaced (UID %s, not %s)", ref.Kind, obj.GetUID(), ref.UID), "create pods through the current workload")
	}
	return nil
}

// place chooses the pod's site by SPEC's rules; it returns the site, the pod's slot (0:
// none) and the rule that chose. An empty site leaves the pod alone.
func (a *admitter) place(ctx context.Context, pod *corev1.Pod, owner podOwner, fed *federation.Federation, annotations map[string]string, reserve reserveFunc) (string, int, string, error) {
	if pod.Spec.NodeName != "" {
		site, err := a.siteOfNode(ctx, pod.Spec.NodeName)
		if err == nil && site != "" && !slices.Contains(fed.Sites, site) {
			return "", 0, "", nodeOutsideSites(fed, owner, annotations, "spec.nodeName", pod.Spec.NodeName, site)
		}
		return site, 0, ruleNode, err
	}
	if s := pod.Labels[vk8sv1.LabelSite]; s != "" && slices.Contains(fed.Sites, s) {
		// Admitted before (an exported pod created again): it stays.
		return s, 0, ruleKept, nil
	}
	switch owner.kind {
	case "DaemonSet":
		node := daemonPodNode(pod)
		if node == "" {
			return "", 0, "", federation.Invalid(reasonPlacement, "spec.affinity.nodeAffinity", "", "a DaemonSet pod without its node",
				"let the DaemonSet controller create the pods")
		}
		site, err := a.siteOfNode(ctx, node)
		if err == nil && site != "" && !slices.Contains(fed.Sites, site) {
			return "", 0, "", nodeOutsideSites(fed, owner, annotations, "spec.affinity.nodeAffinity (the DaemonSet controller's node)", node, site)
		}
		return site, 0, ruleDaemonSet, err
	case "StatefulSet":
		if i, ok := placement.Ordinal(pod); ok {
			if site, ok := a.ordinalPlacement(owner, fed).SiteOfOrdinal(i); ok {
				return site, 0, ruleOrdinal, nil
			}
		}
	case "Job":
		job := owner.direct.(*batchv1.Job)
		if i, ok := atoiNonNegative(pod.Annotations[batchv1.JobCompletionIndexAnnotation]); ok && indexed(&job.Spec) {
			if site, ok := a.ordinalPlacement(owner, fed).SiteOfOrdinal(i); ok {
				return site, 0, ruleOrdinal, nil
			}
		}
		return a.placeJobPod(ctx, pod, owner, fed, job, reserve)
	case "":
		site, _, err := reserve(federation.NamespaceKey(pod.Namespace), a.visible(ctx, pod.Namespace, "", false),
			func(counts map[string]int, _ map[string]map[int]bool) (string, int, string, error) {
				return placement.ChooseFewest(fed.Sites, counts), 0, pod.Name, nil
			})
		return site, 0, ruleFewest, err
	}
	plan := a.deficitPlacement(owner, fed)
	site, slot, err := reserve(federation.OwnerKey(owner.direct.GetUID()), a.visible(ctx, pod.Namespace, string(owner.direct.GetUID()), false),
		func(counts map[string]int, used map[string]map[int]bool) (string, int, string, error) {
			s := placement.ChooseByDeficit(plan, counts)
			return s, placement.FreeSlot(used[s]), "", nil
		})
	return site, slot, ruleDeficit, err
}

// reserveFunc is Reservations.Place, or Peek for a dry run.
type reserveFunc func(key string, visible func() ([]placement.Visible, error), choose placement.Choose) (string, int, error)

func (a *admitter) reserve(dryRun bool) reserveFunc {
	if dryRun {
		return a.state.Reservations.Peek
	}
	return a.state.Reservations.Place
}

// placeJobPod places a pod of a non-indexed Job on the site that is furthest from its
// share (placement.JobLayout), counting the pods of the Job placed there that have not
// failed, running or succeeded, so that every site completes exactly its share.
func (a *admitter) placeJobPod(ctx context.Context, pod *corev1.Pod, owner podOwner, fed *federation.Federation, job *batchv1.Job, reserve reserveFunc) (string, int, string, error) {
	sites := len(fed.Sites)
	p := perSiteOf(owner.top.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite], ptr.Deref(job.Spec.Parallelism, 1), sites)
	var completions *int32
	if job.Spec.Completions != nil {
		c := perSiteOf(owner.top.GetAnnotations()[vk8sv1.AnnotationCompletionsPerSite], *job.Spec.Completions, sites)
		completions = &c
	}
	layout := placement.JobLayout(fed.Sites, p, completions)
	uid := owner.direct.GetUID()
	site, slot, err := reserve(federation.OwnerKey(uid), a.visible(ctx, pod.Namespace, string(uid), completions != nil),
		func(counts map[string]int, used map[string]map[int]bool) (string, int, string, error) {
			s := placement.ChooseByDeficit(layout, counts)
			return s, placement.FreeSlot(used[s]), "", nil
		})
	return site, slot, ruleDeficit, err
}

// visible lists the pods the cache holds of owner (or, without one, of the namespace), as
// placement counts them: failed pods, and succeeded ones unless succeeded, as Ended.
func (a *admitter) visible(ctx context.Context, namespace, ownerUID string, succeeded bool) func() ([]placement.Visible, error) {
	return func() ([]placement.Visible, error) {
		// Read only: placement only counts.
		opts := []client.ListOption{client.InNamespace(namespace), client.UnsafeDisableDeepCopy}
		if ownerUID != "" {
			opts = append(opts, client.MatchingFields{federation.IndexPodOwner: ownerUID})
		}
		var list corev1.PodList
		if err := a.cache.List(ctx, &list, opts...); err != nil {
			return nil, fmt.Errorf("list pods in %s: %w", namespace, err)
		}
		out := make([]placement.Visible, 0, len(list.Items))
		for i := range list.Items {
			p := &list.Items[i]
			if p.DeletionTimestamp != nil || a.state.Deleted.Has(p) {
				continue
			}
			// A pod that ended still ends its reservation: a Job's pod that failed before
			// any other admission saw it must not count again on its site.
			ended := p.Status.Phase == corev1.PodFailed || (p.Status.Phase == corev1.PodSucceeded && !succeeded)
			out = append(out, placement.Visible{Site: p.Labels[vk8sv1.LabelSite], Slot: placement.Slot(p), Name: p.Name, Ended: ended})
		}
		return out, nil
	}
}

// deficitPlacement is the per-site plan that ReplicaSet pods fill.
func (a *admitter) deficitPlacement(owner podOwner, fed *federation.Federation) placement.Layout {
	plan, _ := fed.Plan(a.workloadReplicasPerSite(owner.top, fed))
	return placement.NewLayout(plan, nil)
}

// ordinalPlacement is the block plan of a StatefulSet's ordinals or an indexed Job's
// completion indexes, in the order recorded on the workload.
func (a *admitter) ordinalPlacement(owner podOwner, fed *federation.Federation) placement.Layout {
	var previous []string
	if p, err := placement.ParseLayout(owner.top.GetAnnotations()[vk8sv1.AnnotationPlacement]); err == nil {
		previous = p.Sites
	}
	if job, ok := owner.direct.(*batchv1.Job); ok {
		c := perSiteOf(owner.top.GetAnnotations()[vk8sv1.AnnotationCompletionsPerSite], ptr.Deref(job.Spec.Completions, 1), len(fed.Sites))
		plan, _ := placement.PlanReplicas(fed.Sites, c, nil)
		return placement.NewLayout(plan, previous)
	}
	plan, _ := fed.Plan(a.workloadReplicasPerSite(owner.top, fed))
	return placement.NewLayout(plan, previous)
}

// workloadReplicasPerSite returns R of a Deployment, StatefulSet or ReplicaSet: its
// annotation when it agrees with spec.replicas, else derived from spec.replicas (after a
// write through the scale subresource, before the annotation follows).
func (a *admitter) workloadReplicasPerSite(top client.Object, fed *federation.Federation) int32 {
	w := asWorkload(top)
	if w == nil || w.replicas == nil {
		return 0
	}
	total := ptr.Deref(*w.replicas, 1)
	keep, err := strconv.ParseInt(top.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite], 10, 32)
	if err == nil {
		if plan, err := fed.Plan(int32(keep)); err == nil && plan.Total == total {
			return int32(keep)
		}
	}
	r, err := fed.PerSite(total, int32(keep), false)
	if err != nil {
		return int32(keep)
	}
	return r
}

// perSiteOf returns the per-site value an annotation holds, or total over sites rounded up.
func perSiteOf(annotation string, total int32, sites int) int32 {
	if v, ok := atoiNonNegative(annotation); ok {
		return int32(v)
	}
	if sites == 0 {
		return 0
	}
	return (total + int32(sites) - 1) / int32(sites)
}

// nodeOutsideSites refuses a pod bound to node (field says how: spec.nodeName, or a
// DaemonSet controller's pin) of a site its virtual-sites do not select (SPEC §4: a
// workload runs on the union of the sites of its virtual-sites). annotations are those
// the pod's sites were resolved from (its workload's, or its own).
func nodeOutsideSites(f *federation.Federation, owner podOwner, annotations map[string]string, field, node, site string) error {
	from := fmt.Sprintf("its virtual-sites %q", annotations[vk8sv1.AnnotationVirtualSites])
	if strings.TrimSpace(annotations[vk8sv1.AnnotationVirtualSites]) == "" {
		from = fmt.Sprintf("its namespace's default virtual-site %q (VirtualKubernetes %s)", f.VirtualKubernetes.Spec.VirtualSite, f.VirtualKubernetes.Name)
	}
	why := fmt.Sprintf("node %s is on site %s, which is not among the pod's sites (%s, from %s)", node, site, strings.Join(f.Sites, ", "), from)
	fix := fmt.Sprintf("bind the pod to a node of its sites (kubectl get nodes -l %s), leave spec.nodeName empty so that vk8s places it, or name virtual-sites that select %s in %s",
		vk8sv1.LabelSite, site, vk8sv1.AnnotationVirtualSites)
	if owner.kind == "DaemonSet" {
		if f.SiteTypes[site] == vk8sv1.SiteTypeRegionalEdge {
			why = fmt.Sprintf("node %s is on site %s, which is RegionalEdge, and DaemonSets run on CustomerEdge sites only (its sites: %s, from %s)", node, site, strings.Join(f.Sites, ", "), from)
		}
		fix = fmt.Sprintf("the DaemonSet's template names sites that are no longer its own: restart it (kubectl -n %s rollout restart daemonset/%s), so that its template names its sites now and its controller leaves the other nodes",
			owner.top.GetNamespace(), owner.top.GetName())
	}
	return federation.Invalid(reasonNodeOutsideSites, field, node, why, fix)
}

// siteOfNode returns the site of a virtual node, or "" when the node is not one.
func (a *admitter) siteOfNode(ctx context.Context, name string) (string, error) {
	n := &corev1.Node{}
	if err := a.cache.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
		// The cache holds virtual nodes only.
		if client.IgnoreNotFound(err) != nil {
			return "", fmt.Errorf("get node %s: %w", name, err)
		}
		return "", nil
	}
	return n.Labels[vk8sv1.LabelSite], nil
}

// daemonPodNode returns the node the DaemonSet controller bound its pod to, through a
// required node affinity on the node's name.
func daemonPodNode(pod *corev1.Pod) string {
	req := requiredNodeAffinity(&pod.Spec)
	if req == nil {
		return ""
	}
	for _, t := range req.NodeSelectorTerms {
		for _, f := range t.MatchFields {
			if f.Key == metav1.ObjectNameField && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// applySite returns the pod as it runs on site: the site's Override applied at the
// template level with what admission and the controller added carried over (carryOver),
// the site's flavor, the virtual node toleration, the site pinned, the site and
// Override labels, and the Override's stamp (vk8sv1.AnnotationOverrideHash).
func (a *admitter) applySite(ctx context.Context, pod *corev1.Pod, owner podOwner, fed *federation.Federation, site string) (*corev1.Pod, error) {
	o := fed.Override(site)
	base := &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	applied, err := overrides.ApplyOverride(base, owner.selector, o)
	if err != nil {
		return nil, federation.Invalid(federation.ReasonOverride, federation.AnnotationPath(vk8sv1.AnnotationOverrides), strings.Join(fed.OverrideNames, ", "),
			fmt.Sprintf("on site %s: %v", site, err), "fix the Override's template labels so that the workload's selector matches them")
	}
	spec := &applied.Template.Spec
	if o != nil && o.Spec.DeploymentSpec.Template != nil {
		var tmpl *corev1.PodSpec
		if owner.template != nil {
			tmpl = &owner.template.Spec
		}
		if carryOver(spec, &pod.Spec, tmpl) {
			pc := &schedulingv1.PriorityClass{}
			if err := a.api.Get(ctx, client.ObjectKey{Name: spec.PriorityClassName}, pc); err != nil {
				if client.IgnoreNotFound(err) != nil {
					return nil, fmt.Errorf("get PriorityClass %s: %w", spec.PriorityClassName, err)
				}
				return nil, federation.Invalid(federation.ReasonOverride, fmt.Sprintf("Override %s spec.deploymentSpec.template.spec.priorityClassName", o.Name), spec.PriorityClassName,
					"the PriorityClass does not exist", "create it, or name an existing one (kubectl get priorityclasses)")
			}
			spec.Priority, spec.PreemptionPolicy = &pc.Value, pc.PreemptionPolicy
		}
	}
	spec, err = overrides.ApplyFlavor(spec, fed.Flavor, fed.SiteTypes[site])
	if err != nil {
		return nil, federation.Invalid(federation.ReasonFlavor, federation.AnnotationPath(vk8sv1.AnnotationWorkloadFlavor), fed.FlavorName,
			fmt.Sprintf("site %s is %s: %v", site, fed.SiteTypes[site], err), "create the WorkloadFlavor, or name an existing one")
	}
	tolerateVirtualNodes(spec)
	tolerateOutages(spec)
	if pod.Spec.NodeName == "" && owner.kind != "DaemonSet" {
		restrictSites(spec, []string{site})
	}
	out := pod.DeepCopy()
	out.Labels, out.Annotations, out.Spec = applied.Template.Labels, applied.Template.Annotations, *spec
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[vk8sv1.LabelSite] = site
	// What the per-site rollout compares with the site's current Override.
	out.Annotations[vk8sv1.AnnotationOverrideHash] = placement.Stamp(o)
	return out, nil
}

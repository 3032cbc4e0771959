package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
)

// workload adapts one kind of workload to what admission reads and changes in it.
type workload struct {
	obj  client.Object
	kind string
	// selector is nil for kinds without one (CronJobs; Jobs before the API server
	// generates theirs).
	selector *metav1.LabelSelector
	// template is the pod template; nil when admission must leave it alone.
	template *corev1.PodTemplateSpec
	// replicas points at spec.replicas of Deployments, StatefulSets and ReplicaSets.
	replicas **int32
	// job is a Job's spec or a CronJob's jobTemplate.spec; jobMeta a CronJob's
	// jobTemplate.metadata, whose annotations its Jobs carry.
	job     *batchv1.JobSpec
	jobMeta *metav1.ObjectMeta
	// jobPath is the path of job in the object, for messages.
	jobPath string
	// ordered: ordinals are dealt out in placement order (StatefulSets, indexed Jobs).
	ordered bool
	daemon  bool
	// notes are the admission warnings about the workload.
	notes []string
}

// newWorkloadObject returns an empty object of a workload kind, or nil.
func newWorkloadObject(kind string) client.Object {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "ReplicaSet":
		return &appsv1.ReplicaSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	case "Job":
		return &batchv1.Job{}
	case "CronJob":
		return &batchv1.CronJob{}
	}
	return nil
}

func asWorkload(obj client.Object) *workload {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &workload{obj: o, kind: "Deployment", selector: o.Spec.Selector, template: &o.Spec.Template, replicas: &o.Spec.Replicas}
	case *appsv1.StatefulSet:
		return &workload{obj: o, kind: "StatefulSet", selector: o.Spec.Selector, template: &o.Spec.Template, replicas: &o.Spec.Replicas, ordered: true}
	case *appsv1.ReplicaSet:
		return &workload{obj: o, kind: "ReplicaSet", selector: o.Spec.Selector, template: &o.Spec.Template, replicas: &o.Spec.Replicas}
	case *appsv1.DaemonSet:
		return &workload{obj: o, kind: "DaemonSet", selector: o.Spec.Selector, template: &o.Spec.Template, daemon: true}
	case *batchv1.Job:
		return &workload{obj: o, kind: "Job", selector: o.Spec.Selector, template: &o.Spec.Template, job: &o.Spec, jobPath: "spec",
			ordered: indexed(&o.Spec)}
	case *batchv1.CronJob:
		s := &o.Spec.JobTemplate.Spec
		return &workload{obj: o, kind: "CronJob", selector: s.Selector, template: &s.Template, job: s, jobMeta: &o.Spec.JobTemplate.ObjectMeta,
			jobPath: "spec.jobTemplate.spec", ordered: indexed(s)}
	}
	return nil
}

func indexed(s *batchv1.JobSpec) bool {
	return s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion
}

// controller returns obj's controller reference, or nil.
func controller(obj metav1.Object) *metav1.OwnerReference {
	return metav1.GetControllerOfNoCopy(obj)
}

// ownedByWorkload says whether obj is a ReplicaSet of a Deployment or a Job of a CronJob:
// its owner was admitted, and writes it from its own (admitted) template.
func ownedByWorkload(obj metav1.Object) bool {
	ref := controller(obj)
	return ref != nil && ((ref.Kind == "Deployment" && strings.HasPrefix(ref.APIVersion, "apps/")) ||
		(ref.Kind == "CronJob" && strings.HasPrefix(ref.APIVersion, "batch/")))
}

// admitWorkload is the mutating handler of Deployments, StatefulSets, ReplicaSets,
// DaemonSets, Jobs and CronJobs in vK8s namespaces (SPEC §4, "Replicas are per site").
func (a *admitter) admitWorkload(ctx context.Context, req admission.Request) admission.Response {
	obj := newWorkloadObject(req.Kind.Kind)
	if obj == nil {
		return admission.Allowed("not a workload")
	}
	if err := a.decoder.Decode(req, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if ownedByWorkload(obj) {
		return admission.Allowed("admitted with its owner")
	}
	var old *workload
	if req.Operation == admissionv1.Update {
		o := newWorkloadObject(req.Kind.Kind)
		if err := a.decoder.DecodeRaw(req.OldObject, o); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		old = asWorkload(o)
		if o.GetDeletionTimestamp() != nil {
			// Finalizers going away: never stand in the way of a deletion.
			return admission.Allowed("being deleted")
		}
	}
	w := asWorkload(obj)
	if old != nil && w.kind == "Job" {
		// A Job's pod template is immutable.
		w.template = nil
	}
	resp, rej, err := a.federateWorkload(ctx, req.Namespace, w, old)
	switch {
	case err != nil:
		return a.fail(ctx, err)
	case rej != nil:
		return a.deny(ctx, rej)
	case resp != nil:
		return *resp
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return a.fail(ctx, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(w.warnings()...)
}

// federateWorkload changes w in place: replicas, annotations, template. A non-nil response
// ends admission without changes (the namespace is not a vK8s namespace).
func (a *admitter) federateWorkload(ctx context.Context, namespace string, w, old *workload) (*admission.Response, *rejection, error) {
	annotations := w.obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	changed := func(key string) bool { return old == nil || old.obj.GetAnnotations()[key] != annotations[key] }
	fed, rej, err := a.resolver.resolve(ctx, namespace, annotations, changed)
	if err != nil || rej != nil {
		return nil, rej, err
	}
	if fed == nil {
		resp := admission.Allowed("not a vK8s namespace")
		return &resp, nil, nil
	}
	w.warn(fed.warnings...)
	if w.daemon {
		w.warn(keepCustomerEdge(fed)...)
	}
	if len(fed.sites) == 0 {
		return nil, noSites(fed, annotations, w.daemon), nil
	}
	for _, name := range fed.overrideNames {
		o := fed.overrides[name]
		if o == nil {
			continue
		}
		errs, warns := overrides.ValidateOverrideForWorkload(o, w.selector)
		if len(errs) > 0 {
			return nil, invalid(reasonOverride, annotationPath(vk8sv1.AnnotationOverrides), annotations[vk8sv1.AnnotationOverrides],
				fmt.Sprintf("Override %q does not fit this %s: %s", name, w.kind, errs.ToAggregate().Error()),
				"fix the Override, or remove it from the list"), nil
		}
		for _, warn := range warns {
			w.warn(fmt.Sprintf("Override %q: %s", name, warn))
		}
		if o.Spec.DeploymentSpec.Replicas != nil && w.replicas == nil {
			w.warn(fmt.Sprintf("Override %q: spec.deploymentSpec.replicas does not apply to a %s and is ignored", name, w.kind))
		}
	}

	var placement Placement
	var order []string
	if w.ordered {
		order = previousOrder(w, old)
	}
	switch {
	case w.replicas != nil:
		write := replicaWrite{create: old == nil, field: "spec.replicas", total: valueOr(*w.replicas, 1),
			r: annotations[vk8sv1.AnnotationReplicasPerSite], applied: appliedInt(w.obj, "spec", "replicas")}
		if old != nil {
			write.oldTotal, write.oldR = valueOr(*old.replicas, 1), old.obj.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite]
			write.oldApplied, write.oldPlacement = appliedInt(old.obj, "spec", "replicas"), old.obj.GetAnnotations()[vk8sv1.AnnotationPlacement]
		}
		r, derived, rej := write.perSite(func(total int32) (int32, error) {
			keep, _ := strconv.ParseInt(write.oldR, 10, 32)
			return fed.perSite(total, int32(keep), a.cfg.StrictReplicas)
		})
		if rej != nil {
			return nil, rej, nil
		}
		plan, err := fed.plan(r)
		if err != nil {
			return nil, invalid(reasonReplicas, "spec.replicas", write.total, err.Error(), "lower the replicas per site"), nil
		}
		if derived && plan.Total != write.total {
			w.warn(roundedUp("spec.replicas", write.total, plan.Total, r, len(fed.sites)))
		}
		*w.replicas = &plan.Total
		annotations[vk8sv1.AnnotationReplicasPerSite] = itoa32(r)
		placement = newPlacement(plan, order)
	case w.job != nil:
		p, rej := a.jobPlacement(w, old, fed, annotations, order)
		if rej != nil {
			return nil, rej, nil
		}
		placement = p
	case w.daemon:
		placement = Placement{Sites: fed.sites}
	}
	annotations[vk8sv1.AnnotationPlacement] = placement.String()
	w.obj.SetAnnotations(annotations)
	if w.jobMeta != nil {
		// A CronJob's Jobs carry what their pods' admission reads.
		if w.jobMeta.Annotations == nil {
			w.jobMeta.Annotations = map[string]string{}
		}
		for _, k := range []string{vk8sv1.AnnotationVirtualSites, vk8sv1.AnnotationOverrides, vk8sv1.AnnotationWorkloadFlavor,
			vk8sv1.AnnotationReplicasPerSite, vk8sv1.AnnotationCompletionsPerSite, vk8sv1.AnnotationPlacement} {
			if v, ok := annotations[k]; ok {
				w.jobMeta.Annotations[k] = v
			} else {
				delete(w.jobMeta.Annotations, k)
			}
		}
	}
	if w.template != nil {
		sites := fed.sites
		var oldTemplate *corev1.PodTemplateSpec
		if old != nil {
			oldTemplate = old.template
		}
		// An unchanged template keeps its site list: a write that changes neither the
		// template nor ves.io/virtual-sites (a scale, a label, a server-side re-apply that
		// dropped vk8s' fields) must not start a rollout.
		if oldTemplate != nil && !changed(vk8sv1.AnnotationVirtualSites) && sameModuloFederation(oldTemplate, w.template) {
			if s := siteRestriction(&oldTemplate.Spec); s != nil && federatedTemplate(&oldTemplate.Spec, s) {
				sites = s
			}
		}
		tolerateVirtualNodes(&w.template.Spec)
		restrictSites(&w.template.Spec, sites)
	}
	return nil, nil, nil
}

// jobPlacement multiplies a Job's (or CronJob's) parallelism and completions by the site
// count and returns its placement, its sites in order after those of previous.
// Overrides' replicas do not apply to Jobs.
func (a *admitter) jobPlacement(w, old *workload, fed *federation, annotations map[string]string, previous []string) (Placement, *rejection) {
	n := len(fed.sites)
	derive := func(total int32) (int32, error) { return overrides.ReplicasPerSite(total, n, a.cfg.StrictReplicas) }
	path := strings.Split(w.jobPath, ".")
	pw := replicaWrite{create: old == nil, field: w.jobPath + ".parallelism", total: valueOr(w.job.Parallelism, 1),
		r: annotations[vk8sv1.AnnotationReplicasPerSite], applied: appliedInt(w.obj, append(path, "parallelism")...)}
	if old != nil {
		pw.oldTotal, pw.oldR = valueOr(old.job.Parallelism, 1), old.obj.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite]
		pw.oldApplied, pw.oldPlacement = appliedInt(old.obj, append(path, "parallelism")...), old.obj.GetAnnotations()[vk8sv1.AnnotationPlacement]
	}
	p, derived, rej := pw.perSite(derive)
	if rej != nil {
		return Placement{}, rej
	}
	var c *int32
	if w.job.Completions != nil {
		cw := replicaWrite{create: old == nil, field: w.jobPath + ".completions", total: *w.job.Completions,
			r: annotations[vk8sv1.AnnotationCompletionsPerSite], applied: appliedInt(w.obj, append(path, "completions")...)}
		if old != nil {
			cw.oldTotal, cw.oldR = valueOr(old.job.Completions, 0), old.obj.GetAnnotations()[vk8sv1.AnnotationCompletionsPerSite]
			cw.oldApplied = appliedInt(old.obj, append(path, "completions")...)
		}
		perSite, _, rej := cw.perSite(derive)
		if rej != nil {
			return Placement{}, rej
		}
		c = &perSite
	}
	totalP, totalC, err := overrides.ScaleJob(&p, c, n)
	if err != nil {
		return Placement{}, invalid(reasonReplicas, w.jobPath, fmt.Sprintf("parallelism %d", p), err.Error(), "lower the per-site parallelism or completions")
	}
	if derived && *totalP != pw.total {
		w.warn(roundedUp(pw.field, pw.total, *totalP, p, n))
	}
	w.job.Parallelism = totalP
	annotations[vk8sv1.AnnotationReplicasPerSite] = itoa32(p)
	perSite := p
	if c != nil {
		w.job.Completions = totalC
		annotations[vk8sv1.AnnotationCompletionsPerSite] = itoa32(*c)
		perSite = *c
	}
	plan, _ := overrides.PlanReplicas(fed.sites, perSite, nil)
	return newPlacement(plan, previous), nil
}

// replicaWrite is a write of a workload's replica count (or a Job's parallelism or
// completions): the value written, the one it replaces, and vk8s' bookkeeping.
type replicaWrite struct {
	create bool
	// field names the count in messages.
	field           string
	total, oldTotal int32
	// r and oldR are vk8s.io/replicas-per-site (or completions-per-site) as written.
	r, oldR string
	// applied and oldApplied are the count in kubectl's last-applied-configuration.
	applied, oldApplied *int32
	oldPlacement        string
}

// perSite returns R for the write, and whether it was derived from a total (derive). The
// rules (docs/webhook.md, "Replicas"):
//
//  1. On create, spec.replicas is R, as in the manifest, unless vk8s.io/replicas-per-site
//     says otherwise (an exported object created again).
//  2. A write that changes vk8s.io/replicas-per-site sets R.
//  3. A write that drops vk8s.io/replicas-per-site and changes spec.replicas re-declares
//     the manifest (server-side apply, kubectl replace): spec.replicas is R.
//  4. A client-side kubectl apply whose manifest changes spec.replicas: it is R.
//  5. Any other write that changes spec.replicas (kubectl edit, patch) writes the total:
//     R is derived from it.
//  6. Otherwise R stays, derived from the total when a write through the scale
//     subresource left the annotation behind.
func (w replicaWrite) perSite(derive func(total int32) (int32, error)) (int32, bool, *rejection) {
	var r int32
	if w.r != "" {
		v, err := strconv.ParseInt(strings.TrimSpace(w.r), 10, 32)
		if err != nil || v < 0 {
			key := vk8sv1.AnnotationReplicasPerSite
			if strings.HasSuffix(w.field, "completions") {
				key = vk8sv1.AnnotationCompletionsPerSite
			}
			return 0, false, invalid(reasonReplicas, annotationPath(key), w.r, "not a whole number of replicas per site",
				fmt.Sprintf(`write a number such as "3", or remove it and set %s`, w.field))
		}
		r = int32(v)
	}
	fromTotal := func(total int32) (int32, bool, *rejection) {
		v, err := derive(total)
		if err != nil {
			msg := strings.Replace(err.Error(), "spec.replicas", w.field, 1)
			return 0, false, &rejection{reason: reasonReplicas, msg: msg}
		}
		return v, true, nil
	}
	switch {
	case w.create && w.r != "":
		return r, false, nil
	case w.create:
		return w.total, false, nil
	case w.r != "" && w.r != w.oldR:
		return r, false, nil
	case w.r == "" && w.oldR != "" && w.total != w.oldTotal:
		return w.total, false, nil
	case w.applied != nil && (w.oldApplied == nil || *w.applied != *w.oldApplied) && *w.applied == w.total:
		return w.total, false, nil
	case w.total != w.oldTotal:
		return fromTotal(w.total)
	case w.oldR == "":
		return w.total, false, nil
	}
	oldR, err := strconv.ParseInt(w.oldR, 10, 32)
	if err != nil {
		return fromTotal(w.oldTotal)
	}
	if p, err := ParsePlacement(w.oldPlacement); err == nil && p.Counts != nil && p.Total() != w.oldTotal {
		return fromTotal(w.oldTotal)
	}
	return int32(oldR), false, nil
}

func roundedUp(field string, written, total, r int32, sites int) string {
	return fmt.Sprintf("%s: %d is not a multiple of the %d sites: it is rounded up to %d (%d per site); replicas are per site",
		field, written, sites, total, r)
}

func valueOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// appliedInt returns the number at path in obj's kubectl last-applied-configuration.
func appliedInt(obj client.Object, path ...string) *int32 {
	raw := obj.GetAnnotations()[corev1.LastAppliedConfigAnnotation]
	if raw == "" {
		return nil
	}
	var v any
	if json.Unmarshal([]byte(raw), &v) != nil {
		return nil
	}
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	f, ok := v.(float64)
	if !ok {
		return nil
	}
	n := int32(f)
	return &n
}

// previousOrder returns the site order recorded on the workload before this write (or in
// the object created, when it was exported with its placement).
func previousOrder(w, old *workload) []string {
	src := w.obj
	if old != nil {
		src = old.obj
	}
	p, err := ParsePlacement(src.GetAnnotations()[vk8sv1.AnnotationPlacement])
	if err != nil {
		return nil
	}
	return p.Sites
}

// keepCustomerEdge drops RegionalEdge sites (DaemonSets run on customer sites only) and
// returns warnings naming them.
func keepCustomerEdge(f *federation) []string {
	var dropped []string
	f.replicas = nil
	f.sites = slices.DeleteFunc(f.sites, func(s string) bool {
		re := f.siteTypes[s] == vk8sv1.SiteTypeRegionalEdge
		if re {
			dropped = append(dropped, s)
		}
		return re
	})
	if len(dropped) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("DaemonSets run on CustomerEdge sites only: not on %s", strings.Join(dropped, ", "))}
}

func noSites(f *federation, annotations map[string]string, daemon bool) *rejection {
	field, value := annotationPath(vk8sv1.AnnotationVirtualSites), annotations[vk8sv1.AnnotationVirtualSites]
	if strings.TrimSpace(value) == "" {
		field, value = fmt.Sprintf("VirtualKubernetes %s spec.virtualSite (the namespace's default virtual-site)", f.vk.Name), f.vk.Spec.VirtualSite
	}
	why := "the virtual-sites select no Site"
	if daemon {
		why = "the virtual-sites select no CustomerEdge Site, and DaemonSets run on CustomerEdge sites only"
	}
	return invalid(reasonNoSites, field, value, why, "label Sites so that the VirtualSites select them, or name other virtual-sites (kubectl get sites --show-labels)")
}

// sameModuloFederation says whether two pod templates are equal once the toleration and
// site restriction that workload admission adds are taken out of both.
func sameModuloFederation(a, b *corev1.PodTemplateSpec) bool {
	return apiequality.Semantic.DeepEqual(withoutFederation(a), withoutFederation(b))
}

func withoutFederation(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	t = t.DeepCopy()
	s := &t.Spec
	s.Tolerations = slices.DeleteFunc(s.Tolerations, func(x corev1.Toleration) bool { return x == virtualNodeToleration })
	if len(s.Tolerations) == 0 {
		s.Tolerations = nil
	}
	if s.Affinity == nil || s.Affinity.NodeAffinity == nil {
		return t
	}
	if req := s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution; req != nil {
		var terms []corev1.NodeSelectorTerm
		for _, term := range req.NodeSelectorTerms {
			term.MatchExpressions = slices.DeleteFunc(slices.Clone(term.MatchExpressions), func(r corev1.NodeSelectorRequirement) bool {
				return r.Key == vk8sv1.LabelSite
			})
			if len(term.MatchExpressions) == 0 {
				term.MatchExpressions = nil
			}
			if len(term.MatchExpressions) > 0 || len(term.MatchFields) > 0 {
				terms = append(terms, term)
			}
		}
		req.NodeSelectorTerms = terms
		if len(terms) == 0 {
			s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = nil
		}
	}
	if apiequality.Semantic.DeepEqual(*s.Affinity.NodeAffinity, corev1.NodeAffinity{}) {
		s.Affinity.NodeAffinity = nil
	}
	if apiequality.Semantic.DeepEqual(*s.Affinity, corev1.Affinity{}) {
		s.Affinity = nil
	}
	return t
}

// warn adds admission warnings about the workload.
func (w *workload) warn(msgs ...string) { w.notes = append(w.notes, msgs...) }

func (w *workload) warnings() []string { return w.notes }

// admitScale is the mutating handler of the scale subresource of Deployments,
// StatefulSets and ReplicaSets: the replicas written there are a total, rounded up to a
// multiple of the sites (or rejected in strict mode). The workload's
// vk8s.io/replicas-per-site follows right after (refresher).
func (a *admitter) admitScale(ctx context.Context, req admission.Request) admission.Response {
	scale, old := &autoscalingv1.Scale{}, &autoscalingv1.Scale{}
	if err := a.decoder.Decode(req, scale); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if err := a.decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if scale.Spec.Replicas == old.Spec.Replicas {
		return admission.Allowed("replicas unchanged")
	}
	kind := kindOfResource(req.Resource.Resource)
	parent := newWorkloadObject(kind)
	if parent == nil {
		return admission.Allowed("not a workload")
	}
	if err := a.api.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: req.Name}, parent); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return admission.Allowed("workload not found")
		}
		return a.fail(ctx, err)
	}
	if ownedByWorkload(parent) {
		return admission.Allowed("scaled by its owner")
	}
	fed, rej, err := a.resolver.resolve(ctx, req.Namespace, parent.GetAnnotations(), lenientAll)
	switch {
	case err != nil:
		return a.fail(ctx, err)
	case rej != nil:
		return a.deny(ctx, rej)
	case fed == nil:
		return admission.Allowed("not a vK8s namespace")
	case len(fed.sites) == 0:
		return a.deny(ctx, noSites(fed, parent.GetAnnotations(), false))
	}
	keep, _ := strconv.ParseInt(parent.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite], 10, 32)
	r, err := fed.perSite(scale.Spec.Replicas, int32(keep), a.cfg.StrictReplicas)
	if err != nil {
		return a.deny(ctx, &rejection{reason: reasonReplicas, msg: err.Error()})
	}
	plan, err := fed.plan(r)
	if err != nil {
		return a.deny(ctx, invalid(reasonReplicas, "spec.replicas", scale.Spec.Replicas, err.Error(), "lower the replicas"))
	}
	var warnings []string
	if plan.Total != scale.Spec.Replicas {
		msg := roundedUp("spec.replicas", scale.Spec.Replicas, plan.Total, r, len(fed.sites))
		warnings = append(warnings, msg)
		if a.recorder != nil {
			a.recorder.Eventf(parent, nil, corev1.EventTypeNormal, "ReplicasRoundedUp", "Scale", "%s", msg)
		}
		scale.Spec.Replicas = plan.Total
	}
	if req.DryRun == nil || !*req.DryRun {
		a.refresh.enqueue(refreshItem{kind: kind, namespace: req.Namespace, name: req.Name, total: plan.Total, r: r})
	}
	raw, err := json.Marshal(scale)
	if err != nil {
		return a.fail(ctx, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(warnings...)
}

func kindOfResource(resource string) string {
	switch resource {
	case "deployments":
		return "Deployment"
	case "statefulsets":
		return "StatefulSet"
	case "replicasets":
		return "ReplicaSet"
	}
	return ""
}

// refreshItem asks to set vk8s.io/replicas-per-site to r on a workload once its
// spec.replicas is total.
type refreshItem struct {
	kind, namespace, name string
	total, r              int32
	attempt               int
}

// refresher writes vk8s.io/replicas-per-site after a write through the scale subresource,
// which cannot carry it: once the new total is stored, it patches the annotation, and the
// workload's own admission records the placement.
type refresher struct {
	a     *admitter
	queue workqueue.TypedDelayingInterface[refreshItem]
}

const (
	refreshDelay    = 200 * time.Millisecond
	refreshAttempts = 50
)

func newRefresher(a *admitter) *refresher {
	return &refresher{a: a, queue: workqueue.NewTypedDelayingQueue[refreshItem]()}
}

func (r *refresher) enqueue(item refreshItem) { r.queue.AddAfter(item, refreshDelay) }

// Start processes the queue until ctx ends; it is a manager.Runnable.
func (r *refresher) Start(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	for {
		item, shutdown := r.queue.Get()
		if shutdown {
			return nil
		}
		if err := r.refresh(ctx, item); err != nil {
			if item.attempt < refreshAttempts {
				item.attempt++
				r.queue.AddAfter(item, refreshDelay)
			} else {
				ctrl.LoggerFrom(ctx).Error(err, "Recording replicas per site after a scale failed", "kind", item.kind,
					"workload", types.NamespacedName{Namespace: item.namespace, Name: item.name})
			}
		}
		r.queue.Done(item)
	}
}

func (r *refresher) refresh(ctx context.Context, item refreshItem) error {
	obj := newWorkloadObject(item.kind)
	if err := r.a.api.Get(ctx, client.ObjectKey{Namespace: item.namespace, Name: item.name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	w := asWorkload(obj)
	if valueOr(*w.replicas, 1) != item.total {
		// The scale write is not stored yet, or another write followed it.
		if item.attempt < refreshAttempts {
			item.attempt++
			r.queue.AddAfter(item, refreshDelay)
		}
		return nil
	}
	want := itoa32(item.r)
	if obj.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite] == want {
		return nil
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, vk8sv1.AnnotationReplicasPerSite, want)
	if err := r.a.client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return fmt.Errorf("patch %s %s/%s: %w", item.kind, item.namespace, item.name, err)
	}
	return nil
}

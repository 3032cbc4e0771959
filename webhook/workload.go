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
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/placement"
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

// admitWorkload is the mutating handler of Deployments, StatefulSets, ReplicaSets,
// DaemonSets, Jobs and CronJobs in vK8s namespaces (SPEC §4, "Replicas are per site").
func (a *admitter) admitWorkload(ctx context.Context, req admission.Request) admission.Response {
	obj := federation.NewWorkload(req.Kind.Kind)
	if obj == nil {
		return admission.Allowed("not a workload")
	}
	if err := a.decoder.Decode(req, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if federation.OwnedByWorkload(obj) {
		return admission.Allowed("admitted with its owner")
	}
	var old *workload
	if req.Operation == admissionv1.Update {
		o := federation.NewWorkload(req.Kind.Kind)
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
	resp, err := a.federateWorkload(ctx, req.Namespace, w, old)
	switch {
	case err != nil:
		return a.answer(ctx, err)
	case resp != nil:
		return *resp
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return a.answer(ctx, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(w.warnings()...)
}

// federateWorkload changes w in place: replicas, annotations, template. A non-nil response
// ends admission without changes (the namespace is not a vK8s namespace).
func (a *admitter) federateWorkload(ctx context.Context, namespace string, w, old *workload) (*admission.Response, error) {
	annotations := w.obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	changed := func(key string) bool { return old == nil || old.obj.GetAnnotations()[key] != annotations[key] }
	fed, err := a.state.Resolver.Resolve(ctx, namespace, annotations, changed)
	if err != nil {
		return nil, err
	}
	if fed == nil {
		resp := admission.Allowed("not a vK8s namespace")
		return &resp, nil
	}
	w.warn(fed.Warnings...)
	if w.daemon {
		w.warn(fed.KeepCustomerEdge()...)
	}
	if len(fed.Sites) == 0 {
		return nil, noSites(fed, annotations, w.daemon)
	}
	if sts, ok := w.obj.(*appsv1.StatefulSet); ok && old == nil {
		if err := a.validateClaimTemplates(ctx, sts.Spec.VolumeClaimTemplates); err != nil {
			return nil, err
		}
	}
	for _, name := range fed.OverrideNames {
		o := fed.Overrides[name]
		if o == nil {
			continue
		}
		errs, warns := overrides.ValidateOverrideForWorkload(o, w.selector)
		if len(errs) > 0 {
			return nil, federation.Invalid(federation.ReasonOverride, federation.AnnotationPath(vk8sv1.AnnotationOverrides), annotations[vk8sv1.AnnotationOverrides],
				fmt.Sprintf("Override %q does not fit this %s: %s", name, w.kind, errs.ToAggregate().Error()),
				"fix the Override, or remove it from the list")
		}
		for _, warn := range warns {
			w.warn(fmt.Sprintf("Override %q: %s", name, warn))
		}
		if o.Spec.DeploymentSpec.Replicas != nil && w.replicas == nil {
			w.warn(fmt.Sprintf("Override %q: spec.deploymentSpec.replicas does not apply to a %s and is ignored", name, w.kind))
		}
	}

	var layout placement.Layout
	var order []string
	if w.ordered {
		order = previousOrder(w, old)
	}
	switch {
	case w.replicas != nil:
		write := placement.ReplicaWrite{Create: old == nil, Field: "spec.replicas", Total: ptr.Deref(*w.replicas, 1),
			R: annotations[vk8sv1.AnnotationReplicasPerSite], Applied: appliedInt(w.obj, "spec", "replicas")}
		if old != nil {
			write.OldTotal, write.OldR = ptr.Deref(*old.replicas, 1), old.obj.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite]
			write.OldApplied, write.OldPlacement = appliedInt(old.obj, "spec", "replicas"), old.obj.GetAnnotations()[vk8sv1.AnnotationPlacement]
		}
		r, derived, err := write.PerSite(func(total int32) (int32, error) {
			keep, _ := strconv.ParseInt(write.OldR, 10, 32)
			return fed.PerSite(total, int32(keep), a.cfg.StrictReplicas)
		})
		if err != nil {
			return nil, federation.Reject(reasonReplicas, err)
		}
		plan, err := fed.Plan(r)
		if err != nil {
			return nil, federation.Invalid(reasonReplicas, "spec.replicas", write.Total, err.Error(), "lower the replicas per site")
		}
		if derived && plan.Total != write.Total {
			w.warn(roundedUp("spec.replicas", write.Total, plan.Total, r, len(fed.Sites)))
		}
		*w.replicas = &plan.Total
		annotations[vk8sv1.AnnotationReplicasPerSite] = itoa32(r)
		layout = placement.NewLayout(plan, order)
	case w.job != nil:
		l, err := a.jobPlacement(w, old, fed, annotations, order)
		if err != nil {
			return nil, err
		}
		layout = l
	case w.daemon:
		layout = placement.Layout{Sites: fed.Sites}
	}
	annotations[vk8sv1.AnnotationPlacement] = layout.String()
	w.obj.SetAnnotations(annotations)
	if w.jobMeta != nil {
		// A CronJob's Jobs carry what their pods' admission reads.
		if w.jobMeta.Annotations == nil {
			w.jobMeta.Annotations = map[string]string{}
		}
		for _, k := range []string{vk8sv1.AnnotationVirtualSites, vk8sv1.AnnotationOverrides, vk8sv1.AnnotationWorkloadFlavor,
			vk8sv1.AnnotationReplicasPerSite, vk8sv1.AnnotationCompletionsPerSite, vk8sv1.AnnotationBackoffLimitPerSite, vk8sv1.AnnotationPlacement} {
			if v, ok := annotations[k]; ok {
				w.jobMeta.Annotations[k] = v
			} else {
				delete(w.jobMeta.Annotations, k)
			}
		}
	}
	if w.template != nil {
		sites := fed.Sites
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
	return nil, nil
}

// jobPlacement multiplies a Job's (or CronJob's) parallelism and completions by the site
// count and returns its placement, its sites in order after those of previous.
// Overrides' replicas do not apply to Jobs.
func (a *admitter) jobPlacement(w, old *workload, fed *federation.Federation, annotations map[string]string, previous []string) (placement.Layout, error) {
	if w.job.Completions == nil && w.job.Parallelism == nil && (old == nil || w.kind == "CronJob") {
		// Kubernetes runs such a Job as 1 completion (the API server defaults both to 1 for
		// a Job, not in a CronJob's template): 1 completion per site, not a work queue of
		// 1 pod per site that ends with the first success.
		w.job.Completions = ptr.To[int32](1)
	}
	n := len(fed.Sites)
	derive := func(total int32) (int32, error) { return placement.ReplicasPerSite(total, n, a.cfg.StrictReplicas) }
	path := strings.Split(w.jobPath, ".")
	pw := placement.ReplicaWrite{Create: old == nil, Field: w.jobPath + ".parallelism", Total: ptr.Deref(w.job.Parallelism, 1),
		R: annotations[vk8sv1.AnnotationReplicasPerSite], Applied: appliedInt(w.obj, append(path, "parallelism")...)}
	if old != nil {
		pw.OldTotal, pw.OldR = ptr.Deref(old.job.Parallelism, 1), old.obj.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite]
		pw.OldApplied, pw.OldPlacement = appliedInt(old.obj, append(path, "parallelism")...), old.obj.GetAnnotations()[vk8sv1.AnnotationPlacement]
	}
	p, derived, err := pw.PerSite(derive)
	if err != nil {
		return placement.Layout{}, federation.Reject(reasonReplicas, err)
	}
	var c *int32
	if w.job.Completions != nil {
		cw := placement.ReplicaWrite{Create: old == nil, Field: w.jobPath + ".completions", Total: *w.job.Completions,
			R: annotations[vk8sv1.AnnotationCompletionsPerSite], Applied: appliedInt(w.obj, append(path, "completions")...)}
		if old != nil {
			cw.OldTotal, cw.OldR = ptr.Deref(old.job.Completions, 0), old.obj.GetAnnotations()[vk8sv1.AnnotationCompletionsPerSite]
			cw.OldApplied = appliedInt(old.obj, append(path, "completions")...)
		}
		perSite, _, err := cw.PerSite(derive)
		if err != nil {
			return placement.Layout{}, federation.Reject(reasonReplicas, err)
		}
		c = &perSite
	}
	totalP, totalC, err := placement.ScaleJob(&p, c, n)
	if err != nil {
		return placement.Layout{}, federation.Invalid(reasonReplicas, w.jobPath, fmt.Sprintf("parallelism %d", p), err.Error(), "lower the per-site parallelism or completions")
	}
	if derived && *totalP != pw.Total {
		w.warn(roundedUp(pw.Field, pw.Total, *totalP, p, n))
	}
	w.job.Parallelism = totalP
	annotations[vk8sv1.AnnotationReplicasPerSite] = itoa32(p)
	perSite := p
	if c != nil {
		w.job.Completions = totalC
		annotations[vk8sv1.AnnotationCompletionsPerSite] = itoa32(*c)
		perSite = *c
	}
	if err := backoffLimit(w, old, annotations, n); err != nil {
		return placement.Layout{}, err
	}
	plan, _ := placement.PlanReplicas(fed.Sites, perSite, nil)
	return placement.NewLayout(plan, previous), nil
}

// backoffLimit makes a Job's (or CronJob's) backoffLimit per site: the host Job's holds
// the sum over its n sites and vk8s.io/backoff-limit-per-site the per-site value, which
// the federation's Job status controller enforces site by site. The value written is per
// site or a total by placement.ReplicaWrite's rules, as parallelism is. A Job with a
// backoffLimitPerIndex (its indexes are per site already), and a Job that vk8s is failing
// because a site passed its limit (vk8s.io/site-backoff-exceeded), keep theirs.
func backoffLimit(w, old *workload, annotations map[string]string, n int) error {
	if w.job.BackoffLimitPerIndex != nil || annotations[vk8sv1.AnnotationSiteBackoffExceeded] != "" {
		return nil
	}
	path := append(strings.Split(w.jobPath, "."), "backoffLimit")
	bw := placement.ReplicaWrite{Create: old == nil, Field: w.jobPath + ".backoffLimit",
		Total: ptr.Deref(w.job.BackoffLimit, placement.DefaultBackoffLimit),
		R:     annotations[vk8sv1.AnnotationBackoffLimitPerSite], Applied: appliedInt(w.obj, path...)}
	if old != nil {
		bw.OldTotal, bw.OldR = ptr.Deref(old.job.BackoffLimit, placement.DefaultBackoffLimit), old.obj.GetAnnotations()[vk8sv1.AnnotationBackoffLimitPerSite]
		bw.OldApplied = appliedInt(old.obj, path...)
	}
	b, _, err := bw.PerSite(func(total int32) (int32, error) { return placement.BackoffLimitPerSite(total, n), nil })
	if err != nil {
		return federation.Reject(reasonReplicas, err)
	}
	if b < 0 {
		return federation.Invalid(reasonReplicas, bw.Field, b, "a backoffLimit must be 0 or more", "write the failures each site may have, such as 6")
	}
	w.job.BackoffLimit = ptr.To(placement.ScaleBackoffLimit(b, n))
	annotations[vk8sv1.AnnotationBackoffLimitPerSite] = itoa32(b)
	return nil
}

func roundedUp(field string, written, total, r int32, sites int) string {
	return fmt.Sprintf("%s: %d is not a multiple of the %d sites: it is rounded up to %d (%d per site); replicas are per site",
		field, written, sites, total, r)
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
	p, err := placement.ParseLayout(src.GetAnnotations()[vk8sv1.AnnotationPlacement])
	if err != nil {
		return nil
	}
	return p.Sites
}

func noSites(f *federation.Federation, annotations map[string]string, daemon bool) error {
	field, value := federation.AnnotationPath(vk8sv1.AnnotationVirtualSites), annotations[vk8sv1.AnnotationVirtualSites]
	if strings.TrimSpace(value) == "" {
		field, value = fmt.Sprintf("VirtualKubernetes %s spec.virtualSite (the namespace's default virtual-site)", f.VirtualKubernetes.Name), f.VirtualKubernetes.Spec.VirtualSite
	}
	why := "the virtual-sites select no Site"
	if daemon {
		why = "the virtual-sites select no CustomerEdge Site, and DaemonSets run on CustomerEdge sites only"
	}
	return federation.Invalid(reasonNoSites, field, value, why, "label Sites so that the VirtualSites select them, or name other virtual-sites (kubectl get sites --show-labels)")
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

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
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/translate"
)

// federatedAnnotations are the annotations users write on workloads (SPEC §3).
var federatedAnnotations = []string{vk8sv1.AnnotationVirtualSites, vk8sv1.AnnotationOverrides, vk8sv1.AnnotationWorkloadFlavor}

// validateVirtualKubernetes checks a VirtualKubernetes: its virtual-site exists in its own
// or the shared namespace (checked when spec.virtualSite is written), it is the namespace's
// only one, and it is not deleted while federated workloads remain. An admitted one labels its namespace at once, so the
// workloads that follow it in the same apply are admitted as federated.
func (a *admitter) validateVirtualKubernetes(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation == admissionv1.Delete {
		return a.validateVirtualKubernetesDelete(ctx, req)
	}
	vk := &vk8sv1.VirtualKubernetes{}
	if err := a.decoder.Decode(req, vk); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	ns := req.Namespace
	if req.Operation == admissionv1.Update {
		old := &vk8sv1.VirtualKubernetes{}
		if err := a.decoder.DecodeRaw(req.OldObject, old); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if old.Spec.VirtualSite == vk.Spec.VirtualSite {
			// A write of metadata (the tenancy controller's finalizer, a label) is not
			// refused because the virtual-site went meanwhile: that would keep a
			// VirtualKubernetes, and a namespace being deleted, from ever going.
			return admission.Allowed("")
		}
	}
	ref, ok := overrides.ParseVirtualSiteRef(vk.Spec.VirtualSite, ns)
	fix := fmt.Sprintf(`name a VirtualSite of this namespace or of %q, e.g. "%s/all-sites"`, a.cfg.SharedNamespace, a.cfg.SharedNamespace)
	switch {
	case !ok:
		return a.answer(ctx, federation.Invalid(reasonInvalidVK, "spec.virtualSite", vk.Spec.VirtualSite, "not a virtual-site reference", fix))
	case ref.Namespace != ns && ref.Namespace != a.cfg.SharedNamespace:
		return a.answer(ctx, federation.Invalid(reasonInvalidVK, "spec.virtualSite", vk.Spec.VirtualSite,
			fmt.Sprintf("namespace %q is neither this namespace (%q) nor the shared one (%q)", ref.Namespace, ns, a.cfg.SharedNamespace), fix))
	}
	if found, err := a.exists(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &vk8sv1.VirtualSite{}); err != nil {
		return a.answer(ctx, err)
	} else if !found {
		return a.answer(ctx, federation.Invalid(reasonInvalidVK, "spec.virtualSite", vk.Spec.VirtualSite,
			fmt.Sprintf("VirtualSite %s does not exist", ref), "create it first, or "+fix))
	}
	if req.Operation != admissionv1.Create {
		return admission.Allowed("")
	}
	var list vk8sv1.VirtualKubernetesList
	if err := a.api.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return a.answer(ctx, err)
	}
	for _, other := range list.Items {
		if other.Name != vk.Name {
			return a.answer(ctx, federation.Invalid(reasonSecondVK, "metadata.name", vk.Name,
				fmt.Sprintf("namespace %s already has VirtualKubernetes %q, and a namespace has at most one", ns, other.Name),
				fmt.Sprintf("change the default virtual-site in %q's spec.virtualSite instead, or use another namespace", other.Name)))
		}
	}
	if req.DryRun == nil || !*req.DryRun {
		n := &corev1.Namespace{}
		err := a.api.Get(ctx, client.ObjectKey{Name: ns}, n)
		if err == nil {
			err = federation.LabelNamespace(ctx, a.client, n, vk.Name)
		}
		if err != nil {
			// The namespace labeler catches up.
			ctrl.LoggerFrom(ctx).Error(err, "Labelling the namespace of a new VirtualKubernetes failed", "namespace", ns)
		}
	}
	return admission.Allowed("")
}

func (a *admitter) validateVirtualKubernetesDelete(ctx context.Context, req admission.Request) admission.Response {
	vk := &vk8sv1.VirtualKubernetes{}
	if err := a.decoder.DecodeRaw(req.OldObject, vk); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	ns := &corev1.Namespace{}
	if err := a.api.Get(ctx, client.ObjectKey{Name: req.Namespace}, ns); err != nil {
		return a.answer(ctx, client.IgnoreNotFound(err))
	}
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		// Deleting the namespace deletes everything in it; do not stand in its way.
		return admission.Allowed("the namespace is being deleted")
	}
	var list vk8sv1.VirtualKubernetesList
	if err := a.api.List(ctx, &list, client.InNamespace(req.Namespace)); err != nil {
		return a.answer(ctx, err)
	}
	if len(list.Items) > 1 {
		return admission.Allowed("another VirtualKubernetes remains")
	}
	names, err := a.federatedWorkloads(ctx, req.Namespace)
	if err != nil {
		return a.answer(ctx, err)
	}
	if len(names) == 0 {
		return admission.Allowed("")
	}
	shown := names
	more := ""
	if len(shown) > 10 {
		shown, more = shown[:10], fmt.Sprintf(" and %d more", len(names)-10)
	}
	return a.answer(ctx, &federation.Rejection{Reason: reasonWorkloadsRemain, Message: fmt.Sprintf(
		"VirtualKubernetes %q: cannot be deleted while namespace %s has federated workloads: %s%s; "+
			"delete them first (kubectl -n %s delete %s), or delete the namespace",
		vk.Name, req.Namespace, strings.Join(shown, ", "), more, req.Namespace, strings.Join(shown, " "))})
}

// federatedWorkloads lists, as kind/name, the workloads of a vK8s namespace: every
// workload there and every pod without a controller.
func (a *admitter) federatedWorkloads(ctx context.Context, namespace string) ([]string, error) {
	objs, err := a.namespaceWorkloads(ctx, namespace, &corev1.PodList{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, o := range objs {
		if o.GetDeletionTimestamp() != nil {
			continue
		}
		kind := "pod"
		if w := asWorkload(o); w != nil {
			kind = strings.ToLower(w.kind)
		}
		names = append(names, kind+"/"+o.GetName())
	}
	return names, nil
}

// namespaceWorkloads lists, from the API server, the workloads of namespace that vk8s
// admits as such (not a Deployment's ReplicaSets nor a CronJob's Jobs), and the objects
// of more lists that have no controller (bare pods).
func (a *admitter) namespaceWorkloads(ctx context.Context, namespace string, more ...client.ObjectList) ([]client.Object, error) {
	var out []client.Object
	for _, list := range append([]client.ObjectList{&appsv1.DeploymentList{}, &appsv1.StatefulSetList{}, &appsv1.DaemonSetList{},
		&appsv1.ReplicaSetList{}, &batchv1.JobList{}, &batchv1.CronJobList{}}, more...) {
		if err := a.api.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return nil, fmt.Errorf("list %T in %s: %w", list, namespace, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			obj, ok := it.(client.Object)
			if !ok {
				return nil, fmt.Errorf("unexpected item %T", it)
			}
			if federation.OwnedByWorkload(obj) || (asWorkload(obj) == nil && metav1.GetControllerOfNoCopy(obj) != nil) {
				continue
			}
			out = append(out, obj)
		}
	}
	return out, nil
}

// exists says whether key exists, looking in the cache and then the API server (a
// VirtualSite created just before may not be in the cache yet).
func (a *admitter) exists(ctx context.Context, key client.ObjectKey, obj client.Object) (bool, error) {
	for _, r := range []client.Reader{a.cache, a.api} {
		err := r.Get(ctx, key, obj)
		if err == nil {
			return true, nil
		}
		if client.IgnoreNotFound(err) != nil {
			return false, err
		}
	}
	return false, nil
}

// validateOverride checks an Override on its own (overrides.ValidateOverride; a siteList
// entry naming no Site is a warning) and against every workload of its namespace that
// names it in ves.io/overrides.
func (a *admitter) validateOverride(ctx context.Context, req admission.Request) admission.Response {
	o := &vk8sv1.Override{}
	if err := a.decoder.Decode(req, o); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	var sites vk8sv1.SiteList
	if err := a.cache.List(ctx, &sites); err != nil {
		return a.answer(ctx, err)
	}
	names := sets.New[string]()
	for _, s := range sites.Items {
		names.Insert(s.Name)
	}
	errs, warnings := overrides.ValidateOverride(o, names)
	if len(errs) > 0 {
		return a.answer(ctx, &federation.Rejection{Reason: reasonInvalidOverride, Message: fmt.Sprintf("Override %q is invalid: %s", o.Name, joinErrs(errs.ToAggregate().Errors()))})
	}
	users, err := a.workloadsNaming(ctx, req.Namespace, o.Name)
	if err != nil {
		return a.answer(ctx, err)
	}
	for _, w := range users {
		errs, warns := overrides.ValidateOverrideForWorkload(o, w.selector)
		if len(errs) > 0 {
			return a.answer(ctx, &federation.Rejection{Reason: reasonInvalidOverride, Message: fmt.Sprintf(
				"Override %q does not fit %s %q, which names it in %s: %s; fix the Override, or remove it from the workload's list first",
				o.Name, w.kind, w.obj.GetName(), vk8sv1.AnnotationOverrides, joinErrs(errs.ToAggregate().Errors()))})
		}
		for _, warn := range warns {
			warnings = append(warnings, fmt.Sprintf("%s %q: %s", w.kind, w.obj.GetName(), warn))
		}
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

func joinErrs(errs []error) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// workloadsNaming returns the workloads of namespace whose ves.io/overrides names name.
func (a *admitter) workloadsNaming(ctx context.Context, namespace, name string) ([]*workload, error) {
	objs, err := a.namespaceWorkloads(ctx, namespace)
	if err != nil {
		return nil, err
	}
	var out []*workload
	for _, o := range objs {
		if names, err := overrides.ParseOverrides(o.GetAnnotations()); err == nil && slices.Contains(names, name) {
			out = append(out, asWorkload(o))
		}
	}
	return out, nil
}

// validateFlavor checks a WorkloadFlavor's limits (overrides.ValidateFlavor).
func (a *admitter) validateFlavor(ctx context.Context, req admission.Request) admission.Response {
	f := &vk8sv1.WorkloadFlavor{}
	if err := a.decoder.Decode(req, f); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if errs := overrides.ValidateFlavor(f); len(errs) > 0 {
		return a.answer(ctx, &federation.Rejection{Reason: reasonInvalidFlavor, Message: fmt.Sprintf("WorkloadFlavor %q is invalid: %s", f.Name, joinErrs(errs.ToAggregate().Errors()))})
	}
	return admission.Allowed("")
}

// validateAutoscaler rejects a HorizontalPodAutoscaler aimed at a workload of a vK8s
// namespace: it would scale the total over every site from all of their metrics at once.
func (a *admitter) validateAutoscaler(ctx context.Context, req admission.Request) admission.Response {
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	if err := a.decoder.Decode(req, hpa); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	ref := hpa.Spec.ScaleTargetRef
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	kind := kindOfResource(strings.ToLower(ref.Kind) + "s")
	if gv.Group != "apps" || kind == "" {
		return admission.Allowed("not a workload vk8s federates")
	}
	vk, err := a.state.Resolver.VirtualKubernetes(ctx, req.Namespace)
	if err != nil {
		return a.answer(ctx, err)
	}
	if vk == nil {
		return admission.Allowed("not a vK8s namespace")
	}
	what := fmt.Sprintf("%s %s is federated by VirtualKubernetes %q", kind, ref.Name, vk.Name)
	target := federation.NewWorkload(kind)
	if err := a.api.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: ref.Name}, target); err == nil {
		if r := target.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite]; r != "" {
			what += fmt.Sprintf(" (%s replicas per site, on %s)", r, target.GetAnnotations()[vk8sv1.AnnotationPlacement])
		}
	}
	return a.answer(ctx, federation.Invalid(reasonAutoscaler, "spec.scaleTargetRef", ref.Kind+"/"+ref.Name,
		what+": its spec.replicas is the total over its sites, and a HorizontalPodAutoscaler would scale every site at once from the metrics of all of them; vk8s does not autoscale per site yet",
		"remove the HorizontalPodAutoscaler, and scale with kubectl scale (the total) or the vk8s.io/replicas-per-site annotation"))
}

// validateOutside rejects a vK8s annotation written on a workload or bare pod of a
// namespace without VirtualKubernetes, where nothing would honour it. The configuration
// calls it only for objects that carry one, and ignores its failures.
func (a *admitter) validateOutside(ctx context.Context, req admission.Request) admission.Response {
	var obj, old metav1.PartialObjectMetadata
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation == admissionv1.Update {
		if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
	}
	key := ""
	for _, k := range federatedAnnotations {
		v, ok := obj.Annotations[k]
		if ov, had := old.Annotations[k]; ok && (req.Operation != admissionv1.Update || !had || ov != v) {
			key = k
			break
		}
	}
	if key == "" {
		// Unchanged since before: controllers writing the object must not be stopped.
		return admission.Allowed("")
	}
	vk, err := a.state.Resolver.VirtualKubernetes(ctx, req.Namespace)
	if err != nil {
		return a.answer(ctx, err)
	}
	if vk != nil {
		return a.answer(ctx, federation.Invalid(reasonNotVK8sNamespace, federation.AnnotationPath(key), obj.Annotations[key],
			fmt.Sprintf("namespace %s is becoming a vK8s namespace (VirtualKubernetes %q) this very moment", req.Namespace, vk.Name), "retry in a second"))
	}
	return a.answer(ctx, federation.Invalid(reasonNotVK8sNamespace, federation.AnnotationPath(key), obj.Annotations[key],
		fmt.Sprintf("namespace %s has no VirtualKubernetes, so vk8s does not federate its workloads and the annotation would do nothing", req.Namespace),
		fmt.Sprintf("enable the namespace with a VirtualKubernetes (e.g. kind: VirtualKubernetes, metadata.namespace: %s, spec.virtualSite: %s/all-sites), or remove the annotation",
			req.Namespace, a.cfg.SharedNamespace)))
}

// validateRoleBinding checks a RoleBinding of a vK8s namespace, which package mirror copies
// to every site of the namespace: a ServiceAccount subject (or the group of a namespace's
// ServiceAccounts) must be of a vK8s namespace, whose ServiceAccounts have copies on the
// sites; a User or another Group is a host identity that the copies leave out, which the
// answer warns about.
func (a *admitter) validateRoleBinding(ctx context.Context, req admission.Request) admission.Response {
	rb := &rbacv1.RoleBinding{}
	if resp := a.decodeInVK8s(ctx, req, rb); resp != nil {
		return *resp
	}
	var warnings []string
	for i, s := range rb.Subjects {
		field := fmt.Sprintf("subjects[%d]", i)
		ns := translate.SubjectNamespace(s, req.Namespace)
		if ns == "" {
			warnings = append(warnings, fmt.Sprintf("%s: %s %q is a host identity: the RoleBinding's copies on the sites leave it out "+
				"(a site has identities of its own under those names)", field, s.Kind, s.Name))
			continue
		}
		if ns == req.Namespace {
			continue
		}
		other, err := a.state.Resolver.VirtualKubernetes(ctx, ns)
		if err != nil {
			return a.answer(ctx, err)
		}
		if other == nil {
			return a.answer(ctx, federation.Invalid(reasonRoleBinding, field, s.Kind+" "+ns+"/"+s.Name,
				fmt.Sprintf("namespace %q is not a vK8s namespace, so its ServiceAccounts have no copies on the sites this RoleBinding goes to", ns),
				fmt.Sprintf("bind ServiceAccounts of this namespace (%s) or of another vK8s namespace", req.Namespace)))
		}
	}
	return admission.Allowed("subjects of vK8s namespaces").WithWarnings(warnings...)
}

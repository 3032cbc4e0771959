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

package overrides

import (
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// ErrOverrideNotFound classifies an Override named in ves.io/overrides that does not exist.
var ErrOverrideNotFound = errors.New("override not found")

// SelectOverride returns the Override that applies on site: the first of names (the
// ves.io/overrides annotation, in order) whose spec.siteList holds site, or nil when none
// does. overrides holds the Overrides of the workload's namespace by name. Every name must
// exist, whichever site is asked about, so a workload is rejected for an unknown Override
// at once and not when a pod first lands on a site that would reach it; the error is an
// *AnnotationError wrapping ErrOverrideNotFound.
func SelectOverride(names []string, overrides map[string]*vk8sv1.Override, site string) (*vk8sv1.Override, error) {
	for _, name := range names {
		if overrides[name] == nil {
			return nil, &AnnotationError{
				Field:  annotationField(vk8sv1.AnnotationOverrides),
				Value:  strings.Join(names, ", "),
				Reason: fmt.Sprintf("Override %q does not exist in the workload's namespace", name),
				Fix:    "create it, or remove it from the list (kubectl get overrides lists the namespace's Overrides)",
				Err:    ErrOverrideNotFound,
			}
		}
	}
	for _, name := range names {
		o := overrides[name]
		for _, s := range o.Spec.SiteList {
			if s == site {
				return o, nil
			}
		}
	}
	return nil, nil
}

// Field paths and messages of Override validation.
var (
	pathSiteList       = field.NewPath("spec", "siteList")
	pathDeploymentSpec = field.NewPath("spec", "deploymentSpec")
	pathTemplate       = pathDeploymentSpec.Child("template")
)

const (
	detailUnsupported = "an Override honours only replicas, template and strategy (and a selector equal to the workload's); " +
		"remove this field and set it on the workload, where it applies to every site"
	detailTemplateMeta = "pods take their identity from their workload; remove it from the Override's template"
)

// ValidateOverride checks an Override on its own, as on its CREATE and UPDATE: the site
// list, that deploymentSpec sets only what an Override honours, the template's metadata,
// the strategy, and, when the Override sets both, that its template's labels match its own
// selector. sites holds the names of the registered Sites; when it is nil the site list is
// not looked up. A siteList entry naming no Site is a warning, not an error: Sites come and
// go, and the Override takes effect on a Site once it is registered.
func ValidateOverride(o *vk8sv1.Override, sites sets.Set[string]) (field.ErrorList, []string) {
	errs, warnings := validateStructure(o)
	if sites != nil {
		for i, s := range o.Spec.SiteList {
			if !sites.Has(s) {
				warnings = append(warnings, fmt.Sprintf("%s: Site %q does not exist; the Override takes effect there once the Site is registered",
					pathSiteList.Index(i), s))
			}
		}
	}
	if spec := o.Spec.DeploymentSpec; spec.Selector != nil && spec.Template != nil {
		errs = append(errs, validateTemplateLabels(spec.Template, spec.Selector, "its selector")...)
	}
	return errs, warnings
}

// ValidateOverrideForWorkload checks an Override against the workload that names it, as at
// the workload's admission: everything ValidateOverride checks but the site list lookup,
// that a selector in the Override equals the workload's selector, and that the template's
// labels match that selector once its matchLabels are added back (ApplyOverride adds
// them). Template labels that ApplyOverride will replace by the selector's values are
// warnings. selector is nil for workloads without one (CronJobs, bare pods). Field paths
// are the Override's; the webhook says which Override they belong to.
func ValidateOverrideForWorkload(o *vk8sv1.Override, selector *metav1.LabelSelector) (field.ErrorList, []string) {
	errs, warnings := validateStructure(o)
	spec := o.Spec.DeploymentSpec
	if spec.Selector != nil {
		p := pathDeploymentSpec.Child("selector")
		switch {
		case selector == nil:
			errs = append(errs, field.Forbidden(p, "the workload has no selector; remove it from the Override"))
		case !sameSelector(spec.Selector, selector):
			errs = append(errs, field.Invalid(p, metav1.FormatLabelSelector(spec.Selector),
				fmt.Sprintf("must equal the workload's selector %q; remove it (it may be left out) or copy the workload's", metav1.FormatLabelSelector(selector))))
		}
	}
	if spec.Template != nil && selector != nil {
		errs = append(errs, validateTemplateLabels(spec.Template, selector, "the workload's selector")...)
		for _, k := range sets.List(sets.KeySet(selector.MatchLabels)) {
			if v, ok := spec.Template.Labels[k]; ok && v != selector.MatchLabels[k] {
				warnings = append(warnings, fmt.Sprintf("%s: %q is replaced by %q, the workload selector's value, on the Override's sites",
					pathTemplate.Child("metadata", "labels").Key(k), v, selector.MatchLabels[k]))
			}
		}
	}
	return errs, warnings
}

// validateStructure holds the checks that need nothing but the Override.
func validateStructure(o *vk8sv1.Override) (field.ErrorList, []string) {
	var errs field.ErrorList
	var warnings []string
	// The name is the value of the vk8s.io/override label on pods.
	if msgs := validation.IsValidLabelValue(o.Name); len(msgs) > 0 {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), o.Name,
			"the name is the value of label "+vk8sv1.LabelOverride+" on the pods it applies to, so it must be a valid label value (at most 63 characters); choose a shorter name"))
	}

	if len(o.Spec.SiteList) == 0 {
		errs = append(errs, field.Required(pathSiteList, "list the names of the Sites this Override applies to"))
	}
	seen := sets.New[string]()
	for i, s := range o.Spec.SiteList {
		switch {
		case len(validation.IsDNS1123Subdomain(s)) > 0:
			errs = append(errs, field.Invalid(pathSiteList.Index(i), s, "not a valid Site name ("+ruleSubdomain+"); write the name of a Site (kubectl get sites lists them)"))
		case seen.Has(s):
			errs = append(errs, field.Duplicate(pathSiteList.Index(i), s))
		}
		seen.Insert(s)
	}

	spec := o.Spec.DeploymentSpec
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"minReadySeconds", spec.MinReadySeconds != nil},
		{"revisionHistoryLimit", spec.RevisionHistoryLimit != nil},
		{"paused", spec.Paused != nil},
		{"progressDeadlineSeconds", spec.ProgressDeadlineSeconds != nil},
	} {
		if f.set {
			errs = append(errs, field.Forbidden(pathDeploymentSpec.Child(f.name), detailUnsupported))
		}
	}
	if spec.Replicas != nil && *spec.Replicas < 0 {
		errs = append(errs, field.Invalid(pathDeploymentSpec.Child("replicas"), *spec.Replicas, "must be 0 or more: the number of replicas on each of the Override's sites"))
	}
	if spec.Selector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(spec.Selector, metav1validation.LabelSelectorValidationOptions{}, pathDeploymentSpec.Child("selector"))...)
	}
	if spec.Template != nil {
		errs = append(errs, validateTemplate(spec.Template)...)
	}
	if spec.Strategy != nil {
		errs = append(errs, validateStrategy(spec.Strategy, pathDeploymentSpec.Child("strategy"))...)
	}
	if spec.Replicas == nil && spec.Template == nil && spec.Strategy == nil {
		warnings = append(warnings, pathDeploymentSpec.String()+
			" sets none of replicas, template and strategy: the Override's sites run the workload's own spec and take no later Override of the workload's list")
	}
	return errs, warnings
}

// validateTemplate checks an Override's pod template: it replaces the workload's whole
// template, so it must be complete, and it must leave pod identity to the workload.
func validateTemplate(t *corev1.PodTemplateSpec) field.ErrorList {
	var errs field.ErrorList
	meta := pathTemplate.Child("metadata")
	if t.Name != "" {
		errs = append(errs, field.Forbidden(meta.Child("name"), detailTemplateMeta))
	}
	if t.GenerateName != "" {
		errs = append(errs, field.Forbidden(meta.Child("generateName"), detailTemplateMeta))
	}
	if t.Namespace != "" {
		errs = append(errs, field.Forbidden(meta.Child("namespace"), detailTemplateMeta))
	}
	if t.UID != "" {
		errs = append(errs, field.Forbidden(meta.Child("uid"), detailTemplateMeta))
	}
	if len(t.OwnerReferences) > 0 {
		errs = append(errs, field.Forbidden(meta.Child("ownerReferences"), detailTemplateMeta))
	}
	errs = append(errs, metav1validation.ValidateLabels(t.Labels, meta.Child("labels"))...)
	if len(t.Spec.Containers) == 0 {
		errs = append(errs, field.Required(pathTemplate.Child("spec", "containers"),
			"the Override's template replaces the workload's whole pod template, so it needs containers; copy the workload's template and change what differs"))
	}
	return errs
}

// validateTemplateLabels checks that t's labels, with selector's matchLabels added back,
// match selector: matchExpressions cannot be added back, so the template must satisfy
// them itself.
func validateTemplateLabels(t *corev1.PodTemplateSpec, selector *metav1.LabelSelector, what string) field.ErrorList {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		// The selector's own validation reports it.
		return nil
	}
	got := withSelectorLabels(t.Labels, selector)
	if sel.Matches(labels.Set(got)) {
		return nil
	}
	return field.ErrorList{field.Invalid(pathTemplate.Child("metadata", "labels"), labels.Set(t.Labels).String(),
		fmt.Sprintf("do not match %s %q, even with its matchLabels added back; set labels that %s accepts", what, sel.String(), what))}
}

// validateStrategy checks a rollout strategy as the Deployment API does: vk8s, not the
// Deployment controller, runs the per-site rollout, so nothing else would check it.
func validateStrategy(s *appsv1.DeploymentStrategy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case "", appsv1.RollingUpdateDeploymentStrategyType:
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(p.Child("rollingUpdate"), "may not be set when type is Recreate; remove it or set type RollingUpdate"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), s.Type,
			[]appsv1.DeploymentStrategyType{appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType}))
	}
	if ru := s.RollingUpdate; ru != nil {
		p := p.Child("rollingUpdate")
		unavailable, uerr := intOrPercent(ru.MaxUnavailable, p.Child("maxUnavailable"), true)
		surge, serr := intOrPercent(ru.MaxSurge, p.Child("maxSurge"), false)
		errs = append(errs, uerr...)
		errs = append(errs, serr...)
		if len(uerr) == 0 && len(serr) == 0 && ru.MaxUnavailable != nil && ru.MaxSurge != nil && unavailable == 0 && surge == 0 {
			errs = append(errs, field.Invalid(p.Child("maxUnavailable"), ru.MaxUnavailable.String(),
				"may not be 0 when maxSurge is 0, or the rollout could never proceed; set one of them above 0"))
		}
	}
	return errs
}

// intOrPercent returns the number or percentage in v (nil counts as unset, not 0).
func intOrPercent(v *intstr.IntOrString, p *field.Path, upTo100 bool) (int, field.ErrorList) {
	if v == nil {
		return -1, nil
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return 0, field.ErrorList{field.Invalid(p, v.IntVal, "must be 0 or more")}
		}
		return int(v.IntVal), nil
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, 100, false)
	if err != nil || !strings.HasSuffix(v.StrVal, "%") || n < 0 {
		return 0, field.ErrorList{field.Invalid(p, v.StrVal, `must be a number of pods or a percentage such as "25%"`)}
	}
	if upTo100 && n > 100 {
		return 0, field.ErrorList{field.Invalid(p, v.StrVal, "must not be more than 100%")}
	}
	return n, nil
}

// sameSelector says whether a and b select the same labels in the same words: the order of
// matchExpressions and of their values does not matter.
func sameSelector(a, b *metav1.LabelSelector) bool {
	sa, errA := metav1.LabelSelectorAsSelector(a)
	sb, errB := metav1.LabelSelectorAsSelector(b)
	return errA == nil && errB == nil && sa.String() == sb.String()
}

// Applied is what an Override makes of a workload on one site.
type Applied struct {
	// Template is the pod template to run on the site.
	Template corev1.PodTemplateSpec
	// Replicas replaces the workload's per-site replica count R on the site; nil keeps R.
	Replicas *int32
	// Strategy paces the rollout on the site; nil keeps the workload's.
	Strategy *appsv1.DeploymentStrategy
}

// ApplyOverride applies Override o (nil: none) to the pod template base of a workload
// whose selector is selector, for one site. It never modifies its arguments.
//
// The Override's template, when set, replaces base's labels, annotations and spec. The
// rest of base's metadata (name, generateName, namespace, uid, ownerReferences, ...) is
// kept, so ApplyOverride can be given a pod's metadata and spec as well as a workload's
// template. The labels of selector's matchLabels are always the selector's, and labels and
// annotations in Kubernetes' and vk8s' own key prefixes (pod-template-hash,
// controller-revision-hash, batch.kubernetes.io/job-completion-index, vk8s.io/site, ...)
// that the Override's template does not set are kept from base, because controllers rely
// on them. The result carries label vk8s.io/override=<o's name>; without an Override the
// label is removed, so it never names an Override that does not apply.
//
// It returns an error when the result does not match selector: the Override's template
// fails a matchExpressions requirement (ValidateOverrideForWorkload reports that at
// admission) or base does not match it.
func ApplyOverride(base *corev1.PodTemplateSpec, selector *metav1.LabelSelector, o *vk8sv1.Override) (Applied, error) {
	out := base.DeepCopy()
	if o == nil {
		delete(out.Labels, vk8sv1.LabelOverride)
		return Applied{Template: *out}, nil
	}
	if msgs := validation.IsValidLabelValue(o.Name); len(msgs) > 0 {
		return Applied{}, fmt.Errorf("apply override %q: its name is not a valid value of label %s: %s", o.Name, vk8sv1.LabelOverride, strings.Join(msgs, "; "))
	}
	spec := o.Spec.DeploymentSpec
	if spec.Template != nil {
		t := spec.Template.DeepCopy()
		out.Labels = merge(systemKeys(base.Labels), t.Labels)
		out.Annotations = merge(systemKeys(base.Annotations), t.Annotations)
		out.Spec = t.Spec
	}
	out.Labels = withSelectorLabels(out.Labels, selector)
	out.Labels[vk8sv1.LabelOverride] = o.Name
	if selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			return Applied{}, fmt.Errorf("apply override %q: workload selector: %w", o.Name, err)
		}
		if !sel.Matches(labels.Set(out.Labels)) {
			return Applied{}, fmt.Errorf("apply override %q: the resulting template labels %s do not match the workload selector %q",
				o.Name, labels.Set(out.Labels), sel)
		}
	}
	a := Applied{Template: *out}
	if spec.Replicas != nil {
		a.Replicas = new(int32)
		*a.Replicas = *spec.Replicas
	}
	if spec.Strategy != nil {
		a.Strategy = spec.Strategy.DeepCopy()
	}
	return a, nil
}

// withSelectorLabels returns a copy of l with the selector's matchLabels set.
func withSelectorLabels(l map[string]string, selector *metav1.LabelSelector) map[string]string {
	out := merge(l, nil)
	if selector != nil {
		for k, v := range selector.MatchLabels {
			out[k] = v
		}
	}
	return out
}

// systemKeys returns the entries of m whose keys Kubernetes or vk8s own.
func systemKeys(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if isSystemKey(k) {
			out[k] = v
		}
	}
	return out
}

// legacySystemKeys are the unprefixed labels that workload controllers put on their pods.
var legacySystemKeys = sets.New(
	appsv1.DefaultDeploymentUniqueLabelKey, // pod-template-hash
	appsv1.ControllerRevisionHashLabelKey,  // controller-revision-hash
	"controller-uid", "job-name",
)

// isSystemKey says whether a label or annotation key belongs to Kubernetes (kubernetes.io,
// k8s.io and their subdomains, but app.kubernetes.io, whose recommended labels users set),
// to vk8s, or is one of the legacy controller labels.
func isSystemKey(k string) bool {
	if legacySystemKeys.Has(k) {
		return true
	}
	prefix, _, ok := strings.Cut(k, "/")
	if !ok || prefix == "app.kubernetes.io" {
		return false
	}
	for _, domain := range []string{"kubernetes.io", "k8s.io", "vk8s.io"} {
		if prefix == domain || strings.HasSuffix(prefix, "."+domain) {
			return true
		}
	}
	return false
}

// merge returns a new map with a's entries overwritten by b's; never nil.
func merge(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

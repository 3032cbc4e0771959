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
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Reasons of the Ready condition of Overrides and WorkloadFlavors.
const (
	ReasonSitesFound    = "SitesFound"
	ReasonSitesNotFound = "SitesNotFound"
	ReasonInvalid       = "Invalid"
	ReasonValid         = "Valid"
)

// OverrideStatus is the status of o given the names of the registered Sites: the listed
// Sites that exist, and Ready. Ready is False with reason Invalid when ValidateOverride
// finds errors (an Override written before the webhook ran, or with it off), False with
// SitesNotFound naming the Sites that do not exist (the Override takes effect there once
// they are registered), and True with SitesFound otherwise.
func OverrideStatus(o *vk8sv1.Override, sites sets.Set[string]) vk8sv1.OverrideStatus {
	st := *o.Status.DeepCopy()
	st.ObservedGeneration = o.Generation
	st.Sites = nil
	var missing []string
	for _, s := range o.Spec.SiteList {
		if sites.Has(s) {
			st.Sites = append(st.Sites, s)
		} else {
			missing = append(missing, s)
		}
	}
	slices.Sort(st.Sites)
	st.Sites = slices.Compact(st.Sites)
	cond := metav1.Condition{Type: vk8sv1.ConditionReady, ObservedGeneration: o.Generation}
	errs, _ := ValidateOverride(o, nil)
	switch {
	case len(errs) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonInvalid
		cond.Message = fmt.Sprintf("the Override is invalid: %s; fix it (kubectl edit override -n %s %s)", errs.ToAggregate().Error(), o.Namespace, o.Name)
	case len(missing) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonSitesNotFound
		cond.Message = fmt.Sprintf("spec.siteList names Sites that do not exist: %s; the Override takes effect there once they are registered "+
			"(kubectl get sites lists them), and on %d other Sites now", strings.Join(missing, ", "), len(st.Sites))
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonSitesFound
		cond.Message = fmt.Sprintf("every Site of spec.siteList exists (%d)", len(st.Sites))
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

// FlavorStatus is the status of f: Ready True (reason Valid) when its limits give every
// container a non-zero request (ValidateFlavor), False with reason Invalid otherwise.
func FlavorStatus(f *vk8sv1.WorkloadFlavor) vk8sv1.WorkloadFlavorStatus {
	st := *f.Status.DeepCopy()
	st.ObservedGeneration = f.Generation
	cond := metav1.Condition{Type: vk8sv1.ConditionReady, ObservedGeneration: f.Generation,
		Status: metav1.ConditionTrue, Reason: ReasonValid, Message: "the limits give every container a request"}
	if errs := ValidateFlavor(f); len(errs) > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonInvalid
		cond.Message = fmt.Sprintf("the WorkloadFlavor is invalid: %s; workloads naming it are refused on RegionalEdge sites", errs.ToAggregate().Error())
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

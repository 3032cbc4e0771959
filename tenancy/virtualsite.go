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

package tenancy

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
)

// Reasons of a VirtualSite's Ready condition.
const (
	ReasonSitesSelected   = "SitesSelected"
	ReasonNoSitesSelected = "NoSitesSelected"
	ReasonInvalidSelector = "InvalidSelector"
)

// ReconcileVirtualSite writes a VirtualSite's status: the Sites it selects, their count,
// and Ready. It writes only when the status changes.
func (c *Controller) ReconcileVirtualSite(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	vs := &vk8sv1.VirtualSite{}
	if err := c.client.Get(ctx, req.NamespacedName, vs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var sites vk8sv1.SiteList
	if err := c.client.List(ctx, &sites, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("list Sites: %w", err)
	}
	status := virtualSiteStatus(vs, sites.Items)
	if equality.Semantic.DeepEqual(vs.Status, status) {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(vs.DeepCopy())
	vs.Status = status
	if err := c.client.Status().Patch(ctx, vs, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("VirtualSite status written", "sites", status.SiteCount,
		"ready", meta.IsStatusConditionTrue(status.Conditions, vk8sv1.ConditionReady))
	return ctrl.Result{}, nil
}

// virtualSiteStatus is the status of vs given the fleet's Sites (pure).
func virtualSiteStatus(vs *vk8sv1.VirtualSite, sites []vk8sv1.Site) vk8sv1.VirtualSiteStatus {
	st := *vs.Status.DeepCopy()
	st.ObservedGeneration = vs.Generation
	cond := metav1.Condition{Type: vk8sv1.ConditionReady, ObservedGeneration: vs.Generation}
	selected, err := overrides.SelectSites(vs, sites)
	switch {
	case err != nil:
		selected = nil
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonInvalidSelector
		cond.Message = fmt.Sprintf("spec.siteSelector is invalid: %v; fix it (kubectl edit virtualsite -n %s %s): "+
			"operators are In, NotIn (with values), Exists and DoesNotExist (without)", err, vs.Namespace, vs.Name)
	case len(selected) == 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNoSitesSelected
		what := "spec.siteSelector " + selectorString(&vs.Spec.SiteSelector)
		if vs.Spec.SiteType != "" {
			what += " with spec.siteType " + string(vs.Spec.SiteType)
		}
		cond.Message = fmt.Sprintf("no Site matches %s, so workloads naming this virtual-site are refused; "+
			"label Sites to match (kubectl label site <name> <key>=<value>), or change the selector (kubectl get sites --show-labels lists them)", what)
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonSitesSelected
		cond.Message = fmt.Sprintf("%d Sites selected", len(selected))
		if len(selected) == 1 {
			cond.Message = "1 Site selected"
		}
	}
	st.Sites = selected
	st.SiteCount = int32(len(selected))
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

// selectorString shows a label selector as kubectl -l would take it; "{}" selects all.
func selectorString(sel *metav1.LabelSelector) string {
	s := metav1.FormatLabelSelector(sel)
	if s == "" || s == "<none>" {
		return "(every Site)"
	}
	return "(" + s + ")"
}

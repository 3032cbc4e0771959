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

package federation

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/sets"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
)

// indexOverrideSite indexes Overrides by the Sites of their siteList.
const indexOverrideSite = "vk8s.override-site"

// statusWriter writes the status of Overrides (overrides.OverrideStatus) and
// WorkloadFlavors (overrides.FlavorStatus), only when it changes.
type statusWriter struct {
	client client.Client
}

// setupStatus adds the status controllers of Overrides and WorkloadFlavors to mgr. An
// Override is reconciled when it changes and when a Site of its siteList is registered or
// deleted.
func setupStatus(ctx context.Context, mgr ctrl.Manager, name string) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &vk8sv1.Override{}, indexOverrideSite, func(o client.Object) []string {
		return o.(*vk8sv1.Override).Spec.SiteList
	}); err != nil {
		return fmt.Errorf("index Overrides by site: %w", err)
	}
	w := &statusWriter{client: mgr.GetClient()}
	sites := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, s client.Object) []reconcile.Request {
		var list vk8sv1.OverrideList
		if err := w.client.List(ctx, &list, client.MatchingFields{indexOverrideSite: s.GetName()}); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
		return reqs
	})
	createdOrDeleted := predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }}
	err := builder.ControllerManagedBy(mgr).
		Named(name+"-override-status").
		For(&vk8sv1.Override{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&vk8sv1.Site{}, sites, builder.WithPredicates(createdOrDeleted)).
		Complete(reconcile.Func(w.reconcileOverride))
	if err != nil {
		return err
	}
	return builder.ControllerManagedBy(mgr).
		Named(name+"-flavor-status").
		For(&vk8sv1.WorkloadFlavor{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(reconcile.Func(w.reconcileFlavor))
}

func (w *statusWriter) reconcileOverride(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	o := &vk8sv1.Override{}
	if err := w.client.Get(ctx, req.NamespacedName, o); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var list vk8sv1.SiteList
	if err := w.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return reconcile.Result{}, fmt.Errorf("list Sites: %w", err)
	}
	names := sets.New[string]()
	for i := range list.Items {
		names.Insert(list.Items[i].Name)
	}
	st := overrides.OverrideStatus(o, names)
	if equality.Semantic.DeepEqual(o.Status, st) {
		return reconcile.Result{}, nil
	}
	patch := client.MergeFrom(o.DeepCopy())
	o.Status = st
	return reconcile.Result{}, client.IgnoreNotFound(w.client.Status().Patch(ctx, o, patch))
}

func (w *statusWriter) reconcileFlavor(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	f := &vk8sv1.WorkloadFlavor{}
	if err := w.client.Get(ctx, req.NamespacedName, f); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	st := overrides.FlavorStatus(f)
	if equality.Semantic.DeepEqual(f.Status, st) {
		return reconcile.Result{}, nil
	}
	patch := client.MergeFrom(f.DeepCopy())
	f.Status = st
	return reconcile.Result{}, client.IgnoreNotFound(w.client.Status().Patch(ctx, f, patch))
}

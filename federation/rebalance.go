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
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/placement"
)

// Rebalancer converges the per-site pod counts of federated workloads on their plan (SPEC
// §4: "A rebalancer controller converges counts after scale-down, site set changes and
// concurrent admissions"). Admission places every new pod at the largest deficit, so the
// rebalancer only ever removes pods: it
//
//   - re-plans a workload whose sites changed (a Site or VirtualSite changed labels, a
//     site came or went) by writing its vk8s.io/placement, which makes workload admission
//     recompute spec.replicas and the plan; the pods a removed site must give up are
//     marked with a low deletion cost first, so the ReplicaSet's scale-down takes them;
//   - marks the surplus pods of every site with placement.ExcessDeletionCost, so any
//     scale-down takes them first;
//   - evicts surplus pods while a reachable site lacks pods and the ReplicaSet is
//     settled, at most maxUnavailable at a time: the ReplicaSet recreates them and
//     admission places them where they are missing. A pod never moves towards a site
//     whose connection is down.
//
// StatefulSets are re-planned too, and a pod whose ordinal's block moved to another
// reachable site is evicted, one at a time, so that it comes back there; DaemonSets and
// Jobs are not its business (a DaemonSet follows its nodes, a Job's pods end).
type Rebalancer struct {
	s   *State
	log logr.Logger
}

// NewRebalancer returns the rebalancer over s.
func NewRebalancer(s *State, log logr.Logger) *Rebalancer { return &Rebalancer{s: s, log: log} }

// rebalancedKind is a kind the rebalancer reconciles.
type rebalancedKind struct {
	newObj  func() client.Object
	newList func() client.ObjectList
}

var rebalancedKinds = []rebalancedKind{
	{func() client.Object { return &appsv1.Deployment{} }, func() client.ObjectList { return &appsv1.DeploymentList{} }},
	{func() client.Object { return &appsv1.ReplicaSet{} }, func() client.ObjectList { return &appsv1.ReplicaSetList{} }},
	{func() client.Object { return &appsv1.StatefulSet{} }, func() client.ObjectList { return &appsv1.StatefulSetList{} }},
}

// setupRebalancer registers one controller per kind of rebalancedKinds. Sites count when
// their labels, type or connection change (not at every heartbeat); VirtualSites,
// VirtualKubernetes and Overrides when their spec does.
func setupRebalancer(mgr ctrl.Manager, s *State) error {
	siteChanged := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*vk8sv1.Site), e.ObjectNew.(*vk8sv1.Site)
		return !maps.Equal(o.Labels, n.Labels) || o.Spec.Type != n.Spec.Type || connected(o) != connected(n)
	}}
	specChanged := builder.WithPredicates(predicate.GenerationChangedPredicate{})
	for _, k := range rebalancedKinds {
		obj := k.newObj()
		kind := strings.ToLower(goKind(obj))
		r := NewRebalancer(s, mgr.GetLogger().WithName("rebalancer"))
		all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return r.Federated(ctx, k.newList(), "")
		})
		inNamespace := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.Federated(ctx, k.newList(), o.GetNamespace())
		})
		err := builder.ControllerManagedBy(mgr).
			Named(s.Name+"-rebalance-"+kind).
			For(obj).
			Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, p client.Object) []reconcile.Request {
				return r.PodWorkload(ctx, p, obj)
			})).
			Watches(&vk8sv1.Site{}, all, builder.WithPredicates(siteChanged)).
			Watches(&vk8sv1.VirtualSite{}, all, specChanged).
			Watches(&vk8sv1.VirtualKubernetes{}, inNamespace, specChanged).
			Watches(&vk8sv1.Override{}, inNamespace, specChanged).
			WithOptions(crcontroller.Options{MaxConcurrentReconciles: 4}).
			Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
				return reconcile.Result{}, r.Rebalance(ctx, k.newObj(), req.NamespacedName)
			}))
		if err != nil {
			return fmt.Errorf("rebalancer for %ss: %w", kind, err)
		}
	}
	return nil
}

// goKind is the kind of an apps/v1 object by its Go type: Deployment, ReplicaSet, ...
func goKind(obj client.Object) string { return strings.TrimPrefix(fmt.Sprintf("%T", obj), "*v1.") }

// Federated lists the federated workloads of list's kind (in namespace, or everywhere):
// the admitted ones (with a plan) that no other workload owns.
func (r *Rebalancer) Federated(ctx context.Context, list client.ObjectList, namespace string) []reconcile.Request {
	if err := r.s.Cache.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		r.log.Error(err, "List workloads failed", "namespace", namespace)
		return nil
	}
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(item runtime.Object) error {
		if o := item.(client.Object); o.GetAnnotations()[vk8sv1.AnnotationPlacement] != "" && !OwnedByWorkload(o) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		}
		return nil
	})
	return reqs
}

// PodWorkload maps a federated pod to its workload of kind obj's: a ReplicaSet's
// Deployment, a bare ReplicaSet, a StatefulSet.
func (r *Rebalancer) PodWorkload(ctx context.Context, p client.Object, obj client.Object) []reconcile.Request {
	ref := metav1.GetControllerOfNoCopy(p)
	if ref == nil {
		return nil
	}
	key := func(name string) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: p.GetNamespace(), Name: name}}}
	}
	switch obj.(type) {
	case *appsv1.StatefulSet:
		if ref.Kind == "StatefulSet" {
			return key(ref.Name)
		}
	case *appsv1.ReplicaSet, *appsv1.Deployment:
		if ref.Kind != "ReplicaSet" {
			return nil
		}
		rs := &appsv1.ReplicaSet{}
		if err := r.s.Cache.Get(ctx, types.NamespacedName{Namespace: p.GetNamespace(), Name: ref.Name}, rs); err != nil {
			return nil
		}
		up := metav1.GetControllerOfNoCopy(rs)
		_, wantDeployment := obj.(*appsv1.Deployment)
		switch {
		case up != nil && up.Kind == "Deployment" && wantDeployment:
			return key(up.Name)
		case up == nil && !wantDeployment:
			return key(rs.Name)
		}
	}
	return nil
}

// replicasOf returns spec.replicas of the kinds the rebalancer reconciles, and whether
// their pods are ordinals (StatefulSets).
func replicasOf(obj client.Object) (replicas *int32, ordered, ok bool) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Replicas, false, true
	case *appsv1.ReplicaSet:
		return o.Spec.Replicas, false, true
	case *appsv1.StatefulSet:
		return o.Spec.Replicas, true, true
	}
	return nil, false, false
}

// Rebalance converges one workload, read into obj.
func (r *Rebalancer) Rebalance(ctx context.Context, obj client.Object, key types.NamespacedName) (err error) {
	ctx, span := r.s.tracer.Start(ctx, "rebalance "+goKind(obj), trace.WithAttributes(
		attribute.String("k8s.namespace.name", key.Namespace), attribute.String("vk8s.object.name", key.Name)))
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if err := r.s.Cache.Get(ctx, key, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	replicas, ordered, ok := replicasOf(obj)
	if obj.GetDeletionTimestamp() != nil || !ok || OwnedByWorkload(obj) {
		return nil
	}
	annotations := obj.GetAnnotations()
	current := annotations[vk8sv1.AnnotationPlacement]
	if current == "" {
		// Not admitted as a federated workload (yet): admission federates it at its next write.
		return nil
	}
	cur, err := placement.ParseLayout(current)
	if err != nil || cur.Total() != ptr.Deref(replicas, 1) {
		// A write through the scale subresource is on its way to the annotations (the
		// refresher): converge on the plan once it is there.
		return nil
	}
	fed, err := r.s.Resolver.Resolve(ctx, key.Namespace, annotations, Lenient)
	switch {
	case IsRejection(err):
		// Admission would refuse the workload's next write: nothing to converge on.
		return nil
	case err != nil:
		return err
	case fed == nil || len(fed.Sites) == 0:
		return nil
	}
	perSite, err := strconv.ParseInt(annotations[vk8sv1.AnnotationReplicasPerSite], 10, 32)
	if err != nil || perSite < 0 {
		return nil
	}
	plan, err := fed.Plan(int32(perSite))
	if err != nil {
		return nil
	}
	var previous []string
	if ordered {
		previous = cur.Sites
	}
	want := placement.NewLayout(plan, previous)
	log := r.log.WithValues("kind", goKind(obj), "workload", key)
	ctx = ctrl.LoggerInto(ctx, log)

	var pods []placement.RebalancePod
	var rs *appsv1.ReplicaSet
	if !ordered {
		rs, err = r.settledReplicaSet(ctx, obj)
		if err != nil {
			return err
		}
		if rs != nil {
			if pods, err = r.pods(ctx, rs); err != nil {
				return err
			}
		}
	}
	decision := placement.Rebalance(want.Counts, pods, r.reachable(ctx), maxUnavailable(obj, want.Total()))
	if err := r.markExcess(ctx, key.Namespace, decision.Costs); err != nil {
		return err
	}

	if want.String() != current {
		// The sites changed: workload admission recomputes spec.replicas and the plan on
		// any write; writing the plan the rebalancer expects is that write.
		return r.replan(ctx, obj, current, want.String())
	}
	if sts, ok := obj.(*appsv1.StatefulSet); ok {
		return r.moveOrdinals(ctx, sts, want)
	}
	if rs == nil || len(decision.Moves) == 0 {
		return nil
	}
	if int32(len(pods)) != ptr.Deref(rs.Spec.Replicas, 1) || decision.Terminating {
		// The ReplicaSet is still creating or deleting pods: wait for its pod events.
		return nil
	}
	return r.move(ctx, obj, decision.Moves)
}

// settledReplicaSet returns the one ReplicaSet that runs a workload's pods (a bare
// ReplicaSet itself), or nil while a Deployment rolls out or has not caught up with its
// spec: the Deployment controller, not the rebalancer, moves pods then.
func (r *Rebalancer) settledReplicaSet(ctx context.Context, obj client.Object) (*appsv1.ReplicaSet, error) {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		return o, nil
	case *appsv1.Deployment:
		want := ptr.Deref(o.Spec.Replicas, 1)
		s := o.Status
		if s.ObservedGeneration < o.Generation || s.Replicas != want || s.UpdatedReplicas != want {
			return nil, nil
		}
		var list appsv1.ReplicaSetList
		if err := r.s.Cache.List(ctx, &list, client.InNamespace(o.Namespace)); err != nil {
			return nil, fmt.Errorf("list ReplicaSets of Deployment %s: %w", o.Name, err)
		}
		var active *appsv1.ReplicaSet
		for i := range list.Items {
			rs := &list.Items[i]
			if ref := metav1.GetControllerOfNoCopy(rs); ref == nil || ref.UID != o.UID || ptr.Deref(rs.Spec.Replicas, 0) == 0 {
				continue
			}
			if active != nil {
				return nil, nil
			}
			active = rs
		}
		return active, nil
	}
	return nil, nil
}

// pods returns the live pods of a ReplicaSet as the rebalancer sees them.
func (r *Rebalancer) pods(ctx context.Context, rs *appsv1.ReplicaSet) ([]placement.RebalancePod, error) {
	var list corev1.PodList
	if err := r.s.Cache.List(ctx, &list, client.InNamespace(rs.Namespace), client.MatchingFields{IndexPodOwner: string(rs.UID)}); err != nil {
		return nil, fmt.Errorf("list pods of ReplicaSet %s: %w", rs.Name, err)
	}
	out := make([]placement.RebalancePod, 0, len(list.Items))
	for i := range list.Items {
		p := &list.Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, placement.RebalancePod{
			Name: p.Name, UID: p.UID, Site: p.Labels[vk8sv1.LabelSite], Slot: placement.Slot(p),
			Ready: podReady(p), Terminating: p.DeletionTimestamp != nil, Cost: p.Annotations[corev1.PodDeletionCost],
		})
	}
	return out, nil
}

// reachable says whether the provider reaches a site: its Site is connected.
func (r *Rebalancer) reachable(ctx context.Context) func(string) bool {
	return func(site string) bool {
		s := &vk8sv1.Site{}
		return r.s.Cache.Get(ctx, types.NamespacedName{Name: site}, s) == nil && connected(s)
	}
}

// maxUnavailable is how many pods of obj the rebalancer moves at once: a Deployment's
// rolling-update maxUnavailable over its total (rounded down, at least 1), else 25%.
func maxUnavailable(obj client.Object, total int32) int {
	var v *intstr.IntOrString
	if d, ok := obj.(*appsv1.Deployment); ok && d.Spec.Strategy.RollingUpdate != nil {
		v = d.Spec.Strategy.RollingUpdate.MaxUnavailable
	}
	return placement.MaxUnavailable(v, intstr.FromString(placement.DefaultMaxUnavailable), int(total))
}

// markExcess sets the deletion cost of the pods in costs.
func (r *Rebalancer) markExcess(ctx context.Context, namespace string, costs map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(costs)) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, corev1.PodDeletionCost, costs[name])
		if err := r.s.Client.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(patch))); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("set the deletion cost of pod %s: %w", name, err)
		}
	}
	return nil
}

// replan writes the plan the workload's sites give now; admission recomputes spec.replicas.
func (r *Rebalancer) replan(ctx context.Context, obj client.Object, from, to string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, vk8sv1.AnnotationPlacement, to)
	if err := r.s.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return fmt.Errorf("re-plan %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	got := obj.GetAnnotations()[vk8sv1.AnnotationPlacement]
	r.s.metrics.replans.Inc()
	ctrl.LoggerFrom(ctx).Info("Re-planned", "from", from, "to", got)
	replicas, _, _ := replicasOf(obj)
	r.s.event(obj, nil, corev1.EventTypeNormal, "SitesChanged", "Rebalance",
		"placement %s is now %s (spec.replicas %d)", from, got, ptr.Deref(replicas, 0))
	if got != to {
		// Admission disagrees with the rebalancer's plan: say so once rather than write
		// again and again; the next change of the workload or its sites tries again.
		ctrl.LoggerFrom(ctx).Error(nil, "Admission wrote another plan than the rebalancer's", "want", to, "got", got)
	}
	return nil
}

// move evicts pods (Evict) so that their ReplicaSet recreates them where pods are missing.
func (r *Rebalancer) move(ctx context.Context, obj client.Object, moves []placement.RebalancePod) error {
	from := map[string]int{}
	for _, p := range moves {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: obj.GetNamespace(), Name: p.Name, UID: p.UID}}
		if err := Evict(ctx, r.s.Client, pod); err != nil {
			if budget := budgetBlocked(err); budget != "" {
				r.s.event(obj, nil, corev1.EventTypeWarning, ReasonEvictionBlocked, "Rebalance",
					"moving pod %s off site %s waits for a PodDisruptionBudget: %s", p.Name, p.Site, budget)
			}
			return fmt.Errorf("move pod %s off site %s: %w", p.Name, p.Site, err)
		}
		from[p.Site]++
		r.s.metrics.moves.WithLabelValues(p.Site).Inc()
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(from)) {
		parts = append(parts, fmt.Sprintf("%s -%d", s, from[s]))
	}
	ctrl.LoggerFrom(ctx).Info("Moved pods", "pods", len(moves), "from", strings.Join(parts, ", "))
	r.s.event(obj, nil, corev1.EventTypeNormal, "Rebalanced", "Rebalance",
		"moving %d pods off sites with too many (%s) to the sites that lack them", len(moves), strings.Join(parts, ", "))
	return nil
}

// moveOrdinals evicts, one at a time, a StatefulSet pod whose ordinal's block is now on
// another, reachable site (a site before it left the plan); the StatefulSet controller
// recreates it under the same name and admission places it by its ordinal. Its volumes
// stay on the old site: the new pod's claims are made on the new one.
func (r *Rebalancer) moveOrdinals(ctx context.Context, sts *appsv1.StatefulSet, want placement.Layout) error {
	var list corev1.PodList
	if err := r.s.Cache.List(ctx, &list, client.InNamespace(sts.Namespace), client.MatchingFields{IndexPodOwner: string(sts.UID)}); err != nil {
		return fmt.Errorf("list pods of StatefulSet %s: %w", sts.Name, err)
	}
	reachable := r.reachable(ctx)
	var misplaced []placement.RebalancePod
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp != nil {
			// One move at a time: wait for its pod events.
			return nil
		}
		ordinal, ok := placement.Ordinal(p)
		if !ok {
			continue
		}
		site, ok := want.SiteOfOrdinal(ordinal)
		if ok && site != p.Labels[vk8sv1.LabelSite] && reachable(site) {
			misplaced = append(misplaced, placement.RebalancePod{Name: p.Name, UID: p.UID, Site: p.Labels[vk8sv1.LabelSite], Slot: ordinal})
		}
	}
	if len(misplaced) == 0 {
		return nil
	}
	slices.SortFunc(misplaced, func(a, b placement.RebalancePod) int { return a.Slot - b.Slot })
	return r.move(ctx, sts, misplaced[:1])
}

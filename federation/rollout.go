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
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/placement"
)

// RolloutKey names a workload whose sites the rollout controller converges: a
// Deployment, StatefulSet, DaemonSet or ReplicaSet without a Deployment. Jobs and
// CronJobs are not restarted: a Job's pods run to completion, and deleting a running one
// loses its work (and counts towards backoffLimit); their next pods (retries, the next
// schedule) are admitted with the current Override.
type RolloutKey struct {
	Kind      string
	Namespace string
	Name      string
}

// rolloutRequeue is how often a rollout in progress is looked at again when no event
// comes.
const rolloutRequeue = 10 * time.Second

// Rollout is the per-site rollout controller (SPEC §4: "When an Override changes or is
// removed, the pods of its sites are rolled site by site at the workload's
// maxUnavailable; other sites are not touched"). For each workload it compares the
// stamp of each pod (vk8sv1.AnnotationOverrideHash) with the stamp admission would give now on
// the pod's site, and restarts the stale pods of one site at a time by deleting them:
// the workload's controller recreates them on the same site (deficit, ordinal or node)
// and admission applies the current Override.
type Rollout struct {
	s      *State
	reader client.Reader
	writer client.Client

	mu sync.Mutex
	// active is the site each workload is rolling, until it settles.
	active map[RolloutKey]string
}

// setupRollout adds the rollout controller to mgr. It watches the workloads it restarts,
// their ReplicaSets, the pods vk8s admitted (the cache holds only those), and Overrides
// (mapped to the workloads whose ves.io/overrides names them). Like every
// controller-runtime controller it runs only on the leader when the manager elects one.
func setupRollout(mgr ctrl.Manager, s *State) error {
	r := NewRollout(s, mgr.GetClient(), mgr.GetClient())
	b := builder.TypedControllerManagedBy[RolloutKey](mgr).Named(s.Name + "-rollout")
	c := mgr.GetCache()
	for _, obj := range []client.Object{&appsv1.Deployment{}, &appsv1.StatefulSet{}, &appsv1.DaemonSet{}, &appsv1.ReplicaSet{}} {
		b = b.WatchesRawSource(source.TypedKind(c, obj, handler.TypedEnqueueRequestsFromMapFunc(r.WorkloadKeys)))
	}
	b = b.WatchesRawSource(source.TypedKind(c, client.Object(&corev1.Pod{}), handler.TypedEnqueueRequestsFromMapFunc(r.PodKeys)))
	b = b.WatchesRawSource(source.TypedKind(c, client.Object(&vk8sv1.Override{}), handler.TypedEnqueueRequestsFromMapFunc(r.OverrideKeys)))
	return b.Complete(r)
}

// NewRollout returns the per-site rollout over s, reading with reader and deleting with
// writer (the manager's client for both).
func NewRollout(s *State, reader client.Reader, writer client.Client) *Rollout {
	return &Rollout{s: s, reader: reader, writer: writer, active: map[RolloutKey]string{}}
}

// WorkloadKeys maps a workload event to its key; a Deployment's ReplicaSet to its
// Deployment (its status tells when the Deployment's own rollout ends).
func (r *Rollout) WorkloadKeys(_ context.Context, obj client.Object) []RolloutKey {
	kind := ""
	switch obj.(type) {
	case *appsv1.Deployment:
		kind = "Deployment"
	case *appsv1.StatefulSet:
		kind = "StatefulSet"
	case *appsv1.DaemonSet:
		kind = "DaemonSet"
	case *appsv1.ReplicaSet:
		if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
			if ref.Kind == "Deployment" {
				return []RolloutKey{{Kind: "Deployment", Namespace: obj.GetNamespace(), Name: ref.Name}}
			}
			return nil
		}
		kind = "ReplicaSet"
	}
	return []RolloutKey{{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}}
}

// PodKeys maps a pod to the workload that federates it.
func (r *Rollout) PodKeys(ctx context.Context, obj client.Object) []RolloutKey {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil {
		return nil
	}
	switch ref.Kind {
	case "StatefulSet", "DaemonSet":
		return []RolloutKey{{Kind: ref.Kind, Namespace: obj.GetNamespace(), Name: ref.Name}}
	case "ReplicaSet":
		rs := &appsv1.ReplicaSet{}
		if err := r.reader.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: ref.Name}, rs); err != nil {
			return nil
		}
		return r.WorkloadKeys(ctx, rs)
	}
	return nil
}

// OverrideKeys maps an Override to the workloads of its namespace whose ves.io/overrides
// names it.
func (r *Rollout) OverrideKeys(ctx context.Context, obj client.Object) []RolloutKey {
	var keys []RolloutKey
	for _, list := range []client.ObjectList{&appsv1.DeploymentList{}, &appsv1.StatefulSetList{}, &appsv1.DaemonSetList{}, &appsv1.ReplicaSetList{}} {
		if err := r.reader.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing the workloads of an Override failed", "override", client.ObjectKeyFromObject(obj))
			continue
		}
		_ = apimeta.EachListItem(list, func(item runtime.Object) error {
			w := item.(client.Object)
			if rs, ok := w.(*appsv1.ReplicaSet); ok && metav1.GetControllerOfNoCopy(rs) != nil {
				return nil
			}
			names, err := overrides.ParseOverrides(w.GetAnnotations())
			if err == nil && slices.Contains(names, obj.GetName()) {
				keys = append(keys, r.WorkloadKeys(ctx, w)...)
			}
			return nil
		})
	}
	return keys
}

// rolloutTarget is a workload as the rollout reads it.
type rolloutTarget struct {
	obj client.Object
	// pods are the workload's live and terminating pods.
	pods []corev1.Pod
	// busy: the workload's own controller is rolling it (a new template, generation not
	// observed, paused): the rollout waits, so the two never fight.
	busy bool
	// maxUnavailable is the workload's own pace (nil: its kind's default).
	maxUnavailable *intstr.IntOrString
	def            intstr.IntOrString
	recreate       bool
}

// Reconcile converges one workload: it continues the rollout of the site it is rolling
// or, once that one settled, starts the next site (in placement order) with stale pods.
func (r *Rollout) Reconcile(ctx context.Context, key RolloutKey) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx).WithValues("kind", key.Kind, "workload", types.NamespacedName{Namespace: key.Namespace, Name: key.Name})
	ctx = ctrl.LoggerInto(ctx, log)
	t, err := r.target(ctx, key)
	if err != nil || t == nil {
		if t == nil && err == nil {
			r.forget(key)
		}
		return reconcile.Result{}, err
	}
	layout, err := placement.ParseLayout(t.obj.GetAnnotations()[vk8sv1.AnnotationPlacement])
	if err != nil || len(layout.Sites) == 0 {
		// Not federated (or not yet): nothing to roll.
		r.forget(key)
		return reconcile.Result{}, nil
	}
	fed, err := r.s.Resolver.Resolve(ctx, key.Namespace, t.obj.GetAnnotations(), Lenient)
	switch {
	case IsRejection(err):
		// Admission would refuse the workload's next write: nothing to roll.
		return reconcile.Result{}, nil
	case err != nil || fed == nil:
		return reconcile.Result{}, err
	}
	if t.busy {
		return reconcile.Result{}, nil
	}
	bySite := r.podsBySite(t.pods, fed)

	r.mu.Lock()
	active := r.active[key]
	r.mu.Unlock()
	if active != "" && !slices.Contains(layout.Sites, active) {
		active = ""
	}
	if active != "" {
		o := fed.Override(active)
		n := planned(layout, active)
		victims, staleCount, settled := placement.SiteStep(bySite[active], n, r.maxUnavailable(t, o, max(n, len(bySite[active]))))
		if staleCount > 0 {
			return r.restart(ctx, t.obj, active, o, victims)
		}
		if !settled {
			return reconcile.Result{RequeueAfter: rolloutRequeue}, nil
		}
		r.event(t.obj, o, "SiteRolloutCompleted", "site %s: its %d pods run %s", active, len(bySite[active]), describeOverride(o))
		log.Info("Site rollout completed", "site", active, "override", overrideName(o))
		r.mu.Lock()
		delete(r.active, key)
		r.mu.Unlock()
	}
	for _, site := range layout.Sites {
		o := fed.Override(site)
		n := planned(layout, site)
		victims, staleCount, _ := placement.SiteStep(bySite[site], n, r.maxUnavailable(t, o, max(n, len(bySite[site]))))
		if staleCount == 0 {
			continue
		}
		if !r.siteReachable(ctx, site) {
			// Its pods could not be replaced now; the next sites go first.
			log.V(1).Info("Site rollout waits for its site to connect", "site", site)
			continue
		}
		r.mu.Lock()
		r.active[key] = site
		r.mu.Unlock()
		r.event(t.obj, o, "SiteRolloutStarted", "site %s: restarting %d of %d pods to run %s", site, staleCount, len(bySite[site]), describeOverride(o))
		log.Info("Site rollout started", "site", site, "override", overrideName(o), "stale", staleCount)
		return r.restart(ctx, t.obj, site, o, victims)
	}
	return reconcile.Result{}, nil
}

// planned is the site's planned pod count (DaemonSets have none: 0, so the site's pods
// count, for the budget and for maxUnavailable percentages).
func planned(p placement.Layout, site string) int { return int(p.Counts[site]) }

// maxUnavailable is the site's pace: the Override's strategy when it sets one, else the
// workload's. Recreate restarts the whole site at once.
func (r *Rollout) maxUnavailable(t *rolloutTarget, o *vk8sv1.Override, planned int) int {
	if planned == 0 {
		planned = 1
	}
	if o != nil && o.Spec.DeploymentSpec.Strategy != nil {
		s := o.Spec.DeploymentSpec.Strategy
		if s.Type == appsv1.RecreateDeploymentStrategyType {
			return planned
		}
		if s.RollingUpdate != nil && s.RollingUpdate.MaxUnavailable != nil {
			return placement.MaxUnavailable(s.RollingUpdate.MaxUnavailable, t.def, planned)
		}
	}
	if t.recreate {
		return planned
	}
	return placement.MaxUnavailable(t.maxUnavailable, t.def, planned)
}

// Restart evicts victims (Evict), pods of workload w on site, so that admission recreates them
// with Override o (with their UID as a precondition, so a replacement of the same name, a
// StatefulSet's, is never hit). It forgets their reservations and records the deletions
// first, so that the replacements are placed on the same site even before the cache
// shows the pods gone.
func (r *Rollout) Restart(ctx context.Context, w client.Object, site string, o *vk8sv1.Override, victims []*corev1.Pod) error {
	for _, p := range victims {
		uid := p.UID
		if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
			slot := placement.Slot(p)
			r.s.Reservations.Forget(OwnerKey(ref.UID), site, slot, p.Name)
		}
		// Recorded first: the replacement's admission may come before Delete returns.
		r.s.Deleted.Add(uid)
		if err := Evict(ctx, r.writer, p); err != nil {
			r.s.Deleted.remove(uid)
			if budget := budgetBlocked(err); budget != "" {
				r.s.event(w, nil, corev1.EventTypeWarning, ReasonEvictionBlocked, "Rollout",
					"site %s: the rollout waits for a PodDisruptionBudget to allow restarting pod %s: %s", site, p.Name, budget)
			}
			return fmt.Errorf("restart pod %s/%s on site %s: %w", p.Namespace, p.Name, site, err)
		}
		r.s.metrics.restarts.WithLabelValues(site).Inc()
		ctrl.LoggerFrom(ctx).Info("Restarting pod for its site's Override", "pod", p.Name, "site", site, "override", overrideName(o))
	}
	return nil
}

// restart runs Restart and asks to look at the workload again in a while.
func (r *Rollout) restart(ctx context.Context, w client.Object, site string, o *vk8sv1.Override, victims []*corev1.Pod) (reconcile.Result, error) {
	if err := r.Restart(ctx, w, site, o, victims); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: rolloutRequeue}, nil
}

// podsBySite sorts the workload's pods by site, as rollout steps see them.
func (r *Rollout) podsBySite(pods []corev1.Pod, fed *Federation) map[string][]placement.RolloutPod {
	r.s.Deleted.sweep()
	out := map[string][]placement.RolloutPod{}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		site := p.Labels[vk8sv1.LabelSite]
		terminating := r.s.Deleted.Has(p) || p.DeletionTimestamp != nil
		out[site] = append(out[site], placement.RolloutPod{
			Pod: p, Stale: !terminating && placement.Stale(p, fed.Override(site)), Ready: !terminating && podReady(p), Terminating: terminating,
		})
	}
	return out
}

// siteReachable says whether the Site is not known to be disconnected.
func (r *Rollout) siteReachable(ctx context.Context, site string) bool {
	s := &vk8sv1.Site{}
	return r.reader.Get(ctx, client.ObjectKey{Name: site}, s) != nil || connected(s)
}

// target reads the workload and its pods; nil when it is gone.
func (r *Rollout) target(ctx context.Context, key RolloutKey) (*rolloutTarget, error) {
	nn := client.ObjectKey{Namespace: key.Namespace, Name: key.Name}
	t := &rolloutTarget{def: intstr.FromString(placement.DefaultMaxUnavailable)}
	var owners []types.UID
	switch key.Kind {
	case "Deployment":
		d := &appsv1.Deployment{}
		if err := r.reader.Get(ctx, nn, d); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		t.obj = d
		t.busy = d.Spec.Paused || d.Status.ObservedGeneration < d.Generation
		t.recreate = d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType
		if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
			t.maxUnavailable = ru.MaxUnavailable
		}
		var sets appsv1.ReplicaSetList
		if err := r.reader.List(ctx, &sets, client.InNamespace(key.Namespace)); err != nil {
			return nil, fmt.Errorf("list ReplicaSets in %s: %w", key.Namespace, err)
		}
		for i := range sets.Items {
			if ref := metav1.GetControllerOfNoCopy(&sets.Items[i]); ref != nil && ref.UID == d.UID {
				owners = append(owners, sets.Items[i].UID)
			}
		}
	case "StatefulSet":
		s := &appsv1.StatefulSet{}
		if err := r.reader.Get(ctx, nn, s); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		t.obj, owners = s, []types.UID{s.UID}
		t.busy = s.Status.ObservedGeneration < s.Generation || (s.Status.UpdateRevision != "" && s.Status.CurrentRevision != s.Status.UpdateRevision)
		// A StatefulSet without maxUnavailable updates one pod at a time.
		t.def = intstr.FromInt32(1)
		if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			t.maxUnavailable = ru.MaxUnavailable
		}
	case "DaemonSet":
		s := &appsv1.DaemonSet{}
		if err := r.reader.Get(ctx, nn, s); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		t.obj, owners = s, []types.UID{s.UID}
		t.busy = s.Status.ObservedGeneration < s.Generation
		t.def = intstr.FromInt32(1)
		if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			t.maxUnavailable = ru.MaxUnavailable
		}
	case "ReplicaSet":
		s := &appsv1.ReplicaSet{}
		if err := r.reader.Get(ctx, nn, s); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		if metav1.GetControllerOfNoCopy(s) != nil {
			return nil, nil
		}
		t.obj, owners = s, []types.UID{s.UID}
		t.busy = s.Status.ObservedGeneration < s.Generation
	default:
		return nil, nil
	}
	if t.obj.GetDeletionTimestamp() != nil {
		return nil, nil
	}
	for _, uid := range owners {
		var list corev1.PodList
		if err := r.reader.List(ctx, &list, client.InNamespace(key.Namespace), client.MatchingFields{IndexPodOwner: string(uid)}); err != nil {
			return nil, fmt.Errorf("list pods of %s %s: %w", key.Kind, nn, err)
		}
		t.pods = append(t.pods, list.Items...)
	}
	// Live pods of two template revisions (two ReplicaSets of a Deployment, two
	// controller revisions of a StatefulSet or DaemonSet): the workload's own rollout runs.
	revisions := map[string]bool{}
	for i := range t.pods {
		p := &t.pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		rev := p.Labels[appsv1.ControllerRevisionHashLabelKey]
		if ref := metav1.GetControllerOfNoCopy(p); key.Kind == "Deployment" && ref != nil {
			rev = string(ref.UID)
		}
		revisions[rev] = true
	}
	if len(revisions) > 1 {
		t.busy = true
	}
	return t, nil
}

func (r *Rollout) forget(key RolloutKey) {
	r.mu.Lock()
	delete(r.active, key)
	r.mu.Unlock()
}

func (r *Rollout) event(w client.Object, o *vk8sv1.Override, reason, note string, args ...any) {
	var related runtime.Object
	if o != nil {
		related = o
	}
	r.s.event(w, related, corev1.EventTypeNormal, reason, "Rollout", note, args...)
}

func overrideName(o *vk8sv1.Override) string {
	if o == nil {
		return ""
	}
	return o.Name
}

// describeOverride names what a site runs, for Events.
func describeOverride(o *vk8sv1.Override) string {
	if o == nil {
		return "the workload's own template (no Override)"
	}
	return "Override " + o.Name
}

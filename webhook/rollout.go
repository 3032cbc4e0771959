package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
)

// stampNone is the vk8sv1.AnnotationOverrideHash of a pod admitted without an Override.
const stampNone = "none"

// overrideStamp returns what pod admission records in vk8sv1.AnnotationOverrideHash for Override
// o (nil: none): a short hash of its name and its template, the parts of an Override that
// change a pod (the name is label vk8s.io/override). Replicas and strategy are left out,
// so changing them restarts nothing.
func overrideStamp(o *vk8sv1.Override) string {
	if o == nil {
		return stampNone
	}
	h := sha256.New()
	h.Write([]byte(o.Name))
	h.Write([]byte{0})
	if t := o.Spec.DeploymentSpec.Template; t != nil {
		// encoding/json sorts map keys: the same template always hashes the same.
		raw, _ := json.Marshal(t)
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// stale says whether pod was admitted with something else than what Override o (nil:
// none) gives now. A pod without a stamp was admitted before stamps existed: it is stale
// only when its vk8s.io/override label names another Override (or none), so upgrading
// vk8s does not restart every pod.
func stale(pod *corev1.Pod, o *vk8sv1.Override) bool {
	if got, ok := pod.Annotations[vk8sv1.AnnotationOverrideHash]; ok {
		return got != overrideStamp(o)
	}
	want := ""
	if o != nil {
		want = o.Name
	}
	return pod.Labels[vk8sv1.LabelOverride] != want
}

// rolloutPod is a live pod of a site, as a rollout step sees it.
type rolloutPod struct {
	pod *corev1.Pod
	// stale: admitted with another Override than the site's current one.
	stale bool
	// ready: Ready and not being deleted.
	ready bool
	// terminating: being deleted (or deleted by the rollout, before the cache says so).
	terminating bool
}

// siteStep decides one step of a site's rollout: which pods to delete now so that no more
// than maxUnavailable of the site's planned pods are unavailable, counting the pods
// already unavailable. Stale pods that are not Ready are deleted first and cost nothing
// (they are unavailable already); Ready stale pods follow, within the budget. It also
// returns how many stale pods remain before this step, and whether the site is settled:
// nothing stale, nothing terminating, every pod Ready and at least planned of them.
func siteStep(pods []rolloutPod, planned, maxUnavailable int) (victims []*corev1.Pod, staleCount int, settled bool) {
	available, live, terminating := 0, 0, 0
	for _, p := range pods {
		switch {
		case p.terminating:
			terminating++
			continue
		case p.ready:
			available++
		}
		live++
		if p.stale {
			staleCount++
		}
	}
	if planned < live {
		planned = live
	}
	settled = staleCount == 0 && terminating == 0 && available == live && live >= planned
	budget := maxUnavailable - (planned - available)
	for _, p := range pods {
		if p.stale && !p.terminating && !p.ready {
			victims = append(victims, p.pod)
		}
	}
	for _, p := range pods {
		if budget <= 0 {
			break
		}
		if p.stale && !p.terminating && p.ready {
			victims = append(victims, p.pod)
			budget--
		}
	}
	return victims, staleCount, settled
}

// maxUnavailableOf scales a maxUnavailable (nil: def) to a site's planned count, rounding
// down, but at least 1 so that a rollout always proceeds.
func maxUnavailableOf(v *intstr.IntOrString, def intstr.IntOrString, planned int) int {
	if v == nil {
		v = &def
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, planned, false)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// defaultMaxUnavailable is the pace of workloads that do not set one: the Deployment
// API's default.
var defaultMaxUnavailable = intstr.FromString("25%")

// rolloutKey names a workload whose sites the rollout controller converges: a
// Deployment, StatefulSet, DaemonSet or ReplicaSet without a Deployment. Jobs and
// CronJobs are not restarted: a Job's pods run to completion, and deleting a running one
// loses its work (and counts towards backoffLimit); their next pods (retries, the next
// schedule) are admitted with the current Override.
type rolloutKey struct {
	Kind      string
	Namespace string
	Name      string
}

// rolloutRequeue is how often a rollout in progress is looked at again when no event
// comes.
const rolloutRequeue = 10 * time.Second

// deletedTTL is how long a pod the rollout deleted counts as terminating while the cache
// does not show its deletion yet.
const deletedTTL = time.Minute

// rollout is the per-site rollout controller (SPEC §4: "When an Override changes or is
// removed, the pods of its sites are rolled site by site at the workload's
// maxUnavailable; other sites are not touched"). For each workload it compares the
// stamp of each pod (vk8sv1.AnnotationOverrideHash) with the stamp admission would give now on
// the pod's site, and restarts the stale pods of one site at a time by deleting them:
// the workload's controller recreates them on the same site (deficit, ordinal or node)
// and admission applies the current Override.
type rollout struct {
	reader   client.Reader
	writer   client.Writer
	resolver *resolver
	recorder events.EventRecorder
	metrics  *metrics
	now      func() time.Time

	// deleted holds the pods the rollout deleted; shared with admission, as are the
	// reservations of placement.
	deleted *deletions
	res     *reservations

	mu sync.Mutex
	// active is the site each workload is rolling, until it settles.
	active map[rolloutKey]string
}

// deletions remembers the pods the rollout deleted until the cache shows them terminating
// (or deletedTTL passes), so that neither the next rollout step nor the placement of
// their replacements counts them as live: a replacement is admitted on the site whose pod
// it replaces even when the cache lags behind the deletion.
type deletions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[types.UID]time.Time
}

func newDeletions(now func() time.Time) *deletions {
	return &deletions{now: now, m: map[types.UID]time.Time{}}
}

func (d *deletions) add(uid types.UID) {
	d.mu.Lock()
	d.m[uid] = d.now()
	d.mu.Unlock()
}

func (d *deletions) remove(uid types.UID) {
	d.mu.Lock()
	delete(d.m, uid)
	d.mu.Unlock()
}

// has says whether the rollout deleted pod and the cache does not show it terminating yet
// (the entry is forgotten once it does).
func (d *deletions) has(pod *corev1.Pod) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.m[pod.UID]
	switch {
	case !ok:
		return false
	case pod.DeletionTimestamp != nil || d.now().Sub(at) > deletedTTL:
		delete(d.m, pod.UID)
		return false
	}
	return true
}

// sweep forgets the entries older than deletedTTL (pods gone before the cache showed
// them terminating).
func (d *deletions) sweep() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for uid, at := range d.m {
		if d.now().Sub(at) > deletedTTL {
			delete(d.m, uid)
		}
	}
}

// setupRollout adds the rollout controller to mgr. It watches the workloads it restarts,
// their ReplicaSets, the pods vk8s admitted (the cache holds only those), and Overrides
// (mapped to the workloads whose ves.io/overrides names them). Like every
// controller-runtime controller it runs only on the leader when the manager elects one.
func setupRollout(mgr ctrl.Manager, a *admitter) error {
	r := newRollout(mgr.GetClient(), mgr.GetClient(), a)
	b := builder.TypedControllerManagedBy[rolloutKey](mgr).Named(a.cfg.Name + "-rollout")
	c := mgr.GetCache()
	for _, obj := range []client.Object{&appsv1.Deployment{}, &appsv1.StatefulSet{}, &appsv1.DaemonSet{}, &appsv1.ReplicaSet{}} {
		b = b.WatchesRawSource(source.TypedKind(c, obj, handler.TypedEnqueueRequestsFromMapFunc(r.workloadKeys)))
	}
	b = b.WatchesRawSource(source.TypedKind(c, client.Object(&corev1.Pod{}), handler.TypedEnqueueRequestsFromMapFunc(r.podKeys)))
	b = b.WatchesRawSource(source.TypedKind(c, client.Object(&vk8sv1.Override{}), handler.TypedEnqueueRequestsFromMapFunc(r.overrideKeys)))
	return b.Complete(r)
}

func newRollout(reader client.Reader, writer client.Writer, a *admitter) *rollout {
	return &rollout{
		reader: reader, writer: writer, resolver: a.resolver, recorder: a.recorder, metrics: a.metrics, now: a.now,
		active: map[rolloutKey]string{}, deleted: a.deleting, res: a.res,
	}
}

// workloadKeys maps a workload event to its key; a Deployment's ReplicaSet to its
// Deployment (its status tells when the Deployment's own rollout ends).
func (r *rollout) workloadKeys(_ context.Context, obj client.Object) []rolloutKey {
	kind := ""
	switch obj.(type) {
	case *appsv1.Deployment:
		kind = "Deployment"
	case *appsv1.StatefulSet:
		kind = "StatefulSet"
	case *appsv1.DaemonSet:
		kind = "DaemonSet"
	case *appsv1.ReplicaSet:
		if ref := controller(obj); ref != nil {
			if ref.Kind == "Deployment" {
				return []rolloutKey{{Kind: "Deployment", Namespace: obj.GetNamespace(), Name: ref.Name}}
			}
			return nil
		}
		kind = "ReplicaSet"
	}
	return []rolloutKey{{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}}
}

// podKeys maps a pod to the workload that federates it.
func (r *rollout) podKeys(ctx context.Context, obj client.Object) []rolloutKey {
	ref := controller(obj)
	if ref == nil {
		return nil
	}
	switch ref.Kind {
	case "StatefulSet", "DaemonSet":
		return []rolloutKey{{Kind: ref.Kind, Namespace: obj.GetNamespace(), Name: ref.Name}}
	case "ReplicaSet":
		rs := &appsv1.ReplicaSet{}
		if err := r.reader.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: ref.Name}, rs); err != nil {
			return nil
		}
		return r.workloadKeys(ctx, rs)
	}
	return nil
}

// overrideKeys maps an Override to the workloads of its namespace whose ves.io/overrides
// names it.
func (r *rollout) overrideKeys(ctx context.Context, obj client.Object) []rolloutKey {
	var keys []rolloutKey
	for _, list := range []client.ObjectList{&appsv1.DeploymentList{}, &appsv1.StatefulSetList{}, &appsv1.DaemonSetList{}, &appsv1.ReplicaSetList{}} {
		if err := r.reader.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing the workloads of an Override failed", "override", client.ObjectKeyFromObject(obj))
			continue
		}
		_ = apimeta.EachListItem(list, func(item runtime.Object) error {
			w := item.(client.Object)
			if rs, ok := w.(*appsv1.ReplicaSet); ok && controller(rs) != nil {
				return nil
			}
			names, err := overrides.ParseOverrides(w.GetAnnotations())
			if err == nil && slices.Contains(names, obj.GetName()) {
				keys = append(keys, r.workloadKeys(ctx, w)...)
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
func (r *rollout) Reconcile(ctx context.Context, key rolloutKey) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx).WithValues("kind", key.Kind, "workload", types.NamespacedName{Namespace: key.Namespace, Name: key.Name})
	t, err := r.target(ctx, key)
	if err != nil || t == nil {
		if t == nil && err == nil {
			r.forget(key)
		}
		return reconcile.Result{}, err
	}
	placement, err := ParsePlacement(t.obj.GetAnnotations()[vk8sv1.AnnotationPlacement])
	if err != nil || len(placement.Sites) == 0 {
		// Not federated (or not yet): nothing to roll.
		r.forget(key)
		return reconcile.Result{}, nil
	}
	fed, _, err := r.resolver.resolve(ctx, key.Namespace, t.obj.GetAnnotations(), lenientAll)
	if err != nil || fed == nil {
		return reconcile.Result{}, err
	}
	if t.busy {
		return reconcile.Result{}, nil
	}
	bySite := r.podsBySite(t.pods, fed)

	r.mu.Lock()
	active := r.active[key]
	r.mu.Unlock()
	if active != "" && !slices.Contains(placement.Sites, active) {
		active = ""
	}
	if active != "" {
		o := fed.override(active)
		n := planned(placement, active)
		victims, staleCount, settled := siteStep(bySite[active], n, r.maxUnavailable(t, o, max(n, len(bySite[active]))))
		if staleCount > 0 {
			return r.restart(ctx, log, t.obj, active, o, victims)
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
	for _, site := range placement.Sites {
		o := fed.override(site)
		n := planned(placement, site)
		victims, staleCount, _ := siteStep(bySite[site], n, r.maxUnavailable(t, o, max(n, len(bySite[site]))))
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
		return r.restart(ctx, log, t.obj, site, o, victims)
	}
	return reconcile.Result{}, nil
}

// planned is the site's planned pod count (DaemonSets have none: 0, so the site's pods
// count, for the budget and for maxUnavailable percentages).
func planned(p Placement, site string) int { return int(p.Counts[site]) }

// maxUnavailable is the site's pace: the Override's strategy when it sets one, else the
// workload's. Recreate restarts the whole site at once.
func (r *rollout) maxUnavailable(t *rolloutTarget, o *vk8sv1.Override, planned int) int {
	if planned == 0 {
		planned = 1
	}
	if o != nil && o.Spec.DeploymentSpec.Strategy != nil {
		s := o.Spec.DeploymentSpec.Strategy
		if s.Type == appsv1.RecreateDeploymentStrategyType {
			return planned
		}
		if s.RollingUpdate != nil && s.RollingUpdate.MaxUnavailable != nil {
			return maxUnavailableOf(s.RollingUpdate.MaxUnavailable, t.def, planned)
		}
	}
	if t.recreate {
		return planned
	}
	return maxUnavailableOf(t.maxUnavailable, t.def, planned)
}

// restart deletes victims on site (with their UID as a precondition, so a replacement
// of the same name, a StatefulSet's, is never hit).
func (r *rollout) restart(ctx context.Context, log logr.Logger, w client.Object, site string, o *vk8sv1.Override, victims []*corev1.Pod) (reconcile.Result, error) {
	for _, p := range victims {
		uid := p.UID
		if ref := controller(p); ref != nil {
			slot, _ := atoiNonNegative(p.Annotations[vk8sv1.AnnotationSlot])
			r.res.forget("uid:"+string(ref.UID), site, slot, p.Name)
		}
		// Recorded first: the replacement's admission may come before Delete returns.
		r.deleted.add(uid)
		if err := r.writer.Delete(ctx, p, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			r.deleted.remove(uid)
			return reconcile.Result{}, fmt.Errorf("restart pod %s/%s on site %s: %w", p.Namespace, p.Name, site, err)
		}
		r.metrics.restarts.WithLabelValues(site).Inc()
		log.Info("Restarting pod for its site's Override", "pod", p.Name, "site", site, "override", overrideName(o))
	}
	return reconcile.Result{RequeueAfter: rolloutRequeue}, nil
}

// podsBySite sorts the workload's pods by site, as rollout steps see them.
func (r *rollout) podsBySite(pods []corev1.Pod, fed *federation) map[string][]rolloutPod {
	r.deleted.sweep()
	out := map[string][]rolloutPod{}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		site := p.Labels[vk8sv1.LabelSite]
		terminating := r.deleted.has(p) || p.DeletionTimestamp != nil
		out[site] = append(out[site], rolloutPod{
			pod: p, stale: !terminating && stale(p, fed.override(site)), ready: !terminating && podReady(p), terminating: terminating,
		})
	}
	return out
}

// siteReachable says whether the Site is not known to be disconnected.
func (r *rollout) siteReachable(ctx context.Context, site string) bool {
	s := &vk8sv1.Site{}
	return r.reader.Get(ctx, client.ObjectKey{Name: site}, s) != nil || connected(s)
}

// target reads the workload and its pods; nil when it is gone.
func (r *rollout) target(ctx context.Context, key rolloutKey) (*rolloutTarget, error) {
	nn := client.ObjectKey{Namespace: key.Namespace, Name: key.Name}
	t := &rolloutTarget{def: defaultMaxUnavailable}
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
			if ref := controller(&sets.Items[i]); ref != nil && ref.UID == d.UID {
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
		if controller(s) != nil {
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
		if err := r.reader.List(ctx, &list, client.InNamespace(key.Namespace), client.MatchingFields{indexOwnerUID: string(uid)}); err != nil {
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
		if ref := controller(p); key.Kind == "Deployment" && ref != nil {
			rev = string(ref.UID)
		}
		revisions[rev] = true
	}
	if len(revisions) > 1 {
		t.busy = true
	}
	return t, nil
}

func (r *rollout) forget(key rolloutKey) {
	r.mu.Lock()
	delete(r.active, key)
	r.mu.Unlock()
}

func (r *rollout) event(w client.Object, o *vk8sv1.Override, reason, note string, args ...any) {
	if r.recorder == nil {
		return
	}
	var related runtime.Object
	if o != nil {
		related = o
	}
	r.recorder.Eventf(w, related, corev1.EventTypeNormal, reason, "Rollout", note, args...)
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

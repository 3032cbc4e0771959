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
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/placement"
)

// Defaults of Config.
const (
	DefaultName           = "vk8s-webhook"
	DefaultReservationTTL = 30 * time.Second
)

// Options are the installation's settings of federation; the webhook's Config embeds
// them.
type Options struct {
	// Name prefixes the controllers' names and is the source of their Events; it must be
	// unique per process. Empty: DefaultName.
	Name string
	// SharedNamespace holds the VirtualSites every workload may reference. Empty:
	// overrides.DefaultSharedNamespace.
	SharedNamespace string
	// DefaultWorkloadFlavor applies to workloads without ves.io/workload-flavor. Empty:
	// overrides.DefaultWorkloadFlavor.
	DefaultWorkloadFlavor string
	// ReservationTTL is how long a placement counts before its pod shows up in the cache.
	// Zero: DefaultReservationTTL.
	ReservationTTL time.Duration
}

// Default fills in the defaults of o.
func (o *Options) Default() {
	o.Name = cmp.Or(o.Name, DefaultName)
	o.SharedNamespace = cmp.Or(o.SharedNamespace, overrides.DefaultSharedNamespace)
	o.DefaultWorkloadFlavor = cmp.Or(o.DefaultWorkloadFlavor, overrides.DefaultWorkloadFlavor)
	o.ReservationTTL = cmp.Or(o.ReservationTTL, DefaultReservationTTL)
}

// Config configures the state admission and the controllers share.
type Config struct {
	Options
	// Cache reads the host from the process's informers, API reads it uncached (what the
	// cache may not have yet), Client writes it.
	Cache  client.Reader
	API    client.Reader
	Client client.Client
	// Recorder records Events on workloads. Nil: none.
	Recorder events.EventRecorder
	// MetricsRegisterer receives the controllers' metrics. Nil: a registry of their own.
	MetricsRegisterer prometheus.Registerer
	// TracerProvider makes the rebalancer's spans. Nil: OpenTelemetry's global provider.
	TracerProvider trace.TracerProvider
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// State is what admission and the federation controllers share in one webhook process:
// the resolver of workloads' federation, the reservations of placement, the pods the
// rollout deleted, and the refresher that admission of a scale hands its work to. The
// controllers take a State, never the admission handlers' internals.
type State struct {
	Config
	Resolver     *Resolver
	Reservations *placement.Reservations
	Deleted      *Deletions
	Refresher    *Refresher

	metrics *metrics
	tracer  trace.Tracer
}

// New validates cfg and returns the shared state; SetupWithManager adds the controllers.
func New(cfg Config) (*State, error) {
	if cfg.Cache == nil || cfg.API == nil || cfg.Client == nil {
		return nil, fmt.Errorf("federation: the cache, the API reader and the client are required")
	}
	cfg.Default() // Options' defaults
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MetricsRegisterer == nil {
		cfg.MetricsRegisterer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.MetricsRegisterer)
	if err != nil {
		return nil, err
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	s := &State{
		Config:       cfg,
		Resolver:     NewResolver(cfg.Cache, cfg.SharedNamespace, cfg.DefaultWorkloadFlavor).ReadMissesFrom(cfg.API),
		Reservations: placement.NewReservations(cfg.ReservationTTL, cfg.Now),
		Deleted:      newDeletions(cfg.Now),
		metrics:      m,
		tracer:       tp.Tracer("github.com/vk8s-io/vk8s/federation"),
	}
	s.Refresher = newRefresher(s)
	return s, nil
}

// SetupWithManager adds to mgr the pod index the handlers and controllers read, the
// refresher, the rebalancer, the per-site rollout, the namespace labeler, the Job status
// controller and the status of Overrides and WorkloadFlavors.
func (s *State) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, IndexPodOwner, PodOwnerIndex); err != nil {
		return fmt.Errorf("index pods by owner: %w", err)
	}
	if err := mgr.Add(s.Refresher); err != nil {
		return err
	}
	if err := setupRebalancer(mgr, s); err != nil {
		return err
	}
	if err := setupRollout(mgr, s); err != nil {
		return fmt.Errorf("rollout controller: %w", err)
	}
	if err := setupNamespaceLabeler(mgr, s.Name); err != nil {
		return err
	}
	if err := setupJobStatus(mgr, s); err != nil {
		return fmt.Errorf("job status controller: %w", err)
	}
	return setupStatus(ctx, mgr, s.Name)
}

// IndexPodOwner indexes pods by the UID of their controller.
const IndexPodOwner = "vk8s.owner-uid"

// PodOwnerIndex is the index function of IndexPodOwner.
func PodOwnerIndex(obj client.Object) []string {
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
		return []string{string(ref.UID)}
	}
	return nil
}

// event records an Event on regarding when there is a recorder.
func (s *State) event(regarding, related runtime.Object, eventType, reason, action, note string, args ...any) {
	if s.Recorder != nil {
		s.Recorder.Eventf(regarding, related, eventType, reason, action, note, args...)
	}
}

// OwnedByWorkload says whether obj is a ReplicaSet of a Deployment or a Job of a CronJob:
// its owner was admitted, and writes it from its own (admitted) template.
func OwnedByWorkload(obj metav1.Object) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ((ref.Kind == "Deployment" && strings.HasPrefix(ref.APIVersion, "apps/")) ||
		(ref.Kind == "CronJob" && strings.HasPrefix(ref.APIVersion, "batch/")))
}

// podReady says whether p's Ready condition is True.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// connected says whether a Site's connection is up; a Site without a status yet (just
// registered) counts as connected.
func connected(s *vk8sv1.Site) bool {
	c := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected)
	return c == nil || c.Status == metav1.ConditionTrue
}

// Deletions remembers the pods the rollout deleted until the cache shows them terminating
// (or deletedTTL passes), so that neither the next rollout step nor the placement of
// their replacements counts them as live: a replacement is admitted on the site whose pod
// it replaces even when the cache lags behind the deletion.
type Deletions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[types.UID]time.Time
}

// deletedTTL is how long a pod the rollout deleted counts as terminating while the cache
// does not show its deletion yet.
const deletedTTL = time.Minute

func newDeletions(now func() time.Time) *Deletions {
	return &Deletions{now: now, m: map[types.UID]time.Time{}}
}

// Add records that the rollout deletes the pod uid.
func (d *Deletions) Add(uid types.UID) {
	d.mu.Lock()
	d.m[uid] = d.now()
	d.mu.Unlock()
}

func (d *Deletions) remove(uid types.UID) {
	d.mu.Lock()
	delete(d.m, uid)
	d.mu.Unlock()
}

// Has says whether the rollout deleted pod and the cache does not show it terminating yet
// (the entry is forgotten once it does).
func (d *Deletions) Has(pod *corev1.Pod) bool {
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
func (d *Deletions) sweep() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for uid, at := range d.m {
		if d.now().Sub(at) > deletedTTL {
			delete(d.m, uid)
		}
	}
}

// metrics are the controllers' Prometheus metrics; their names keep the webhook's
// subsystem, since they run in the webhook process.
type metrics struct {
	moves    *prometheus.CounterVec
	replans  prometheus.Counter
	restarts *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_federation_rebalance_moves_total",
			Help: "Pods the rebalancer deleted off a site with too many, so that they come back on a site that lacks them, by the site they left.",
		}, []string{"site"}),
		replans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vk8s_federation_rebalance_replans_total",
			Help: "Workloads the rebalancer re-planned because their sites changed.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_federation_rollout_restarts_total",
			Help: "Pods the per-site rollout deleted so that admission applies their site's current Override, by site.",
		}, []string{"site"}),
	}
	for _, c := range []prometheus.Collector{m.moves, m.replans, m.restarts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register federation metrics: %w", err)
		}
	}
	return m, nil
}

// OwnerKey is the Reservations key of the pods of the controller uid.
func OwnerKey(uid types.UID) string { return "uid:" + string(uid) }

// NamespaceKey is the Reservations key of the bare pods of namespace.
func NamespaceKey(namespace string) string { return "ns:" + namespace }

// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Evict removes pod through the host's Eviction API, with its UID as a precondition (a
// StatefulSet's replacement of the same name is never hit): a PodDisruptionBudget of the
// namespace governs the rebalancer's and the rollouts' removals as it governs a node
// drain's. A budget that allows no disruption now is an error that says so; the caller
// tries again later.
func Evict(ctx context.Context, c client.Client, pod *corev1.Pod) error {
	uid := pod.UID
	eviction := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	}
	err := c.SubResource("eviction").Create(ctx, pod, eviction)
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Gone, or replaced by a pod of the same name: nothing of this pod to evict.
		return nil
	case apierrors.IsTooManyRequests(err):
		return fmt.Errorf("evict pod %s/%s: a PodDisruptionBudget allows no disruption now (%s): %w", pod.Namespace, pod.Name, budgetBlocked(err), err)
	}
	return err
}

// ReasonEvictionBlocked is the reason of the Warning Event on a workload whose rollout or
// rebalancing waits for a PodDisruptionBudget.
const ReasonEvictionBlocked = "EvictionBlocked"

// budgetBlocked returns what the API server said when a PodDisruptionBudget refused an
// eviction (its causes name the budget: "The disruption budget web needs 3 healthy pods
// and has 3 currently"), or "" when err is no such refusal.
func budgetBlocked(err error) string {
	if !apierrors.IsTooManyRequests(err) {
		return ""
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return "refused"
	}
	st := status.Status()
	var parts []string
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			parts = append(parts, c.Message)
		}
	}
	if len(parts) == 0 {
		return st.Message
	}
	return strings.Join(parts, "; ")
}

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
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/promreg"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/translate"
)

// Defaults of Config.
const (
	DefaultSiteTimeout             = 15 * time.Second
	DefaultCleanupTimeout          = 5 * time.Minute
	DefaultResyncInterval          = 10 * time.Minute
	DefaultMaxConcurrentReconciles = 4
	DefaultControllerName          = "tenancy"
)

// Sites gives the controller the clients of the site clusters; RegistrySites adapts the
// site registry, tests inject fakes.
type Sites interface {
	// Client returns the client of the named Site and the key of its cluster connection:
	// Sites with equal keys are one cluster (node-selected slices), which has one site
	// namespace for all of them. It does no I/O and never blocks. When the site cannot be
	// used now, the error wraps sitereg.ErrSiteNotConnected and says why.
	Client(site string) (client kubernetes.Interface, key string, err error)
	// PodSecurity returns the Pod Security level of the site namespaces on the cluster of
	// connection key: the strictest spec.podSecurity.enforce of the Sites on it. It does
	// no I/O.
	PodSecurity(key string) vk8sv1.PodSecurityLevel
}

// RegistrySites returns the Sites of a site registry.
func RegistrySites(r *sitereg.Registry) Sites { return registrySites{r} }

type registrySites struct{ r *sitereg.Registry }

func (s registrySites) Client(site string) (kubernetes.Interface, string, error) {
	c, err := s.r.Get(site)
	if err != nil {
		return nil, "", err
	}
	return c.Client, c.Key, nil
}

func (s registrySites) PodSecurity(key string) vk8sv1.PodSecurityLevel { return s.r.PodSecurity(key) }

// Config configures the controllers. Tenant and Sites are required.
type Config struct {
	// Tenant names this host installation; site namespaces are <tenant>-<namespace>.
	Tenant string
	// Sites gives the site clients (RegistrySites).
	Sites Sites
	// SiteEvents names Sites whose connection or status changed (sitereg.Registry.Watch):
	// their VirtualKubernetes are reconciled at once, so a site that reconnects is
	// provisioned without waiting for a retry. Nil: none.
	SiteEvents <-chan event.GenericEvent
	// SiteTimeout bounds the work on one site cluster in one reconcile. Zero: 15s.
	SiteTimeout time.Duration
	// CleanupTimeout is how long a deleted VirtualKubernetes waits for sites that do not
	// answer (or whose pods do not go) before its finalizer is removed anyway, with a
	// Warning Event naming what was left. Zero: 5m.
	CleanupTimeout time.Duration
	// ResyncInterval is how often a provisioned site is checked again (a NetworkPolicy
	// deleted by hand on the site comes back then). Zero: 10m.
	ResyncInterval time.Duration
	// MaxConcurrentReconciles of each controller. Zero: 4.
	MaxConcurrentReconciles int
	// ControllerName prefixes the controllers' names and is the reporter of their Events.
	// Empty: "tenancy".
	ControllerName string
	// MetricsRegisterer receives the metrics. Nil: controller-runtime's metrics.Registry.
	MetricsRegisterer prometheus.Registerer
}

// Controller runs the VirtualSite status controller and the VirtualKubernetes controller.
// Create it with New, add it to a manager with SetupWithManager.
type Controller struct {
	cfg     Config
	metrics *metrics
	now     func() time.Time

	// Set by SetupWithManager (tests set them directly).
	client   client.Client
	recorder events.EventRecorder
	log      logr.Logger

	// backoff paces the retries of VirtualKubernetes with failing sites.
	backoff workqueue.TypedRateLimiter[types.NamespacedName]

	mu sync.Mutex
	// provisioned records, per "<uid>/<site>", the connection key a site was provisioned
	// through, at which Pod Security level, and when, so a reconcile does not call every
	// site again.
	provisioned map[string]provisionMark
	// reported is, per VirtualKubernetes, the failure last recorded as an Event.
	reported map[types.UID]string
}

type provisionMark struct {
	key   string
	level vk8sv1.PodSecurityLevel
	at    time.Time
}

// New validates cfg and fills in its defaults.
func New(cfg Config) (*Controller, error) {
	if cfg.SiteTimeout == 0 {
		cfg.SiteTimeout = DefaultSiteTimeout
	}
	if cfg.CleanupTimeout == 0 {
		cfg.CleanupTimeout = DefaultCleanupTimeout
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.MaxConcurrentReconciles == 0 {
		cfg.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	}
	if cfg.ControllerName == "" {
		cfg.ControllerName = DefaultControllerName
	}
	if cfg.MetricsRegisterer == nil {
		cfg.MetricsRegisterer = ctrlmetrics.Registry
	}
	var errs []error
	if cfg.Tenant == "" {
		errs = append(errs, errors.New("tenant is required"))
	} else if err := translate.ValidTenant(cfg.Tenant); err != nil {
		errs = append(errs, err)
	}
	if cfg.Sites == nil {
		errs = append(errs, errors.New("Sites is required"))
	}
	if cfg.SiteTimeout < 0 || cfg.CleanupTimeout < 0 || cfg.ResyncInterval < 0 {
		errs = append(errs, errors.New("SiteTimeout, CleanupTimeout and ResyncInterval: want positive durations"))
	}
	if cfg.MaxConcurrentReconciles < 0 {
		errs = append(errs, fmt.Errorf("MaxConcurrentReconciles %d: want at least 1", cfg.MaxConcurrentReconciles))
	}
	if msgs := validation.IsDNS1123Label(cfg.ControllerName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("ControllerName %q: %v", cfg.ControllerName, msgs))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("tenancy config: %w", err)
	}
	m, err := newMetrics(cfg.MetricsRegisterer)
	if err != nil {
		return nil, fmt.Errorf("tenancy metrics: %w", err)
	}
	return &Controller{
		cfg:         cfg,
		metrics:     m,
		now:         time.Now,
		log:         logr.Discard(),
		backoff:     workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](time.Second, 2*time.Minute),
		provisioned: map[string]provisionMark{},
		reported:    map[types.UID]string{},
	}, nil
}

// Field indexes of VirtualKubernetes in the manager's cache.
const (
	// indexVirtualSite: the "<namespace>/<name>" of spec.virtualSite.
	indexVirtualSite = "vk8s.io/tenancy-virtual-site"
	// indexSite: the sites of status.sites and status.departedSites.
	indexSite = "vk8s.io/tenancy-site"
)

func indexVirtualSiteRef(obj client.Object) []string {
	vk, ok := obj.(*vk8sv1.VirtualKubernetes)
	if !ok {
		return nil
	}
	ref, ok := overrides.ParseVirtualSiteRef(vk.Spec.VirtualSite, vk.Namespace)
	if !ok {
		return nil
	}
	return []string{ref.String()}
}

func indexSites(obj client.Object) []string {
	vk, ok := obj.(*vk8sv1.VirtualKubernetes)
	if !ok {
		return nil
	}
	return slices.Concat(vk.Status.Sites, vk.Status.DepartedSites)
}

// SetupWithManager adds both controllers to mgr, whose scheme must know vk8s.io/v1alpha1.
// Call it once.
func (c *Controller) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if c.client != nil {
		return errors.New("tenancy: SetupWithManager called twice")
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &vk8sv1.VirtualKubernetes{}, indexVirtualSite, indexVirtualSiteRef); err != nil {
		return fmt.Errorf("index VirtualKubernetes by virtual-site: %w", err)
	}
	if err := idx.IndexField(ctx, &vk8sv1.VirtualKubernetes{}, indexSite, indexSites); err != nil {
		return fmt.Errorf("index VirtualKubernetes by site: %w", err)
	}
	c.client = mgr.GetClient()
	c.recorder = mgr.GetEventRecorder(c.cfg.ControllerName)
	c.log = mgr.GetLogger().WithName(c.cfg.ControllerName)
	opts := controller.Options{MaxConcurrentReconciles: c.cfg.MaxConcurrentReconciles}

	err := ctrl.NewControllerManagedBy(mgr).
		Named(c.cfg.ControllerName+"-virtualsites").
		For(&vk8sv1.VirtualSite{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&vk8sv1.Site{}, siteHandler(c.virtualSitesOf)).
		WithOptions(opts).
		Complete(reconcile.Func(c.ReconcileVirtualSite))
	if err != nil {
		return fmt.Errorf("VirtualSite controller: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named(c.cfg.ControllerName+"-virtualkubernetes").
		// Setting deletionTimestamp bumps the generation too.
		For(&vk8sv1.VirtualKubernetes{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&vk8sv1.VirtualSite{}, handler.EnqueueRequestsFromMapFunc(c.virtualKubernetesOfVirtualSite),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&vk8sv1.Site{}, siteHandler(c.virtualKubernetesOfSite)).
		WithOptions(opts)
	if c.cfg.SiteEvents != nil {
		b = b.WatchesRawSource(source.Channel(c.cfg.SiteEvents, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, o client.Object) []reconcile.Request {
				return c.virtualKubernetesOnSite(ctx, o.GetName())
			})))
	}
	if err := b.Complete(reconcile.Func(c.ReconcileVirtualKubernetes)); err != nil {
		return fmt.Errorf("VirtualKubernetes controller: %w", err)
	}
	return nil
}

// siteHandler maps Site events to requests with mapFn, given the Site before and after the
// change. Only changes of what selection reads (labels, spec.type) and creations and
// deletions count: a Site's status changes every heartbeat.
func siteHandler(mapFn func(ctx context.Context, sites ...*vk8sv1.Site) []reconcile.Request) handler.EventHandler {
	add := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], reqs []reconcile.Request) {
		for _, r := range reqs {
			q.Add(r)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if s, ok := e.Object.(*vk8sv1.Site); ok {
				add(q, mapFn(ctx, s))
			}
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			o, ok1 := e.ObjectOld.(*vk8sv1.Site)
			n, ok2 := e.ObjectNew.(*vk8sv1.Site)
			if !ok1 || !ok2 || (maps.Equal(o.Labels, n.Labels) && overrides.SiteType(o) == overrides.SiteType(n)) {
				return
			}
			add(q, mapFn(ctx, o, n))
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if s, ok := e.Object.(*vk8sv1.Site); ok {
				add(q, mapFn(ctx, s))
			}
		},
	}
}

// virtualSitesOf returns the VirtualSites that select any of sites (a Site before and after
// a change: one that left the selection is as interesting as one that joined).
func (c *Controller) virtualSitesOf(ctx context.Context, sites ...*vk8sv1.Site) []reconcile.Request {
	var list vk8sv1.VirtualSiteList
	if err := c.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		c.log.Error(err, "Listing VirtualSites for a Site change failed")
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		vs := &list.Items[i]
		rule, err := overrides.NewSiteSelector(vs)
		if err != nil {
			continue // an invalid selector selects nothing, whatever the Sites do
		}
		for _, s := range sites {
			if rule.Matches(s) {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(vs)})
				break
			}
		}
	}
	return out
}

// virtualKubernetesOfVirtualSite returns the VirtualKubernetes whose spec.virtualSite is vs.
func (c *Controller) virtualKubernetesOfVirtualSite(ctx context.Context, vs client.Object) []reconcile.Request {
	return c.virtualKubernetesBy(ctx, indexVirtualSite, vs.GetNamespace()+"/"+vs.GetName())
}

// virtualKubernetesOfSite returns the VirtualKubernetes whose virtual-site selects any of
// sites, or that list one of them in their status.
func (c *Controller) virtualKubernetesOfSite(ctx context.Context, sites ...*vk8sv1.Site) []reconcile.Request {
	var out []reconcile.Request
	for _, r := range c.virtualSitesOf(ctx, sites...) {
		out = append(out, c.virtualKubernetesBy(ctx, indexVirtualSite, r.Namespace+"/"+r.Name)...)
	}
	for _, s := range sites {
		out = append(out, c.virtualKubernetesOnSite(ctx, s.Name)...)
	}
	return out
}

// virtualKubernetesOnSite returns the VirtualKubernetes whose status names site.
func (c *Controller) virtualKubernetesOnSite(ctx context.Context, site string) []reconcile.Request {
	return c.virtualKubernetesBy(ctx, indexSite, site)
}

func (c *Controller) virtualKubernetesBy(ctx context.Context, index, value string) []reconcile.Request {
	var list vk8sv1.VirtualKubernetesList
	if err := c.client.List(ctx, &list, client.MatchingFields{index: value}, client.UnsafeDisableDeepCopy); err != nil {
		c.log.Error(err, "Listing VirtualKubernetes failed", "index", index, "value", value)
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// metrics are the controllers' Prometheus metrics.
type metrics struct {
	ops *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vk8s_tenancy_site_operations_total",
		Help: "Provisioning (namespace and isolation NetworkPolicy) and cleanup of vK8s namespaces on site clusters, by site, operation and result.",
	}, []string{"site", "operation", "result"})
	ops, err := promreg.Register(reg, ops)
	if err != nil {
		return nil, err
	}
	return &metrics{ops: ops}, nil
}

func (m *metrics) op(site, operation string, err error) {
	result := "success"
	if err != nil {
		result = "error"
	}
	m.ops.WithLabelValues(site, operation, result).Inc()
}

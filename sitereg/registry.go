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

package sitereg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/transport"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Defaults of Config.
const (
	DefaultHeartbeatInterval       = 30 * time.Second
	DefaultProbeTimeout            = 5 * time.Second
	DefaultMaxConcurrentReconciles = 10
	DefaultQPS                     = 50
	DefaultBurst                   = 100
	DefaultControllerName          = "sitereg"
	// DefaultWriteStallThreshold is longer than a write takes on a healthy site by far,
	// and as long as an admission webhook's default timeout.
	DefaultWriteStallThreshold = 10 * time.Second
)

// Config configures a Registry. The zero value is valid: every field has a default.
type Config struct {
	// HeartbeatInterval is how often each Site is reconciled: its connection probed (one
	// probe per shared connection) and its status written. Zero: 30s. At least 1s.
	HeartbeatInterval time.Duration
	// ProbeTimeout bounds each call the registry makes to a site (version probe, node list,
	// node cache sync) and the read of a kubeconfig Secret. Zero: 5s. Less than
	// HeartbeatInterval.
	ProbeTimeout time.Duration
	// MaxConcurrentReconciles is the number of Sites reconciled at once, so a slow site
	// does not hold up the others. Zero: 10.
	MaxConcurrentReconciles int
	// QPS and Burst limit the client of each site connection. Zero: 50 and 100.
	QPS   float32
	Burst int
	// ControllerName names the controller, the reporter of its Events and its logger.
	// Empty: "sitereg".
	ControllerName string
	// MetricsRegisterer receives the registry's metrics. Nil: controller-runtime's
	// metrics.Registry, which the manager's metrics endpoint serves.
	MetricsRegisterer prometheus.Registerer
	// WriteStallThreshold is how long a write to a site may take before the site's writes
	// count as stalled (ReasonWritesTimingOut) while its reads answer. Zero:
	// DefaultWriteStallThreshold.
	WriteStallThreshold time.Duration
	// Claim, when set, is written on every site cluster before the site is used; a cluster
	// that another host claimed for the same tenant is refused (ReasonTenantInUse).
	Claim *Claim
	// WrapTransport, when set, wraps the transport of every site connection, under the
	// registry's own wrappers: the e2e suite records there every call a site refuses.
	WrapTransport transport.WrapperFunc
	// Owns, when set, says which Sites this registry acts for (the provider's replicas
	// share the Sites, package shard): it connects to, probes and writes the status of
	// those alone, and lets go of a Site as soon as Owns turns false (OwnershipChanged).
	// Nil: every Site.
	Owns func(site string) bool
}

var controllerNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Registry connects to every Site's cluster and keeps the Sites' status current; see the
// package documentation. Create it with New, add it to a manager with SetupWithManager.
type Registry struct {
	cfg     Config
	metrics *metrics
	now     func() time.Time

	// Set by SetupWithManager.
	client    client.Client // cached: Sites, and the metadata of Secrets
	apiReader client.Reader // uncached: Secret data
	recorder  events.EventRecorder
	log       logr.Logger // for what runs outside reconciles (node informers)

	// self carries reconcile requests from the node informers to the registry's own
	// controller; Watch adds subscribers for other controllers.
	self *subscriber

	// started is closed by Start once ctx, the context connections live in, is set.
	started   chan struct{}
	startOnce sync.Once
	ctx       context.Context //nolint:containedctx // the lifetime of the connections Reconcile opens

	// namesMu makes the decisions on colliding virtual node names one at a time, so that
	// two Sites never both keep a name (assign); it is taken before mu.
	namesMu sync.Mutex

	mu      sync.Mutex
	sites   map[string]*siteEntry
	conns   map[string]*conn
	watches []*subscriber
	running bool // subscribers run once Start has begun
}

// siteEntry is what the registry keeps about one Site between reconciles.
type siteEntry struct {
	// ref ("ns/name/key") and secretRV identify the Secret data conn or err came from, so
	// the Secret is read again only when it or the reference changed.
	ref      string
	secretRV string
	// conn is the site's connection; nil when err says why there is none.
	conn *conn
	err  *siteError
	// verified is the connection whose cluster the registry found to be the Site's (its
	// status.clusterID, or none yet); Get gives conn only when it is verified.
	verified *conn
	sel      labels.Selector
	mode     vk8sv1.NodeMode
	// podSecurity is the Site's spec.podSecurity.enforce (translate.SitePodSecurity).
	podSecurity vk8sv1.PodSecurityLevel
	// status is the status last written for the Site with this uid.
	uid    types.UID
	status *vk8sv1.SiteStatus
	// held are the virtual nodes the registry gave the Site with heldUID last (assign):
	// its nodes' names less those another Site keeps.
	held    []string
	heldUID types.UID
}

// New validates cfg, fills in its defaults and registers the metrics.
func New(cfg Config) (*Registry, error) {
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.MaxConcurrentReconciles == 0 {
		cfg.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	}
	if cfg.QPS == 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.ControllerName == "" {
		cfg.ControllerName = DefaultControllerName
	}
	if cfg.WriteStallThreshold == 0 {
		cfg.WriteStallThreshold = DefaultWriteStallThreshold
	}
	if cfg.MetricsRegisterer == nil {
		cfg.MetricsRegisterer = ctrlmetrics.Registry
	}
	var errs []error
	if cl := cfg.Claim; cl != nil && (cl.Tenant == "" || cl.HostID == "") {
		errs = append(errs, errors.New("Claim: want a tenant and a host ID"))
	}
	if cfg.HeartbeatInterval < time.Second {
		errs = append(errs, fmt.Errorf("HeartbeatInterval %s: want at least 1s", cfg.HeartbeatInterval))
	}
	if cfg.ProbeTimeout < 0 || cfg.ProbeTimeout >= cfg.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("ProbeTimeout %s: want more than 0 and less than HeartbeatInterval %s", cfg.ProbeTimeout, cfg.HeartbeatInterval))
	}
	if cfg.MaxConcurrentReconciles < 0 {
		errs = append(errs, fmt.Errorf("MaxConcurrentReconciles %d: want at least 1", cfg.MaxConcurrentReconciles))
	}
	if cfg.QPS < 0 || cfg.Burst < 0 {
		errs = append(errs, fmt.Errorf("QPS %v, Burst %d: want positive values", cfg.QPS, cfg.Burst))
	}
	if !controllerNameRE.MatchString(cfg.ControllerName) {
		errs = append(errs, fmt.Errorf("ControllerName %q: want a DNS label (lowercase letters, digits, '-')", cfg.ControllerName))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("site registry config: %w", err)
	}
	m, err := newMetrics(cfg.MetricsRegisterer)
	if err != nil {
		return nil, fmt.Errorf("site registry metrics: %w", err)
	}
	return &Registry{
		cfg:     cfg,
		metrics: m,
		now:     time.Now,
		log:     logr.Discard(),
		self:    newSubscriber(),
		started: make(chan struct{}),
		sites:   map[string]*siteEntry{},
		conns:   map[string]*conn{},
	}, nil
}

// secretRefIndex indexes Sites by the "namespace/name" of their kubeconfig Secret.
const secretRefIndex = "vk8s.io/sitereg-secret"

func indexSecretRef(obj client.Object) []string {
	s, ok := obj.(*vk8sv1.Site)
	if !ok {
		return nil
	}
	ref := s.Spec.KubeconfigSecretRef
	return []string{ref.Namespace + "/" + ref.Name}
}

// Sites, and the kubeconfig Secrets they name, in any namespace (their metadata is
// watched; their data read when it changed).
// +kubebuilder:rbac:groups=vk8s.io,resources=sites,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager adds the registry to mgr: the Site controller (watching Sites, the
// metadata of Secrets, and the nodes of every connected cluster) and a runnable that closes
// every connection when the manager stops. mgr's scheme must know vk8s.io/v1alpha1. Call it
// once.
func (r *Registry) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.client != nil {
		return errors.New("site registry: SetupWithManager called twice")
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &vk8sv1.Site{}, secretRefIndex, indexSecretRef); err != nil {
		return fmt.Errorf("index Sites by Secret: %w", err)
	}
	r.client = mgr.GetClient()
	r.apiReader = mgr.GetAPIReader()
	r.recorder = mgr.GetEventRecorder(r.cfg.ControllerName)
	r.log = mgr.GetLogger().WithName(r.cfg.ControllerName)
	if err := mgr.Add(r); err != nil {
		return fmt.Errorf("add site registry to manager: %w", err)
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named(r.cfg.ControllerName).
		For(&vk8sv1.Site{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.sitesForSecret), builder.OnlyMetadata).
		WatchesRawSource(source.Channel(r.self.out, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.cfg.MaxConcurrentReconciles}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("site registry controller: %w", err)
	}
	return nil
}

// Start records ctx as the lifetime of the site connections and, when ctx ends, closes
// them all. It implements manager.Runnable; SetupWithManager adds it.
func (r *Registry) Start(ctx context.Context) error {
	r.startOnce.Do(func() {
		r.mu.Lock()
		r.ctx, r.running = ctx, true
		go r.self.run(ctx)
		for _, s := range r.watches {
			go s.run(ctx)
		}
		r.mu.Unlock()
		close(r.started)
	})
	<-ctx.Done()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		r.closeLocked(c)
	}
	for name := range r.sites {
		delete(r.sites, name)
	}
	return nil
}

// Watch returns a channel that carries a request (a Site with only its name set) each time
// a site's nodes change or its status changes (connected or not, nodes, version; a
// heartbeat that moves only lastHeartbeatTime is not a change; a spec change, such as
// spec.podSecurity, moves status.observedGeneration), and when it is deleted: feed it to a controller with source.Channel to reconcile whatever is made
// of the sites' nodes. Requests are coalesced per site and never dropped; deliveries start
// with the registry and stop with it. Call Watch before the manager starts, once per
// consumer.
func (r *Registry) Watch() <-chan event.GenericEvent {
	s := newSubscriber()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watches = append(r.watches, s)
	if r.running {
		go s.run(r.ctx)
	}
	return s.out
}

// nodesChanged is the notify of every connection: the sites go to the registry's own
// controller and to every watcher.
func (r *Registry) nodesChanged(sites []string) {
	r.self.mark(sites)
	r.notifyWatchers(sites...)
}

// notifyWatchers queues requests for sites to the Watch channels.
func (r *Registry) notifyWatchers(sites ...string) {
	r.mu.Lock()
	watches := slices.Clone(r.watches)
	r.mu.Unlock()
	for _, s := range watches {
		s.mark(sites)
	}
}

// OwnershipChanged reconciles sites whose owner (Config.Owns) may have changed: a Site
// this registry no longer owns lets go of its connection, and one it owns now connects;
// either way the watchers hear of it.
func (r *Registry) OwnershipChanged(sites ...string) {
	r.self.mark(sites)
}

// Owns says whether this process acts for site (Config.Owns): the provider's other parts
// leave a Site it does not own alone, without taking it for deleted or down.
func (r *Registry) Owns(site string) bool {
	return r.cfg.Owns == nil || r.cfg.Owns(site)
}

// Sharded says whether the Sites are shared with other replicas (Config.Owns is set).
func (r *Registry) Sharded() bool { return r.cfg.Owns != nil }

// NeedLeaderElection is false: connections are opened by the controller, which itself
// waits for leadership; Start only ties them to the manager's lifetime.
func (r *Registry) NeedLeaderElection() bool { return false }

// Conn is a site's connection as Get returns it. Sites on one cluster with the same
// credentials share Config, Client and the node cache; Nodes shows only the site's nodes.
// Everything in it is shared: do not modify it.
type Conn struct {
	// Site is the name of the Site.
	Site string
	// Key identifies the cluster connection; sites with equal Keys share it.
	Key string
	// Server is the URL of the site's API server.
	Server string
	// Config is the client configuration the connection uses. Copy it (rest.CopyConfig)
	// before changing it.
	Config *rest.Config
	// Client calls the site's API server. It sets no timeout of its own: pass contexts
	// with deadlines.
	Client kubernetes.Interface
	// Nodes lists the site's nodes (those spec.nodeSelector selects) from a shared cache.
	Nodes corelisters.NodeLister
	// ClusterNodes lists every node of the site's cluster, the site's or not, from the
	// same cache (to tell a node the selector no longer selects from one that is gone).
	ClusterNodes corelisters.NodeLister
	// NodeMode is the Site's spec.nodeMode.
	NodeMode vk8sv1.NodeMode
	// PodSecurity is the Site's spec.podSecurity.enforce (baseline when unset).
	PodSecurity vk8sv1.PodSecurityLevel
	// NamespacePodSecurity is the Pod Security level of the site namespaces on the
	// cluster: the strictest of the Sites that share the connection, since they share the
	// namespaces (PodSecurity for a Site alone on its cluster).
	NamespacePodSecurity vk8sv1.PodSecurityLevel
	// KubernetesVersion is the API server's version at the last probe.
	KubernetesVersion string
	// LastHeartbeat is when the API server last answered a probe.
	LastHeartbeat time.Time
	// WritesStalled says why the site's writes are stalled while its reads answer
	// (ReasonWritesTimingOut); nil when they are not.
	WritesStalled error
}

// LastContact returns when the site's API server last answered a probe; zero when it has
// not in this process. Disconnection's grace period counts from it.
func (r *Registry) LastContact(site string) time.Time {
	r.mu.Lock()
	e, ok := r.sites[site]
	var c *conn
	if ok {
		c = e.conn
	}
	r.mu.Unlock()
	if c == nil {
		return time.Time{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSuccess
}

// Get returns the connection of the named Site. The error wraps ErrSiteNotConnected when
// the Site is unknown or not reconciled yet, its kubeconfig cannot be used, its API server
// failed the last probe, or its nodes have not been read yet; it also wraps ErrSiteDown
// when the kubeconfig cannot be used or the probe failed. Get does no I/O and never blocks
// on a site.
func (r *Registry) Get(site string) (*Conn, error) {
	u, err := r.usable(site)
	if err != nil {
		return nil, err
	}
	c := u.conn
	nodes := corelisters.NewNodeLister(u.informer.GetIndexer())
	return &Conn{
		Site:                 site,
		Key:                  c.key,
		Server:               c.server,
		Config:               c.config,
		Client:               c.client,
		Nodes:                siteNodeLister{base: nodes, sel: u.sel},
		ClusterNodes:         nodes,
		NodeMode:             u.mode,
		PodSecurity:          u.level,
		NamespacePodSecurity: c.namespacePodSecurity(),
		KubernetesVersion:    u.res.version,
		LastHeartbeat:        u.res.lastSuccess,
		WritesStalled:        c.writes.stalled(),
	}, nil
}

// Key returns the key of the connection site uses (Conn.Key) when Get would give it, with
// Get's errors, without building a Conn: the kubelet API asks it for every pod of every
// scrape (Pods.SitePod), where the Conn's listers and fields would only be garbage.
func (r *Registry) Key(site string) (string, error) {
	u, err := r.usable(site)
	if err != nil {
		return "", err
	}
	return u.conn.key, nil
}

// usableSite is what Get reads of a Site whose connection is usable.
type usableSite struct {
	conn  *conn
	sel   labels.Selector
	mode  vk8sv1.NodeMode
	level vk8sv1.PodSecurityLevel
	res   probeResult
	// informer is the connection's node informer, read with the probe's result.
	informer cache.SharedIndexInformer
}

// usable returns site's connection and what Get reads of it, or why the site is not
// connected (an error wrapping ErrSiteNotConnected).
func (r *Registry) usable(site string) (usableSite, error) {
	r.mu.Lock()
	e, ok := r.sites[site]
	var u usableSite
	var verified bool
	if ok {
		u.conn, u.sel, u.mode, u.level, verified = e.conn, e.sel, e.mode, e.podSecurity, e.verified == e.conn
	}
	var entryErr error
	if ok && e.err != nil {
		entryErr = e.err
	}
	r.mu.Unlock()
	c := u.conn
	switch {
	case !ok:
		return u, fmt.Errorf("site %s: %w: not registered, or not reconciled yet", site, ErrSiteNotConnected)
	case entryErr != nil:
		return u, fmt.Errorf("site %s: %w: %w: %w", site, ErrSiteNotConnected, ErrSiteDown, entryErr)
	case c == nil:
		return u, fmt.Errorf("site %s: %w: no connection yet", site, ErrSiteNotConnected)
	}
	c.mu.Lock()
	u.res = c.resultLocked()
	u.informer = c.informer
	claimErr, ready := c.claimErr, c.readyLocked()
	c.mu.Unlock()
	switch {
	case u.res.err != nil:
		return u, fmt.Errorf("site %s: %w: %w: %w", site, ErrSiteNotConnected, ErrSiteDown, u.res.err)
	case u.res.lastSuccess.IsZero():
		return u, fmt.Errorf("site %s: %w: not probed yet", site, ErrSiteNotConnected)
	case !verified:
		return u, fmt.Errorf("site %s: %w: the cluster's identity is not checked yet", site, ErrSiteNotConnected)
	case claimErr != nil:
		return u, fmt.Errorf("site %s: %w: %w: %w", site, ErrSiteNotConnected, ErrSiteDown, claimErr)
	case !ready:
		return u, fmt.Errorf("site %s: %w: the tenant claim is not written yet", site, ErrSiteNotConnected)
	case u.informer == nil || !u.informer.HasSynced():
		return u, fmt.Errorf("site %s: %w: node cache not synced yet", site, ErrSiteNotConnected)
	}
	return u, nil
}

// HasConnection says whether the connection key (Conn.Key) is open: some Site uses it. One
// that is not was closed, and its client fails: drop what was made of it (caches,
// queues). It does no I/O.
func (r *Registry) HasConnection(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[key] != nil
}

// SitesOf returns the Sites that use the connection key (Conn.Key), none when it is
// closed. It does no I/O.
func (r *Registry) SitesOf(key string) []string {
	r.mu.Lock()
	c := r.conns[key]
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Keys(c.sites))
}

// SelectsNode says whether a Site on connection key (Conn.Key) selects the cluster's node
// name, as the connection's node cache shows it: with sharding, whether one of this
// replica's own Sites runs that node. False when the node or the cache is unknown. It does
// no I/O.
func (r *Registry) SelectsNode(key, name string) bool {
	r.mu.Lock()
	c := r.conns[key]
	r.mu.Unlock()
	if c == nil || name == "" {
		return false
	}
	c.mu.Lock()
	inf := c.informer
	sels := slices.Collect(maps.Values(c.sites))
	c.mu.Unlock()
	if inf == nil {
		return false
	}
	obj, ok, err := inf.GetIndexer().GetByKey(name)
	n, isNode := obj.(*corev1.Node)
	if err != nil || !ok || !isNode {
		return false
	}
	return slices.ContainsFunc(sels, func(sel labels.Selector) bool { return sel.Matches(labels.Set(n.Labels)) })
}

// Exists says whether the host has Site site, not being deleted, as the manager's cache
// of Sites shows it (every Site, whichever replica owns it). With sharding, the provider
// leaves a site pod made for another replica's Site to that replica, but one made for a
// Site that is gone has no owner left. The error says the cache could not be read.
func (r *Registry) Exists(ctx context.Context, site string) (bool, error) {
	if r.client == nil {
		return false, errors.New("site registry: not set up with a manager")
	}
	s, err := r.liveSite(ctx, site)
	return s != nil, err
}

// PodSecurity returns the Pod Security level of the site namespaces on the cluster of
// connection key (Conn.Key): the strictest spec.podSecurity.enforce of the Sites that
// share it, baseline when no Site uses the connection. It does no I/O.
func (r *Registry) PodSecurity(key string) vk8sv1.PodSecurityLevel {
	r.mu.Lock()
	c := r.conns[key]
	r.mu.Unlock()
	if c == nil {
		return vk8sv1.PodSecurityBaseline
	}
	return c.namespacePodSecurity()
}

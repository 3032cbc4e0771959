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

package mirror

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/translate"
)

// Defaults of Config.
const (
	DefaultWorkers        = 2
	DefaultTimeout        = 15 * time.Second
	DefaultResyncInterval = time.Minute
)

// Config configures the mirror. Tenant, Registry, Host, HostInformers, HostPods, HostNodes
// and VirtualKubernetesSites are required.
type Config struct {
	// Tenant names this host installation; site namespaces are <tenant>-<namespace>.
	Tenant string
	// Registry gives the sites' connections.
	Registry *sitereg.Registry
	// Host writes the status of host Services.
	Host kubernetes.Interface
	// HostInformers is the provider's informer factory of host objects: the mirror adds
	// the informers of its kinds, and the caller starts the factory.
	HostInformers informers.SharedInformerFactory
	// HostPods is the provider's informer of the host's scheduled pods, HostNodes the
	// lister of its Nodes: the sites a namespace's pods run on.
	HostPods  cache.SharedIndexInformer
	HostNodes corelisters.NodeLister
	// VirtualKubernetesSites returns the sites of a namespace's VirtualKubernetes (its
	// status.sites) and whether the namespace has one: only vK8s namespaces are mirrored.
	// It reads a cache and does not block.
	VirtualKubernetesSites func(ctx context.Context, namespace string) (sites []string, vk8s bool, err error)
	// SiteEvents names Sites whose connection changed (sitereg.Registry.Watch): their
	// clusters are brought up to date at once.
	SiteEvents <-chan event.GenericEvent
	// Recorder records Events on host objects whose copy a site refuses.
	Recorder record.EventRecorder
	// Log is the mirror's logger.
	Log logr.Logger
	// Workers per site cluster. Zero: DefaultWorkers.
	Workers int
	// Timeout bounds each call to a site. Zero: DefaultTimeout.
	Timeout time.Duration
	// ResyncInterval is how often every mirrored object is checked again on every site:
	// a VirtualKubernetes that gained or lost sites, a copy changed behind vk8s' back.
	// Zero: DefaultResyncInterval.
	ResyncInterval time.Duration
	// MetricsRegisterer receives the metrics. Nil: controller-runtime's registry.
	MetricsRegisterer prometheus.Registerer
}

// Mirror keeps the Services, ConfigMaps, ServiceAccounts, Roles, RoleBindings and
// NetworkPolicies of every vK8s namespace on every site of that namespace, and writes back
// into each host Service what its sites show (Ready endpoints, load balancers). Create it
// with New before the host informers start; Run it as a leader-elected runnable.
type Mirror struct {
	cfg     Config
	log     logr.Logger
	metrics *metrics
	// host holds the host informers of the mirrored kinds, by kind.
	host map[string]cache.SharedIndexInformer
	pods corelisters.PodLister
	// synced says whether the host informers the mirror reads are filled.
	synced []cache.InformerSynced

	// status queues host Services whose status to write, by namespace/name.
	status workqueue.TypedRateLimitingInterface[string]

	ctx     context.Context //nolint:containedctx // the lifetime of the site clusters Run starts on demand
	started chan struct{}

	mu       sync.Mutex
	clusters map[string]*cluster // by sitereg.Conn.Key
	// arrived holds "<cluster key>/<namespace>" once the namespace's objects were queued
	// on the cluster for a pod that landed there.
	arrived map[string]bool
}

// New validates cfg and adds the mirror's host informers to cfg.HostInformers.
func New(cfg Config) (*Mirror, error) {
	switch {
	case cfg.Tenant == "":
		return nil, errors.New("mirror: tenant is required")
	case cfg.Registry == nil || cfg.Host == nil || cfg.HostInformers == nil || cfg.HostPods == nil || cfg.HostNodes == nil:
		return nil, errors.New("mirror: registry, host client and host informers are required")
	case cfg.VirtualKubernetesSites == nil:
		return nil, errors.New("mirror: VirtualKubernetesSites is required")
	}
	cfg.Workers = cmp.Or(cfg.Workers, DefaultWorkers)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.ResyncInterval = cmp.Or(cfg.ResyncInterval, DefaultResyncInterval)
	if cfg.MetricsRegisterer == nil {
		cfg.MetricsRegisterer = ctrlmetrics.Registry
	}
	met, err := newMetrics(cfg.MetricsRegisterer)
	if err != nil {
		return nil, err
	}
	m := &Mirror{
		cfg: cfg, log: cfg.Log, metrics: met, started: make(chan struct{}), clusters: map[string]*cluster{}, arrived: map[string]bool{},
		pods: corelisters.NewPodLister(cfg.HostPods.GetIndexer()),
		status: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vk8s-mirror-service-status"}),
	}
	f := cfg.HostInformers
	core, rbac, netv1 := f.Core().V1(), f.Rbac().V1(), f.Networking().V1()
	m.host = map[string]cache.SharedIndexInformer{
		translate.KindService: core.Services().Informer(), translate.KindConfigMap: core.ConfigMaps().Informer(),
		translate.KindServiceAccount: core.ServiceAccounts().Informer(), translate.KindRole: rbac.Roles().Informer(),
		translate.KindRoleBinding: rbac.RoleBindings().Informer(), translate.KindNetworkPolicy: netv1.NetworkPolicies().Informer(),
	}
	for kind, inf := range m.host {
		m.synced = append(m.synced, inf.HasSynced)
		handle := func(obj any) { m.hostChanged(kind, obj) }
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: handle, UpdateFunc: func(_, obj any) { handle(obj) }, DeleteFunc: handle,
		}); err != nil {
			return nil, err
		}
	}
	// A pod that lands on a site brings its namespace's objects there.
	if _, err := cfg.HostPods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: m.podBound, UpdateFunc: func(_, obj any) { m.podBound(obj) },
	}); err != nil {
		return nil, err
	}
	return m, nil
}

// hostObject returns the cached host object of kind namespace/name, and whether it exists.
func (m *Mirror) hostObject(kind, namespace, name string) (metaObject, bool, error) {
	obj, exists, err := m.host[kind].GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !exists {
		return nil, false, err
	}
	o, ok := obj.(metaObject)
	return o, ok, nil
}

// hostObjects lists the cached host objects of kind in namespace (every namespace: "").
func (m *Mirror) hostObjects(kind, namespace string) ([]any, error) {
	indexer := m.host[kind].GetIndexer()
	if namespace == "" {
		return indexer.List(), nil
	}
	return indexer.ByIndex(cache.NamespaceIndex, namespace)
}

// NeedLeaderElection is true: two providers must not write the same copies.
func (m *Mirror) NeedLeaderElection() bool { return true }

// Start runs the mirror until ctx ends; it implements manager.Runnable. The host informers
// must be started by the caller; the mirror waits for them.
func (m *Mirror) Start(ctx context.Context) error {
	m.synced = append(m.synced, m.cfg.HostPods.HasSynced)
	if !cache.WaitForCacheSync(ctx.Done(), m.synced...) {
		return nil
	}
	m.ctx = ctx
	close(m.started)
	go m.runStatus(ctx)
	// Everything once, now that the host caches are filled; then at every resync.
	m.resync(ctx)
	t := time.NewTicker(m.cfg.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.status.ShutDown()
			m.mu.Lock()
			cs := m.clusters
			m.clusters = map[string]*cluster{}
			m.mu.Unlock()
			for _, c := range cs {
				c.stop()
			}
			return nil
		case ev, ok := <-m.cfg.SiteEvents:
			if !ok {
				m.cfg.SiteEvents = nil
				continue
			}
			m.siteChanged(ctx, ev.Object.GetName())
			m.retire()
		case <-t.C:
			m.resync(ctx)
		}
	}
}

// Mirrored says whether the mirror keeps objects of kind in namespace on the sites: the
// provider leaves their copies' lifecycle to it (it still makes sure a pod's ConfigMaps
// and ServiceAccount are there before the pod).
func (m *Mirror) Mirrored(ctx context.Context, kind, namespace string) bool {
	if !translate.Mirrored(kind) {
		return false
	}
	_, vk8s, err := m.cfg.VirtualKubernetesSites(ctx, namespace)
	return err == nil && vk8s
}

// sitesOf returns the sites of a vK8s namespace: those of its VirtualKubernetes and those
// its pods run on. A namespace without a VirtualKubernetes has none.
func (m *Mirror) sitesOf(ctx context.Context, namespace string) ([]string, error) {
	sites, vk8s, err := m.cfg.VirtualKubernetesSites(ctx, namespace)
	if err != nil || !vk8s {
		return nil, err
	}
	out := slices.Clone(sites)
	pods, err := m.pods.Pods(namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
			continue
		}
		n, err := m.cfg.HostNodes.Get(p.Spec.NodeName)
		if err != nil || n.Labels[vk8sv1.LabelType] != vk8sv1.TypeVirtualKubelet {
			continue
		}
		if s := n.Labels[vk8sv1.LabelSite]; s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out, nil
}

// wantedClusters returns the connections of the sites of a namespace, by cluster key;
// sites that are not connected are left out (they are brought up to date when they are).
func (m *Mirror) wantedClusters(ctx context.Context, namespace string) (map[string][]*sitereg.Conn, error) {
	sites, err := m.sitesOf(ctx, namespace)
	if err != nil {
		return nil, err
	}
	out := map[string][]*sitereg.Conn{}
	for _, s := range sites {
		conn, err := m.cfg.Registry.Get(s)
		if err != nil {
			continue
		}
		out[conn.Key] = append(out[conn.Key], conn)
	}
	return out, nil
}

// hostChanged queues a changed host object on the clusters of its namespace's sites, and on
// every cluster that may hold a copy of it.
func (m *Mirror) hostChanged(kind string, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(metaObject)
	if !ok || translate.Skipped(kind, o.GetName()) {
		return
	}
	select {
	case <-m.started:
	default:
		// Start's first resync queues everything.
		return
	}
	m.enqueue(m.ctx, item{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName()})
}

// enqueue queues it on the clusters of its namespace's sites (starting those not started
// yet) and on every started cluster, where an unwanted copy is deleted. Objects of
// namespaces that are not vK8s namespaces go only to clusters that hold a copy.
func (m *Mirror) enqueue(ctx context.Context, it item) {
	wanted, err := m.wantedClusters(ctx, it.Namespace)
	if err != nil {
		m.log.Error(err, "Reading the sites of a namespace failed", "namespace", it.Namespace)
	}
	for key, conns := range wanted {
		if _, err := m.clusterOf(conns[0]); err != nil {
			m.log.Error(err, "Starting a site cluster failed", "server", conns[0].Server)
			delete(wanted, key)
		}
	}
	for _, c := range m.clusterList() {
		if _, ok := wanted[c.key]; ok || c.copy(it.Kind, translate.SiteNamespace(m.cfg.Tenant, it.Namespace), it.Name) != nil {
			c.queue.Add(it)
		}
	}
	if it.Kind == translate.KindService {
		m.status.Add(it.Namespace + "/" + it.Name)
	}
}

// podBound queues the objects of a vK8s namespace on the cluster of a site the first time a
// pod of the namespace lands there, so that its Services and RBAC follow it at once rather
// than at the next resync.
func (m *Mirror) podBound(obj any) {
	p, ok := obj.(*corev1.Pod)
	select {
	case <-m.started:
	default:
		return
	}
	if !ok || p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
		return
	}
	n, err := m.cfg.HostNodes.Get(p.Spec.NodeName)
	if err != nil || n.Labels[vk8sv1.LabelType] != vk8sv1.TypeVirtualKubelet || n.Labels[vk8sv1.LabelSite] == "" {
		return
	}
	conn, err := m.cfg.Registry.Get(n.Labels[vk8sv1.LabelSite])
	if err != nil {
		return
	}
	key := conn.Key + "/" + p.Namespace
	m.mu.Lock()
	seen := m.arrived[key]
	m.arrived[key] = true
	m.mu.Unlock()
	if seen {
		return
	}
	c, err := m.clusterOf(conn)
	if err != nil {
		return
	}
	m.queueNamespace(m.ctx, c, p.Namespace)
}

// siteChanged brings the cluster of a site that connected up to date.
func (m *Mirror) siteChanged(ctx context.Context, site string) {
	conn, err := m.cfg.Registry.Get(site)
	if err != nil {
		return
	}
	c, err := m.clusterOf(conn)
	if err != nil {
		m.log.Error(err, "Starting a site cluster failed", "site", site)
		return
	}
	m.resyncCluster(ctx, c)
}

// retire stops the caches and workers of the site clusters whose connection the registry
// closed (sitereg.Registry.HasConnection): their client fails now, and their caches would
// only go stale. The Sites that used them are brought up to date on the connection they
// have now when it is ready (siteChanged).
func (m *Mirror) retire() {
	m.mu.Lock()
	var old []*cluster
	for key, c := range m.clusters {
		if !m.cfg.Registry.HasConnection(key) {
			old = append(old, c)
			delete(m.clusters, key)
		}
	}
	m.mu.Unlock()
	for _, c := range old {
		c.log.Info("Site connection closed; its mirror caches and workers stop")
		c.stop()
	}
}

// resync queues every mirrored host object, and every copy on every cluster.
func (m *Mirror) resync(ctx context.Context) {
	for kind, inf := range m.host {
		for _, o := range inf.GetIndexer().List() {
			m.hostChanged(kind, o)
		}
	}
	for _, c := range m.clusterList() {
		c.queueCopies()
	}
}

// resyncCluster queues every host object of a vK8s namespace, and every copy, on c.
func (m *Mirror) resyncCluster(ctx context.Context, c *cluster) {
	m.queueNamespace(ctx, c, "")
	c.queueCopies()
}

// queueNamespace queues on c the host objects of namespace (every namespace: "") that are
// in vK8s namespaces.
func (m *Mirror) queueNamespace(ctx context.Context, c *cluster, namespace string) {
	for kind := range m.host {
		objs, err := m.hostObjects(kind, namespace)
		if err != nil {
			m.log.Error(err, "Listing host objects failed", "kind", kind)
			continue
		}
		for _, o := range objs {
			meta := o.(metaObject)
			if translate.Skipped(kind, meta.GetName()) {
				continue
			}
			if _, vk8s, err := m.cfg.VirtualKubernetesSites(ctx, meta.GetNamespace()); err == nil && vk8s {
				c.queue.Add(item{Kind: kind, Namespace: meta.GetNamespace(), Name: meta.GetName()})
			}
		}
	}
}

// clusterOf returns the cluster of a connection, starting its caches and workers when it
// is new.
func (m *Mirror) clusterOf(conn *sitereg.Conn) (*cluster, error) {
	<-m.started
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.clusters[conn.Key]; ok {
		return c, nil
	}
	c := newCluster(conn, m.cfg.Tenant, m.log)
	m.clusters[conn.Key] = c
	m.startCluster(c)
	return c, nil
}

// clusterList is a snapshot of the clusters, to use without holding m.mu.
func (m *Mirror) clusterList() []*cluster {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*cluster, 0, len(m.clusters))
	for _, c := range m.clusters {
		out = append(out, c)
	}
	return out
}

// metaObject is what the mirror reads of any object.
type metaObject interface {
	runtime.Object
	GetNamespace() string
	GetName() string
}

// event records a Warning Event on a host object.
func (m *Mirror) event(obj metaObject, reason, format string, args ...any) {
	if m.cfg.Recorder != nil {
		m.cfg.Recorder.Eventf(obj, corev1.EventTypeWarning, reason, format, args...)
	}
}

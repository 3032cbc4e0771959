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

package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/event"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
)

// DefaultWorkers is how many work items of one site cluster are processed at once: each
// is mostly a call to the site (15 s at most), and the site cluster's client has its own
// rate limit (sitereg.DefaultQPS).
const DefaultWorkers = 32

// PodsConfig configures the pod lifecycle.
type PodsConfig struct {
	// Tenant names this host installation; site namespaces are <tenant>-<namespace>.
	Tenant string
	// Host is the host cluster's clientset.
	Host kubernetes.Interface
	// HostPods lists the host's scheduled pods; HostNodes its Nodes; the others the objects
	// pods reference. All from shared informers the caller starts and syncs.
	HostPods                   corelisters.PodLister
	HostNodes                  corelisters.NodeLister
	HostConfigMaps             corelisters.ConfigMapLister
	HostSecrets                corelisters.SecretLister
	HostServiceAccounts        corelisters.ServiceAccountLister
	HostPersistentVolumeClaims corelisters.PersistentVolumeClaimLister
	// HostStorageClasses lists the host's StorageClasses: a claim's copy on a site gets the
	// site class its host class names (translate.SiteStorageClass).
	HostStorageClasses storagelisters.StorageClassLister
	// HostNamespaces lists the host's namespaces: the pods of a vK8s namespace (labelled
	// vk8s.io/virtual-kubernetes) reach their sites; others only as translate.ReachesSite
	// says.
	HostNamespaces corelisters.NamespaceLister
	// HostSynced reports whether the host caches above are filled.
	HostSynced cache.InformerSynced
	// HostPodsOn lists the host pods bound to a node (an index of the HostPods informer).
	HostPodsOn func(node string) []*corev1.Pod
	// Grace is how long a site may not answer before the Ready condition of its pods turns
	// False, as the host's node grace period does for pods of an unreachable node. Zero: 40s.
	Grace time.Duration
	// Registry gives the sites' connections.
	Registry *sitereg.Registry
	// SiteEvents carries a request per site whose connection changed (Registry.Watch).
	SiteEvents <-chan event.GenericEvent
	// Recorder records Events on host pods.
	Recorder record.EventRecorder
	// Log is the lifecycle's logger.
	Log logr.Logger
	// Workers is how many work items (pods, copies, sweeps) of one site cluster are
	// processed at once, each in a goroutine of its own while it runs. Zero: DefaultWorkers.
	Workers int
	// SweepInterval is how often each site cluster is checked for site pods whose host pod
	// is gone. Zero: 1m.
	SweepInterval time.Duration
	// Timeout bounds each call to a site. Zero: 15s.
	Timeout time.Duration
	// MetricsRegisterer receives the metrics. Nil: controller-runtime's registry.
	MetricsRegisterer prometheus.Registerer
	// Mirrored says whether another part (package mirror) keeps the copies of kind in a
	// host namespace: then the lifecycle only makes sure a pod's references are on its
	// site before the pod, and leaves their updates and deletion to it. Nil: none.
	Mirrored func(ctx context.Context, kind, namespace string) bool
	// TracerProvider makes the spans of pod creations. Nil: OpenTelemetry's global one.
	TracerProvider trace.TracerProvider
}

// Pods is virtual-kubelet's PodLifecycleHandler and PodNotifier for every virtual node:
// one instance runs the pods of all sites. It creates each host pod on its site (with the
// site namespace and the ConfigMaps, Secrets and ServiceAccount the pod uses), keeps its
// labels, annotations and images in sync, deletes it, and reports the site's status back
// from site informers.
type Pods struct {
	cfg     PodsConfig
	log     logr.Logger
	metrics *podMetrics
	lag     *statusLag
	starts  *podStart
	recent  *recentWrites
	tracer  trace.Tracer

	// ctx is Run's: site clusters' caches and workers, started on demand from calls
	// that carry no context of that lifetime, live as long as it.
	ctx     context.Context //nolint:containedctx // the lifetime of what Run starts later
	started chan struct{}

	mu       sync.Mutex
	clusters map[string]*cluster        // by sitereg.Conn.Key
	waiting  map[string]map[string]bool // site -> host pod keys waiting for it to connect
	// lookAgain holds the sites whose pods wait for a connection that is not usable yet
	// (its node cache is filling) and that siteChanged looks at again shortly.
	lookAgain map[string]bool
	down      map[string]time.Time // site -> when it was first seen down
	// adopted holds the sites whose pods this process took on since it owns them (with
	// sharding only: the replicas share the Sites, package shard).
	adopted map[string]bool
	notify  func(*corev1.Pod)

	// early holds the host pods Owns turned down because their node did not exist (UID ->
	// *earlyPod), so that NodeAdded picks them up when it appears (early.go).
	early sync.Map

	// ended holds the UIDs (-> namespace/name) of host pods vk8s failed, or whose site pod
	// finished before it was deleted on its site, so that they are not created again before
	// the host shows their final phase.
	ended sync.Map

	// traces holds the span context of the CreatePod of each host pod not yet created on
	// its site ("namespace/name" -> trace.SpanContext): the site's worker creates it under
	// that span, so that one trace goes from admission to the site.
	traces sync.Map
}

// NewPods validates cfg and returns the pod lifecycle; Run starts it.
func NewPods(cfg PodsConfig) (*Pods, error) {
	switch {
	case cfg.Tenant == "":
		return nil, errors.New("pods: tenant is required")
	case cfg.Host == nil || cfg.Registry == nil || cfg.Recorder == nil:
		return nil, errors.New("pods: host client, registry and recorder are required")
	case cfg.HostPods == nil || cfg.HostNodes == nil || cfg.HostConfigMaps == nil ||
		cfg.HostSecrets == nil || cfg.HostServiceAccounts == nil || cfg.HostPersistentVolumeClaims == nil || cfg.HostSynced == nil:
		return nil, errors.New("pods: host listers are required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 40 * time.Second
	}
	if cfg.HostPodsOn == nil {
		return nil, errors.New("pods: HostPodsOn is required")
	}
	if cfg.MetricsRegisterer == nil {
		cfg.MetricsRegisterer = ctrlmetrics.Registry
	}
	m, err := newPodMetrics(cfg.MetricsRegisterer)
	if err != nil {
		return nil, err
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	p := &Pods{
		cfg:      cfg,
		metrics:  m,
		lag:      &statusLag{hist: m.lag, now: time.Now, pending: map[types.UID]pendingStatus{}},
		starts:   newPodStart(m.start, time.Now),
		recent:   newRecentWrites(),
		tracer:   cfg.TracerProvider.Tracer("github.com/vk8s-io/vk8s/provider"),
		log:      cfg.Log,
		started:  make(chan struct{}),
		clusters: map[string]*cluster{},
		waiting:  map[string]map[string]bool{},
		down:     map[string]time.Time{},
	}
	m.pods.Set(p.collectPods)
	m.queue.Set(p.collectQueues)
	return p, nil
}

// collectPods reports the host pods of every site with virtual nodes by phase, from the
// host caches (nothing before they are filled, nor in a replica that does not lead).
func (p *Pods) collectPods(emit func(float64, ...string)) {
	nodes, err := p.cfg.HostNodes.List(labels.SelectorFromSet(labels.Set{vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}))
	if err != nil {
		return
	}
	counts := map[string]map[corev1.PodPhase]int{}
	for _, n := range nodes {
		site := n.Labels[vk8sv1.LabelSite]
		if site == "" {
			continue
		}
		if counts[site] == nil {
			counts[site] = map[corev1.PodPhase]int{}
		}
		for _, pod := range p.cfg.HostPodsOn(n.Name) {
			counts[site][cmp.Or(pod.Status.Phase, corev1.PodPending)]++
		}
	}
	for site, byPhase := range counts {
		for _, phase := range podPhases {
			emit(float64(byPhase[phase]), site, string(phase))
		}
	}
}

// collectQueues reports the length of every site cluster's work queue.
func (p *Pods) collectQueues(emit func(float64, ...string)) {
	for _, c := range p.clusterList() {
		if site := sitereg.SiteLabel(p.cfg.Registry.SitesOf(c.key)); site != "" {
			emit(float64(c.queue.Len()), site)
		}
	}
}

// StatusClient returns host wrapped for virtual-kubelet's pod controller: the status
// writes it makes end vk8s_provider_status_sync_lag_seconds and the pods' starts, and a
// write refused for a stale resource version goes again at once.
func (p *Pods) StatusClient(host typedcorev1.PodsGetter) typedcorev1.PodsGetter {
	return statusClient{PodsGetter: host, cached: p.cfg.HostPods, statusFollow: statusFollow{
		lag: p.lag, start: p.starts, conflicts: p.metrics.conflicts, writes: p.metrics.writes, writeTime: p.metrics.writeTime, recent: p.recent}}
}

// StatusWritesHandler is the host pod informer's event handler that tells the status
// client when the cache shows the status it wrote last.
func (p *Pods) StatusWritesHandler() cache.ResourceEventHandler {
	return p.recent.handler()
}

// Run serves until ctx ends, then stops every site cluster's informers and workers.
func (p *Pods) Run(ctx context.Context) error {
	p.ctx = ctx
	close(p.started)
	for {
		select {
		case <-ctx.Done():
			p.mu.Lock()
			cs := p.clusters
			p.clusters = map[string]*cluster{}
			p.mu.Unlock()
			for _, c := range cs {
				c.stop()
			}
			return nil
		case ev, ok := <-p.cfg.SiteEvents:
			if !ok {
				p.cfg.SiteEvents = nil
				continue
			}
			p.siteChanged(ev.Object.GetName())
			p.retire()
		}
	}
}

// retire stops the caches and workers of the site clusters whose connection the registry
// closed (sitereg.Registry.HasConnection: their Sites moved to other credentials, or
// went): their client fails now, and their caches would only go stale. The pods of the
// sites that used them wait for the connection those sites have now; what the stopped
// queues held is not lost, since every such pod is queued there again.
func (p *Pods) retire() {
	p.mu.Lock()
	var old []*cluster
	for key, c := range p.clusters {
		if !p.cfg.Registry.HasConnection(key) {
			old = append(old, c)
			delete(p.clusters, key)
		}
	}
	p.mu.Unlock()
	sites := map[string]bool{}
	for _, c := range old {
		c.log.Info("Site connection closed; its caches and workers stop")
		c.stop()
		c.sites.Range(func(site, _ any) bool {
			sites[site.(string)] = true
			return true
		})
	}
	for site := range sites {
		if !p.cfg.Registry.Owns(site) {
			p.letGo(site)
			continue
		}
		nodes, err := p.cfg.HostNodes.List(labels.SelectorFromSet(labels.Set{vk8sv1.LabelSite: site}))
		if err != nil {
			continue
		}
		for _, n := range nodes {
			for _, host := range p.cfg.HostPodsOn(n.Name) {
				p.wait(site, host.Namespace+"/"+host.Name)
			}
		}
		p.siteChanged(site)
	}
}

// NotifyPods registers the callback that carries site statuses to virtual-kubelet.
func (p *Pods) NotifyPods(_ context.Context, f func(*corev1.Pod)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notify = f
}

// report hands virtual-kubelet the status a host pod should show. What it hands is the
// pod's identity, labels, annotations, finalizers and deletion with that status, not a
// copy of the whole pod: virtual-kubelet keeps a deep copy of the last one of every pod
// for as long as the pod lives, and the spec, most of a pod's size, is never written
// through the status (statusPods.UpdateStatus writes the status onto the host pod as the
// host cache has it).
func (p *Pods) report(host *corev1.Pod, status corev1.PodStatus) {
	p.mu.Lock()
	f := p.notify
	p.mu.Unlock()
	if f != nil {
		f(reported(host, status))
	}
}

// reported is what report hands virtual-kubelet for host pod host and status. It carries
// the host pod's resource version: virtual-kubelet writes nothing when what it is handed
// equals the last one, and a status someone else wrote since (the host's node lifecycle
// controller's Ready=False, say) is written over at the next report only because the
// version moved.
func reported(host *corev1.Pod, status corev1.PodStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: host.Namespace, Name: host.Name, UID: host.UID, ResourceVersion: host.ResourceVersion,
			Labels: host.Labels, Annotations: host.Annotations, Finalizers: host.Finalizers,
			DeletionTimestamp: host.DeletionTimestamp, DeletionGracePeriodSeconds: host.DeletionGracePeriodSeconds,
		},
		Status: status,
	}
}

// Owns reports whether a host pod is vk8s': bound to a virtual node, or run on a site.
// It is the pod controller's event filter.
func (p *Pods) Owns(pod *corev1.Pod) bool {
	if pod.Spec.NodeName == "" {
		return false
	}
	if p.earlyVersion(pod) {
		return false // turned down before its node existed: the same answer again (early.go)
	}
	n, err := p.cfg.HostNodes.Get(pod.Spec.NodeName)
	if err == nil && n.Labels[vk8sv1.LabelSite] != "" && n.Labels[vk8sv1.LabelType] == vk8sv1.TypeVirtualKubelet {
		p.starts.seen(pod)
		return true
	}
	if _, c := p.find(pod.Namespace, pod.Name); c != nil {
		return true
	}
	if apierrors.IsNotFound(err) {
		// Its node may be a virtual node that is not registered yet: NodeAdded picks it up.
		p.rememberEarly(pod)
	}
	return false
}

// managedNamespace says whether a host namespace is a vK8s namespace (it holds a
// VirtualKubernetes; the webhook's namespace labeler keeps the label).
func (p *Pods) managedNamespace(name string) bool {
	if p.cfg.HostNamespaces == nil {
		return false
	}
	ns, err := p.cfg.HostNamespaces.Get(name)
	return err == nil && ns.Labels[vk8sv1.LabelVirtualKubernetes] != ""
}

// placement returns the site and real node (PerNode mode) of a host pod's virtual node.
func (p *Pods) placement(pod *corev1.Pod) (site, siteNode string, err error) {
	n, err := p.cfg.HostNodes.Get(pod.Spec.NodeName)
	if err != nil {
		return "", "", fmt.Errorf("virtual node %s: %w", pod.Spec.NodeName, err)
	}
	site = n.Labels[vk8sv1.LabelSite]
	if site == "" {
		return "", "", fmt.Errorf("node %s is not a vk8s virtual node", n.Name)
	}
	return site, n.Labels[vk8sv1.LabelSiteNode], nil
}

// clusterOf returns the site cluster for a site, starting its caches and workers when it
// is the first site on that cluster. The error wraps sitereg.ErrSiteNotConnected.
func (p *Pods) clusterOf(site string) (*cluster, error) {
	conn, err := p.cfg.Registry.Get(site)
	if err != nil {
		return nil, err
	}
	<-p.started
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clusters[conn.Key]; ok {
		c.sites.Store(site, true)
		return c, nil
	}
	if !p.cfg.Registry.HasConnection(conn.Key) {
		// Closed since Get gave it (the Site moved to other credentials): a cluster of it
		// would never fill its caches, and retire has already queued its pods elsewhere.
		return nil, fmt.Errorf("site %s: %w: its connection was just replaced", site, sitereg.ErrSiteNotConnected)
	}
	c, err := newCluster(conn, p.cfg.Tenant, p.log)
	if err != nil {
		return nil, err
	}
	c.sites.Store(site, true)
	p.clusters[conn.Key] = c
	p.start(c)
	return c, nil
}

// find returns the cached site pod of host pod namespace/name and its cluster.
func (p *Pods) find(namespace, name string) (*corev1.Pod, *cluster) {
	for _, c := range p.clusterList() {
		if sp := c.sitePod(namespace, name); sp != nil {
			return sp, c
		}
	}
	return nil, nil
}

// wait remembers a host pod whose site is not connected; it is synced when the site is.
func (p *Pods) wait(site, key string) {
	p.mu.Lock()
	if p.waiting[site] == nil {
		p.waiting[site] = map[string]bool{}
	}
	p.waiting[site][key] = true
	p.metrics.waiting.Set(float64(p.waitingLocked()))
	p.mu.Unlock()
	p.lookAgainSoon(site)
}

// lookAgainSoon makes siteChanged look at a site again while pods wait for it and its
// connection is not down: in a second when it is not usable yet (a new connection, of
// rotated credentials, becomes usable when its node cache is filled, which changes nothing
// in the Site's status and so sends no event), at once when it is usable already. A
// pod's sync that found no connection and calls wait a moment later may otherwise miss
// the siteChanged that queued the waiting pods in between: nothing else would queue it.
func (p *Pods) lookAgainSoon(site string) {
	delay, ok := lookAgainAfter(p.cfg.Registry.Get(site))
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lookAgain == nil {
		p.lookAgain = map[string]bool{}
	}
	if p.lookAgain[site] || len(p.waiting[site]) == 0 {
		return
	}
	p.lookAgain[site] = true
	time.AfterFunc(delay, func() {
		p.mu.Lock()
		delete(p.lookAgain, site)
		p.mu.Unlock()
		if p.ctx.Err() == nil {
			p.siteChanged(site)
		}
	})
}

// lookAgainAfter says when pods that wait for a site are looked at again, given what the
// registry says of it now: at once when it can be used, in a second when it cannot yet,
// never when it is down (siteDown looks again when the grace period ends, and the Site
// coming back sends an event).
func lookAgainAfter(_ *sitereg.Conn, err error) (time.Duration, bool) {
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, sitereg.ErrSiteDown):
		return 0, false
	default:
		return time.Second, true
	}
}

func (p *Pods) waitingLocked() int {
	n := 0
	for _, keys := range p.waiting {
		n += len(keys)
	}
	return n
}

// siteChanged follows a site's connection. Down, its pods' statuses are marked stale (and
// not Ready after the grace period). Back, the pods that wait for it are queued, its pods'
// statuses refreshed, and its cluster swept.
func (p *Pods) siteChanged(site string) {
	if !p.cfg.Registry.Owns(site) {
		p.letGo(site)
		return
	}
	c, err := p.clusterOf(site)
	if err != nil {
		if errors.Is(err, sitereg.ErrSiteDown) {
			p.siteDown(site, err)
			return
		}
		p.lookAgainSoon(site)
		return
	}
	p.adopt(site)
	p.mu.Lock()
	_, wasDown := p.down[site]
	delete(p.down, site)
	keys := p.waiting[site]
	delete(p.waiting, site)
	p.metrics.waiting.Set(float64(p.waitingLocked()))
	p.mu.Unlock()
	for key := range keys {
		if key == adoptedKey {
			continue
		}
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		c.queue.Add(item{Namespace: ns, Name: name})
	}
	// A reconnected cluster may hold pods deleted in the host meanwhile.
	c.queue.Add(item{Kind: kindSweep})
	// The change may be of a Site's spec.podSecurity.
	c.queue.Add(item{Kind: kindPodSecurity})
	if wasDown || keys[adoptedKey] {
		p.log.Info("Site is back or taken over; refreshing its pods' status", "site", site)
		for _, sp := range c.allSitePods() {
			p.sitePodChanged(c, sp)
		}
	}
}

// adoptedKey marks, among the pods that wait for a site, that the site was just taken
// over from another replica: its pods' statuses are refreshed.
const adoptedKey = "/adopted"

// adopt takes on the pods of a site this process did not act for until now, when the
// replicas share the Sites: each host pod of its virtual nodes is synced, which finds the
// site pod the previous owner made (the path of a restart), and their statuses are
// written from the site's.
func (p *Pods) adopt(site string) {
	if !p.cfg.Registry.Sharded() {
		return
	}
	p.mu.Lock()
	if p.adopted == nil {
		p.adopted = map[string]bool{}
	}
	if p.adopted[site] {
		p.mu.Unlock()
		return
	}
	p.adopted[site] = true
	p.mu.Unlock()
	nodes, err := p.cfg.HostNodes.List(labels.SelectorFromSet(labels.Set{vk8sv1.LabelSite: site}))
	if err != nil {
		return
	}
	n := 0
	for _, node := range nodes {
		for _, host := range p.cfg.HostPodsOn(node.Name) {
			p.markWaiting(site, host.Namespace+"/"+host.Name)
			n++
		}
	}
	p.markWaiting(site, adoptedKey)
	p.log.Info("Took on the pods of a Site", "site", site, "pods", n)
}

// markWaiting records key among the pods that wait for site.
func (p *Pods) markWaiting(site, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting[site] == nil {
		p.waiting[site] = map[string]bool{}
	}
	p.waiting[site][key] = true
}

// letGo forgets what this process keeps about a site another replica acts for now: its
// pods are that replica's to sync and report, and nothing here marks them stale.
func (p *Pods) letGo(site string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.down, site)
	delete(p.waiting, site)
	delete(p.adopted, site)
	p.metrics.waiting.Set(float64(p.waitingLocked()))
}

// owned says whether this process acts for host pod pod, whose site pod is sp (nil when
// none is known): the owner of the Site of its virtual node. For a pod that is not on a
// virtual node (its node is gone, or it is the host form of a site pod whose host pod is
// gone, which virtual-kubelet hands DeletePod at start), the owner of the Site its site
// pod was made for (ownerOf); nobody's, and so counted as owned, when that is unknown.
func (p *Pods) owned(ctx context.Context, pod, sp *corev1.Pod) bool {
	if site, _, err := p.placement(pod); err == nil {
		return p.cfg.Registry.Owns(site)
	}
	if sp == nil || (pod.UID != "" && sp.Labels[vk8sv1.LabelHostPodUID] != string(pod.UID)) {
		return true // no site pod of this host pod to say
	}
	return p.ownerOf(ctx, sp) != ownerOther
}

// siteDown marks the status of a site's host pods stale, and once the site has been down
// for the grace period, counted from its last successful contact, their Ready condition
// False with reason SiteUnreachable. Their phase stays and nothing is evicted: the site
// keeps running them.
func (p *Pods) siteDown(site string, cause error) {
	if !p.cfg.Registry.Owns(site) {
		return
	}
	now := time.Now()
	p.mu.Lock()
	since, ok := p.down[site]
	if !ok {
		// The registry noticed up to a heartbeat interval after the site's last answer.
		since = now
		if last := p.cfg.Registry.LastContact(site); !last.IsZero() && last.Before(now) {
			since = last
		}
		p.down[site] = since
	}
	p.mu.Unlock()
	expired := now.Sub(since) >= p.cfg.Grace
	if !expired {
		// Look again when the grace period ends; a site back by then is not down any more.
		time.AfterFunc(p.cfg.Grace-now.Sub(since), func() {
			if p.ctx.Err() == nil {
				p.siteChanged(site)
			}
		})
	}
	nodes, err := p.cfg.HostNodes.List(labels.SelectorFromSet(labels.Set{vk8sv1.LabelSite: site}))
	if err != nil {
		return
	}
	msg := fmt.Sprintf("site %s does not answer since %s; this status is the last it reported: %v",
		site, since.UTC().Format(time.RFC3339), cause)
	for _, n := range nodes {
		for _, host := range p.cfg.HostPodsOn(n.Name) {
			if host.Status.Phase == corev1.PodSucceeded || host.Status.Phase == corev1.PodFailed {
				continue
			}
			p.report(host, translate.StaleStatus(host.Status, msg, expired, metav1.NewTime(now)))
		}
	}
}

// CreatePod runs a host pod on its site. Errors the site returns do not come back to
// virtual-kubelet (which would fail a restartPolicy Never pod at once): a pod whose site
// is not connected waits for it, one the site refuses is retried with backoff while a
// condition and an Event quote the site's error, and an invalid one fails.
//
// Its span continues the trace of the admission that placed the pod (the pod's
// vk8s.io/traceparent), linked to virtual-kubelet's span in ctx; the site's worker
// creates the pod under it.
func (p *Pods) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	parent := ctx
	opts := []trace.SpanStartOption{trace.WithAttributes(attribute.String("k8s.namespace.name", pod.Namespace), attribute.String("k8s.pod.name", pod.Name))}
	if admitted := admissionSpan(ctx, pod); admitted.IsValid() {
		parent = trace.ContextWithRemoteSpanContext(ctx, admitted)
		opts = append(opts, trace.WithLinks(trace.LinkFromContext(ctx)))
	}
	_, span := p.tracer.Start(parent, "provider CreatePod", opts...)
	defer span.End()
	if sc := span.SpanContext(); sc.IsValid() {
		p.traces.Store(pod.Namespace+"/"+pod.Name, sc)
	}
	p.starts.mark(pod.UID, stageHanded)
	return p.sync(pod)
}

// admissionSpan is the span context of the admission that placed pod, from its
// AnnotationTraceParent; invalid when it has none.
func admissionSpan(ctx context.Context, pod *corev1.Pod) trace.SpanContext {
	v := pod.Annotations[vk8sv1.AnnotationTraceParent]
	if v == "" {
		return trace.SpanContext{}
	}
	// Extract leaves the context as it is when v does not parse: start from none.
	ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": v}))
}

// createSpan starts the span of a host pod's creation on its site: under its CreatePod's
// span, or the admission's when CreatePod ran in another process.
func (p *Pods) createSpan(ctx context.Context, host *corev1.Pod, site string) (context.Context, trace.Span) {
	if sc, ok := p.traces.Load(host.Namespace + "/" + host.Name); ok {
		ctx = trace.ContextWithSpanContext(ctx, sc.(trace.SpanContext))
	} else if admitted := admissionSpan(ctx, host); admitted.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, admitted)
	}
	return p.tracer.Start(ctx, "provider create pod on site", trace.WithAttributes(
		attribute.String("k8s.namespace.name", host.Namespace), attribute.String("k8s.pod.name", host.Name), attribute.String("vk8s.site", site)))
}

// UpdatePod carries a host pod's labels, annotations, images and active deadline to its
// site pod.
func (p *Pods) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	return p.sync(pod)
}

// sync hands a host pod to its site's queue (or says why it waits).
func (p *Pods) sync(pod *corev1.Pod) error {
	key := pod.Namespace + "/" + pod.Name
	site, _, err := p.placement(pod)
	if err != nil {
		return errdefs.AsInvalidInput(err)
	}
	if !p.cfg.Registry.Owns(site) {
		// Another replica acts for the site; this one takes the pod on if it comes to own
		// the site (adopt).
		return nil
	}
	if sp, _ := p.find(pod.Namespace, pod.Name); sp == nil {
		// Not on a site yet: only what vk8s should run goes there.
		if ok, why := translate.ReachesSite(pod, p.managedNamespace(pod.Namespace)); !ok {
			p.reportUnsynced(pod, translate.ReasonNotForSites, why)
			return nil
		}
	}
	c, err := p.clusterOf(site)
	if err != nil {
		p.wait(site, key)
		p.reportUnsynced(pod, translate.ReasonSiteUnreachable, fmt.Sprintf("site %s is not connected; the pod is created there once it is: %v", site, err))
		return nil
	}
	// The site's own queue and workers make the call, never virtual-kubelet's pod
	// workers, which serve every site: a site whose writes hang holds only its own.
	c.queue.Add(item{Namespace: pod.Namespace, Name: pod.Name})
	return nil
}

// DeletePod deletes a host pod's site pod with the host pod's grace period. When there is
// none, the host pod is deleted at once, as a kubelet does for a pod that runs nothing.
func (p *Pods) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	sp, c := p.find(pod.Namespace, pod.Name)
	if !p.owned(ctx, pod, sp) {
		return nil // another replica's: it deletes the site pod
	}
	if sp == nil || (pod.UID != "" && sp.Labels[vk8sv1.LabelHostPodUID] != string(pod.UID)) {
		if pod.DeletionTimestamp != nil {
			return p.forceDeleteHost(ctx, pod.Namespace, pod.Name, pod.UID)
		}
		return errdefs.NotFoundf("pod %s/%s is not on any site", pod.Namespace, pod.Name)
	}
	if site, _, err := p.placement(pod); err == nil {
		if _, err := p.cfg.Registry.Key(site); err != nil {
			// The site does not answer: the host pod goes after its grace period, and the
			// sweep deletes the site pod once the site is back.
			return nil
		}
	}
	// The site's own workers delete it (syncPod: with the host pod's grace period), not
	// virtual-kubelet's, which serve every site.
	c.queue.Add(item{Namespace: pod.Namespace, Name: pod.Name})
	return nil
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=delete

// forceDeleteHost removes a host pod whose site pod is gone.
func (p *Pods) forceDeleteHost(ctx context.Context, namespace, name string, uid types.UID) error {
	opts := *metav1.NewDeleteOptions(0)
	if uid != "" {
		opts.Preconditions = metav1.NewUIDPreconditions(string(uid))
	}
	err := p.cfg.Host.CoreV1().Pods(namespace).Delete(ctx, name, opts)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete host pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// GetPod returns the host pod as its site runs it (translate.HostView), or a NotFound error.
func (p *Pods) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	sp, _ := p.find(namespace, name)
	if sp == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on any site", namespace, name)
	}
	return p.hostForm(sp), nil
}

// GetPodStatus returns the site's status of a host pod.
func (p *Pods) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns every site pod of this host in its host form, from the caches of the
// site clusters that have synced: a cluster whose cache is not filled yet contributes
// nothing, so nothing on it is taken for dangling.
func (p *Pods) GetPods(context.Context) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, c := range p.clusterList() {
		if !c.synced() {
			continue
		}
		for _, sp := range c.allSitePods() {
			out = append(out, p.hostForm(sp))
		}
	}
	return out, nil
}

// clusterList is a snapshot of the site clusters, to use without holding p.mu.
func (p *Pods) clusterList() []*cluster {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Values(p.clusters))
}

// hostForm is a site pod in host form: translate.HostView of its host pod, or orphanView when the
// host pod is gone or was replaced.
func (p *Pods) hostForm(sp *corev1.Pod) *corev1.Pod {
	if host := p.hostPodFor(sp); host != nil {
		return translate.HostView(host, sp)
	}
	return orphanView(sp)
}

// orphanView is a site pod in host form when its host pod is not (or no longer) known.
func orphanView(sp *corev1.Pod) *corev1.Pod {
	out := sp.DeepCopy()
	out.Namespace = sp.Labels[vk8sv1.LabelHostNamespace]
	out.UID = types.UID(sp.Labels[vk8sv1.LabelHostPodUID])
	out.Labels = translate.HostLabels(sp.Labels)
	out.ResourceVersion = ""
	return out
}

// reportUnsynced tells the host why a pod is not (yet) on its site: a Warning Event and
// the pod condition vk8s.io/SiteSynced=False quoting the reason.
func (p *Pods) reportUnsynced(pod *corev1.Pod, reason, message string) {
	p.cfg.Recorder.Event(pod, corev1.EventTypeWarning, reason, message)
	p.report(pod, translate.WithCondition(pod.Status, corev1.PodCondition{
		Type: vk8sv1.ConditionSiteSynced, Status: corev1.ConditionFalse, Reason: reason, Message: message,
		LastTransitionTime: metav1.Now(),
	}))
}

// reportFailed fails a host pod for good (the site will never run it).
func (p *Pods) reportFailed(pod *corev1.Pod, reason, message string) {
	p.cfg.Recorder.Event(pod, corev1.EventTypeWarning, reason, message)
	status := translate.TerminatedStatus(pod.Status, pod, reason, message, metav1.Now())
	p.report(pod, translate.WithCondition(status, corev1.PodCondition{
		Type: vk8sv1.ConditionSiteSynced, Status: corev1.ConditionFalse, Reason: reason, Message: message,
		LastTransitionTime: metav1.Now(),
	}))
}

// hostPodFor returns the host pod a site pod belongs to, or nil when it is gone or was
// replaced by another pod of the same name.
func (p *Pods) hostPodFor(sp *corev1.Pod) *corev1.Pod {
	host, err := p.cfg.HostPods.Pods(sp.Labels[vk8sv1.LabelHostNamespace]).Get(sp.Name)
	if err != nil || string(host.UID) != sp.Labels[vk8sv1.LabelHostPodUID] {
		return nil
	}
	return host
}

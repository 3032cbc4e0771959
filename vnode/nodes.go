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

package vnode

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/kubeletapi"
	"github.com/vk8s-io/vk8s/sitereg"
)

// NodesConfig configures the virtual node manager.
type NodesConfig struct {
	// Host is the host cluster's clientset; the virtual nodes' heartbeats write Nodes
	// and Leases with it unless HeartbeatConfig is set.
	Host kubernetes.Interface
	// HeartbeatConfig, when set, gives the heartbeats a host client of their own,
	// whose rate limit grows with the virtual nodes running (its QPS, or DefaultHostQPS,
	// plus heartbeatRate for each), so that Lease renewals neither wait behind the pods'
	// requests nor run out of a budget sized for fewer nodes. With QPS < 0 or a
	// RateLimiter of its own it is used as it is.
	HeartbeatConfig *rest.Config
	// Registry gives each site's nodes.
	Registry *sitereg.Registry
	// SiteEvents carries a reconcile request per site whose nodes or connection changed
	// (Registry.Watch).
	SiteEvents <-chan event.GenericEvent
	// Endpoint is the kubelet API advertised in every virtual node.
	Endpoint translate.Endpoint
	// Endpoints, when set, gives each virtual node its own kubelet API port and
	// annotations (the kubelet API server's AddNode and RemoveNode).
	Endpoints NodeEndpoints
	// LeaseDurationSeconds of the virtual nodes' Leases. Zero: 40, as a kubelet.
	LeaseDurationSeconds int32
	// StatusInterval is how often a virtual node's unchanged status is written again (a
	// changed one is written at once). Zero: 5m, as a kubelet's nodeStatusReportFrequency:
	// the host tells a node's health by its Lease, and at 3,000 virtual nodes every minute
	// would be 100 requests a second (a GET and a PATCH each) for heartbeat times.
	StatusInterval time.Duration
	// HeartbeatWorkers is how many registrations, Lease renewals and status writes go to
	// the host at once, for all virtual nodes. Zero: DefaultHeartbeatWorkers.
	HeartbeatWorkers int
	// Grace is how long a virtual node that no longer stands for a node of its Site (the
	// Site was edited or deleted, or the site node went) stays, NotReady and unschedulable,
	// with its pods, before it is deleted: an edit undone within it brings the node back
	// as it was. Zero: DefaultGrace. Negative: such nodes are deleted at once.
	Grace time.Duration
}

// DefaultStatusInterval is how often a virtual node's unchanged status is written again.
const DefaultStatusInterval = 5 * time.Minute

// DefaultGrace is how long a virtual node that left its Site stays before it is deleted.
// It is no longer than the 300 s for which the host's DefaultTolerationSeconds admission
// lets a pod without tolerations of its own stay on a NotReady node, so that pods bound to
// a virtual node by hand outlive the grace period too.
const DefaultGrace = 5 * time.Minute

// Reasons of the Events about virtual nodes that leave their Site and come back.
const (
	// ReasonNodeLeftSite: a virtual node no longer stands for a node of its Site; it stays
	// NotReady and unschedulable for the grace period (Warning).
	ReasonNodeLeftSite = translate.ReasonNodeLeftSite
	// ReasonNodeBackInSite: a virtual node that had left stands for a node of its Site
	// again, within its grace period (Normal).
	ReasonNodeBackInSite = "NodeBackInSite"
	// ReasonNodeDeleted: a virtual node's grace period ended and it was deleted (Normal).
	ReasonNodeDeleted = "VirtualNodeDeleted"
)

// NodeEndpoints hands out the kubelet API endpoint of each virtual node.
type NodeEndpoints interface {
	// AddNode returns the endpoint of virtual node name, preferring port preferred.
	AddNode(name string, preferred int32) (kubeletapi.NodeEndpoint, error)
	// RemoveNode releases the endpoint of a virtual node that is gone.
	RemoveNode(name string)
}

// Nodes keeps the set of virtual nodes equal to what translate.VirtualNodes makes of each
// site's nodes; its beats register them, renew their Leases and write their status.
type Nodes struct {
	cfg      NodesConfig
	client   client.Client
	log      logr.Logger
	recorder events.EventRecorder
	now      func() time.Time

	// heartbeats is the client of the beats, limiter its rate limit (nil: none that
	// follows the nodes).
	heartbeats kubernetes.Interface
	limiter    *heartbeatLimiter
	beats      *beats

	// started is closed by Start, when the beats run.
	started chan struct{}

	// mu guards the outer map only: controller-runtime never reconciles one site twice at
	// once, so a site's inner map is touched by one reconcile at a time.
	mu sync.Mutex
	// running maps site -> virtual node name -> its heartbeat.
	running map[string]map[string]*vnode
	// held maps the name of a virtual node in its grace period to its site and the end of
	// the grace period: another Site that makes the name waits until then.
	held map[string]heldNode
}

type heldNode struct {
	site  string
	until time.Time
}

type vnode struct {
	*beat
	// left is when the node left its Site's set of virtual nodes; zero while it is in it.
	left time.Time
}

// hostNodeExists asks the cache, and when the cache says no, the API server: a Node the
// controller just created may not be in the cache yet.
func (m *Nodes) hostNodeExists(ctx context.Context, name string) bool {
	if err := m.client.Get(ctx, client.ObjectKey{Name: name}, &corev1.Node{}); err == nil {
		return true
	}
	_, err := m.cfg.Host.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	return !apierrors.IsNotFound(err)
}

// NewNodes validates cfg.
func NewNodes(cfg NodesConfig) (*Nodes, error) {
	var errs []error
	if cfg.Host == nil {
		errs = append(errs, errors.New("host clientset is required"))
	}
	if cfg.Registry == nil {
		errs = append(errs, errors.New("site registry is required"))
	}
	if cfg.Endpoint.Address == "" || cfg.Endpoint.Port <= 0 {
		errs = append(errs, fmt.Errorf("endpoint %+v: want an address and a port", cfg.Endpoint))
	}
	if cfg.LeaseDurationSeconds == 0 {
		cfg.LeaseDurationSeconds = 40
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.HeartbeatWorkers < 0 {
		errs = append(errs, fmt.Errorf("heartbeat workers %d: want at least 1 (0: %d)", cfg.HeartbeatWorkers, DefaultHeartbeatWorkers))
	}
	if cfg.HeartbeatWorkers == 0 {
		cfg.HeartbeatWorkers = DefaultHeartbeatWorkers
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("virtual nodes config: %w", err)
	}
	m := &Nodes{
		cfg: cfg, heartbeats: cfg.Host, now: time.Now, log: logr.Discard(), recorder: noEvents{},
		started: make(chan struct{}), running: map[string]map[string]*vnode{}, held: map[string]heldNode{},
	}
	if cfg.HeartbeatConfig != nil {
		hc := rest.CopyConfig(cfg.HeartbeatConfig)
		if hc.RateLimiter == nil && hc.QPS >= 0 {
			qps, burst := hc.QPS, hc.Burst
			if qps == 0 {
				qps, burst = DefaultHostQPS, DefaultHostBurst
			}
			m.limiter = newHeartbeatLimiter(qps, burst, heartbeatRate(cfg.LeaseDurationSeconds, cfg.StatusInterval))
			hc.RateLimiter = m.limiter
		}
		cs, err := kubernetes.NewForConfig(hc)
		if err != nil {
			return nil, fmt.Errorf("virtual nodes' host client: %w", err)
		}
		m.heartbeats = cs
	}
	m.beats = newBeats(m.heartbeats, cfg.LeaseDurationSeconds, cfg.StatusInterval, cfg.HeartbeatWorkers, m.limiter, m.log)
	return m, nil
}

// The virtual nodes: the beats create them, write their status and renew their Leases (in
// kube-node-lease, as kubelets do); vk8s patches their spec (taints, unschedulable) and
// deletes those whose site node is gone.
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes/status,verbs=patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=kube-node-lease
// +kubebuilder:rbac:groups=vk8s.io,resources=sites,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager adds the virtual node controller (keyed by Site) to mgr.
func (m *Nodes) SetupWithManager(mgr ctrl.Manager) error {
	m.client = mgr.GetClient()
	m.log = mgr.GetLogger().WithName("virtual-nodes")
	m.beats.log = m.log
	m.beats.exists = func(ctx context.Context, name string) bool {
		return m.client.Get(ctx, client.ObjectKey{Name: name}, &corev1.Node{}) == nil
	}
	m.recorder = mgr.GetEventRecorder("virtual-nodes")
	if err := mgr.Add(m); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("virtual-nodes").
		For(&vk8sv1.Site{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Host nodes of a site: a virtual node deleted by hand is made again.
		// Host nodes of a site: a virtual node deleted or edited by hand is put right, and
		// at start the existing ones are matched with their sites. Status writes (every
		// virtual node's, every StatusInterval) are not reasons to reconcile.
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if site := o.GetLabels()[vk8sv1.LabelSite]; site != "" && o.GetLabels()[vk8sv1.LabelType] == vk8sv1.TypeVirtualKubelet {
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: site}}}
			}
			return nil
		}), builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4})
	if m.cfg.SiteEvents != nil {
		b = b.WatchesRawSource(source.Channel(m.cfg.SiteEvents, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(m)
}

// Start runs the beats until ctx ends; it implements manager.Runnable.
func (m *Nodes) Start(ctx context.Context) error {
	close(m.started)
	m.beats.run(ctx)
	return nil
}

// Reconcile makes the virtual nodes of one site match its nodes.
func (m *Nodes) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	select {
	case <-m.started:
	case <-ctx.Done():
		return ctrl.Result{}, ctx.Err()
	}
	siteName := req.Name
	log := m.log.WithValues("site", siteName)
	if !m.cfg.Registry.Owns(siteName) {
		// Another replica acts for the site: its virtual nodes are that replica's to run.
		m.letGo(siteName)
		return ctrl.Result{}, nil
	}
	site := &vk8sv1.Site{}
	if err := m.client.Get(ctx, req.NamespacedName, site); apierrors.IsNotFound(err) {
		// Its virtual nodes wait out their grace period: the Site may be created again.
		return result(m.sync(ctx, siteState{name: siteName, deleted: true}))
	} else if err != nil {
		return ctrl.Result{}, err
	}
	conn, err := m.cfg.Registry.Get(siteName)
	if err != nil {
		// A site that does not answer keeps its virtual nodes: its pods keep running there.
		log.V(1).Info("site not connected; virtual nodes kept, marked disconnected", "reason", err.Error())
		return result(m.disconnected(ctx, site, err))
	}
	siteNodes, err := conn.Nodes.List(labels.Everything())
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("list nodes of site %s: %w", siteName, err)
	}
	want := translate.VirtualNodes(site, siteNodes, conn.KubernetesVersion, m.cfg.Endpoint)
	names := make([]string, 0, len(want))
	for _, n := range want {
		names = append(names, n.Name)
	}
	// A name another Site keeps is that Site's Node: this site does not register it, nor
	// delete it (the Site's Ready condition says why).
	cols, err := m.cfg.Registry.Collisions(ctx, site, names)
	if err != nil {
		return ctrl.Result{}, err
	}
	foreign := map[string]bool{}
	for _, c := range cols {
		foreign[c.Name] = true
	}
	if len(foreign) > 0 {
		want = slices.DeleteFunc(want, func(n *corev1.Node) bool { return foreign[n.Name] })
		log.V(1).Info("virtual node names another Site keeps are left to it", "collisions", cols)
	}
	if conn.WritesStalled != nil {
		// Reads answer, writes do not: no new pod should go there until they do.
		for i := range want {
			want[i] = translate.Disconnected(want[i], sitereg.ReasonWritesTimingOut,
				"the site's API server answers reads, but its writes do not: "+conn.WritesStalled.Error())
		}
	}
	if err := m.endpoints(ctx, siteName, want); err != nil {
		return ctrl.Result{}, err
	}
	return result(m.sync(ctx, siteState{name: siteName, site: site, want: want, foreign: foreign, clusterNodes: conn.ClusterNodes}))
}

// result is a reconcile's result: again after requeue (zero: not), unless err.
func result(requeue time.Duration, err error) (ctrl.Result, error) {
	return ctrl.Result{RequeueAfter: requeue}, err
}

// endpoints sets each virtual node's own kubelet API port and annotations, keeping the
// port it advertises now when it can, so that restarts do not move it.
func (m *Nodes) endpoints(ctx context.Context, site string, nodes []*corev1.Node) error {
	if m.cfg.Endpoints == nil {
		return nil
	}
	m.mu.Lock()
	have := m.running[site]
	current := map[string]int32{}
	for name, v := range have {
		current[name] = v.current().Status.DaemonEndpoints.KubeletEndpoint.Port
	}
	m.mu.Unlock()
	for _, n := range nodes {
		preferred, ok := current[n.Name]
		if !ok {
			host := &corev1.Node{}
			if err := m.client.Get(ctx, client.ObjectKey{Name: n.Name}, host); err == nil {
				preferred = host.Status.DaemonEndpoints.KubeletEndpoint.Port
			}
		}
		ep, err := m.cfg.Endpoints.AddNode(n.Name, preferred)
		if err != nil {
			return fmt.Errorf("kubelet API endpoint of virtual node %s: %w", n.Name, err)
		}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = ep.Port
		if len(ep.Annotations) > 0 && n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		maps.Copy(n.Annotations, ep.Annotations)
	}
	return nil
}

// letGo stops the heartbeats of a site another replica acts for now, and forgets its
// nodes' kubelet endpoints and grace periods here; the Nodes, their Leases and their
// pods stay as they are for the new owner, which takes them from the host.
func (m *Nodes) letGo(site string) {
	m.mu.Lock()
	have := m.running[site]
	delete(m.running, site)
	for name, h := range m.held {
		if h.site == site {
			delete(m.held, name)
		}
	}
	m.mu.Unlock()
	for name := range have {
		m.beats.remove(name)
		m.released(name)
	}
	if len(have) > 0 {
		m.log.Info("Site is another replica's; stopped its virtual nodes here", "site", site, "nodes", len(have))
	}
}

// released tells the endpoints that a virtual node is gone.
func (m *Nodes) released(name string) {
	if m.cfg.Endpoints != nil {
		m.cfg.Endpoints.RemoveNode(name)
	}
}

// disconnected keeps the virtual nodes of a site the registry cannot give. When the
// registry or the Site's status says it does not answer, they show SiteConnected=False and the unreachable taint;
// otherwise (the provider is starting and the site is not reconciled yet) they stay as they
// are. After a restart they are taken from the host, so that their Leases go on and the
// host does not evict the site's pods.
func (m *Nodes) disconnected(ctx context.Context, site *vk8sv1.Site, cause error) (time.Duration, error) {
	// The registry knows first, and says why when the kubeconfig cannot be used or is
	// refused; otherwise the Site's status (from the cache, maybe a moment behind) gives
	// the reason and a message that says how to fix it.
	var down *metav1.Condition
	for i, c := range site.Status.Conditions {
		if c.Type == vk8sv1.ConditionConnected && c.Status == metav1.ConditionFalse {
			down = &site.Status.Conditions[i]
		}
	}
	if errors.Is(cause, sitereg.ErrSiteDown) {
		if reason, message, ok := sitereg.ReasonOf(cause); ok {
			down = &metav1.Condition{Reason: reason, Message: message}
		} else if down == nil {
			down = &metav1.Condition{Reason: "SiteUnreachable", Message: cause.Error()}
		}
	}
	// Nodes in their grace period are not wanted: they stay as they are until it ends.
	m.mu.Lock()
	var want []*corev1.Node
	running := len(m.running[site.Name]) > 0
	for _, v := range m.running[site.Name] {
		if v.left.IsZero() {
			want = append(want, v.current())
		}
	}
	m.mu.Unlock()
	if !running {
		var hostNodes corev1.NodeList
		if err := m.client.List(ctx, &hostNodes, client.MatchingLabels{vk8sv1.LabelSite: site.Name, vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}); err != nil {
			return 0, err
		}
		for i := range hostNodes.Items {
			if _, left := translate.LeftSiteSince(&hostNodes.Items[i]); !left {
				want = append(want, fromHost(&hostNodes.Items[i]))
			}
		}
	}
	if down != nil {
		for i := range want {
			want[i] = translate.Disconnected(want[i], down.Reason, down.Message)
		}
	}
	return m.sync(ctx, siteState{name: site.Name, site: site, want: want})
}

// fromHost is a host Node as its heartbeats register it.
func fromHost(n *corev1.Node) *corev1.Node {
	n = n.DeepCopy()
	n.ResourceVersion, n.UID, n.ManagedFields = "", "", nil
	return n
}

// siteState is what a site's virtual nodes are to be.
type siteState struct {
	name string
	// site is the Site; nil when deleted is true (and when not read).
	site    *vk8sv1.Site
	deleted bool
	// want are the virtual nodes the site makes now.
	want []*corev1.Node
	// foreign are names another Site keeps (sitereg.Collision): the heartbeats this site
	// ran for one stops, but the Node and its kubelet endpoint stay.
	foreign map[string]bool
	// clusterNodes lists the nodes of the site's cluster, to say why a virtual node left;
	// nil when they are not known (the site does not answer): messages stay as they are.
	clusterNodes corelisters.NodeLister
}

// sync starts, updates and stops the heartbeats of a site's virtual nodes so that they run s.want.
// A virtual node the site no longer makes is kept for the grace period, NotReady and
// unschedulable (translate.LeftSite), then deleted; one that the site makes again within
// it is itself again. It returns when to sync again for a grace period that ends.
func (m *Nodes) sync(ctx context.Context, s siteState) (time.Duration, error) {
	m.mu.Lock()
	have := m.running[s.name]
	if have == nil {
		have = map[string]*vnode{}
		m.running[s.name] = have
	}
	m.mu.Unlock()
	defer func() {
		if len(have) == 0 {
			m.mu.Lock()
			delete(m.running, s.name)
			m.mu.Unlock()
		}
	}()

	now := m.now()
	var (
		errs                []error
		requeue             time.Duration
		left, back, deleted []*corev1.Node
	)
	later := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	keep := map[string]bool{}
	for _, n := range s.want {
		if until, ok := m.heldElsewhere(n.Name, s.name); ok {
			// Another Site's virtual node of this name waits out its grace period, with its
			// pods: this site takes the name when it ends.
			m.log.V(1).Info("virtual node name held by another Site's node in its grace period", "site", s.name, "node", n.Name, "until", until)
			later(until.Sub(now) + time.Second)
			continue
		}
		keep[n.Name] = true
		v, ok := have[n.Name]
		if !ok {
			have[n.Name] = m.start(n)
			continue
		}
		if v.registered.Load() && !m.hostNodeExists(ctx, n.Name) {
			// Deleted behind our back: registered again at once.
			m.beats.reregister(n.Name)
		}
		if !v.left.IsZero() {
			back = append(back, n)
			m.hold(n.Name, "", time.Time{})
			v.left = time.Time{}
		}
		m.beats.add(n)
	}
	for name, v := range have {
		if keep[name] {
			continue
		}
		if s.foreign[name] {
			m.beats.remove(name)
			delete(have, name)
			m.hold(name, "", time.Time{})
			continue
		}
		if m.cfg.Grace > 0 {
			first := v.left.IsZero()
			if first {
				v.left = now
			}
			until := v.left.Add(m.cfg.Grace)
			if now.Before(until) {
				n, err := m.leaving(ctx, s, v.current(), v.left, first)
				if err != nil {
					errs = append(errs, err)
				}
				m.beats.add(n)
				m.hold(name, s.name, until)
				if first {
					left = append(left, n)
				}
				later(until.Sub(now))
				continue
			}
		}
		deleted = append(deleted, v.current())
		m.beats.remove(name)
		delete(have, name)
		m.hold(name, "", time.Time{})
		m.released(name)
		err := m.cfg.Host.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete virtual node %s: %w", name, err))
		}
	}
	for _, n := range s.want {
		if keep[n.Name] {
			if err := m.syncSpec(ctx, n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Virtual nodes of this site without heartbeats here (left by an earlier process): they
	// wait out a grace period too, from when they left if an earlier process marked them.
	var hostNodes corev1.NodeList
	if err := m.client.List(ctx, &hostNodes, client.MatchingLabels{vk8sv1.LabelSite: s.name, vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}); err != nil {
		errs = append(errs, err)
	}
	for i := range hostNodes.Items {
		hn := &hostNodes.Items[i]
		name := hn.Name
		if keep[name] || s.foreign[name] || have[name] != nil {
			continue
		}
		since, marked := translate.LeftSiteSince(hn)
		if !marked {
			since = now
		}
		if until := since.Add(m.cfg.Grace); m.cfg.Grace > 0 && now.Before(until) {
			n, err := m.leaving(ctx, s, fromHost(hn), since, !marked)
			if err != nil {
				errs = append(errs, err)
			}
			if err := m.endpoints(ctx, s.name, []*corev1.Node{n}); err != nil {
				errs = append(errs, err)
			}
			v := m.start(n)
			v.left = since
			have[name] = v
			m.hold(name, s.name, until)
			if !marked {
				left = append(left, n)
			}
			later(until.Sub(now))
			continue
		}
		deleted = append(deleted, hn)
		m.released(name)
		err := m.cfg.Host.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete stale virtual node %s: %w", name, err))
		}
	}
	m.recordChanges(ctx, s, left, back, deleted)
	return requeue, errors.Join(errs...)
}

// leaving returns virtual node n, which left site s at since, as it shows in its grace
// period (translate.LeftSite), and brings the host Node's spec along. The message says why
// it left as far as s tells; without the site's nodes (it does not answer) an existing
// message stays.
func (m *Nodes) leaving(ctx context.Context, s siteState, n *corev1.Node, since time.Time, first bool) (*corev1.Node, error) {
	message := ""
	if _, marked := translate.LeftSiteSince(n); marked && !first && s.clusterNodes == nil && !s.deleted {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				message = c.Message
			}
		}
	}
	if message == "" {
		var siteNode *corev1.Node
		if node, ok := n.Labels[vk8sv1.LabelSiteNode]; ok && s.clusterNodes != nil {
			siteNode, _ = s.clusterNodes.Get(node)
		}
		message = translate.LeftSiteMessage(n, s.site, siteNode, m.cfg.Grace, since.Add(m.cfg.Grace))
	}
	n = translate.LeftSite(n, message, metav1.NewTime(since))
	return n, m.syncSpec(ctx, n)
}

// hold records that virtual node name is site's, in its grace period until until; an
// empty site forgets it.
func (m *Nodes) hold(name, site string, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if site == "" {
		delete(m.held, name)
		return
	}
	m.held[name] = heldNode{site: site, until: until}
}

// heldElsewhere says until when a Site other than site holds virtual node name in its
// grace period, if one does.
func (m *Nodes) heldElsewhere(name, site string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.held[name]
	return h.until, ok && h.site != site
}

// start starts the heartbeats of virtual node n.
func (m *Nodes) start(n *corev1.Node) *vnode {
	m.log.Info("virtual node started", "node", n.Name, "site", n.Labels[vk8sv1.LabelSite])
	return &vnode{beat: m.beats.add(n)}
}

// syncSpec brings the host Node's spec (unschedulable, taints) to n's: virtual-kubelet's
// heartbeats only write status, labels and annotations.
func (m *Nodes) syncSpec(ctx context.Context, n *corev1.Node) error {
	cur := &corev1.Node{}
	if err := m.client.Get(ctx, client.ObjectKey{Name: n.Name}, cur); err != nil {
		return client.IgnoreNotFound(err)
	}
	taints := withTaints(cur.Spec.Taints, n.Spec.Taints)
	if cur.Spec.Unschedulable == n.Spec.Unschedulable && equality.Semantic.DeepEqual(taints, cur.Spec.Taints) {
		return nil
	}
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Unschedulable = n.Spec.Unschedulable
	cur.Spec.Taints = taints
	if err := m.client.Patch(ctx, cur, patch); err != nil {
		return fmt.Errorf("update spec of virtual node %s: %w", n.Name, err)
	}
	return nil
}

// withTaints returns have plus those of want it lacks (by key and effect), less the taints
// vk8s manages that want does not have. Taints others set (the node lifecycle controller's
// not-ready, an operator's) are left alone.
func withTaints(have, want []corev1.Taint) []corev1.Taint {
	out := slices.DeleteFunc(slices.Clone(have), func(h corev1.Taint) bool {
		return translate.ManagedTaint(h.Key) &&
			!slices.ContainsFunc(want, func(w corev1.Taint) bool { return w.Key == h.Key && w.Effect == h.Effect })
	})
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h corev1.Taint) bool { return h.Key == w.Key && h.Effect == w.Effect }) {
			out = append(out, w)
		}
	}
	return out
}

// Actions of the Events about virtual nodes that leave their Site.
const (
	actionLeave  = "LeaveSite"
	actionReturn = "ReturnToSite"
	actionDelete = "Delete"
)

// maxEventNote is what an Event's note may hold (events.k8s.io: 1 kB).
const maxEventNote = 1024

// recordChanges records Events for the virtual nodes of site s that left it, came back
// within their grace period, or were deleted at its end: one on each Node, and one on the
// Site that names them all.
func (m *Nodes) recordChanges(ctx context.Context, s siteState, left, back, deleted []*corev1.Node) {
	var related runtime.Object
	if s.site != nil {
		related = s.site
	}
	for _, c := range []struct {
		nodes          []*corev1.Node
		typ, reason    string
		action, format string
		log            string
	}{
		{left, corev1.EventTypeWarning, ReasonNodeLeftSite, actionLeave,
			"virtual nodes %s no longer stand for nodes of Site %s; they stay NotReady and unschedulable, with their pods, for the grace period (%s), then they are deleted with their pods: %s",
			"Virtual node left its Site; kept for the grace period"},
		{back, corev1.EventTypeNormal, ReasonNodeBackInSite, actionReturn,
			"virtual nodes %s stand for nodes of Site %s again, within their grace period (%s), with their pods%s",
			"Virtual node is back in its Site"},
		{deleted, corev1.EventTypeNormal, ReasonNodeDeleted, actionDelete,
			"virtual nodes %s were deleted: they left Site %s and their grace period (%s) ended; the host deletes their pods%s",
			"Virtual node deleted at the end of its grace period"},
	} {
		if len(c.nodes) == 0 {
			continue
		}
		slices.SortFunc(c.nodes, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
		names := make([]string, 0, len(c.nodes))
		for _, n := range c.nodes {
			names = append(names, n.Name)
			note := nodeNote(n, c.reason, s.name)
			m.recorder.Eventf(m.hostNode(ctx, n), related, c.typ, c.reason, c.action, "%s", truncate(note))
			m.log.Info(c.log, "node", n.Name, "site", s.name)
		}
		if s.site == nil {
			continue
		}
		detail := ""
		if c.reason == ReasonNodeLeftSite {
			detail = nodeNote(c.nodes[0], c.reason, s.name)
		}
		list := strings.Join(names[:min(len(names), 10)], ", ")
		if len(names) > 10 {
			list += fmt.Sprintf(" and %d more", len(names)-10)
		}
		m.recorder.Eventf(s.site, nil, c.typ, c.reason, c.action, "%s", truncate(fmt.Sprintf(c.format, list, s.name, m.cfg.Grace, detail)))
	}
}

// nodeNote is the note of an Event on virtual node n.
func nodeNote(n *corev1.Node, reason, site string) string {
	switch reason {
	case ReasonNodeLeftSite:
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Message
			}
		}
		return "virtual node " + n.Name + " no longer stands for a node of Site " + site
	case ReasonNodeBackInSite:
		return "virtual node " + n.Name + " stands for a node of Site " + site + " again, within its grace period, with its pods"
	default:
		return "virtual node " + n.Name + " left Site " + site + " and its grace period ended: it was deleted, and the host deletes its pods"
	}
}

// hostNode is the host's Node n from the cache (an Event names its UID), or n.
func (m *Nodes) hostNode(ctx context.Context, n *corev1.Node) *corev1.Node {
	cur := &corev1.Node{}
	if n.UID == "" && m.client.Get(ctx, client.ObjectKey{Name: n.Name}, cur) == nil {
		return cur
	}
	return n
}

func truncate(s string) string {
	if len(s) <= maxEventNote {
		return s
	}
	return s[:maxEventNote-3] + "..."
}

// noEvents is the recorder of Nodes that no manager set up.
type noEvents struct{}

func (noEvents) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

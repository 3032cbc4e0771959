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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/translate"
)

// userAgent is what vk8s calls itself on the sites' API servers.
const userAgent = "vk8s"

// connKey identifies a cluster connection by what decides where requests go and who makes
// them: the API server and the credentials. Kubeconfigs that spell the same access
// differently (other context or user names, another Secret) share one connection; any
// difference in server or credentials gives another. The full SHA-256 is kept so that no
// two sets of credentials can be made to collide.
func connKey(cfg *rest.Config) string {
	h := sha256.New()
	field := func(name string, v []byte) {
		fmt.Fprintf(h, "%s:%d:", name, len(v))
		h.Write(v)
	}
	field("host", []byte(strings.TrimRight(strings.ToLower(cfg.Host), "/")))
	field("apiPath", []byte(cfg.APIPath))
	tlsCfg := cfg.TLSClientConfig
	field("insecure", []byte(fmt.Sprint(tlsCfg.Insecure)))
	field("serverName", []byte(tlsCfg.ServerName))
	field("caData", tlsCfg.CAData)
	field("caFile", []byte(tlsCfg.CAFile))
	field("certData", tlsCfg.CertData)
	field("certFile", []byte(tlsCfg.CertFile))
	field("keyData", tlsCfg.KeyData)
	field("keyFile", []byte(tlsCfg.KeyFile))
	field("token", []byte(cfg.BearerToken))
	field("tokenFile", []byte(cfg.BearerTokenFile))
	field("username", []byte(cfg.Username))
	field("password", []byte(cfg.Password))
	imp := cfg.Impersonate
	field("impersonateUser", []byte(imp.UserName))
	field("impersonateUID", []byte(imp.UID))
	for _, g := range imp.Groups {
		field("impersonateGroup", []byte(g))
	}
	writeExtra(h, imp.Extra)
	return hex.EncodeToString(h.Sum(nil))
}

func writeExtra(h hash.Hash, extra map[string][]string) {
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "extra:%d:%s", len(k), k)
		for _, v := range extra[k] {
			fmt.Fprintf(h, ":%d:%s", len(v), v)
		}
	}
}

// ShortKey is the prefix of a connection key (Conn.Key) that logs and metrics show.
func ShortKey(key string) string { return key[:min(len(key), 12)] }

// conn is one connection to a site cluster, shared by every Site that reaches that cluster
// with the same credentials: a client, one node informer, and the state of the last probe.
type conn struct {
	key    string
	server string
	config *rest.Config
	client kubernetes.Interface
	// dialer makes every TCP connection of the client, so that close ends them all.
	dialer *dialer

	// probeMu lets one probe run at a time; the sites that wait for it reuse its result.
	probeMu sync.Mutex

	mu sync.Mutex
	// sites are the Sites on this cluster with their node selectors, podSecurity their
	// spec.podSecurity.enforce.
	sites       map[string]labels.Selector
	podSecurity map[string]vk8sv1.PodSecurityLevel
	// label and level are what sites and podSecurity give (siteLabelLocked,
	// namespacePodSecurity), computed when they change: every call to the site and every
	// Get (each pod's stats, for one) reads them, and computing them was a slice of every
	// Site's name or level per read, garbage in proportion to pods times Sites.
	label  string
	level  vk8sv1.PodSecurityLevel
	closed bool
	// informer watches the cluster's nodes; nil until a probe succeeded, so bad credentials
	// do not leave a reflector retrying in the background.
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	// notify receives the sites whose nodes changed; it must not block.
	notify func(sites []string)
	// claim, when set, is written on the cluster (or found written by this host) by
	// ensureClaim, before anything uses the connection; claimed says it was, claimErr why
	// not (the last attempt's error).
	claim    *Claim
	claimed  bool
	claimErr error
	// nodesListed says a probe has listed nodes once, proving the credentials may, and
	// read clusterID, the UID of the cluster's kube-system namespace.
	nodesListed bool
	clusterID   string
	probedAt    time.Time
	lastSuccess time.Time
	version     string
	// err is the last probe's error, nil when it succeeded.
	err error

	// writes watches the calls that change something on the site.
	writes *writeWatch
	// metrics counts the calls, under the connection's Sites.
	metrics *metrics
}

// writeWatch follows the site's writes (POST, PUT, PATCH, DELETE) in the connection's
// transport: a site whose reads answer can still hold every write (an admission webhook
// that never answers, a stuck etcd). A write that takes threshold or longer and fails, or
// one still waiting after threshold, stalls the writes until a write gets an answer (any
// status under 500: the API server decided).
type writeWatch struct {
	threshold time.Duration
	now       func() time.Time
	// changed is called, outside mu, when the stall starts or ends.
	changed func()

	mu       sync.Mutex
	next     uint64
	inflight map[uint64]writeCall
	stall    error
}

type writeCall struct {
	what  string
	start time.Time
}

// stalled returns why the site's writes are stalled, or nil.
func (w *writeWatch) stalled() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stalledLocked()
}

func (w *writeWatch) stalledLocked() error {
	if w.stall != nil {
		return w.stall
	}
	now := w.now()
	var oldest *writeCall
	for _, c := range w.inflight {
		if now.Sub(c.start) >= w.threshold && (oldest == nil || c.start.Before(oldest.start)) {
			oldest = &c
		}
	}
	if oldest != nil {
		return fmt.Errorf("%s has waited %s for an answer", oldest.what, now.Sub(oldest.start).Round(time.Second))
	}
	return nil
}

// wrap is the connection's RoundTripper wrapper.
func (w *writeWatch) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			return rt.RoundTrip(req)
		}
		what := req.Method + " " + req.URL.Path
		w.mu.Lock()
		before := w.stalledLocked() != nil
		id := w.next
		w.next++
		start := w.now()
		w.inflight[id] = writeCall{what: what, start: start}
		w.mu.Unlock()
		// Still waiting at the threshold: stalled from then on.
		timer := time.AfterFunc(w.threshold, func() { w.settle(before) })
		resp, err := rt.RoundTrip(req)
		timer.Stop()
		took := w.now().Sub(start)

		w.mu.Lock()
		before = w.stalledLocked() != nil
		delete(w.inflight, id)
		switch {
		case err == nil && resp.StatusCode < http.StatusInternalServerError:
			w.stall = nil
		case took >= w.threshold:
			var cause string
			if err != nil {
				cause = err.Error()
			} else {
				cause = resp.Status
			}
			w.stall = fmt.Errorf("%s failed after %s: %s", what, took.Round(time.Second), cause)
		}
		w.mu.Unlock()
		w.settle(before)
		return resp, err
	})
}

// settle calls changed when the stall state differs from before.
func (w *writeWatch) settle(before bool) {
	if (w.stalled() != nil) != before && w.changed != nil {
		w.changed()
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// newConn opens the connection of key to cfg's API server. m counts its open TCP
// connections and its calls.
func newConn(key string, cfg *rest.Config, qps float32, burst int, claim *Claim, stallAfter time.Duration, notify func([]string), m *metrics) (*conn, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = userAgent
	// The connection's own dialer, so that closing it ends every TCP connection it made,
	// watches included, and refuses new ones: client-go's transport would otherwise be
	// shared through its process-wide cache with every client of the same TLS settings,
	// and http.Client.CloseIdleConnections does not reach through client-go's and
	// OpenTelemetry's round trippers. A proxy function makes client-go build a transport
	// for this client alone instead of caching one by dialer for ever; it is the one
	// client-go uses by default.
	d := newDialer(m.tcp.WithLabelValues(ShortKey(key)))
	cfg.Dial = d.DialContext
	if cfg.Proxy == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
	writes := &writeWatch{threshold: stallAfter, now: time.Now, inflight: map[uint64]writeCall{}}
	cfg.Wrap(writes.wrap)
	// Every call counted and timed by site in one place, whoever makes it. c is set below,
	// before the client makes any call.
	var c *conn
	cfg.Wrap(m.wrapCalls(func() string { return c.siteLabel() }))
	// A client span per call to the site, under the caller's span (a pod sync, a probe).
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return otelhttp.NewTransport(rt, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return "site " + r.Method
		}))
	})
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	c = &conn{
		key: key, server: cfg.Host, config: cfg, client: cs, dialer: d, writes: writes, metrics: m,
		sites:       map[string]labels.Selector{},
		podSecurity: map[string]vk8sv1.PodSecurityLevel{},
		level:       translate.StrictestPodSecurity(),
		claim:       claim,
		notify:      notify,
	}
	// A stall that starts or ends changes the Sites' status and their virtual nodes.
	writes.changed = func() {
		c.mu.Lock()
		sites := slices.Collect(maps.Keys(c.sites))
		c.mu.Unlock()
		notify(sites)
	}
	return c, nil
}

// probeResult is the state of a connection after a probe.
type probeResult struct {
	version string
	// lastSuccess is when the API server last answered; zero if never.
	lastSuccess time.Time
	// clusterID is the cluster's identity (clusterIdentity); empty until a probe read it.
	clusterID string
	// err is the probe's error, unclassified; nil when it answered.
	err error
}

// probe asks the API server for its version, and the first time also lists one node to
// prove the credentials may read nodes and reads the cluster's identity (clusterIdentity),
// until both succeed. A probe younger than maxAge is reused, so the many sites of one
// cluster cost one probe per interval. duration receives the time of each probe actually
// made.
func (c *conn) probe(ctx context.Context, timeout, maxAge time.Duration, now func() time.Time, duration func(time.Duration, error)) probeResult {
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	c.mu.Lock()
	if !c.probedAt.IsZero() && now().Sub(c.probedAt) < maxAge {
		defer c.mu.Unlock()
		return c.resultLocked()
	}
	listNodes := !c.nodesListed
	c.mu.Unlock()

	start := now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := serverVersion(ctx, c.client.Discovery().RESTClient())
	var id string
	if err == nil && listNodes {
		_, err = c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			id, err = clusterIdentity(ctx, c.client, c.server)
		}
	}
	end := now()
	duration(end.Sub(start), err)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.probedAt = end
	c.err = err
	if err == nil {
		c.version = info.GitVersion
		c.lastSuccess = end
		if listNodes {
			c.nodesListed, c.clusterID = true, id
		}
	}
	return c.resultLocked()
}

func (c *conn) resultLocked() probeResult {
	return probeResult{version: c.version, lastSuccess: c.lastSuccess, clusterID: c.clusterID, err: c.err}
}

// ensureClaim writes the tenant claim on the cluster, or finds it written by this host
// (Claim), once; until it has, ready says no. The registry calls it only for a Site whose
// cluster identity it checked, so that a kubeconfig pointed at the wrong cluster writes
// nothing there.
func (c *conn) ensureClaim(ctx context.Context, timeout time.Duration) error {
	if c.claim == nil {
		return nil
	}
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	c.mu.Lock()
	done := c.claimed
	c.mu.Unlock()
	if done {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := c.claim.ensure(ctx, c.client, c.server)
	c.mu.Lock()
	c.claimed, c.claimErr = err == nil, err
	c.mu.Unlock()
	return err
}

// readyLocked says whether the connection may be used: its claim, if any, is in place.
func (c *conn) readyLocked() bool { return c.claim == nil || c.claimed }

// serverVersion is discovery's ServerVersion with a context, so a probe has a deadline.
func serverVersion(ctx context.Context, rc rest.Interface) (*version.Info, error) {
	raw, err := rc.Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var info version.Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("decode /version: %w", err)
	}
	return &info, nil
}

// setSite records that site uses this connection with selector sel and Pod Security
// level level.
func (c *conn) setSite(site string, sel labels.Selector, level vk8sv1.PodSecurityLevel) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.siteLabelLocked()
	c.sites[site] = sel
	c.podSecurity[site] = level
	c.sitesChangedLocked(before)
}

// dropSite removes site and says whether no site is left.
func (c *conn) dropSite(site string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.siteLabelLocked()
	delete(c.sites, site)
	delete(c.podSecurity, site)
	c.sitesChangedLocked(before)
	return len(c.sites) == 0
}

// siteLabel is the site label of the connection's calls made for no Site in particular.
func (c *conn) siteLabel() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.siteLabelLocked()
}

func (c *conn) siteLabelLocked() string { return c.label }

// sitesChangedLocked recomputes the connection's label and level from its Sites, and drops
// the call series of its former set of Sites (before) when it was shared and changed: no
// call counts under it any more. A Site's own series go with the Site.
func (c *conn) sitesChangedLocked(before string) {
	c.label = SiteLabel(slices.Collect(maps.Keys(c.sites)))
	c.level = translate.StrictestPodSecurity(slices.Collect(maps.Values(c.podSecurity))...)
	if before != c.siteLabelLocked() && strings.Contains(before, ",") && c.metrics != nil {
		c.metrics.deleteCalls(before)
	}
}

// namespacePodSecurity is the Pod Security level of the cluster's site namespaces, which
// all its Sites share: the strictest they ask for.
func (c *conn) namespacePodSecurity() vk8sv1.PodSecurityLevel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.level
}

// startInformer starts the node informer, once; it stops when ctx ends or the connection
// closes. Node changes go to notify.
func (c *conn) startInformer(ctx context.Context, log logr.Logger) (cache.SharedIndexInformer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("connection %s is closed", ShortKey(c.key))
	}
	if c.informer != nil {
		return c.informer, nil
	}
	inf := coreinformers.NewNodeInformer(c.client, 0, cache.Indexers{})
	if err := inf.SetTransform(stripNode); err != nil {
		return nil, fmt.Errorf("node informer transform: %w", err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		log.V(1).Info("Node watch failed; retrying", "server", c.server, "reason", err.Error())
	}); err != nil {
		return nil, fmt.Errorf("node informer error handler: %w", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.nodesChanged(obj) },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || nodeChangeMatters(o, n) {
				c.nodesChanged(old, cur)
			}
		},
		DeleteFunc: func(obj any) { c.nodesChanged(obj) },
	}); err != nil {
		return nil, fmt.Errorf("node informer handler: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	go inf.RunWithContext(ctx)
	c.informer, c.cancel = inf, cancel
	return inf, nil
}

// stripNode drops what the registry and the provider never read from cached nodes.
func stripNode(obj any) (any, error) {
	if n, ok := obj.(*corev1.Node); ok {
		n.ManagedFields = nil
		n.Status.Images = nil
	}
	return obj, nil
}

// nodesChanged tells notify the sites that any of objs (nodes, or tombstones of nodes)
// belongs to.
func (c *conn) nodesChanged(objs ...any) {
	c.mu.Lock()
	var sites []string
	for site, sel := range c.sites {
		for _, o := range objs {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			n, ok := o.(*corev1.Node)
			if !ok || sel.Matches(labels.Set(n.Labels)) {
				sites = append(sites, site)
				break
			}
		}
	}
	c.mu.Unlock()
	if len(sites) > 0 {
		c.notify(sites)
	}
}

// subscriber delivers reconcile requests for sites on out. Requests for one site that
// arrive while it delivers are coalesced into one, so producers never block and a burst of
// node events costs each site one reconcile.
type subscriber struct {
	out    chan event.GenericEvent
	signal chan struct{}

	mu    sync.Mutex
	dirty map[string]struct{}
}

func newSubscriber() *subscriber {
	return &subscriber{
		out:    make(chan event.GenericEvent, 1024),
		signal: make(chan struct{}, 1),
		dirty:  map[string]struct{}{},
	}
}

// mark queues a request for each of sites; it never blocks.
func (s *subscriber) mark(sites []string) {
	s.mu.Lock()
	for _, site := range sites {
		s.dirty[site] = struct{}{}
	}
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// run delivers the queued requests until ctx ends.
func (s *subscriber) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.signal:
		}
		s.mu.Lock()
		dirty := s.dirty
		s.dirty = map[string]struct{}{}
		s.mu.Unlock()
		for site := range dirty {
			ev := event.GenericEvent{Object: &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}}}
			select {
			case s.out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// synced returns the node informer when its cache has been filled once.
func (c *conn) synced() cache.SharedIndexInformer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.informer == nil || !c.informer.HasSynced() {
		return nil
	}
	return c.informer
}

// close stops the informer and ends every TCP connection to the API server, idle or
// carrying a watch of anyone's; the client fails from now on (errConnClosed), so that
// nothing goes on with the credentials of a connection no Site uses.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	c.dialer.close()
}

// errConnClosed is what a client of a closed connection gets: its Sites moved to other
// credentials, or are gone.
var errConnClosed = errors.New("site connection closed: no Site uses these credentials any more")

// dialer makes the TCP connections of one site connection and can end them all at once.
type dialer struct {
	net net.Dialer
	tcp prometheus.Gauge

	mu     sync.Mutex
	closed bool
	open   map[*trackedConn]struct{}
}

func newDialer(tcp prometheus.Gauge) *dialer {
	// client-go's own dialer settings.
	return &dialer{net: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, tcp: tcp, open: map[*trackedConn]struct{}{}}
}

// DialContext dials, and remembers the connection until it is closed.
func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if d.isClosed() {
		return nil, errConnClosed
	}
	nc, err := d.net.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: nc, d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		_ = nc.Close()
		return nil, errConnClosed
	}
	d.open[tc] = struct{}{}
	d.tcp.Inc()
	return tc, nil
}

func (d *dialer) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// count is the number of open connections.
func (d *dialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.open)
}

// close ends every open connection and refuses new ones.
func (d *dialer) close() {
	d.mu.Lock()
	d.closed = true
	open := d.open
	d.open = map[*trackedConn]struct{}{}
	d.mu.Unlock()
	for tc := range open {
		_ = tc.Close()
	}
}

// forget drops a closed connection.
func (d *dialer) forget(tc *trackedConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.open, tc)
	d.tcp.Dec()
}

// trackedConn is a connection its dialer remembers until it is closed.
type trackedConn struct {
	net.Conn
	d    *dialer
	once sync.Once
}

// Close closes the connection once and tells the dialer.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.d.forget(c) })
	return err
}

// siteNodeLister is a NodeLister over a cluster's node cache that shows only the nodes of
// one site.
type siteNodeLister struct {
	base corelisters.NodeLister
	sel  labels.Selector
}

var _ corelisters.NodeLister = siteNodeLister{}

// List returns the site's nodes that selector also selects.
func (l siteNodeLister) List(selector labels.Selector) ([]*corev1.Node, error) {
	all, err := l.base.List(selector)
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Node, 0, len(all))
	for _, n := range all {
		if l.sel.Matches(labels.Set(n.Labels)) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Get returns the named node, or NotFound when it is not one of the site's.
func (l siteNodeLister) Get(name string) (*corev1.Node, error) {
	n, err := l.base.Get(name)
	if err != nil {
		return nil, err
	}
	if !l.sel.Matches(labels.Set(n.Labels)) {
		return nil, apierrors.NewNotFound(corev1.Resource("nodes"), name)
	}
	return n, nil
}

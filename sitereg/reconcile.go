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
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/translate"
)

// defaultKubeconfigKey is the Secret key of a kubeconfig when the Site does not name one
// (the CRD defaults it too).
const defaultKubeconfigKey = "kubeconfig"

// syncRetry is how soon a connected Site is reconciled again when its node cache has not
// been filled yet.
const syncRetry = 2 * time.Second

// +kubebuilder:rbac:groups=vk8s.io,resources=sites/status,verbs=patch

// Reconcile connects to a Site's cluster (or reuses the shared connection), probes it and
// writes the Site's status. A Site that is gone releases its connection. Failures to reach
// the site are status, not errors: the error return is for failures of the host.
func (r *Registry) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	select {
	case <-r.started:
	case <-ctx.Done():
		return ctrl.Result{}, ctx.Err()
	}
	site := &vk8sv1.Site{}
	if err := r.client.Get(ctx, req.NamespacedName, site); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(ctx, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get Site %s: %w", req.Name, err)
	}
	if !site.DeletionTimestamp.IsZero() {
		r.forget(ctx, site.Name)
		return ctrl.Result{}, nil
	}
	if !r.Owns(site.Name) {
		// Another replica acts for it: nothing of it is kept, and the watchers let go too.
		r.disown(ctx, site.Name)
		return ctrl.Result{}, nil
	}
	r.mu.Lock()
	_, known := r.sites[site.Name]
	r.mu.Unlock()

	obs, requeue, err := r.observe(ctx, site)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The cached Site can lag behind the status this registry wrote a moment ago (a node
	// event often triggers the next reconcile at once); what it wrote is the better basis
	// for transition times and for deciding which Events are due.
	base := site.DeepCopy()
	last := r.lastStatus(site)
	if last != nil {
		base.Status = *last
	}
	now := r.now()
	status := coalesceHeartbeat(last, siteStatus(base, obs, now), now, r.cfg.HeartbeatInterval)
	if !equality.Semantic.DeepEqual(site.Status, status) {
		patch := client.MergeFrom(site.DeepCopy())
		site.Status = status
		if err := r.client.Status().Patch(ctx, site, patch); err != nil {
			if apierrors.IsNotFound(err) {
				r.forget(ctx, site.Name)
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, fmt.Errorf("update status of Site %s: %w", site.Name, err)
		}
	}
	if !equality.Semantic.DeepEqual(base.Status, status) {
		r.setLastStatus(site, status)
		r.recordTransitions(ctx, site, base.Status.Conditions, status.Conditions)
		if !heartbeatOnly(base.Status, status) || !known {
			r.notifyWatchers(site.Name)
		}
	} else if !known {
		// First reconcile in this process, or taken over from another replica: the
		// watchers look at the Site now that it can be used.
		r.notifyWatchers(site.Name)
	}
	r.metrics.setSite(site.Name, obs.err == nil,
		meta.IsStatusConditionTrue(status.Conditions, vk8sv1.ConditionReady), status.NodeCount, obs.heartbeat)
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// coalesceHeartbeat keeps the lastHeartbeatTime this process wrote (written; nil: none yet)
// in status when nothing else changed and it is younger than half the heartbeat interval:
// Sites reconciled between their heartbeats (a node of their cluster changed, a Site
// sharing their connection was edited) do not each write a new time. The heartbeat a
// Site's own requeue brings, an interval after the last, is written, so that it is never
// older than the interval and a requeue's jitter.
func coalesceHeartbeat(written *vk8sv1.SiteStatus, status vk8sv1.SiteStatus, now time.Time, interval time.Duration) vk8sv1.SiteStatus {
	if written == nil || written.LastHeartbeatTime == nil || !heartbeatOnly(*written, status) ||
		now.Sub(written.LastHeartbeatTime.Time) >= interval/2 {
		return status
	}
	status.LastHeartbeatTime = written.LastHeartbeatTime.DeepCopy()
	return status
}

// heartbeatOnly says whether b differs from a in lastHeartbeatTime alone: a probe that
// found the site as it was, which is not news for the watchers.
func heartbeatOnly(a, b vk8sv1.SiteStatus) bool {
	a.LastHeartbeatTime, b.LastHeartbeatTime = nil, nil
	return equality.Semantic.DeepEqual(a, b)
}

// recordTransitions logs and records as Events the condition changes worth telling.
func (r *Registry) recordTransitions(ctx context.Context, site *vk8sv1.Site, old, cur []metav1.Condition) {
	log := logf.FromContext(ctx)
	for _, ev := range transitionEvents(old, cur) {
		r.recorder.Eventf(site, nil, ev.eventType, ev.reason, ev.action, "%s", ev.note)
		log.Info("Site condition changed", "type", ev.eventType, "reason", ev.reason, "message", ev.note)
	}
}

// observe finds out what a Site's status should say: it reads the kubeconfig, connects,
// probes, and summarises the site's nodes. It returns when to observe again, and an error
// only for failures of the host.
func (r *Registry) observe(ctx context.Context, site *vk8sv1.Site) (observation, time.Duration, error) {
	requeue := wait.Jitter(r.cfg.HeartbeatInterval, 0.1)
	sel, err := nodeSelector(site.Spec.NodeSelector)
	if err != nil {
		se := newSiteError(ReasonInvalidNodeSelector, err,
			"spec.nodeSelector is not a valid label selector: %v: fix the label keys and values", err)
		_ = r.fail(ctx, site, sel, "", "", se)
		return observation{err: se}, requeue, nil
	}
	c, err := r.connect(ctx, site, sel)
	if err != nil {
		var se *siteError
		if errors.As(err, &se) {
			return observation{err: se}, requeue, nil
		}
		return observation{}, 0, err
	}

	obs := observation{server: c.server, writesStalled: c.writes.stalled()}
	res := c.probe(ctx, r.cfg.ProbeTimeout, r.cfg.HeartbeatInterval/2, r.now, r.metrics.observeProbe)
	obs.version, obs.heartbeat = res.version, res.lastSuccess
	if res.err == nil {
		if se := r.checkCluster(ctx, site, c, res.clusterID); se != nil {
			// Another cluster: nothing of it is used, not even its node cache.
			return observation{err: se, server: c.server}, requeue, nil
		}
		res.err = c.ensureClaim(ctx, r.cfg.ProbeTimeout)
	}
	if res.err != nil {
		obs.err = probeFailure(c.server, secretName(site), res.err)
	} else {
		obs.clusterID = res.clusterID
		if _, err := c.startInformer(r.ctx, r.log.WithValues("server", c.server)); err != nil {
			return observation{}, 0, fmt.Errorf("watch nodes of Site %s: %w", site.Name, err)
		}
		// The first sync of a new connection is usually quick; waiting a little saves a
		// status write that would only say "reading the site's nodes".
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, r.cfg.ProbeTimeout, true,
			func(context.Context) (bool, error) { return c.synced() != nil, nil })
	}
	// A cache that synced once is used even while the site is unreachable: stale nodes are
	// a better answer than none, and keep the site's virtual nodes in place.
	if inf := c.synced(); inf != nil {
		nodes, err := corelisters.NewNodeLister(inf.GetIndexer()).List(labels.Everything())
		if err != nil {
			return observation{}, 0, fmt.Errorf("list cached nodes of Site %s: %w", site.Name, err)
		}
		obs.nodesKnown = true
		obs.nodes = summarizeNodes(site.Name, site.Spec.NodeMode, sel, nodes)
		cols, err := r.assign(ctx, site, obs.nodes.virtualNodes)
		if err != nil {
			return observation{}, 0, fmt.Errorf("check the virtual node names of Site %s: %w", site.Name, err)
		}
		obs.nodes.collisions = cols
		obs.nodes.virtualNodes = withoutCollisions(obs.nodes.virtualNodes, cols)
	} else if obs.err == nil {
		requeue = syncRetry
	}
	return obs, requeue, nil
}

// checkCluster compares the identity of the cluster c reaches, id, with the one the Site
// was registered with (status.clusterID, as this registry last wrote it or the cache has
// it). The same, or none recorded yet, the connection is the Site's (Get gives it);
// another, the Site is refused with ReasonClusterChanged and drops the connection until
// its Secret changes (or the Site is created again).
func (r *Registry) checkCluster(ctx context.Context, site *vk8sv1.Site, c *conn, id string) *siteError {
	recorded := site.Status.ClusterID
	if last := r.lastStatus(site); last != nil && last.ClusterID != "" {
		recorded = last.ClusterID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.sites[site.Name]
	if e == nil || e.conn != c {
		return nil // the Site moved on meanwhile; its next reconcile checks again
	}
	if recorded == "" || recorded == id {
		e.verified = c
		return nil
	}
	se := clusterChanged(site.Name, secretName(site), c.server, recorded, id)
	r.releaseLocked(ctx, site.Name, c)
	e.conn, e.verified, e.err = nil, nil, se
	logf.FromContext(ctx).Info("Site's kubeconfig reaches another cluster; refused", "server", c.server, "clusterID", id, "registeredClusterID", recorded)
	return se
}

// secretName is the "namespace/name" of a Site's kubeconfig Secret.
func secretName(site *vk8sv1.Site) string {
	ref := site.Spec.KubeconfigSecretRef
	return ref.Namespace + "/" + ref.Name
}

// secretKey is the key of a Site's kubeconfig in its Secret.
func secretKey(site *vk8sv1.Site) string {
	if k := site.Spec.KubeconfigSecretRef.Key; k != "" {
		return k
	}
	return defaultKubeconfigKey
}

// connect returns the connection of a Site's kubeconfig, opening it if no Site uses it
// yet. The Secret's data is read (uncached) only when its resourceVersion or the reference
// changed since the last time; otherwise the Site keeps its connection or its error. A
// problem with the Secret or kubeconfig is a *siteError.
func (r *Registry) connect(ctx context.Context, site *vk8sv1.Site, sel labels.Selector) (*conn, error) {
	ref := site.Spec.KubeconfigSecretRef
	key := secretKey(site)
	name := secretName(site)
	refID := name + "/" + key
	notFound := func() error {
		return r.fail(ctx, site, sel, refID, "", newSiteError(ReasonSecretNotFound, nil,
			"Secret %s not found: create it with the site's kubeconfig under key %q, or point spec.kubeconfigSecretRef at an existing Secret",
			name, key))
	}

	md := &metav1.PartialObjectMetadata{}
	md.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	objKey := client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}
	if err := r.client.Get(ctx, objKey, md); apierrors.IsNotFound(err) {
		return nil, notFound()
	} else if err != nil {
		return nil, fmt.Errorf("get Secret %s of Site %s: %w", name, site.Name, err)
	}
	if c, err, ok := r.unchanged(site, sel, refID, md.ResourceVersion); ok {
		return c, err
	}

	rctx, cancel := context.WithTimeout(ctx, r.cfg.ProbeTimeout)
	defer cancel()
	secret := &corev1.Secret{}
	if err := r.apiReader.Get(rctx, objKey, secret); apierrors.IsNotFound(err) {
		return nil, notFound()
	} else if err != nil {
		return nil, fmt.Errorf("read Secret %s of Site %s: %w", name, site.Name, err)
	}
	data, ok := secret.Data[key]
	if !ok {
		keys := make([]string, 0, len(secret.Data))
		for k := range secret.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return nil, r.fail(ctx, site, sel, refID, secret.ResourceVersion, newSiteError(ReasonSecretKeyNotFound, nil,
			"Secret %s has no key %q (it has %v): store the kubeconfig under that key, or set spec.kubeconfigSecretRef.key",
			name, key, keys))
	}
	cfg, err := restConfigFromKubeconfig(data)
	if err != nil {
		return nil, r.fail(ctx, site, sel, refID, secret.ResourceVersion, invalidKubeconfig(name, key, err))
	}
	return r.acquire(ctx, site, sel, refID, secret.ResourceVersion, cfg)
}

func invalidKubeconfig(secret, key string, err error) *siteError {
	return newSiteError(ReasonInvalidKubeconfig, err,
		"the kubeconfig in Secret %s key %q cannot be used: %v: store a kubeconfig whose current context names the server and inline credentials (certificate-authority-data, client-certificate-data and client-key-data, or token)",
		secret, key, err)
}

// unchanged returns the Site's connection or error when they come from the same Secret
// data as refID at resourceVersion rv, updating its node selector.
func (r *Registry) unchanged(site *vk8sv1.Site, sel labels.Selector, refID, rv string) (*conn, error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.sites[site.Name]
	if e == nil || rv == "" || e.ref != refID || e.secretRV != rv || (e.conn == nil && e.err == nil) {
		return nil, nil, false
	}
	e.sel, e.mode, e.podSecurity = sel, site.Spec.NodeMode, translate.SitePodSecurity(site)
	if e.err != nil {
		return nil, e.err, true
	}
	e.conn.setSite(site.Name, sel, e.podSecurity)
	return e.conn, nil, true
}

// acquire gives a Site the connection for cfg, opening it when no other Site uses it,
// and releases the Site's previous connection when it differs.
func (r *Registry) acquire(ctx context.Context, site *vk8sv1.Site, sel labels.Selector, refID, rv string, cfg *rest.Config) (*conn, error) {
	key := connKey(cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.ctx.Err(); err != nil {
		return nil, fmt.Errorf("site registry is stopping: %w", err)
	}
	c := r.conns[key]
	if c == nil {
		if r.cfg.WrapTransport != nil {
			cfg = rest.CopyConfig(cfg)
			cfg.Wrap(r.cfg.WrapTransport)
		}
		var err error
		c, err = newConn(key, cfg, r.cfg.QPS, r.cfg.Burst, r.cfg.Claim, r.cfg.WriteStallThreshold, r.nodesChanged, r.metrics)
		if err != nil {
			return nil, r.failLocked(ctx, site, sel, refID, rv, invalidKubeconfig(secretName(site), secretKey(site), err))
		}
		r.conns[key] = c
		r.metrics.connections.Inc()
		logf.FromContext(ctx).Info("Opened site connection", "server", c.server, "connection", ShortKey(key))
	}
	e := r.entryLocked(site.Name)
	if e.conn != nil && e.conn != c {
		r.releaseLocked(ctx, site.Name, e.conn)
	}
	e.conn, e.err, e.ref, e.secretRV, e.sel, e.mode = c, nil, refID, rv, sel, site.Spec.NodeMode
	e.podSecurity = translate.SitePodSecurity(site)
	c.setSite(site.Name, sel, e.podSecurity)
	return c, nil
}

// fail records that a Site has no usable connection because of se, releasing the one it
// had, and returns se.
func (r *Registry) fail(ctx context.Context, site *vk8sv1.Site, sel labels.Selector, refID, rv string, se *siteError) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failLocked(ctx, site, sel, refID, rv, se)
}

func (r *Registry) failLocked(ctx context.Context, site *vk8sv1.Site, sel labels.Selector, refID, rv string, se *siteError) error {
	e := r.entryLocked(site.Name)
	if e.conn != nil {
		r.releaseLocked(ctx, site.Name, e.conn)
	}
	e.conn, e.err, e.ref, e.secretRV, e.sel, e.mode = nil, se, refID, rv, sel, site.Spec.NodeMode
	e.podSecurity = translate.SitePodSecurity(site)
	return se
}

// lastStatus returns the status the registry last wrote for this incarnation of site.
func (r *Registry) lastStatus(site *vk8sv1.Site) *vk8sv1.SiteStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.sites[site.Name]; e != nil && e.uid == site.UID && e.status != nil {
		return e.status.DeepCopy()
	}
	return nil
}

func (r *Registry) setLastStatus(site *vk8sv1.Site, status vk8sv1.SiteStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entryLocked(site.Name)
	e.uid, e.status = site.UID, status.DeepCopy()
}

func (r *Registry) entryLocked(site string) *siteEntry {
	e := r.sites[site]
	if e == nil {
		e = &siteEntry{}
		r.sites[site] = e
	}
	return e
}

// releaseLocked drops site's reference to c and closes c when no Site uses it any more;
// the watchers hear of site, so that they drop what they keep of c (HasConnection).
func (r *Registry) releaseLocked(ctx context.Context, site string, c *conn) {
	if !c.dropSite(site) {
		return
	}
	r.closeLocked(c)
	for _, s := range r.watches {
		s.mark([]string{site})
	}
	logf.FromContext(ctx).Info("Closed site connection", "server", c.server, "connection", ShortKey(c.key))
}

// closeLocked closes c and forgets it.
func (r *Registry) closeLocked(c *conn) {
	c.close()
	r.metrics.tcp.DeleteLabelValues(ShortKey(c.key))
	if r.conns[c.key] == c {
		delete(r.conns, c.key)
		r.metrics.connections.Dec()
	}
}

// forget drops everything the registry keeps about a Site that is gone, and tells the
// watchers.
func (r *Registry) forget(ctx context.Context, site string) {
	r.mu.Lock()
	e, known := r.sites[site]
	var held []string
	if known {
		held = e.held
		if e.status != nil {
			held = append(slices.Clone(held), e.status.VirtualNodes...)
		}
		if e.conn != nil {
			r.releaseLocked(ctx, site, e.conn)
		}
	}
	delete(r.sites, site)
	r.mu.Unlock()
	r.metrics.deleteSite(site)
	if known {
		r.notifyWatchers(site)
		// The Sites whose names collided with this one's may have them now.
		r.wakeNamers(ctx, site, held)
	}
}

// disown drops what the registry keeps about a Site another replica acts for (its
// connection, its metrics), and tells the watchers, so that they let go of it too.
func (r *Registry) disown(ctx context.Context, site string) {
	r.mu.Lock()
	e, known := r.sites[site]
	if known && e.conn != nil {
		r.releaseLocked(ctx, site, e.conn)
	}
	delete(r.sites, site)
	r.mu.Unlock()
	if known {
		r.metrics.deleteSite(site)
		r.notifyWatchers(site)
		logf.FromContext(ctx).Info("Site is another replica's; let go of it")
	}
}

// sitesForSecret maps a Secret to the Sites that use it.
func (r *Registry) sitesForSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	var list vk8sv1.SiteList
	ref := obj.GetNamespace() + "/" + obj.GetName()
	if err := r.client.List(ctx, &list, client.MatchingFields{secretRefIndex: ref}); err != nil {
		logf.FromContext(ctx).Error(err, "List Sites of Secret failed", "secret", ref)
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, s := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: s.Name}})
	}
	return out
}

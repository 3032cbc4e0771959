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
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"go.opentelemetry.io/otel/codes"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/tenancy"
)

// kindSweep is the work item that looks for site pods whose host pod is gone and for
// copies no site pod uses any more.
const kindSweep = "sweep"

// kindPodSecurity is the work item that brings the namespaces this host created on a
// cluster to the Pod Security level of its Sites (syncPodSecurity).
const kindPodSecurity = "podsecurity"

// startFollowedFor is how long a pod's start is followed (vk8s_provider_pod_start_stage_seconds):
// one that has not run by then (it waits for its site, or fails) is not.
const startFollowedFor = 15 * time.Minute

// errRequeue asks for the item to be processed again after a backoff.
var errRequeue = errors.New("requeue")

// start wires a new cluster's informers to the lifecycle and runs its workers once its
// caches and the host's are filled: nothing is created or deleted before both are.
func (p *Pods) start(c *cluster) {
	ctx, cancel := context.WithCancel(p.ctx)
	c.cancel = cancel
	_, _ = c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.sitePodChanged(c, obj) },
		UpdateFunc: func(_, obj any) { p.sitePodChanged(c, obj) },
		DeleteFunc: func(obj any) { p.sitePodGone(c, obj) },
	})
	for kind, inf := range c.copies {
		// A copy deleted or edited on the site is put back.
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj any) { c.queue.Add(refItem(kind, obj)) },
			DeleteFunc: func(obj any) { c.queue.Add(refItem(kind, obj)) },
		})
	}
	c.factory.Start(ctx.Done())
	go func() {
		defer close(c.done)
		if !cache.WaitForCacheSync(ctx.Done(), c.synced, p.cfg.HostSynced) {
			return
		}
		c.log.Info("Site cluster caches synced")
		c.queue.Add(item{Kind: kindSweep})
		// The Sites' level may have changed while no provider ran.
		c.queue.Add(item{Kind: kindPodSecurity})
		var wg sync.WaitGroup
		wg.Go(func() { dispatch(c.queue, p.cfg.Workers, func(it item) { p.process(ctx, c, it) }) })
		ticker := time.NewTicker(p.cfg.SweepInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				c.queue.ShutDown()
				wg.Wait()
				return
			case <-ticker.C:
				c.queue.Add(item{Kind: kindSweep})
			}
		}
	}()
}

// refItem is the work item of a copy on a site, named by its host namespace.
func refItem(kind string, obj any) item {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return item{Kind: kindSweep}
	}
	return item{Kind: kind, Namespace: m.GetLabels()[vk8sv1.LabelHostNamespace], Name: m.GetName()}
}

// dispatch takes the work items off a site cluster's queue and processes each in a
// goroutine of its own, at most workers at once, until the queue shuts down and the
// items taken are done. Idle, a cluster costs one goroutine; 33 pods created at once on a
// site go out together, as a site's own clients would send them, where a fixed pool of 4
// workers sent them 4 at a time and the last waited about a second
// (docs/performance.md). The queue never hands out an item that is being processed (until
// process returns, which marks it done), so one pod is synced by one goroutine at a time.
func dispatch[T comparable](q workqueue.TypedRateLimitingInterface[T], workers int, process func(T)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, workers)
	for {
		slots <- struct{}{}
		it, shutdown := q.Get()
		if shutdown {
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			process(it)
		})
	}
}

// requeuesLogged is the retry of an item that waits at which process logs it: with
// backoff from 200 ms, about 6 s after the first try.
const requeuesLogged = 5

// process syncs one work item and marks it done, again later when it failed.
func (p *Pods) process(ctx context.Context, c *cluster, it item) {
	defer c.queue.Done(it)
	var err error
	switch it.Kind {
	case "":
		err = p.syncPod(ctx, c, it)
	case kindSweep:
		p.sweep(ctx, c)
	case kindPodSecurity:
		err = p.syncPodSecurity(ctx, c)
	default:
		err = p.syncCopy(ctx, c, it)
	}
	switch {
	case err == nil:
		c.queue.Forget(it)
	case errors.Is(err, errRequeue):
		// A wait that goes on (a cache that does not fill, a name taken on the site) is
		// said once in the log, where it would otherwise be silent.
		if c.queue.NumRequeues(it) == requeuesLogged {
			c.log.Info("Work item still waiting; retried with backoff", "item", it.String(), "retries", requeuesLogged)
		}
		c.queue.AddRateLimited(it)
	default:
		c.log.Error(err, "Sync failed; retrying", "item", it.String())
		c.queue.AddRateLimited(it)
	}
}

// sitePodChanged reports a site pod's status to the host pod it belongs to; a site pod
// that belongs to no host pod is queued so that it is deleted, unless it was made for
// another replica's Site (ownerOf), which deletes it.
func (p *Pods) sitePodChanged(c *cluster, obj any) {
	sp, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	host := p.hostPodFor(sp)
	if host == nil {
		if p.ownerOf(p.ctx, sp) != ownerOther {
			c.queue.Add(item{Namespace: sp.Labels[vk8sv1.LabelHostNamespace], Name: sp.Name})
		}
		return
	}
	if !p.owned(p.ctx, host, sp) {
		return // another replica reports it
	}
	if sp.Status.Phase == corev1.PodRunning {
		p.starts.mark(host.UID, stageRunningOnSite)
	}
	status := translate.HostStatus(host, sp)
	if c, ok := translate.SiteUnschedulable(host.Status, status); ok {
		p.cfg.Recorder.Eventf(host, corev1.EventTypeWarning, translate.ReasonSiteUnschedulable,
			"its site cannot schedule pod %s/%s (%s): %s", sp.Namespace, sp.Name, c.Reason, c.Message)
	}
	p.lag.seen(host, &status)
	p.report(host, status)
}

// sitePodGone handles a site pod that left its site. When the host deleted it, the host
// pod is finished; otherwise someone deleted it on the site: a pod that had finished keeps
// the phase it ended with, a restartPolicy Never pod fails, any other is created again.
func (p *Pods) sitePodGone(c *cluster, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	sp, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	for _, r := range translate.References(&sp.Spec) {
		c.queue.Add(item{Kind: r.Kind, Namespace: sp.Labels[vk8sv1.LabelHostNamespace], Name: r.Name})
	}
	host := p.hostPodFor(sp)
	if host == nil || !p.owned(p.ctx, host, sp) {
		return
	}
	if host.DeletionTimestamp == nil && (sp.Status.Phase == corev1.PodSucceeded || sp.Status.Phase == corev1.PodFailed) {
		// It finished on its site, then was deleted there (by the site's pod garbage
		// collector, say), maybe before the host learnt how it ended: that end is the host
		// pod's, whatever its restart policy, and it does not run again.
		p.ended.Store(host.UID, host.Namespace+"/"+host.Name)
		p.report(host, translate.HostStatus(host, sp))
		return
	}
	if host.DeletionTimestamp == nil && host.Spec.RestartPolicy == corev1.RestartPolicyNever &&
		host.Status.Phase != corev1.PodSucceeded && host.Status.Phase != corev1.PodFailed {
		p.ended.Store(host.UID, host.Namespace+"/"+host.Name)
		last := translate.HostStatus(host, sp)
		host = host.DeepCopy()
		host.Status = last
		p.reportFailed(host, translate.ReasonSitePodDeleted,
			fmt.Sprintf("pod %s/%s was deleted on its site and has restartPolicy Never", sp.Namespace, sp.Name))
		return
	}
	c.queue.Add(item{Namespace: host.Namespace, Name: host.Name})
}

// syncPod converges the site pod of one host pod: created when missing (namespace and
// references first), updated when the host changed it, deleted when the host pod is gone
// or terminating.
func (p *Pods) syncPod(ctx context.Context, c *cluster, it item) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	sp := c.sitePod(it.Namespace, it.Name)
	host, err := p.cfg.HostPods.Pods(it.Namespace).Get(it.Name)
	if apierrors.IsNotFound(err) {
		c.refused.Delete(it.Namespace + "/" + it.Name)
		p.traces.Delete(it.Namespace + "/" + it.Name)
		if sp != nil && p.mayTakeForOrphan(ctx, c, sp) {
			return c.deleteSitePod(ctx, sp, nil)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !p.owned(ctx, host, sp) {
		return nil // another replica syncs it
	}
	if sp != nil && sp.Labels[vk8sv1.LabelHostPodUID] != string(host.UID) {
		// A pod of an earlier host pod with the same name (a StatefulSet's): it goes first.
		if err := c.deleteSitePod(ctx, sp, new(int64)); err != nil {
			return err
		}
		return errRequeue
	}
	if host.DeletionTimestamp != nil {
		if sp == nil {
			return p.forceDeleteHost(ctx, host.Namespace, host.Name, host.UID)
		}
		return c.deleteSitePod(ctx, sp, host.DeletionGracePeriodSeconds)
	}
	if _, ended := p.ended.Load(host.UID); ended ||
		host.Status.Phase == corev1.PodSucceeded || host.Status.Phase == corev1.PodFailed {
		return nil
	}
	site, siteNode, err := p.placement(host)
	if err != nil {
		return nil // not (or no longer) on a virtual node; nothing to run
	}
	// The calls count under this Site also when it shares its cluster's connection.
	ctx = sitereg.WithSite(ctx, site)
	owner, err := p.clusterOf(site)
	if err != nil {
		p.wait(site, it.Namespace+"/"+it.Name)
		return nil
	}
	if owner != c {
		owner.queue.Add(it)
		return nil
	}
	if sp != nil {
		want, changed := translate.SiteUpdate(host, sp)
		if !changed {
			return nil
		}
		_, err := c.client.CoreV1().Pods(sp.Namespace).Update(ctx, want, metav1.UpdateOptions{})
		p.metrics.op(site, "update", err, false)
		if err != nil {
			if apierrors.IsConflict(err) {
				return errRequeue
			}
			return fmt.Errorf("update pod %s/%s on site %s: %w", sp.Namespace, sp.Name, site, err)
		}
		return nil
	}
	p.starts.mark(host.UID, stageQueued)
	ctx, span := p.createSpan(ctx, host, site)
	defer span.End()
	err = p.createSitePod(ctx, c, it, host, site, siteNode)
	if err != nil && !errors.Is(err, errRequeue) {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// createSitePod creates the site pod of host pod host on cluster c, namespace and
// references first.
func (p *Pods) createSitePod(ctx context.Context, c *cluster, it item, host *corev1.Pod, site, siteNode string) error {
	want, err := translate.SitePod(host, translate.Target{Tenant: p.cfg.Tenant, Site: site, SiteNode: siteNode})
	if err != nil {
		return nil
	}
	level := p.cfg.Registry.PodSecurity(c.key)
	created, err := c.ensureNamespace(ctx, want.Namespace, p.cfg.Tenant, host.Namespace, level)
	if err != nil {
		p.reportUnsynced(host, translate.ReasonSiteRejected, fmt.Sprintf("site %s: %v", site, err))
		return err
	}
	if err := p.ensureRefs(ctx, c, host, want.Namespace); err != nil {
		p.reportUnsynced(host, translate.ReasonMissingReference, fmt.Sprintf("site %s: %v", site, err))
		return errRequeue
	}
	_, err = c.client.CoreV1().Pods(want.Namespace).Create(ctx, want, metav1.CreateOptions{})
	switch {
	case err == nil:
		p.starts.mark(host.UID, stageSent)
		p.metrics.op(site, "create", nil, false)
		c.refused.Delete(it.Namespace + "/" + it.Name)
		p.traces.Delete(it.Namespace + "/" + it.Name)
		// The pod's only Event of its creation (virtual-kubelet's ProviderCreateSuccess,
		// which said it was queued, is not recorded: withoutHandOffs).
		p.cfg.Recorder.Eventf(host, corev1.EventTypeNormal, translate.ReasonSitePodCreated, "created on site %s as pod %s/%s%s",
			site, want.Namespace, want.Name, onNode(siteNode))
		return nil
	case apierrors.IsAlreadyExists(err):
		got, gerr := c.client.CoreV1().Pods(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		if got.Labels[vk8sv1.LabelHostPodUID] == string(host.UID) {
			// Created by us; the cache has not seen it yet (a new connection's, after
			// rotated credentials, still filling): looked at again once it has, so that
			// a change the host pod carries (labels, images) is not lost.
			p.traces.Delete(it.Namespace + "/" + it.Name)
			return errRequeue
		}
		if !translate.CreatedByVK8s(got, p.cfg.Tenant, host.Namespace) {
			// A site administrator's pod, or another host's: never touched. The host pod
			// waits, and says why, until the name is free.
			p.metrics.op(site, "create", err, false)
			p.reportUnsynced(host, translate.ReasonNameConflict, fmt.Sprintf(
				"site %s already has pod %s/%s, which vk8s did not create (no labels %s=%s, %s=%s): vk8s leaves it alone; "+
					"delete or rename it on the site, or give the host pod another name", site, got.Namespace, got.Name,
				vk8sv1.LabelTenant, p.cfg.Tenant, vk8sv1.LabelHostNamespace, host.Namespace))
			return errRequeue
		}
		// An earlier incarnation of this host pod (a StatefulSet's pod of the same name).
		if err := c.deleteSitePod(ctx, got, new(int64)); err != nil {
			return err
		}
		return errRequeue
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) || apierrors.IsNotFound(err):
		c.namespaces.Delete(want.Namespace)
		return errRequeue
	case permanentRejection(err):
		p.metrics.op(site, "create", err, true)
		p.ended.Store(host.UID, host.Namespace+"/"+host.Name)
		p.traces.Delete(it.Namespace + "/" + it.Name)
		p.reportFailed(host, translate.ReasonSiteRejected, fmt.Sprintf("site %s refused the pod for good: %v", site, err))
		return nil
	default:
		p.metrics.op(site, "create", err, false)
		if enforced, ok := podSecurityViolation(err); ok {
			// Retried with backoff like any 403, and at once when the Sites' level changes.
			c.refused.Store(it.Namespace+"/"+it.Name, true)
			r := translate.PodSecurityRefusal{Site: site, Namespace: want.Namespace, Created: created,
				SiteLevel: level, NamespaceLevel: level, Level: enforced, Message: err.Error()}
			if conn, cerr := p.cfg.Registry.Get(site); cerr == nil {
				r.SiteLevel = conn.PodSecurity
			}
			p.reportUnsynced(host, translate.ReasonPodSecurity, r.HostMessage())
			return errRequeue
		}
		p.reportUnsynced(host, translate.ReasonSiteRejected, fmt.Sprintf("site %s refused the pod (retrying): %v", site, err))
		return errRequeue
	}
}

// podSecurityViolation says whether a site refused a pod by its Pod Security Admission (a
// 403 Forbidden: the namespace's level, not the pod alone, decides), and the level it
// enforced.
func podSecurityViolation(err error) (string, bool) {
	if !apierrors.IsForbidden(err) {
		return "", false
	}
	return translate.PodSecurityViolation(err.Error())
}

// permanentRejection says whether a site's refusal to create a pod is for good: the site
// found the pod itself unacceptable (422 Invalid, 400 BadRequest, 413 RequestEntityTooLarge),
// whether its validation or an admission policy said so, and the same pod sent again gets
// the same answer. A ValidatingAdmissionPolicy answers 422 when its validation says reason
// Invalid or no reason (Invalid is the API's default). Everything else (403 Forbidden from
// quota, admission plugins or a policy with reason Forbidden, 401, 409, 429, 5xx,
// timeouts) can change without the pod changing, as quotas free up and policies are
// edited, so the pod is retried.
func permanentRejection(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err)
}

// deleteSitePod deletes a site pod, only that incarnation of it (UID precondition). A pod
// already terminating is left to finish unless grace shortens it.
func (c *cluster) deleteSitePod(ctx context.Context, sp *corev1.Pod, grace *int64) error {
	if sp.DeletionTimestamp != nil && (grace == nil || (sp.DeletionGracePeriodSeconds != nil && *grace >= *sp.DeletionGracePeriodSeconds)) {
		return nil
	}
	opts := metav1.DeleteOptions{GracePeriodSeconds: grace, Preconditions: metav1.NewUIDPreconditions(string(sp.UID))}
	err := c.client.CoreV1().Pods(sp.Namespace).Delete(ctx, sp.Name, opts)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s/%s on its site: %w", sp.Namespace, sp.Name, err)
	}
	return nil
}

// ensureNamespace creates the site namespace of a host namespace when it is missing, at
// Pod Security level level (tenancy.EnsureNamespace: the VirtualKubernetes controller
// makes the same namespace), and brings one vk8s created to level when the level it was
// last given differs. It reports whether vk8s created the namespace.
func (c *cluster) ensureNamespace(ctx context.Context, name, tenant, hostNamespace string, level vk8sv1.PodSecurityLevel) (bool, error) {
	if v, ok := c.namespaces.Load(name); ok && v.(siteNamespace).level == level {
		return v.(siteNamespace).created, nil
	}
	created, err := tenancy.EnsureNamespace(ctx, c.client, tenant, hostNamespace, level)
	if err != nil {
		return created, err
	}
	c.namespaces.Store(name, siteNamespace{level: level, created: created})
	return created, nil
}

// syncPodSecurity brings every namespace this host created on a cluster to the Pod
// Security level of the cluster's Sites when it changed (a Site's spec.podSecurity, a
// Site joining or leaving the cluster), or after a start, then queues the pods the old
// level refused. A site administrator's namespace is never touched. It runs on
// Registry.Watch's events, which a Site's spec change sends.
func (p *Pods) syncPodSecurity(ctx context.Context, c *cluster) error {
	level := p.cfg.Registry.PodSecurity(c.key)
	if level == c.podSecurity {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	sel := labels.Set{vk8sv1.LabelTenant: p.cfg.Tenant}.AsSelector().String()
	list, err := c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return fmt.Errorf("list the site namespaces of tenant %s: %w", p.cfg.Tenant, err)
	}
	var errs []error
	for i := range list.Items {
		ns := &list.Items[i]
		hostNamespace := ns.Labels[vk8sv1.LabelHostNamespace]
		if ns.Name != translate.SiteNamespace(p.cfg.Tenant, hostNamespace) || !translate.CreatedByVK8s(ns, p.cfg.Tenant, hostNamespace) {
			continue
		}
		wrote, err := tenancy.SetPodSecurity(ctx, c.client, ns, level)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if wrote {
			c.log.Info("Set the Pod Security level of a site namespace", "namespace", ns.Name, "level", level)
		}
		c.namespaces.Store(ns.Name, siteNamespace{level: level, created: true})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.podSecurity = level
	c.refused.Range(func(key, _ any) bool {
		c.refused.Delete(key)
		ns, name, _ := cache.SplitMetaNamespaceKey(key.(string))
		c.queue.Add(item{Namespace: ns, Name: name})
		return true
	})
	return nil
}

// orphanAge is how old a site pod that does not say its Site must be before a replica that
// shares the Sites takes it for an orphan when its host cache lacks the host pod: far
// longer than one replica's host cache lags behind another's.
const orphanAge = 30 * time.Second

// podOwner says which replica acts for a site pod, as the Site it was made for says.
type podOwner int

const (
	// ownerUnknown: the site pod does not say its Site (made by a vk8s before
	// vk8s.io/host-site), or that Site is gone.
	ownerUnknown podOwner = iota
	// ownerThis: this replica owns the pod's Site (every pod, without sharding).
	ownerThis
	// ownerOther: another replica owns the pod's Site.
	ownerOther
)

// ownerOf says which replica acts for site pod sp: without sharding this one, with it
// the owner of the Site sp was made for (vk8sv1.LabelHostSite). The site cluster's cache
// holds the pods of every replica's Sites on the cluster (Sites of one cluster share its
// connection, and their selectors may overlap), so the cluster cannot say it. When the
// host's cache of Sites cannot be read, a Site not owned here counts as another's: its
// pods are left alone, and looked at again at the next sweep.
func (p *Pods) ownerOf(ctx context.Context, sp *corev1.Pod) podOwner {
	if !p.cfg.Registry.Sharded() {
		return ownerThis
	}
	return siteOwner(sp, p.cfg.Registry.Owns, func(site string) bool {
		exists, err := p.cfg.Registry.Exists(ctx, site)
		return exists || err != nil
	})
}

// siteOwner is ownerOf with sharding: owns says whether this replica owns a Site, exists
// whether the host still has it.
func siteOwner(sp *corev1.Pod, owns, exists func(site string) bool) podOwner {
	site := sp.Labels[vk8sv1.LabelHostSite]
	switch {
	case site == "":
		return ownerUnknown
	case owns(site):
		return ownerThis
	case exists(site):
		return ownerOther
	default:
		// Nobody acts for a Site that is gone: its pods are the cluster's to clean up.
		return ownerUnknown
	}
}

// mayTakeForOrphan says whether site pod sp, whose host pod the host cache lacks, may be
// deleted here as an orphan (takeForOrphan).
func (p *Pods) mayTakeForOrphan(ctx context.Context, c *cluster, sp *corev1.Pod) bool {
	return takeForOrphan(sp, p.ownerOf(ctx, sp), func(node string) bool { return p.cfg.Registry.SelectsNode(c.key, node) }, time.Now())
}

// takeForOrphan says whether a site pod whose host pod the host cache lacks may be deleted
// here as an orphan, given who acts for it (ownerOf): always by the replica that owns its
// Site (without sharding, the only one), at once, since that replica made it from a host
// pod its own cache showed; never by another. A pod that does not say its Site (made by
// a vk8s before vk8s.io/host-site), or whose Site is gone, is taken by a replica one of
// whose Sites on the cluster runs its node (selectsNode) once it is orphanAge old: it may
// be one another replica made a moment ago from a host pod this replica's host cache does
// not show yet (e2e TestShardedProviders saw such a pod deleted). A real orphan goes at a
// later sweep.
func takeForOrphan(sp *corev1.Pod, owner podOwner, selectsNode func(node string) bool, now time.Time) bool {
	switch owner {
	case ownerThis:
		return true
	case ownerOther:
		return false
	}
	return selectsNode(sp.Spec.NodeName) && now.Sub(sp.CreationTimestamp.Time) >= orphanAge
}

// sweep deletes site pods whose host pod is gone and queues every copy, so unused ones go.
// It runs only after the host's and the cluster's caches are filled.
func (p *Pods) sweep(ctx context.Context, c *cluster) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	for _, sp := range c.allSitePods() {
		if p.hostPodFor(sp) != nil || !p.mayTakeForOrphan(ctx, c, sp) {
			continue
		}
		if err := c.deleteSitePod(ctx, sp, nil); err != nil {
			c.log.Error(err, "Delete of a site pod whose host pod is gone failed")
			continue
		}
		c.log.Info("Deleted a site pod whose host pod is gone", "namespace", sp.Namespace, "pod", sp.Name,
			"hostNamespace", sp.Labels[vk8sv1.LabelHostNamespace], "hostUID", sp.Labels[vk8sv1.LabelHostPodUID])
	}
	for kind, inf := range c.copies {
		for _, obj := range inf.GetStore().List() {
			c.queue.Add(refItem(kind, obj))
		}
	}
	p.pruneEarly()
	p.traces.Range(func(key, _ any) bool {
		// Pods deleted before they reached their site.
		ns, name, _ := cache.SplitMetaNamespaceKey(key.(string))
		if _, err := p.cfg.HostPods.Pods(ns).Get(name); apierrors.IsNotFound(err) {
			p.traces.Delete(key)
		}
		return true
	})
	exists := func(key string, uid types.UID) bool {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		host, err := p.cfg.HostPods.Pods(ns).Get(name)
		return err == nil && host.UID == uid
	}
	p.lag.prune(exists)
	p.recent.prune(exists)
	p.starts.prune(exists, startFollowedFor)
	p.ended.Range(func(uid, key any) bool {
		// Forget ended pods the host no longer has.
		ns, name, _ := cache.SplitMetaNamespaceKey(key.(string))
		if host, err := p.cfg.HostPods.Pods(ns).Get(name); err != nil || host.UID != uid {
			p.ended.Delete(uid)
		}
		return true
	})
}

// onNode is what an Event says of a site pod's node: the site node of a PerNode virtual
// node, nothing when the site's scheduler chooses.
func onNode(siteNode string) string {
	if siteNode == "" {
		return ""
	}
	return " on node " + siteNode
}

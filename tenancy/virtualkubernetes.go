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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/sitereg"
)

// Reasons of a VirtualKubernetes' Ready condition and of its Events.
const (
	ReasonProvisioned         = "Provisioned"
	ReasonProvisioningFailed  = "ProvisioningFailed"
	ReasonVirtualSiteNotFound = "VirtualSiteNotFound"
	ReasonInvalidVirtualSite  = "InvalidVirtualSite"
	ReasonNoSites             = "NoSites"
	ReasonCleanedUp           = "CleanedUp"
	ReasonCleanupFailed       = "CleanupFailed"
	ReasonCleanupAbandoned    = "CleanupAbandoned"
)

// Actions of the Events.
const (
	actionProvision = "Provision"
	actionCleanup   = "Cleanup"
)

// departedRetry is how often a site that left the virtual-site but still runs pods of the
// namespace is looked at again.
const departedRetry = time.Minute

// maxListed bounds the sites a condition message or an Event names.
const maxListed = 10

// siteResult is what one reconcile did on one site.
type siteResult struct {
	site string
	err  error
	// done is false when cleanup has to come back (pods remain, or it failed).
	done bool
	note string
}

// ReconcileVirtualKubernetes makes the site namespace and its isolation NetworkPolicy exist
// on every site of the VirtualKubernetes' virtual-site, removes them from sites that left
// it, writes the status, and on deletion removes them everywhere before letting the object
// go. Failures of sites are status, Events and retries with backoff, not errors: the error
// return is for failures of the host.
func (c *Controller) ReconcileVirtualKubernetes(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	vk := &vk8sv1.VirtualKubernetes{}
	if err := c.client.Get(ctx, req.NamespacedName, vk); err != nil {
		if apierrors.IsNotFound(err) {
			c.backoff.Forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !vk.DeletionTimestamp.IsZero() {
		if !controllerutil.ContainsFinalizer(vk, vk8sv1.FinalizerSiteNamespaces) {
			return ctrl.Result{}, nil
		}
		return c.finalize(ctx, vk)
	}
	if !controllerutil.ContainsFinalizer(vk, vk8sv1.FinalizerSiteNamespaces) {
		patch := client.MergeFromWithOptions(vk.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(vk, vk8sv1.FinalizerSiteNamespaces)
		if err := c.client.Patch(ctx, vk, patch); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}

	siteNS := translate.SiteNamespace(c.cfg.Tenant, vk.Namespace)
	st := *vk.Status.DeepCopy()
	st.ObservedGeneration = vk.Generation
	st.SiteNamespace = siteNS
	cond := metav1.Condition{Type: vk8sv1.ConditionReady, ObservedGeneration: vk.Generation}
	selected, reason, msg, err := c.selectedSites(ctx, vk)
	if err != nil {
		return ctrl.Result{}, err
	}
	var failed []siteResult
	if reason != "" {
		// The virtual-site cannot be resolved: keep what is on the sites (a typo being
		// fixed must not empty them) and say what is wrong.
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, msg
	} else {
		results, keys := c.provisionAll(ctx, vk, selected)
		for _, r := range results {
			if r.err != nil {
				failed = append(failed, r)
			}
		}
		leaving := without(slices.Concat(vk.Status.Sites, vk.Status.DepartedSites), selected)
		st.DepartedSites = nil
		for _, r := range c.cleanupAll(ctx, vk, leaving, departed, keys) {
			if !r.done {
				st.DepartedSites = append(st.DepartedSites, r.site)
			}
		}
		slices.Sort(st.DepartedSites)
		st.Sites = selected
		switch {
		case len(selected) == 0:
			cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNoSites
			cond.Message = fmt.Sprintf("VirtualSite %s selects no Site, so there is nowhere to create namespace %s; "+
				"label Sites to match its spec.siteSelector (kubectl get virtualsite -n %s %s -o yaml shows why), or name another virtual-site in spec.virtualSite",
				vk.Spec.VirtualSite, siteNS, refNamespace(vk), refName(vk))
		case len(failed) > 0:
			cond.Status, cond.Reason = metav1.ConditionFalse, ReasonProvisioningFailed
			cond.Message = fmt.Sprintf("namespace %s and NetworkPolicy %s are not in place on %d of %d sites: %s; vk8s retries with backoff, and at once when a site reconnects",
				siteNS, translate.IsolationPolicyName, len(failed), len(selected), listFailures(failed))
		default:
			cond.Status, cond.Reason = metav1.ConditionTrue, ReasonProvisioned
			cond.Message = fmt.Sprintf("namespace %s and NetworkPolicy %s exist on all %d sites", siteNS, translate.IsolationPolicyName, len(selected))
		}
	}
	old := meta.FindStatusCondition(vk.Status.Conditions, vk8sv1.ConditionReady)
	if old != nil && old.Status == metav1.ConditionTrue && old.ObservedGeneration == vk.Generation &&
		len(failed) > 0 && onlyConnecting(failed, vk.Status.Sites) {
		// Sites provisioned before are still being connected (a provider that just
		// started): they were Ready, and the registry's Watch brings them back here.
		cond = *old
	} else {
		c.recordProvisioning(ctx, vk, old, cond, failed)
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	if !equality.Semantic.DeepEqual(vk.Status, st) {
		patch := client.MergeFrom(vk.DeepCopy())
		vk.Status = st
		if err := c.client.Status().Patch(ctx, vk, patch); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	switch {
	case len(failed) > 0:
		return ctrl.Result{RequeueAfter: c.backoff.When(req.NamespacedName)}, nil
	case len(st.DepartedSites) > 0:
		c.backoff.Forget(req.NamespacedName)
		return ctrl.Result{RequeueAfter: departedRetry}, nil
	default:
		c.backoff.Forget(req.NamespacedName)
		return ctrl.Result{RequeueAfter: c.cfg.ResyncInterval}, nil
	}
}

func refNamespace(vk *vk8sv1.VirtualKubernetes) string {
	ref, _ := overrides.ParseVirtualSiteRef(vk.Spec.VirtualSite, vk.Namespace)
	return ref.Namespace
}

func refName(vk *vk8sv1.VirtualKubernetes) string {
	ref, _ := overrides.ParseVirtualSiteRef(vk.Spec.VirtualSite, vk.Namespace)
	return ref.Name
}

// selectedSites resolves spec.virtualSite to its Sites with the rule the webhook uses. A
// virtual-site that cannot be resolved gives a reason and a message instead.
func (c *Controller) selectedSites(ctx context.Context, vk *vk8sv1.VirtualKubernetes) (sites []string, reason, msg string, err error) {
	ref, ok := overrides.ParseVirtualSiteRef(vk.Spec.VirtualSite, vk.Namespace)
	if !ok {
		return nil, ReasonInvalidVirtualSite, fmt.Sprintf("spec.virtualSite %q is not a virtual-site reference; write <namespace>/<name> or <name>", vk.Spec.VirtualSite), nil
	}
	vs := &vk8sv1.VirtualSite{}
	if err := c.client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, vs); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ReasonVirtualSiteNotFound, fmt.Sprintf("spec.virtualSite: VirtualSite %s does not exist; create it, or name an existing one (kubectl get virtualsites -A lists them); "+
				"nothing on the sites is changed meanwhile", ref), nil
		}
		return nil, "", "", fmt.Errorf("get VirtualSite %s: %w", ref, err)
	}
	var list vk8sv1.SiteList
	if err := c.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, "", "", fmt.Errorf("list Sites: %w", err)
	}
	sites, err = overrides.SelectSites(vs, list.Items)
	if err != nil {
		return nil, ReasonInvalidVirtualSite, fmt.Sprintf("VirtualSite %s has an invalid spec.siteSelector: %v; fix the VirtualSite; nothing on the sites is changed meanwhile", ref, err), nil
	}
	return sites, "", "", nil
}

// group is the sites of one cluster connection: one namespace serves them all, at one
// Pod Security level.
type group struct {
	key    string
	client kubernetes.Interface
	level  vk8sv1.PodSecurityLevel
	sites  []string
}

// groupSites looks up the clients of sites. Sites that cannot be used now come back as
// results with their error.
func (c *Controller) groupSites(sites []string) ([]*group, []siteResult) {
	byKey := map[string]*group{}
	var groups []*group
	var down []siteResult
	for _, s := range sites {
		cl, key, err := c.cfg.Sites.Client(s)
		if err != nil {
			down = append(down, siteResult{site: s, err: err})
			continue
		}
		g := byKey[key]
		if g == nil {
			g = &group{key: key, client: cl, level: c.cfg.Sites.PodSecurity(key)}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.sites = append(g.sites, s)
	}
	return groups, down
}

// parallelism bounds the site clusters worked on at once by one reconcile.
const parallelism = 16

// forEachGroup runs fn for every group, at most parallelism at a time, each under the
// site timeout, and returns every site's result.
func (c *Controller) forEachGroup(ctx context.Context, groups []*group, fn func(ctx context.Context, g *group) siteResult) []siteResult {
	var mu sync.Mutex
	var out []siteResult
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			gctx, cancel := context.WithTimeout(ctx, c.cfg.SiteTimeout)
			defer cancel()
			r := fn(gctx, g)
			mu.Lock()
			defer mu.Unlock()
			for _, s := range g.sites {
				r.site = s
				out = append(out, r)
			}
		}()
	}
	wg.Wait()
	return out
}

// provisionAll provisions the site namespace on every selected site, skipping those
// provisioned through the same connection at the same Pod Security level within
// ResyncInterval.
func (c *Controller) provisionAll(ctx context.Context, vk *vk8sv1.VirtualKubernetes, sites []string) ([]siteResult, map[string]bool) {
	groups, results := c.groupSites(sites)
	keys := map[string]bool{}
	for _, g := range groups {
		keys[g.key] = true
	}
	for _, r := range results {
		c.forgetProvisioned(vk, r.site)
		c.metrics.op(r.site, "provision", r.err)
	}
	now := c.now()
	var todo []*group
	for _, g := range groups {
		if !c.allProvisioned(vk, g, now) {
			todo = append(todo, g)
		} else {
			for _, s := range g.sites {
				results = append(results, siteResult{site: s, done: true})
			}
		}
	}
	for _, r := range c.forEachGroup(ctx, todo, func(ctx context.Context, g *group) siteResult {
		err := provision(ctx, g.client, c.cfg.Tenant, vk.Namespace, g.level)
		for _, s := range g.sites {
			if err == nil {
				c.markProvisioned(vk, s, g, now)
			} else {
				c.forgetProvisioned(vk, s)
			}
		}
		return siteResult{err: err, done: err == nil}
	}) {
		c.metrics.op(r.site, "provision", r.err)
		results = append(results, r)
	}
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("site %s: %s", r.site, siteError(r)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		ctrl.LoggerFrom(ctx).Info("Provisioning the site namespace failed on some sites", "failed", len(errs), "sites", len(sites), "error", err.Error())
	}
	return results, keys
}

func markKey(vk *vk8sv1.VirtualKubernetes, site string) string { return string(vk.UID) + "/" + site }

func (c *Controller) allProvisioned(vk *vk8sv1.VirtualKubernetes, g *group, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range g.sites {
		m, ok := c.provisioned[markKey(vk, s)]
		if !ok || m.key != g.key || m.level != g.level || now.Sub(m.at) >= c.cfg.ResyncInterval {
			return false
		}
	}
	return true
}

func (c *Controller) markProvisioned(vk *vk8sv1.VirtualKubernetes, site string, g *group, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.provisioned[markKey(vk, site)] = provisionMark{key: g.key, level: g.level, at: now}
}

func (c *Controller) forgetProvisioned(vk *vk8sv1.VirtualKubernetes, site string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.provisioned, markKey(vk, site))
}

// cleanupAll removes what vk8s made for vk's namespace from sites. A site whose cluster
// also serves a selected site (a node-selected slice of the same cluster) has nothing to
// remove; a Site that no longer exists cannot be reached and is dropped.
// keep holds the connection keys of the selected sites.
func (c *Controller) cleanupAll(ctx context.Context, vk *vk8sv1.VirtualKubernetes, sites []string, mode cleanupMode, keep map[string]bool) []siteResult {
	if len(sites) == 0 {
		return nil
	}
	log := ctrl.LoggerFrom(ctx)
	var present []string
	var results []siteResult
	for _, s := range sites {
		c.forgetProvisioned(vk, s)
		err := c.client.Get(ctx, client.ObjectKey{Name: s}, &vk8sv1.Site{})
		if apierrors.IsNotFound(err) {
			log.Info("Site is gone; nothing to clean up there", "site", s)
			results = append(results, siteResult{site: s, done: true, note: "the Site is gone"})
			continue
		}
		present = append(present, s)
	}
	groups, down := c.groupSites(present)
	for _, r := range down {
		r.note = "cannot reach the site"
		results = append(results, r)
	}
	var todo []*group
	for _, g := range groups {
		if keep[g.key] {
			for _, s := range g.sites {
				results = append(results, siteResult{site: s, done: true, note: "its cluster serves a selected site"})
			}
			continue
		}
		todo = append(todo, g)
	}
	for _, r := range c.forEachGroup(ctx, todo, func(ctx context.Context, g *group) siteResult {
		res, err := cleanup(ctx, g.client, c.cfg.Tenant, vk.Namespace, mode)
		return siteResult{err: err, done: res.done && err == nil, note: res.note}
	}) {
		c.metrics.op(r.site, "cleanup", r.err)
		if r.err == nil {
			log.Info("Cleaned up a site", "site", r.site, "done", r.done, "note", r.note)
		}
		results = append(results, r)
	}
	return results
}

// finalize removes what vk8s made on every site the VirtualKubernetes had, then its
// finalizer. Sites that do not answer (or whose pods do not go) are waited for up to
// CleanupTimeout.
func (c *Controller) finalize(ctx context.Context, vk *vk8sv1.VirtualKubernetes) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(vk)
	sites := slices.Concat(vk.Status.Sites, vk.Status.DepartedSites)
	if cur, reason, _, err := c.selectedSites(ctx, vk); err == nil && reason == "" {
		sites = append(sites, cur...)
	}
	slices.Sort(sites)
	sites = slices.Compact(sites)
	results := c.cleanupAll(ctx, vk, sites, deleting, nil)
	var pending []siteResult
	for _, r := range results {
		if !r.done {
			pending = append(pending, r)
		}
	}
	siteNS := translate.SiteNamespace(c.cfg.Tenant, vk.Namespace)
	if len(pending) > 0 {
		if c.now().Sub(vk.DeletionTimestamp.Time) < c.cfg.CleanupTimeout {
			note := fmt.Sprintf("namespace %s is not cleaned up yet on %d of %d sites: %s; vk8s retries for up to %s after the deletion",
				siteNS, len(pending), len(sites), listFailures(pending), c.cfg.CleanupTimeout)
			c.recordOnce(vk, corev1.EventTypeWarning, ReasonCleanupFailed, actionCleanup, note)
			return ctrl.Result{RequeueAfter: c.backoff.When(key)}, nil
		}
		note := fmt.Sprintf("gave up cleaning up after %s: namespace %s or NetworkPolicy %s may remain on %d sites: %s; delete them there by hand (kubectl delete namespace %s, on a site where vk8s created it and nothing of yours runs)",
			c.cfg.CleanupTimeout, siteNS, translate.IsolationPolicyName, len(pending), listFailures(pending), siteNS)
		c.recorder.Eventf(vk, nil, corev1.EventTypeWarning, ReasonCleanupAbandoned, actionCleanup, "%s", note)
		ctrl.LoggerFrom(ctx).Info("Cleanup abandoned", "sites", len(pending), "note", note)
	} else if len(sites) > 0 {
		c.recorder.Eventf(vk, nil, corev1.EventTypeNormal, ReasonCleanedUp, actionCleanup,
			"removed namespace %s (where vk8s created it and it was empty) and NetworkPolicy %s from %d sites", siteNS, translate.IsolationPolicyName, len(sites))
	}
	patch := client.MergeFromWithOptions(vk.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(vk, vk8sv1.FinalizerSiteNamespaces)
	if err := c.client.Patch(ctx, vk, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	c.forget(vk)
	return ctrl.Result{}, nil
}

// forget drops what the controller remembers about vk.
func (c *Controller) forget(vk *vk8sv1.VirtualKubernetes) {
	c.backoff.Forget(client.ObjectKeyFromObject(vk))
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.provisioned {
		if strings.HasPrefix(k, string(vk.UID)+"/") {
			delete(c.provisioned, k)
		}
	}
	delete(c.reported, vk.UID)
}

// recordProvisioning records an Event when the Ready condition changes how it fails, or
// recovers: the set of failing sites going from one state to another, not every retry.
func (c *Controller) recordProvisioning(ctx context.Context, vk *vk8sv1.VirtualKubernetes, old *metav1.Condition, cur metav1.Condition, failed []siteResult) {
	state := cur.Reason
	for _, f := range failed {
		state += " " + f.site
	}
	c.mu.Lock()
	prev, seen := c.reported[vk.UID]
	c.reported[vk.UID] = state
	c.mu.Unlock()
	switch {
	case seen && prev == state:
		return
	case !seen && old != nil && old.Status == cur.Status && old.Reason == cur.Reason:
		return // a restarted provider finding what the status already says
	}
	log := ctrl.LoggerFrom(ctx)
	if cur.Status == metav1.ConditionTrue {
		c.recorder.Eventf(vk, nil, corev1.EventTypeNormal, ReasonProvisioned, actionProvision, "%s", cur.Message)
		log.Info("VirtualKubernetes provisioned", "message", cur.Message)
		return
	}
	log.Info("VirtualKubernetes not provisioned", "reason", cur.Reason, "message", cur.Message)
	if len(failed) > 0 && onlyConnecting(failed, nil) {
		return // a Site just registered: the registry connects it in a moment
	}
	c.recorder.Eventf(vk, nil, corev1.EventTypeWarning, cur.Reason, actionProvision, "%s", cur.Message)
}

// onlyConnecting reports whether every failure is a site that the registry is still
// connecting (not known to be down) and, unless before is nil, one of before.
func onlyConnecting(failed []siteResult, before []string) bool {
	for _, f := range failed {
		if !errors.Is(f.err, sitereg.ErrSiteNotConnected) || errors.Is(f.err, sitereg.ErrSiteDown) || (before != nil && !slices.Contains(before, f.site)) {
			return false
		}
	}
	return true
}

// recordOnce records an Event unless the same one was the last recorded for vk.
func (c *Controller) recordOnce(vk *vk8sv1.VirtualKubernetes, eventType, reason, action, note string) {
	c.mu.Lock()
	state := reason + ": " + note
	if c.reported[vk.UID] == state {
		c.mu.Unlock()
		return
	}
	c.reported[vk.UID] = state
	c.mu.Unlock()
	c.recorder.Eventf(vk, nil, eventType, reason, action, "%s", note)
}

// listFailures names up to maxListed sites with what went wrong there and how to fix it.
func listFailures(rs []siteResult) string {
	slices.SortFunc(rs, func(a, b siteResult) int { return strings.Compare(a.site, b.site) })
	var parts []string
	for i, r := range rs {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("and %d more", len(rs)-maxListed))
			break
		}
		parts = append(parts, r.site+": "+explain(r))
	}
	return strings.Join(parts, "; ")
}

// explain says what went wrong on a site, and the fix when there is a known one.
func explain(r siteResult) string {
	if r.err == nil {
		return r.note
	}
	msg := siteError(r)
	switch err := r.err; {
	case errors.Is(err, sitereg.ErrSiteNotConnected):
		return fmt.Sprintf("%s (kubectl get site %s shows its Connected condition)", msg, r.site)
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("%s (the Site's credentials need to create namespaces, serviceaccounts and networkpolicies, and to list pods and persistentvolumeclaims)", msg)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%s (the site did not answer in time)", msg)
	default:
		return msg
	}
}

// siteError is a site's error without the "site <name>: " the registry's errors start
// with, since the site is named beside it.
func siteError(r siteResult) string {
	return strings.TrimPrefix(r.err.Error(), "site "+r.site+": ")
}

// without returns the sorted, distinct elements of a that are not in b.
func without(a, b []string) []string {
	drop := make(map[string]bool, len(b)+len(a))
	for _, s := range b {
		drop[s] = true
	}
	var out []string
	for _, s := range a {
		if !drop[s] {
			drop[s] = true
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

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
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Collision is a virtual node name that a Site makes and another Site keeps: one host
// Node cannot stand for two site nodes, so the Site that does not keep it does not
// register it. Virtual nodes are named "<site>-<node>" (PerNode) or "<site>" (Aggregate),
// so Site a's node b-c and Site a-b's node c are both a-b-c, and Site a's node b is Site
// a-b's Aggregate node.
type Collision struct {
	// Name is the virtual node's name.
	Name string
	// Node is the Site's node the name stands for; empty for its Aggregate node.
	Node string
	// Keeper is the Site that keeps the name; KeeperNode its node ("" for its Aggregate
	// node). Both are empty when the name is a Node of the host itself (HostNode).
	Keeper, KeeperNode string
	// HostNode says that the host has a Node of this name that is no virtual node (no
	// vk8s.io/site label): one of its own, which vk8s never takes over.
	HostNode bool
}

// describe says what c is, for the status of the Site that does not keep the name.
func (c Collision) describe() string {
	mine, theirs := "its node "+c.Node, "its node "+c.KeeperNode
	if c.Node == "" {
		mine = "its Aggregate node"
	}
	if c.HostNode {
		return fmt.Sprintf("%s (%s) is a Node of the host itself", c.Name, mine)
	}
	if c.KeeperNode == "" {
		theirs = "its Aggregate node"
	}
	return fmt.Sprintf("%s (%s) is Site %s's (%s)", c.Name, mine, c.Keeper, theirs)
}

// collisionMessage is the Ready condition's message of a Site that does not keep the
// names of cols.
func collisionMessage(cols []Collision) string {
	const most = 5
	parts := make([]string, 0, most+1)
	for i, c := range cols {
		if i == most {
			parts = append(parts, fmt.Sprintf("and %d more", len(cols)-most))
			break
		}
		parts = append(parts, c.describe())
	}
	host, sites := false, false
	for _, c := range cols {
		host, sites = host || c.HostNode, sites || !c.HostNode
	}
	with := "another Site's"
	switch {
	case host && sites:
		with = "another Site's or the host's own Nodes"
	case host:
		with = "the host's own Nodes"
	}
	return fmt.Sprintf("virtual node names collide with %s: %s; a host Node stands for one site node, "+
		"so the Site that has the name keeps it and this Site's node is not registered: rename the node on its site, "+
		"leave it out with spec.nodeSelector, or recreate this Site under another name", with, strings.Join(parts, "; "))
}

// siteView is what collision detection knows of a Site.
type siteView struct {
	name      string
	created   time.Time
	aggregate bool
	// makes says whether the Site has a node of this name (its node selector selects it);
	// nil when the Site's nodes are not known yet, and then only held counts.
	makes func(node string) bool
	// held are the virtual nodes the Site has now: those its status lists.
	held map[string]bool
}

// claims says whether v makes, or has, the virtual node name, whose node on v would be
// node ("" for v's Aggregate node).
func (v siteView) claims(name, node string) bool {
	switch {
	case v.held[name]:
		return true
	case node == "":
		return v.aggregate
	default:
		return !v.aggregate && v.makes != nil && v.makes(node)
	}
}

// nodeOf returns the node of v that its virtual node name stands for; "" for v's Aggregate
// node.
func (v siteView) nodeOf(name string) string {
	if v.aggregate {
		return ""
	}
	return strings.TrimPrefix(name, v.name+"-")
}

// namer is a Site that could make a virtual node name, and its node that would.
type namer struct {
	site, node string
}

// namers returns every Site that could make a virtual node called name: a-b-c is Site a's
// node b-c, Site a-b's node c, or Site a-b-c's Aggregate node.
func namers(name string) []namer {
	var out []namer
	for i := range len(name) {
		if name[i] == '-' && i > 0 && i < len(name)-1 {
			out = append(out, namer{site: name[:i], node: name[i+1:]})
		}
	}
	return append(out, namer{site: name})
}

// claim is a Site that makes a virtual node name.
type claim struct {
	site    string
	created time.Time
	node    string
	held    bool
}

// keeper returns the claim that keeps a name: the one Site that has the virtual node now,
// so that a node with pods on it is never taken from its Site (a site node that joins
// later does not take the name from a running virtual node); when none or several have
// it, the oldest Site, then the first by name.
func keeper(claims []claim) claim {
	pool := slices.DeleteFunc(slices.Clone(claims), func(c claim) bool { return !c.held })
	if len(pool) == 0 {
		pool = claims
	}
	return slices.MinFunc(pool, func(a, b claim) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.site, b.site)
	})
}

// collisions returns the virtual nodes among names (those self makes) that another Site
// keeps; lookup returns the other Sites by name.
func collisions(self siteView, names []string, lookup func(site string) (siteView, bool)) []Collision {
	var out []Collision
	for _, name := range names {
		mine := self.nodeOf(name)
		claims := []claim{{site: self.name, created: self.created, node: mine, held: self.held[name]}}
		for _, n := range namers(name) {
			if n.site == self.name {
				continue
			}
			if o, ok := lookup(n.site); ok && o.claims(name, n.node) {
				claims = append(claims, claim{site: o.name, created: o.created, node: n.node, held: o.held[name]})
			}
		}
		if k := keeper(claims); k.site != self.name {
			out = append(out, Collision{Name: name, Node: mine, Keeper: k.site, KeeperNode: k.node})
		}
	}
	return out
}

// Collisions returns the virtual nodes among names (what translate.VirtualNodes makes of
// site's nodes) that another Site keeps: they must not be registered for site. It reads
// only the registry's caches, and agrees with the Sites' status (ReasonNodeNameCollision).
func (r *Registry) Collisions(ctx context.Context, site *vk8sv1.Site, names []string) ([]Collision, error) {
	r.namesMu.Lock()
	defer r.namesMu.Unlock()
	return r.collisionsLocked(ctx, site, names)
}

func (r *Registry) collisionsLocked(ctx context.Context, site *vk8sv1.Site, names []string) ([]Collision, error) {
	var lookupErr error
	views := map[string]*siteView{}
	lookup := func(name string) (siteView, bool) {
		if v, ok := views[name]; ok {
			return derefView(v)
		}
		s, err := r.liveSite(ctx, name)
		if err != nil && lookupErr == nil {
			lookupErr = err
		}
		var v *siteView
		if s != nil {
			sv := r.view(s)
			v = &sv
		}
		views[name] = v
		return derefView(v)
	}
	self := r.view(site)
	out := collisions(self, names, lookup)
	if lookupErr != nil {
		return nil, lookupErr
	}
	taken := make(map[string]bool, len(out))
	for _, c := range out {
		taken[c.Name] = true
	}
	for _, name := range names {
		if taken[name] {
			continue
		}
		own, err := r.hostOwnNode(ctx, name)
		if err != nil {
			return nil, err
		}
		if own {
			out = append(out, Collision{Name: name, Node: self.nodeOf(name), HostNode: true})
		}
	}
	return out, nil
}

// hostOwnNode says whether the host has a Node called name that is not a virtual node: one
// of the host's own (a kubelet's, a cloud's), which a virtual node must never update.
func (r *Registry) hostOwnNode(ctx context.Context, name string) (bool, error) {
	n := &corev1.Node{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("get host Node %s: %w", name, err)
	}
	_, virtual := n.Labels[vk8sv1.LabelSite]
	return !virtual, nil
}

func derefView(v *siteView) (siteView, bool) {
	if v == nil {
		return siteView{}, false
	}
	return *v, true
}

// liveSite returns the Site of this name from the cache; nil when there is none or it is
// being deleted.
func (r *Registry) liveSite(ctx context.Context, name string) (*vk8sv1.Site, error) {
	s := &vk8sv1.Site{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get Site %s: %w", name, err)
	}
	if !s.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	return s, nil
}

// view is what the registry knows of a Site: the virtual nodes it gave it last (else those
// of its status), and its nodes when its node cache has been filled.
func (r *Registry) view(s *vk8sv1.Site) siteView {
	v := siteView{name: s.Name, created: s.CreationTimestamp.Time, aggregate: s.Spec.NodeMode == vk8sv1.NodeModeAggregate}
	held, c := r.held(s)
	v.held = make(map[string]bool, len(held))
	for _, n := range held {
		v.held[n] = true
	}
	if c == nil {
		return v
	}
	inf := c.synced()
	sel, err := nodeSelector(s.Spec.NodeSelector)
	if inf == nil || err != nil {
		return v
	}
	idx := inf.GetIndexer()
	v.makes = func(node string) bool {
		obj, ok, err := idx.GetByKey(node)
		n, isNode := obj.(*corev1.Node)
		return err == nil && ok && isNode && sel.Matches(labels.Set(n.Labels))
	}
	return v
}

// held returns the virtual nodes the registry gave s last (else those of its status), and
// its connection.
func (r *Registry) held(s *vk8sv1.Site) ([]string, *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.sites[s.Name]
	switch {
	case e == nil:
		return s.Status.VirtualNodes, nil
	case e.heldUID == s.UID:
		return e.held, e.conn
	case e.uid == s.UID && e.status != nil:
		return e.status.VirtualNodes, e.conn
	}
	return s.Status.VirtualNodes, e.conn
}

// assign decides which of names (the virtual nodes site's nodes make) site keeps,
// remembers them as the Site's, and, when they changed, wakes the Sites that could make
// the same names, whose collisions may have changed with them. It returns the collisions.
func (r *Registry) assign(ctx context.Context, site *vk8sv1.Site, names []string) ([]Collision, error) {
	r.namesMu.Lock()
	cols, err := r.collisionsLocked(ctx, site, names)
	if err != nil {
		r.namesMu.Unlock()
		return nil, err
	}
	kept := withoutCollisions(names, cols)
	before, _ := r.held(site)
	r.mu.Lock()
	e := r.entryLocked(site.Name)
	e.held, e.heldUID = kept, site.UID
	r.mu.Unlock()
	r.namesMu.Unlock()
	r.wakeNamers(ctx, site.Name, symmetricDifference(before, kept))
	return cols, nil
}

// wakeNamers queues the Sites other than site that could make one of names, for the
// registry and the watchers.
func (r *Registry) wakeNamers(ctx context.Context, site string, names []string) {
	var wake []string
	for _, name := range names {
		for _, n := range namers(name) {
			if n.site == site || slices.Contains(wake, n.site) {
				continue
			}
			if s, err := r.liveSite(ctx, n.site); err == nil && s != nil {
				wake = append(wake, n.site)
			}
		}
	}
	if len(wake) > 0 {
		r.self.mark(wake)
		r.notifyWatchers(wake...)
	}
}

// symmetricDifference returns the strings in a or b but not both.
func symmetricDifference(a, b []string) []string {
	in := func(list []string) map[string]bool {
		m := make(map[string]bool, len(list))
		for _, s := range list {
			m[s] = true
		}
		return m
	}
	inA, inB := in(a), in(b)
	var out []string
	for _, s := range a {
		if !inB[s] {
			out = append(out, s)
		}
	}
	for _, s := range b {
		if !inA[s] {
			out = append(out, s)
		}
	}
	return out
}

// withoutCollisions returns names less those of cols.
func withoutCollisions(names []string, cols []Collision) []string {
	if len(cols) == 0 {
		return names
	}
	lost := make(map[string]bool, len(cols))
	for _, c := range cols {
		lost[c.Name] = true
	}
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return lost[n] })
}

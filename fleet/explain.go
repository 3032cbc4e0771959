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

package fleet

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/placement"
)

// ErrNotOnSite is wrapped by Explain's error for a pod that is on no site: not placed by
// vk8s, and not on a virtual node.
var ErrNotOnSite = errors.New("not on a site")

// Owner is one of a pod's controllers.
type Owner struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// ExplainInput is what Explain reads.
type ExplainInput struct {
	Pod *corev1.Pod
	// Owners are the pod's controllers, from the workload down to the pod's own
	// (Deployment, ReplicaSet); empty for a pod without one.
	Owners []Owner
	// Annotations are those admission resolved the pod's federation from: its workload's
	// (a ReplicaSet's Deployment, else its controller), the pod's own without a
	// controller.
	Annotations map[string]string
	// IndexedJob says the pod's Job is Indexed (its pods are placed by completion index).
	IndexedJob bool
	// VirtualKubernetes is the one of the pod's namespace, nil when it has none.
	VirtualKubernetes *vk8sv1.VirtualKubernetes
	// VirtualSites are the VirtualSites of the host (at least those the pod's
	// virtual-sites name).
	VirtualSites []vk8sv1.VirtualSite
	// Sites are the host's Sites; Nodes its virtual nodes.
	Sites []vk8sv1.Site
	Nodes []corev1.Node
	// Overrides are the Overrides of the pod's namespace.
	Overrides []vk8sv1.Override
}

// VirtualSite is one of a pod's virtual-sites and the Sites it selects.
type VirtualSite struct {
	Name  string   `json:"name"`
	Found bool     `json:"found"`
	Sites []string `json:"sites,omitempty"`
}

// Explanation says why a pod is on its site.
type Explanation struct {
	// Pod is namespace/name.
	Pod      string          `json:"pod"`
	Site     string          `json:"site"`
	SiteType vk8sv1.SiteType `json:"siteType,omitempty"`
	Node     string          `json:"node,omitempty"`
	Owners   []Owner         `json:"owners,omitempty"`
	// Federated says vk8s' admission placed the pod (its namespace is a vK8s
	// namespace); a pod that is not was sent to a virtual node by hand.
	Federated bool `json:"federated"`
	// VirtualSites are the pod's virtual-sites, from VirtualSitesFrom (the workload's
	// ves.io/virtual-sites, or its namespace's VirtualKubernetes); Sites their union.
	VirtualSites     []VirtualSite `json:"virtualSites,omitempty"`
	VirtualSitesFrom string        `json:"virtualSitesFrom,omitempty"`
	Sites            []string      `json:"sites,omitempty"`
	// Placement is the workload's plan (vk8s.io/placement).
	Placement string `json:"placement,omitempty"`
	// Slot is the pod's vk8s.io/slot; Ordinal its StatefulSet ordinal or completion index.
	Slot    int  `json:"slot,omitempty"`
	Ordinal *int `json:"ordinal,omitempty"`
	// Rule says, in words, how the site was chosen.
	Rule string `json:"rule"`
	// Override names the Override applied to the pod (vk8s.io/override), OverrideRule why,
	// OverrideStamp is its vk8s.io/override-hash and OverrideCurrent whether it is the
	// stamp the site's Override gives now (else the per-site rollout replaces the pod).
	Override        string `json:"override,omitempty"`
	OverrideRule    string `json:"overrideRule,omitempty"`
	OverrideStamp   string `json:"overrideStamp,omitempty"`
	OverrideCurrent bool   `json:"overrideCurrent"`
	// Flavor is the workload's WorkloadFlavor (FlavorDefault: no ves.io/workload-flavor),
	// FlavorApplied whether the site applies it (RegionalEdge).
	Flavor        string `json:"flavor,omitempty"`
	FlavorDefault bool   `json:"flavorDefault,omitempty"`
	FlavorApplied bool   `json:"flavorApplied"`
	// Images are the pod's containers, container=image.
	Images []string `json:"images,omitempty"`
}

// Explain says why in.Pod is on its site. Its error wraps ErrNotOnSite for a pod on no
// site.
func Explain(in ExplainInput) (*Explanation, error) {
	p := in.Pod
	siteOfNode := map[string]string{}
	for i := range in.Nodes {
		if s := in.Nodes[i].Labels[vk8sv1.LabelSite]; s != "" {
			siteOfNode[in.Nodes[i].Name] = s
		}
	}
	e := &Explanation{Pod: p.Namespace + "/" + p.Name, Node: p.Spec.NodeName, Owners: in.Owners, Site: siteOfPod(p, siteOfNode)}
	if e.Site == "" {
		where := "it is not scheduled yet"
		if p.Spec.NodeName != "" {
			where = "it runs on node " + p.Spec.NodeName + ", which is not a virtual node"
		}
		return nil, fmt.Errorf("pod %s is %w: %s, and it has no %s label", e.Pod, ErrNotOnSite, where, vk8sv1.LabelSite)
	}
	sites := map[string]*vk8sv1.Site{}
	for i := range in.Sites {
		sites[in.Sites[i].Name] = &in.Sites[i]
	}
	if s := sites[e.Site]; s != nil {
		e.SiteType = overrides.SiteType(s)
	}
	for _, c := range p.Spec.Containers {
		e.Images = append(e.Images, c.Name+"="+c.Image)
	}
	_, stamped := p.Annotations[vk8sv1.AnnotationOverrideHash]
	e.Federated = in.VirtualKubernetes != nil && stamped
	if !e.Federated {
		e.Rule = fmt.Sprintf("bound to virtual node %s of site %s (spec.nodeName) without vk8s' admission: its namespace %s is not a vK8s namespace, so no virtual-sites, Override or flavor apply",
			p.Spec.NodeName, e.Site, p.Namespace)
		if in.VirtualKubernetes != nil {
			e.Rule = fmt.Sprintf("on virtual node %s of site %s, but not placed by vk8s' admission (it has no %s): it was created before its namespace became a vK8s namespace, or while the webhook did not run",
				p.Spec.NodeName, e.Site, vk8sv1.AnnotationOverrideHash)
		}
		return e, nil
	}
	e.explainSites(in)
	e.explainRule(in)
	e.explainOverride(in)
	flavor, err := overrides.ParseWorkloadFlavor(in.Annotations, "")
	if err != nil {
		flavor = in.Annotations[vk8sv1.AnnotationWorkloadFlavor]
	}
	e.Flavor, e.FlavorApplied = flavor, e.SiteType == vk8sv1.SiteTypeRegionalEdge
	_, annotated := in.Annotations[vk8sv1.AnnotationWorkloadFlavor]
	e.FlavorDefault = !annotated
	return e, nil
}

// explainSites fills the virtual-sites and their Sites, as admission resolves them:
// ves.io/virtual-sites, else the namespace's default virtual-site.
func (e *Explanation) explainSites(in ExplainInput) {
	ns := in.Pod.Namespace
	refs, err := overrides.ParseVirtualSites(in.Annotations, ns, "")
	switch {
	case err != nil:
		// Another shared namespace than the default one: show the annotation as written.
		e.VirtualSitesFrom = fmt.Sprintf("%s %q", vk8sv1.AnnotationVirtualSites, in.Annotations[vk8sv1.AnnotationVirtualSites])
		return
	case len(refs) > 0:
		e.VirtualSitesFrom = vk8sv1.AnnotationVirtualSites
	default:
		vk := in.VirtualKubernetes
		e.VirtualSitesFrom = fmt.Sprintf("the namespace's default, VirtualKubernetes %s", vk.Name)
		if ref, ok := overrides.ParseVirtualSiteRef(vk.Spec.VirtualSite, ns); ok {
			refs = []overrides.VirtualSiteRef{ref}
		}
	}
	union := map[string]bool{}
	for _, ref := range refs {
		vs := VirtualSite{Name: ref.String()}
		i := slices.IndexFunc(in.VirtualSites, func(v vk8sv1.VirtualSite) bool { return v.Namespace == ref.Namespace && v.Name == ref.Name })
		if i >= 0 {
			vs.Found = true
			vs.Sites, _ = overrides.SelectSites(&in.VirtualSites[i], in.Sites)
			for _, s := range vs.Sites {
				union[s] = true
			}
		}
		e.VirtualSites = append(e.VirtualSites, vs)
	}
	e.Sites = sortedKeys(union)
}

// explainRule says how the site was chosen, by the rule admission applied for the pod's
// controller.
func (e *Explanation) explainRule(in ExplainInput) {
	p := in.Pod
	e.Placement = in.Annotations[vk8sv1.AnnotationPlacement]
	layout, _ := placement.ParseLayout(e.Placement)
	e.Slot = placement.Slot(p)
	kind := ""
	if n := len(in.Owners); n > 0 {
		kind = in.Owners[n-1].Kind
	}
	of := fmt.Sprintf("%s in %s %q", e.Site, vk8sv1.AnnotationPlacement, e.Placement)
	switch {
	case kind == KindDaemonSet:
		e.Rule = fmt.Sprintf("the DaemonSet controller runs a pod on every node it selects, and chose %s, a virtual node of %s; admission applied %s's Override and flavor", p.Spec.NodeName, e.Site, e.Site)
	case kind == KindStatefulSet || (kind == KindJob && in.IndexedJob):
		what := "ordinal"
		i, ok := placement.Ordinal(p)
		if kind == KindJob {
			what = "completion index"
			i, ok = atoi(p.Annotations["batch.kubernetes.io/job-completion-index"])
		}
		if !ok {
			e.Rule = fmt.Sprintf("%ss are dealt out to the sites in blocks in the plan's order (%s)", what, of)
			return
		}
		e.Ordinal = &i
		first, last := block(layout, e.Site)
		e.Rule = fmt.Sprintf("%s %d is in %s's block of %ss %d-%d: they are dealt out in blocks in the order of %s %q", what, i, e.Site, what, first, last, vk8sv1.AnnotationPlacement, e.Placement)
	case kind == "ReplicaSet" || kind == KindJob:
		count := "planned count"
		if kind == KindJob {
			count = "completions per site"
		}
		e.Rule = fmt.Sprintf("admission puts a new pod on the site with the largest deficit against its %s (%s)", count, of)
		if e.Slot > 0 {
			e.Rule += fmt.Sprintf("; it holds slot %d of %s's %d", e.Slot, e.Site, layout.Counts[e.Site])
		}
	case pinned(p, e.Site):
		e.Rule = fmt.Sprintf("a pod without a controller goes to the site of its virtual-sites with the fewest pods of its namespace at admission: %s", e.Site)
	default:
		e.Rule = fmt.Sprintf("bound to virtual node %s of %s by spec.nodeName when it was created; admission checked that %s is among its sites", p.Spec.NodeName, e.Site, e.Site)
	}
	if len(e.Sites) > 0 && !slices.Contains(e.Sites, e.Site) {
		e.Rule += fmt.Sprintf("; %s is no longer among its sites (%s), so the rebalancer moves such pods, or the next rollout does", e.Site, strings.Join(e.Sites, ", "))
	}
}

// explainOverride says which Override applies to the pod and why, and whether it is
// still the one admission would apply now.
func (e *Explanation) explainOverride(in ExplainInput) {
	p := in.Pod
	e.Override = p.Labels[vk8sv1.LabelOverride]
	e.OverrideStamp = p.Annotations[vk8sv1.AnnotationOverrideHash]
	names, _ := overrides.ParseOverrides(in.Annotations)
	existing := map[string]*vk8sv1.Override{}
	for i := range in.Overrides {
		existing[in.Overrides[i].Name] = &in.Overrides[i]
	}
	live := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return existing[n] == nil })
	now, _ := overrides.SelectOverride(live, existing, e.Site)
	e.OverrideCurrent = !placement.Stale(p, now)
	list := fmt.Sprintf("%s %q", vk8sv1.AnnotationOverrides, in.Annotations[vk8sv1.AnnotationOverrides])
	switch {
	case len(names) == 0:
		e.OverrideRule = "the workload names no Overrides (" + vk8sv1.AnnotationOverrides + ")"
	case e.Override != "":
		e.OverrideRule = fmt.Sprintf("the first Override of %s whose siteList holds %s", list, e.Site)
	default:
		e.OverrideRule = fmt.Sprintf("no Override of %s lists %s in its siteList", list, e.Site)
	}
	if !e.OverrideCurrent {
		want := "none"
		if now != nil {
			want = now.Name + " (stamp " + placement.Stamp(now) + ")"
		}
		e.OverrideRule += fmt.Sprintf("; out of date: %s's Override is now %s, and the per-site rollout replaces the pod", e.Site, want)
	}
}

// Lines returns the explanation as kubectl describe prints an object: a label and a
// value per line.
func (e *Explanation) Lines() [][2]string {
	site := e.Site
	if e.SiteType != "" {
		site += " (" + string(e.SiteType) + ")"
	}
	if e.Node != "" {
		site += ", node " + e.Node
	}
	lines := [][2]string{{"Pod", e.Pod}, {"Site", site}}
	var owners []string
	for _, o := range e.Owners {
		owners = append(owners, o.Kind+" "+o.Name)
	}
	if len(owners) > 0 {
		lines = append(lines, [2]string{"Controlled by", strings.Join(owners, " > ")})
	}
	if !e.Federated {
		return append(lines, [2]string{"Why this site", e.Rule}, [2]string{"Images", joinOrNone(e.Images)})
	}
	var vs []string
	for _, v := range e.VirtualSites {
		switch {
		case !v.Found:
			vs = append(vs, v.Name+" (not found)")
		default:
			vs = append(vs, fmt.Sprintf("%s (%s)", v.Name, joinOrNone(v.Sites)))
		}
	}
	vsLine := e.VirtualSitesFrom
	if len(vs) > 0 {
		vsLine = strings.Join(vs, ", ") + ", from " + e.VirtualSitesFrom
	}
	override := orNone(e.Override) + ": " + e.OverrideRule
	if e.OverrideStamp != "" {
		override += " (stamp " + e.OverrideStamp + ")"
	}
	flavor := e.Flavor
	if e.FlavorDefault {
		flavor += " (the default)"
	}
	if e.FlavorApplied {
		flavor += fmt.Sprintf(": applied, %s is RegionalEdge (limits of the flavor, requests at 25%% CPU and 50%% memory)", e.Site)
	} else {
		flavor += fmt.Sprintf(": not applied, %s is %s and keeps the manifest's resources", e.Site, cmp.Or(string(e.SiteType), "unknown (its Site is gone)"))
	}
	return append(lines,
		[2]string{"Virtual-sites", vsLine},
		[2]string{"Placement", orNone(e.Placement)},
		[2]string{"Why this site", e.Rule},
		[2]string{"Override", override},
		[2]string{"Flavor", flavor},
		[2]string{"Images", joinOrNone(e.Images)},
	)
}

// block returns the first and last ordinal of site's block in l.
func block(l placement.Layout, site string) (int, int) {
	first := 0
	for _, s := range l.Sites {
		n := int(l.Counts[s])
		if s == site {
			return first, first + n - 1
		}
		first += n
	}
	return first, first - 1
}

// pinned says whether admission pinned the pod to site: its required node affinity holds
// vk8s.io/site In [site] (a pod bound by spec.nodeName at its creation has none).
func pinned(p *corev1.Pod, site string) bool {
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, r := range t.MatchExpressions {
			if r.Key == vk8sv1.LabelSite && r.Operator == corev1.NodeSelectorOpIn && slices.Equal(r.Values, []string{site}) {
				return true
			}
		}
	}
	return false
}

// atoi parses a non-negative decimal int.
func atoi(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

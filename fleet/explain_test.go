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
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/placement"
)

func TestExplain(t *testing.T) {
	vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "vk"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/all-sites"}}
	virtualSites := []vk8sv1.VirtualSite{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "all-sites"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "edge"}, Spec: vk8sv1.VirtualSiteSpec{SiteType: vk8sv1.SiteTypeRegionalEdge}},
	}
	variantA, variantB := override("variant-a", "nginx:1.26", "site1"), override("variant-b", "nginx:1.27", "site3")
	pinnedTo := func(site string) podOpt {
		return func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: vk8sv1.LabelSite, Operator: corev1.NodeSelectorOpIn, Values: []string{site}}}}},
			}}}
		}
	}
	base := func(p corev1.Pod, owners []Owner, annotations map[string]string) ExplainInput {
		return ExplainInput{Pod: &p, Owners: owners, Annotations: annotations, VirtualKubernetes: vk, VirtualSites: virtualSites,
			Sites: labSites(), Nodes: labNodes(), Overrides: []vk8sv1.Override{variantA, variantB}}
	}
	deployment := []Owner{{Kind: KindDeployment, Name: "shop"}, {Kind: "ReplicaSet", Name: "shop-7d4b9c"}}
	ab := map[string]string{vk8sv1.AnnotationPlacement: "site1=2,site2=2,site3=2", vk8sv1.AnnotationOverrides: "variant-a, variant-b"}

	for _, tc := range []struct {
		name string
		in   ExplainInput
		want Explanation
	}{{
		name: "a ReplicaSet's pod with its site's Override, the namespace's virtual-site",
		in:   base(pod("shop-1", "site1", withOverride(&variantA), annotate(vk8sv1.AnnotationSlot, "2"), pinnedTo("site1")), deployment, ab),
		want: Explanation{Pod: "demo/shop-1", Site: "site1", SiteType: vk8sv1.SiteTypeCustomerEdge, Node: "site1-node1", Owners: deployment, Federated: true,
			VirtualSites: []VirtualSite{{Name: "shared/all-sites", Found: true, Sites: []string{"site1", "site2", "site3"}}}, VirtualSitesFrom: "the namespace's default, VirtualKubernetes vk",
			Sites: []string{"site1", "site2", "site3"}, Placement: "site1=2,site2=2,site3=2", Slot: 2,
			Rule:     `admission puts a new pod on the site with the largest deficit against its planned count (site1 in vk8s.io/placement "site1=2,site2=2,site3=2"); it holds slot 2 of site1's 2`,
			Override: "variant-a", OverrideRule: `the first Override of ves.io/overrides "variant-a, variant-b" whose siteList holds site1`,
			OverrideStamp: placement.Stamp(&variantA), OverrideCurrent: true, Flavor: "ves-io-tiny", FlavorDefault: true, Images: []string{"web=nginx:1.27"}},
	}, {
		name: "no Override for its site; a deleted Override makes a pod out of date",
		in: base(pod("shop-2", "site3", withOverride(ptr.To(override("variant-c", "x", "site3"))), annotate(vk8sv1.AnnotationSlot, "1")), deployment,
			map[string]string{vk8sv1.AnnotationPlacement: "site1=2,site3=2", vk8sv1.AnnotationOverrides: "variant-a, variant-c", vk8sv1.AnnotationWorkloadFlavor: "ves-io-large"}),
		want: Explanation{Pod: "demo/shop-2", Site: "site3", SiteType: vk8sv1.SiteTypeCustomerEdge, Node: "site3-node1", Owners: deployment, Federated: true,
			VirtualSites: []VirtualSite{{Name: "shared/all-sites", Found: true, Sites: []string{"site1", "site2", "site3"}}}, VirtualSitesFrom: "the namespace's default, VirtualKubernetes vk",
			Sites: []string{"site1", "site2", "site3"}, Placement: "site1=2,site3=2", Slot: 1,
			Rule:     `admission puts a new pod on the site with the largest deficit against its planned count (site3 in vk8s.io/placement "site1=2,site3=2"); it holds slot 1 of site3's 2`,
			Override: "variant-c", OverrideRule: `the first Override of ves.io/overrides "variant-a, variant-c" whose siteList holds site3; out of date: site3's Override is now none, and the per-site rollout replaces the pod`,
			OverrideStamp: placement.Stamp(ptr.To(override("variant-c", "x", "site3"))), Flavor: "ves-io-large", Images: []string{"web=nginx:1.27"}},
	}, {
		name: "a StatefulSet's ordinal block, on virtual-sites of its own that select the RegionalEdge site; the flavor applies",
		in: base(pod("web-4", "site2", onNode("site2-node3")), []Owner{{Kind: KindStatefulSet, Name: "web"}},
			map[string]string{vk8sv1.AnnotationPlacement: "site1=3,site2=3", vk8sv1.AnnotationVirtualSites: "edge, shared/missing"}),
		want: Explanation{Pod: "demo/web-4", Site: "site2", SiteType: vk8sv1.SiteTypeRegionalEdge, Node: "site2-node3", Owners: []Owner{{Kind: KindStatefulSet, Name: "web"}}, Federated: true,
			VirtualSites:     []VirtualSite{{Name: "demo/edge", Found: true, Sites: []string{"site2"}}, {Name: "shared/missing"}},
			VirtualSitesFrom: "ves.io/virtual-sites", Sites: []string{"site2"}, Placement: "site1=3,site2=3", Ordinal: ptr.To(4),
			Rule:         `ordinal 4 is in site2's block of ordinals 3-5: they are dealt out in blocks in the order of vk8s.io/placement "site1=3,site2=3"`,
			OverrideRule: "the workload names no Overrides (ves.io/overrides)", OverrideStamp: "none", OverrideCurrent: true,
			Flavor: "ves-io-tiny", FlavorDefault: true, FlavorApplied: true, Images: []string{"web=nginx:1.27"}},
	}, {
		name: "a DaemonSet's pod; a site that left its virtual-sites",
		in: base(pod("agent-x", "site1"), []Owner{{Kind: KindDaemonSet, Name: "agent"}},
			map[string]string{vk8sv1.AnnotationPlacement: "site1", vk8sv1.AnnotationVirtualSites: "edge"}),
		want: Explanation{Pod: "demo/agent-x", Site: "site1", SiteType: vk8sv1.SiteTypeCustomerEdge, Node: "site1-node1", Owners: []Owner{{Kind: KindDaemonSet, Name: "agent"}}, Federated: true,
			VirtualSites: []VirtualSite{{Name: "demo/edge", Found: true, Sites: []string{"site2"}}}, VirtualSitesFrom: "ves.io/virtual-sites", Sites: []string{"site2"}, Placement: "site1",
			Rule: "the DaemonSet controller runs a pod on every node it selects, and chose site1-node1, a virtual node of site1; admission applied site1's Override and flavor" +
				"; site1 is no longer among its sites (site2), so the rebalancer moves such pods, or the next rollout does",
			OverrideRule: "the workload names no Overrides (ves.io/overrides)", OverrideStamp: "none", OverrideCurrent: true,
			Flavor: "ves-io-tiny", FlavorDefault: true, Images: []string{"web=nginx:1.27"}},
	}, {
		name: "a bare pod pinned by admission: the fewest pods",
		in:   base(pod("solo", "site3", pinnedTo("site3")), nil, nil),
		want: Explanation{Pod: "demo/solo", Site: "site3", SiteType: vk8sv1.SiteTypeCustomerEdge, Node: "site3-node1", Federated: true,
			VirtualSites: []VirtualSite{{Name: "shared/all-sites", Found: true, Sites: []string{"site1", "site2", "site3"}}}, VirtualSitesFrom: "the namespace's default, VirtualKubernetes vk",
			Sites:        []string{"site1", "site2", "site3"},
			Rule:         "a pod without a controller goes to the site of its virtual-sites with the fewest pods of its namespace at admission: site3",
			OverrideRule: "the workload names no Overrides (ves.io/overrides)", OverrideStamp: "none", OverrideCurrent: true,
			Flavor: "ves-io-tiny", FlavorDefault: true, Images: []string{"web=nginx:1.27"}},
	}, {
		name: "a bare pod bound by spec.nodeName",
		in:   base(pod("bound", "site3", onNode("site3-node2")), nil, nil),
		want: Explanation{Pod: "demo/bound", Site: "site3", SiteType: vk8sv1.SiteTypeCustomerEdge, Node: "site3-node2", Federated: true,
			VirtualSites: []VirtualSite{{Name: "shared/all-sites", Found: true, Sites: []string{"site1", "site2", "site3"}}}, VirtualSitesFrom: "the namespace's default, VirtualKubernetes vk",
			Sites:        []string{"site1", "site2", "site3"},
			Rule:         "bound to virtual node site3-node2 of site3 by spec.nodeName when it was created; admission checked that site3 is among its sites",
			OverrideRule: "the workload names no Overrides (ves.io/overrides)", OverrideStamp: "none", OverrideCurrent: true,
			Flavor: "ves-io-tiny", FlavorDefault: true, Images: []string{"web=nginx:1.27"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Explain(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tc.want, got); diff != "" {
				t.Errorf("Explain (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExplainOutsideVK8s(t *testing.T) {
	// A pod sent to a virtual node by hand in a namespace vk8s does not federate.
	p := pod("hello-site2", "", onNode("site2-node3"))
	delete(p.Annotations, vk8sv1.AnnotationOverrideHash)
	got, err := Explain(ExplainInput{Pod: &p, Sites: labSites(), Nodes: labNodes()})
	if err != nil {
		t.Fatal(err)
	}
	if got.Site != "site2" || got.Federated || !strings.Contains(got.Rule, "not a vK8s namespace") {
		t.Errorf("Explain: %+v; want site2, not federated, and why", got)
	}
	lines := got.Lines()
	if len(lines) != 4 || lines[2][0] != "Why this site" {
		t.Errorf("Lines: %q, want Pod, Site, Why this site, Images", lines)
	}

	// A pod on a host node.
	p = pod("web", "", onNode("host-node1"))
	delete(p.Labels, vk8sv1.LabelSite)
	if _, err := Explain(ExplainInput{Pod: &p, Nodes: labNodes()}); !errors.Is(err, ErrNotOnSite) || !strings.Contains(err.Error(), "host-node1, which is not a virtual node") {
		t.Errorf("Explain of a pod on a host node: %v, want ErrNotOnSite naming its node", err)
	}
}

func TestExplanationLines(t *testing.T) {
	variantA := override("variant-a", "nginx:1.26", "site1")
	e := &Explanation{Pod: "demo/shop-1", Site: "site1", SiteType: vk8sv1.SiteTypeCustomerEdge, Node: "site1-node1",
		Owners: []Owner{{Kind: KindDeployment, Name: "shop"}, {Kind: "ReplicaSet", Name: "shop-7d4b9c"}}, Federated: true,
		VirtualSites:     []VirtualSite{{Name: "shared/all-sites", Found: true, Sites: []string{"site1", "site2", "site3"}}, {Name: "demo/gone"}},
		VirtualSitesFrom: "ves.io/virtual-sites", Placement: "site1=2", Rule: "the rule",
		Override: "variant-a", OverrideRule: "the first", OverrideStamp: placement.Stamp(&variantA), Flavor: "ves-io-tiny", FlavorDefault: true,
		Images: []string{"shop=nginx:1.26"}}
	want := [][2]string{
		{"Pod", "demo/shop-1"},
		{"Site", "site1 (CustomerEdge), node site1-node1"},
		{"Controlled by", "Deployment shop > ReplicaSet shop-7d4b9c"},
		{"Virtual-sites", "shared/all-sites (site1,site2,site3), demo/gone (not found), from ves.io/virtual-sites"},
		{"Placement", "site1=2"},
		{"Why this site", "the rule"},
		{"Override", "variant-a: the first (stamp " + placement.Stamp(&variantA) + ")"},
		{"Flavor", "ves-io-tiny (the default): not applied, site1 is CustomerEdge and keeps the manifest's resources"},
		{"Images", "shop=nginx:1.26"},
	}
	if diff := cmp.Diff(want, e.Lines()); diff != "" {
		t.Errorf("Lines (-want +got):\n%s", diff)
	}
}

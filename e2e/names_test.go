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

package e2e

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/translate"
)

// namesSteady is how long a colliding virtual node is watched for a change of hands: two
// of the provider's site heartbeats (10 s in these tests).
const namesSteady = 20 * time.Second

// TestNodeNameCollisions (issue 13, item 7): a virtual node is named "<site>-<node>"
// (PerNode) or "<site>" (Aggregate), so two Sites can make one name. The Site that has the
// virtual node keeps it (else the older one); the other is Ready=False with reason
// NodeNameCollision, naming the other Site and the node, and does not register it: the
// host Node keeps its Site's labels and its UID, whatever the provider's heartbeats. When
// the keeper goes, the other Site takes the name. A name that is one of the host's own Nodes
// is never a virtual node's.
func TestNodeNameCollisions(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	e := &siteRegEnv{host: c}
	kubeconfigOf := func(site string) vk8sv1.SecretKeyReference { return e.getSite(t, site).Spec.KubeconfigSecretRef }
	newSite := func(name, from string, mode vk8sv1.NodeMode, node string) *vk8sv1.Site {
		s := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: vk8sv1.SiteSpec{
			KubeconfigSecretRef: kubeconfigOf(from), NodeMode: mode,
			NodeSelector: map[string]string{corev1.LabelHostname: node},
		}}
		e.create(t, s)
		return s
	}
	collides := func(name, message string) {
		t.Helper()
		s := e.waitSite(t, name, siteRegTimeout, "Ready=False "+sitereg.ReasonNodeNameCollision, func(s *vk8sv1.Site) bool {
			r := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionReady)
			return r != nil && r.Status == metav1.ConditionFalse && r.Reason == sitereg.ReasonNodeNameCollision
		})
		if r := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionReady); !strings.Contains(r.Message, message) || !strings.Contains(r.Message, "rename the node") {
			t.Errorf("Site %s: Ready message %q, want it to say %q and the fix", name, r.Message, message)
		}
		if len(s.Status.VirtualNodes) != 0 {
			t.Errorf("Site %s: virtualNodes %v, want none (its only node's name is the other Site's)", name, s.Status.VirtualNodes)
		}
		e.waitWarningEvent(t, name, sitereg.ReasonNodeNameCollision)
	}

	t.Run("an Aggregate Site named like another Site's virtual node", func(t *testing.T) {
		newSite("nm", "site3", vk8sv1.NodeModePerNode, lab.NodeName(1))
		held := namesWaitNode(t, c, "nm-node1", "nm", lab.NodeName(1))
		// Site nm-node1 (Aggregate) makes virtual node nm-node1 too, and is the younger.
		newSite("nm-node1", "site2", vk8sv1.NodeModeAggregate, lab.NodeName(2))
		collides("nm-node1", "nm-node1 (its Aggregate node) is Site nm's (its node node1)")
		namesSteadyNode(t, c, "nm-node1", "nm", lab.NodeName(1), held)

		// nm goes: its virtual node goes with it, and nm-node1 takes the name.
		if err := c.Delete(t.Context(), &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "nm"}}); err != nil {
			t.Fatal(err)
		}
		e.waitSite(t, "nm-node1", siteRegTimeout, "Ready with its Aggregate node", func(s *vk8sv1.Site) bool {
			return meta.IsStatusConditionTrue(s.Status.Conditions, vk8sv1.ConditionReady) && len(s.Status.VirtualNodes) == 1
		})
		namesWaitNode(t, c, "nm-node1", "nm-node1", "")
	})

	t.Run("a node that joins an older Site does not take a younger Site's virtual node", func(t *testing.T) {
		// Site nx selects site2's node x-node1, which does not exist yet; Site nx-x, created
		// after it, has site3's node1 as nx-x-node1.
		newSite("nx", "site2", vk8sv1.NodeModePerNode, "x-node1")
		newSite("nx-x", "site3", vk8sv1.NodeModePerNode, lab.NodeName(1))
		held := namesWaitNode(t, c, "nx-x-node1", "nx-x", lab.NodeName(1))
		// x-node1 joins site2: Site nx's virtual node would be nx-x-node1 too.
		site2 := siteClient(t, "site2")
		joined := lab.SiteNode(2, 1)
		joined.Name = "x-node1"
		joined.Labels[corev1.LabelHostname] = joined.Name
		joined.Annotations[vk8sv1.AnnotationResourceMetricsPath] = "/metrics/nodes/" + joined.Name + "/metrics/resource"
		mustCreate(t, site2, joined)
		t.Cleanup(func() {
			if err := site2.Delete(context.Background(), joined); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete site2's node %s: %v", joined.Name, err)
			}
		})
		collides("nx", "nx-x-node1 (its node x-node1) is Site nx-x's (its node node1)")
		namesSteadyNode(t, c, "nx-x-node1", "nx-x", lab.NodeName(1), held)

		if err := c.Delete(t.Context(), &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "nx-x"}}); err != nil {
			t.Fatal(err)
		}
		e.waitSite(t, "nx", siteRegTimeout, "Ready with nx-x-node1", func(s *vk8sv1.Site) bool {
			return meta.IsStatusConditionTrue(s.Status.Conditions, vk8sv1.ConditionReady) &&
				len(s.Status.VirtualNodes) == 1 && s.Status.VirtualNodes[0] == "nx-x-node1"
		})
		namesWaitNode(t, c, "nx-x-node1", "nx", "x-node1")
	})

	t.Run("a Site named like the host's own Nodes leaves them alone", func(t *testing.T) {
		// Site host's node node1 is virtual node host-node1: the name of one of the host's
		// own (kwok) Nodes, which no provider registered and none may update.
		own := &corev1.Node{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: lab.HostNodeName(1)}, own); err != nil {
			t.Fatal(err)
		}
		newSite("host", "site3", vk8sv1.NodeModePerNode, lab.NodeName(1))
		collides("host", lab.HostNodeName(1)+" (its node node1) is a Node of the host itself")
		namesSteadyNode(t, c, lab.HostNodeName(1), "", "", own.UID)
		after := &corev1.Node{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: lab.HostNodeName(1)}, after); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(after.Labels, own.Labels) || !apiequality.Semantic.DeepEqual(after.Spec, own.Spec) {
			t.Errorf("the host's own Node %s changed: labels %v, spec %+v; was %v, %+v", own.Name, after.Labels, after.Spec, own.Labels, own.Spec)
		}
	})
}

// namesWaitNode waits until the host has virtual node name, Ready, for site's node node
// (empty: the site's Aggregate node), and returns its UID.
func namesWaitNode(t *testing.T, c client.Client, name, site, node string) types.UID {
	t.Helper()
	var last *corev1.Node
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, siteRegTimeout, true, func(ctx context.Context) (bool, error) {
		n := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		last = n
		return namesNodeOf(n, site, node) == "" && translate.NodeReady(n), nil
	})
	if err != nil {
		t.Fatalf("virtual node %s of Site %s: %v; last: %s", name, site, err, namesNodeOf(last, site, node))
	}
	return last.UID
}

// namesSteadyNode checks for namesSteady that virtual node name stays site's node node,
// the same Node (uid) all along.
func namesSteadyNode(t *testing.T, c client.Client, name, site, node string, uid types.UID) {
	t.Helper()
	deadline := time.Now().Add(namesSteady)
	for time.Now().Before(deadline) {
		n := &corev1.Node{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, n); err != nil {
			t.Fatalf("virtual node %s of Site %s: %v", name, site, err)
		}
		if wrong := namesNodeOf(n, site, node); wrong != "" || n.UID != uid {
			t.Fatalf("virtual node %s changed hands: %s, UID %s (was %s)", name, wrong, n.UID, uid)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// namesNodeOf says how n differs from the virtual node of site's node node ("" for the
// site's Aggregate node); empty when it does not.
func namesNodeOf(n *corev1.Node, site, node string) string {
	if n == nil {
		return "no such node"
	}
	if n.Labels[vk8sv1.LabelSite] != site || n.Labels[vk8sv1.LabelSiteNode] != node {
		return fmt.Sprintf("labelled %s=%q, %s=%q", vk8sv1.LabelSite, n.Labels[vk8sv1.LabelSite], vk8sv1.LabelSiteNode, n.Labels[vk8sv1.LabelSiteNode])
	}
	return ""
}

// TestPodBoundOutsideItsSites (issue 13, item 1): in a vK8s namespace, a pod bound by
// spec.nodeName to a virtual node of a site its virtual-sites do not select is refused by
// the API server, with the webhook's message; bound to a node of its sites, it runs there.
// (A plain namespace's pod bound to any virtual node runs: TestWhatReachesASite.)
func TestPodBoundOutsideItsSites(t *testing.T) {
	const ns = "names-bound"
	c, _ := federatedNamespace(t, ns)
	mustCreate(t, c, &vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "first"},
		Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchLabels: map[string]string{lab.LabelSiteIndex: "1"}}}})
	pod := func(name, node string) *corev1.Pod {
		p := testPod(name, node)
		p.Namespace, p.Annotations = ns, map[string]string{vk8sv1.AnnotationVirtualSites: "first"}
		return p
	}
	err := c.Create(t.Context(), pod("outside", "site2-node1"))
	want := `spec.nodeName: invalid value "site2-node1": node site2-node1 is on site site2, which is not among the pod's sites (site1, from its virtual-sites "first"); ` +
		"bind the pod to a node of its sites (kubectl get nodes -l vk8s.io/site), leave spec.nodeName empty so that vk8s places it, or name virtual-sites that select site2 in ves.io/virtual-sites"
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("a pod bound to site2-node1 with virtual-sites first (site1): %v; want it refused with %q", err, want)
	}
	inside := pod("inside", "site1-node2")
	mustCreate(t, c, inside)
	waitPod(t, c, client.ObjectKeyFromObject(inside), "Running on site1-node2", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && p.Labels[vk8sv1.LabelSite] == "site1"
	})
}

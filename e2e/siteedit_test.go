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
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/translate"
	"github.com/vk8s-io/vk8s/vnode"
)

const (
	// siteEditGrace is the virtual node grace period of the provider TestSiteEdit runs:
	// long enough to look at a node in it and undo an edit, short enough to wait out.
	siteEditGrace = 45 * time.Second
	// siteEditSteady is how long a node in its grace period is watched for a change: a
	// provider site heartbeat (10 s) and more.
	siteEditSteady = 15 * time.Second
	siteEditNS     = "siteedit-e2e"
	// siteEditSite is the Site the test edits: site2's node2, as virtual node se-node2.
	siteEditSite = "se"
)

var siteEditSiteNS = translate.SiteNamespace(provider.DefaultTenant, siteEditNS)

// siteEditProvider runs the shared provider again with virtual node grace period grace,
// and stops it when the test ends (the next test starts it with the default).
func siteEditProvider(t *testing.T, grace time.Duration) {
	t.Helper()
	stopProvider()
	providerMu.Lock()
	providerNodeGrace = grace
	providerMu.Unlock()
	startProvider(t)
	t.Cleanup(func() {
		stopProvider()
		providerMu.Lock()
		providerNodeGrace = defaultProviderNodeGrace
		providerMu.Unlock()
	})
}

// TestSiteEdit (issue 13, item 5): a Site edit or deletion deletes nothing at once. The
// virtual node that leaves the Site's set stays NotReady and unschedulable for the grace
// period, with a Warning Event, and comes back with its pods untouched when the edit is
// undone within it; after it, the node goes as before.
func TestSiteEdit(t *testing.T) {
	skipShort(t)
	c := hostClient(t)
	t.Cleanup(func() { siteEditDeleteNodes(t, c) }) // after the provider stopped
	siteEditProvider(t, siteEditGrace)
	waitAllVirtualNodes(t, c)
	e := &siteRegEnv{host: c}
	hostNamespace(t, c, siteEditNS)
	t.Cleanup(func() { siteEditDeleteEvents(t, c) })

	node := translate.VirtualNodeName(siteEditSite, lab.NodeName(2))
	spec := vk8sv1.SiteSpec{
		KubeconfigSecretRef: e.getSite(t, "site2").Spec.KubeconfigSecretRef,
		NodeSelector:        map[string]string{corev1.LabelHostname: lab.NodeName(2)},
	}
	e.create(t, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: siteEditSite}, Spec: spec})
	waitVirtualNodes(t, c, node+" Ready", func(nodes map[string]*corev1.Node) bool {
		return nodes[node] != nil && translate.NodeReady(nodes[node])
	})

	// Two pods bound to the node by hand, with the not-ready and unreachable tolerations
	// the host's API server gives every pod by default (300 s; the lab's host gives 30 s,
	// less than the grace period: such pods are evicted when their toleration ends).
	pods := map[string]siteEditPod{}
	for _, name := range []string{"web", "worker"} {
		p := testPod(name, node)
		p.Namespace = siteEditNS
		for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{
				Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300),
			})
		}
		mustCreate(t, c, p)
	}
	for _, name := range []string{"web", "worker"} {
		hp := waitPod(t, c, client.ObjectKey{Namespace: siteEditNS, Name: name}, "host pod "+name+" Running and Ready", siteEditPodReady)
		sp := waitPod(t, siteClient(t, "site2"), client.ObjectKey{Namespace: siteEditSiteNS, Name: name}, "site pod "+name+" Running",
			func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		pods[name] = siteEditPod{host: hp.UID, site: sp.UID}
	}

	outer := t // the Site lives as long as the test
	setSite := func(t *testing.T, mutate func(*vk8sv1.Site)) {
		t.Helper()
		s := e.getSite(t, siteEditSite)
		patch := client.MergeFrom(s.DeepCopy())
		mutate(s)
		if err := c.Patch(t.Context(), s, patch); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a nodeSelector typo keeps the node NotReady, and undoing it brings the node back with its pods", func(t *testing.T) {
		setSite(t, func(s *vk8sv1.Site) { s.Spec.NodeSelector = map[string]string{corev1.LabelHostname: "nod2"} })
		siteEditWaitLeft(t, c, node, "Site se's spec.nodeSelector {kubernetes.io/hostname=nod2} no longer selects its node node2", "fix spec.nodeSelector")
		e.waitWarningEvent(t, siteEditSite, vnode.ReasonNodeLeftSite)
		siteEditSteadyLeft(t, c, node, pods)

		setSite(t, func(s *vk8sv1.Site) { s.Spec.NodeSelector = spec.NodeSelector })
		siteEditWaitBack(t, c, node, pods)
		siteEditWaitEvent(t, c, "Site", siteEditSite, corev1.EventTypeNormal, vnode.ReasonNodeBackInSite)
	})

	t.Run("a deleted Site's node stays for the grace period, and creating the Site again brings it back", func(t *testing.T) {
		if err := c.Delete(t.Context(), &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: siteEditSite}}); err != nil {
			t.Fatal(err)
		}
		siteEditWaitLeft(t, c, node, "Site se was deleted", "create Site se again as it was")
		siteEditWaitEvent(t, c, "Node", node, corev1.EventTypeWarning, vnode.ReasonNodeLeftSite)
		siteEditSteadyLeft(t, c, node, pods)

		e.create(outer, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: siteEditSite}, Spec: spec})
		siteEditWaitBack(t, c, node, pods)
	})

	t.Run("after the grace period the node goes", func(t *testing.T) {
		setSite(t, func(s *vk8sv1.Site) { s.Spec.NodeMode = vk8sv1.NodeModeAggregate })
		waitVirtualNodes(t, c, "Aggregate node "+siteEditSite+" Ready", func(nodes map[string]*corev1.Node) bool {
			return nodes[siteEditSite] != nil && translate.NodeReady(nodes[siteEditSite])
		})
		left := siteEditWaitLeft(t, c, node, "Site se's spec.nodeMode changed to Aggregate", "set spec.nodeMode back to PerNode")
		since, _ := translate.LeftSiteSince(left)
		err := wait.PollUntilContextTimeout(t.Context(), time.Second, siteEditGrace+30*time.Second, true, func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKey{Name: node}, &corev1.Node{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		if err != nil {
			t.Fatalf("%s not deleted after its grace period: %v", node, err)
		}
		if gone := time.Since(since); gone < siteEditGrace-2*time.Second {
			t.Errorf("%s deleted %s after it left, before its grace period of %s", node, gone.Round(time.Second), siteEditGrace)
		}
		siteEditWaitEvent(t, c, "Site", siteEditSite, corev1.EventTypeNormal, vnode.ReasonNodeDeleted)
	})
}

// siteEditPod is a pod's UID on the host and on its site.
type siteEditPod struct{ host, site types.UID }

func siteEditPodReady(p *corev1.Pod) bool {
	r := podCondition(p, corev1.PodReady)
	return p.Status.Phase == corev1.PodRunning && r != nil && r.Status == corev1.ConditionTrue
}

// siteEditWaitLeft waits until virtual node name is in its grace period: NotReady with
// reason NodeLeftSite and a message that says what and fix, and tainted unschedulable.
func siteEditWaitLeft(t *testing.T, c client.Client, name, what, fix string) *corev1.Node {
	t.Helper()
	var left *corev1.Node
	waitVirtualNodes(t, c, name+" NotReady, "+translate.ReasonNodeLeftSite, func(nodes map[string]*corev1.Node) bool {
		n := nodes[name]
		if n == nil {
			return false
		}
		r := nodeCondition(n, corev1.NodeReady)
		if r == nil || r.Status != corev1.ConditionFalse || r.Reason != translate.ReasonNodeLeftSite || !hasTaint(n, vk8sv1.TaintLeftSite) {
			return false
		}
		left = n
		return true
	})
	r := nodeCondition(left, corev1.NodeReady)
	for _, want := range []string{what, fix, "grace period " + siteEditGrace.String()} {
		if !strings.Contains(r.Message, want) {
			t.Errorf("%s: Ready message %q does not say %q", name, r.Message, want)
		}
	}
	return left
}

// siteEditSteadyLeft watches virtual node name in its grace period for siteEditSteady:
// it stays, and so do its pods on the host and on the site.
func siteEditSteadyLeft(t *testing.T, c client.Client, name string, pods map[string]siteEditPod) {
	t.Helper()
	deadline := time.Now().Add(siteEditSteady)
	for time.Now().Before(deadline) {
		n := &corev1.Node{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, n); err != nil {
			t.Fatalf("%s in its grace period: %v", name, err)
		}
		if r := nodeCondition(n, corev1.NodeReady); r == nil || r.Reason != translate.ReasonNodeLeftSite {
			t.Fatalf("%s in its grace period: Ready %+v", name, r)
		}
		siteEditPodsUntouched(t, c, pods)
		select {
		case <-t.Context().Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// siteEditWaitBack waits until virtual node name is Ready and schedulable again, with its
// pods as they were, Running and Ready on the host.
func siteEditWaitBack(t *testing.T, c client.Client, name string, pods map[string]siteEditPod) {
	t.Helper()
	waitVirtualNodes(t, c, name+" Ready again, without the "+vk8sv1.TaintLeftSite+" taint", func(nodes map[string]*corev1.Node) bool {
		n := nodes[name]
		return n != nil && translate.NodeReady(n) && !hasTaint(n, vk8sv1.TaintLeftSite)
	})
	siteEditPodsUntouched(t, c, pods)
	for pod := range pods {
		waitPod(t, c, client.ObjectKey{Namespace: siteEditNS, Name: pod}, "host pod "+pod+" Running and Ready again", siteEditPodReady)
	}
}

// siteEditPodsUntouched fails the test unless every pod is on the host and on site2 with
// the UIDs it had, and not being deleted.
func siteEditPodsUntouched(t *testing.T, c client.Client, pods map[string]siteEditPod) {
	t.Helper()
	siteEditPodsUntouchedIn(t, c, "site2", siteEditNS, siteEditSiteNS, pods)
}

// siteEditPodsUntouchedIn fails the test unless every pod is in host namespace ns and in
// site namespace siteNS of site with the UIDs it had, and not being deleted.
func siteEditPodsUntouchedIn(t *testing.T, c client.Client, site, ns, siteNS string, pods map[string]siteEditPod) {
	t.Helper()
	sc := siteClient(t, site)
	for name, want := range pods {
		for _, where := range []struct {
			c   client.Client
			key client.ObjectKey
			uid types.UID
		}{
			{c, client.ObjectKey{Namespace: ns, Name: name}, want.host},
			{sc, client.ObjectKey{Namespace: siteNS, Name: name}, want.site},
		} {
			p := &corev1.Pod{}
			if err := where.c.Get(t.Context(), where.key, p); err != nil {
				t.Fatalf("pod %s: %v", where.key, err)
			}
			if p.UID != where.uid || p.DeletionTimestamp != nil {
				t.Fatalf("pod %s: UID %s (was %s), deletionTimestamp %v: want it untouched", where.key, p.UID, where.uid, p.DeletionTimestamp)
			}
		}
	}
}

// siteEditWaitEvent waits for an Event of type and reason regarding the object of kind
// and name.
func siteEditWaitEvent(t *testing.T, c client.Client, kind, name, typ, reason string) {
	t.Helper()
	var seen []string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, siteRegTimeout, true, func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := c.List(ctx, &list); err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, ev := range list.Items {
			if ev.Regarding.Kind != kind || ev.Regarding.Name != name {
				continue
			}
			seen = append(seen, ev.Type+" "+ev.Reason)
			if ev.Type == typ && ev.Reason == reason && ev.Note != "" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no %s Event %s on %s %s; events: %v", typ, reason, kind, name, seen)
	}
}

// siteEditDeleteEvents deletes the Events about the test's Site and virtual nodes.
func siteEditDeleteEvents(t *testing.T, c client.Client) {
	var list eventsv1.EventList
	if err := c.List(context.Background(), &list); err != nil {
		t.Errorf("list events: %v", err)
		return
	}
	for i := range list.Items {
		ev := &list.Items[i]
		if ev.Regarding.Name != siteEditSite && !strings.HasPrefix(ev.Regarding.Name, siteEditSite+"-") {
			continue
		}
		if err := c.Delete(context.Background(), ev); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete event %s/%s: %v", ev.Namespace, ev.Name, err)
		}
	}
}

// siteEditDeleteNodes deletes the test Site's virtual nodes from the host, once no
// provider keeps them in a grace period: later tests count the lab's virtual nodes.
func siteEditDeleteNodes(t *testing.T, c client.Client) {
	err := c.DeleteAllOf(context.Background(), &corev1.Node{}, client.MatchingLabels{vk8sv1.LabelSite: siteEditSite})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete the virtual nodes of Site %s: %v", siteEditSite, err)
	}
}

// TestSiteClusterChange (issue 13, item 5): a Site's kubeconfig Secret changed to reach
// another cluster is refused (Connected=False, ClusterChanged, naming both clusters' IDs)
// and nothing happens on either cluster: the virtual node stays the old cluster's, the pod
// stays on it, and no pod appears on the other cluster. Pointing the Secret back connects
// the Site again.
func TestSiteClusterChange(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	e := &siteRegEnv{host: c}
	const (
		site = "sc"
		ns   = "siteedit-cc-e2e"
	)
	siteNS := translate.SiteNamespace(provider.DefaultTenant, ns)
	hostNamespace(t, c, ns)
	t.Cleanup(func() { siteEditDeleteEvents(t, c) })

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: site + "-kubeconfig", Namespace: lab.SystemNamespace},
		Data:       map[string][]byte{"kubeconfig": e.siteKubeconfig(t, "site3", nil)},
	}
	e.create(t, secret)
	e.create(t, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}, Spec: vk8sv1.SiteSpec{
		KubeconfigSecretRef: vk8sv1.SecretKeyReference{Namespace: secret.Namespace, Name: secret.Name, Key: "kubeconfig"},
		NodeSelector:        map[string]string{corev1.LabelHostname: lab.NodeName(1)},
	}})
	node := translate.VirtualNodeName(site, lab.NodeName(1))
	clusterID := func(cluster string) string {
		t.Helper()
		ks, err := clientset(t, cluster).CoreV1().Namespaces().Get(t.Context(), metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(ks.UID)
	}
	site3, site1 := clusterID("site3"), clusterID("site1")
	e.waitSite(t, site, siteRegTimeout, "Connected with site3's cluster ID", func(s *vk8sv1.Site) bool {
		return e.isTrue(s, vk8sv1.ConditionConnected) && s.Status.ClusterID == site3
	})
	waitVirtualNodes(t, c, node+" Ready", func(nodes map[string]*corev1.Node) bool {
		return nodes[node] != nil && translate.NodeReady(nodes[node])
	})
	p := testPod("pinned", node)
	p.Namespace = ns
	mustCreate(t, c, p)
	hp := waitPod(t, c, client.ObjectKeyFromObject(p), "host pod Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	sp := waitPod(t, siteClient(t, "site3"), client.ObjectKey{Namespace: siteNS, Name: p.Name}, "site3 pod Running",
		func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	setKubeconfig := func(from string) {
		t.Helper()
		cur := &corev1.Secret{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(secret), cur); err != nil {
			t.Fatal(err)
		}
		cur.Data["kubeconfig"] = e.siteKubeconfig(t, from, nil)
		if err := c.Update(t.Context(), cur); err != nil {
			t.Fatal(err)
		}
	}
	setKubeconfig("site1")
	s := e.waitSite(t, site, siteRegTimeout, "Connected=False "+sitereg.ReasonClusterChanged, func(s *vk8sv1.Site) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == sitereg.ReasonClusterChanged
	})
	msg := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected).Message
	for _, want := range []string{site1, site3, secret.Namespace + "/" + secret.Name, "Point the Secret back", "delete the Site and create it again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Connected message %q does not say %q", msg, want)
		}
	}
	if s.Status.ClusterID != site3 {
		t.Errorf("clusterID %q after the refusal, want site3's %q", s.Status.ClusterID, site3)
	}
	e.waitWarningEvent(t, site, sitereg.ReasonClusterChanged)

	// Two of the provider's site heartbeats: the node stays site3's node1, the pod stays
	// on site3, and site1 gets nothing.
	deadline := time.Now().Add(siteEditSteady + 5*time.Second)
	for time.Now().Before(deadline) {
		n := &corev1.Node{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: node}, n); err != nil {
			t.Fatalf("virtual node %s: %v", node, err)
		}
		if r := n.Labels[corev1.LabelTopologyRegion]; r != lab.Region(3) {
			t.Fatalf("virtual node %s has region %q, want site3's %q: it stands for another cluster's node", node, r, lab.Region(3))
		}
		siteEditPodsUntouchedIn(t, c, "site3", ns, siteNS, map[string]siteEditPod{p.Name: {host: hp.UID, site: sp.UID}})
		err := siteClient(t, "site1").Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: p.Name}, &corev1.Pod{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("pod %s/%s on site1, the refused cluster: %v", siteNS, p.Name, err)
		}
		select {
		case <-t.Context().Done():
			return
		case <-time.After(time.Second):
		}
	}
	waitVirtualNodes(t, c, node+" SiteConnected=False "+sitereg.ReasonClusterChanged, func(nodes map[string]*corev1.Node) bool {
		sc := nodes[node]
		if sc == nil {
			return false
		}
		cond := nodeCondition(sc, vk8sv1.ConditionSiteConnected)
		return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == sitereg.ReasonClusterChanged
	})

	setKubeconfig("site3")
	e.waitSite(t, site, siteRegTimeout, "Connected again", func(s *vk8sv1.Site) bool {
		return e.isTrue(s, vk8sv1.ConditionConnected) && e.isTrue(s, vk8sv1.ConditionReady)
	})
	waitVirtualNodes(t, c, node+" SiteConnected again", func(nodes map[string]*corev1.Node) bool {
		sc := nodes[node]
		cond := nodeCondition(sc, vk8sv1.ConditionSiteConnected)
		return sc != nil && cond != nil && cond.Status == corev1.ConditionTrue
	})
	siteEditPodsUntouchedIn(t, c, "site3", ns, siteNS, map[string]siteEditPod{p.Name: {host: hp.UID, site: sp.UID}})
}

// TestSiteKubeconfigRotation (issue 13, item 5): when a Site's kubeconfig Secret changes
// to other credentials for the same cluster, the Site moves to a connection with them, and
// the connection of the old ones, which no Site uses any more, is closed: every TCP
// connection it made to the site's API server, watches of the provider's caches included.
// Seen from the kernel: the sockets of this process (which runs the provider) to the site's
// API server that appeared when the Site connected with the old credentials are gone. The
// old credentials are then revoked, and the Site, its virtual node and its pod go on.
func TestSiteKubeconfigRotation(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	e := &siteRegEnv{host: c}
	const (
		site = "sr"
		ns   = "siteedit-rot-e2e"
	)
	siteNS := translate.SiteNamespace(provider.DefaultTenant, ns)
	hostNamespace(t, c, ns)
	site1 := siteClient(t, "site1")
	cfg, err := fleet.RESTConfig("site1")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("site1's API server %s: %v", cfg.Host, err)
	}
	// Two sets of credentials of site1 of the Site's own, ServiceAccount tokens.
	kubeconfigA := siteEditTokenKubeconfig(t, e, site1, "site1", "vk8s-e2e-rotate-a")
	kubeconfigB := siteEditTokenKubeconfig(t, e, site1, "site1", "vk8s-e2e-rotate-b")

	// From here until the rotation, nothing in the test talks to site1: the sockets that
	// appear are the provider's, for the Site's connection.
	before := siteEditSockets(t, port)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: site + "-kubeconfig", Namespace: lab.SystemNamespace},
		Data:       map[string][]byte{"kubeconfig": kubeconfigA},
	}
	e.create(t, secret)
	e.create(t, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}, Spec: vk8sv1.SiteSpec{
		KubeconfigSecretRef: vk8sv1.SecretKeyReference{Namespace: secret.Namespace, Name: secret.Name, Key: "kubeconfig"},
		NodeSelector:        map[string]string{corev1.LabelHostname: lab.NodeName(3)},
	}})
	node := translate.VirtualNodeName(site, lab.NodeName(3))
	waitVirtualNodes(t, c, node+" Ready", func(nodes map[string]*corev1.Node) bool {
		return nodes[node] != nil && translate.NodeReady(nodes[node])
	})
	p := testPod("rotated", node)
	p.Namespace = ns
	mustCreate(t, c, p)
	hp := waitPod(t, c, client.ObjectKeyFromObject(p), "host pod Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	var old []string
	for s := range siteEditSockets(t, port) {
		if !before[s] {
			old = append(old, s)
		}
	}
	if len(old) == 0 {
		t.Fatalf("no socket to site1's API server (port %d) appeared when Site %s connected", port, site)
	}
	t.Logf("sockets of the Site's first credentials: %v", old)

	cur := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(secret), cur); err != nil {
		t.Fatal(err)
	}
	cur.Data["kubeconfig"] = kubeconfigB
	if err := c.Update(t.Context(), cur); err != nil {
		t.Fatal(err)
	}
	var left []string
	err = wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, siteRegTimeout, true, func(context.Context) (bool, error) {
		now := siteEditSockets(t, port)
		left = slices.DeleteFunc(slices.Clone(old), func(s string) bool { return !now[s] })
		return len(left) == 0, nil
	})
	if err != nil {
		t.Fatalf("sockets %v of the replaced credentials still open to site1's API server %s after the Secret changed", left, siteRegTimeout)
	}

	// The old credentials revoked: the Site goes on with the new ones.
	if err := site1.Delete(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "vk8s-e2e-rotate-a"}}); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(hp.DeepCopy())
	hp.Labels["rotated"] = "yes"
	if err := c.Patch(t.Context(), hp, patch); err != nil {
		t.Fatal(err)
	}
	waitPod(t, site1, client.ObjectKey{Namespace: siteNS, Name: p.Name}, "site pod relabelled through the new credentials",
		func(sp *corev1.Pod) bool {
			return sp.Labels["rotated"] == "yes" && sp.Labels[vk8sv1.LabelHostPodUID] == string(hp.UID)
		})
	s := e.getSite(t, site)
	if !e.isTrue(s, vk8sv1.ConditionConnected) || !e.isTrue(s, vk8sv1.ConditionReady) {
		t.Errorf("Site %s after the rotation: %s", site, e.describeSite(s))
	}
	waitVirtualNodes(t, c, node+" still Ready and connected", func(nodes map[string]*corev1.Node) bool {
		n := nodes[node]
		cond := nodeCondition(n, vk8sv1.ConditionSiteConnected)
		return n != nil && translate.NodeReady(n) && cond != nil && cond.Status == corev1.ConditionTrue
	})
}

// siteEditTokenKubeconfig returns site's kubeconfig with the token of a new cluster-admin
// ServiceAccount name in kube-system, made through c (site's client); both go when the
// test ends.
func siteEditTokenKubeconfig(t *testing.T, e *siteRegEnv, c client.Client, site, name string) []byte {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: name}}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: name}},
	}
	for _, obj := range []client.Object{sa, crb} {
		mustCreate(t, c, obj)
		t.Cleanup(func() {
			if err := c.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete %T %s: %v", obj, obj.GetName(), err)
			}
		})
	}
	tr, err := clientset(t, site).CoreV1().ServiceAccounts(sa.Namespace).CreateToken(t.Context(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return e.siteKubeconfig(t, site, func(_ *testing.T, cfg *clientcmdapi.Config) {
		u := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
		u.ClientCertificateData, u.ClientKeyData, u.Token = nil, nil, tr.Status.Token
	})
}

// siteEditSockets returns the TCP connections this process has established to port on
// the loopback, as "localport" strings, from the kernel's tables: which file descriptors
// of this process are sockets, and which of those sockets are connections to port.
func siteEditSockets(t *testing.T, port int) map[string]bool {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	out := map[string]bool{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		raw, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "01" || !inodes[f[9]] {
				continue
			}
			remote := f[2][strings.LastIndex(f[2], ":")+1:]
			if rp, err := strconv.ParseInt(remote, 16, 32); err == nil && int(rp) == port {
				out[f[1]] = true
			}
		}
	}
	return out
}

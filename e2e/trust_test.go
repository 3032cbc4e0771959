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
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/translate"
)

const plainNS = "plain"

// TestWhatReachesASite: a DaemonSet of a namespace vk8s does not manage, shaped as
// kube-proxy or a CNI agent are (it tolerates every taint, host network, a privileged
// container), gets a pod on each of the 9 virtual nodes from the host's DaemonSet
// controller, and none of them reaches a site: no site gets the namespace or a pod, and
// each host pod says why. A pod bound to a virtual node by hand (spec.nodeName) in the
// same namespace runs on its site.
func TestWhatReachesASite(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	hostNamespace(t, c, plainNS)
	siteNS := translate.SiteNamespace(provider.DefaultTenant, plainNS)

	labels := map[string]string{"app": "node-agent"}
	mustCreate(t, c, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: plainNS, Name: "node-agent"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				HostNetwork: true, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{Name: "agent", Image: "registry.k8s.io/kube-proxy:v1.35.4",
					SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}},
			}}}})
	var all, pods corev1.PodList
	waitFor(t, "9 pods of DaemonSet node-agent on the virtual nodes, each saying why it is not on its site", func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &all, client.InNamespace(plainNS), client.MatchingLabels(labels)); err != nil {
			return false, err
		}
		// The host's own nodes run theirs, as any node does.
		pods.Items = slices.DeleteFunc(slices.Clone(all.Items), func(p corev1.Pod) bool { return !strings.HasPrefix(p.Spec.NodeName, "site") })
		n := 0
		for i := range pods.Items {
			if cond := podCondition(&pods.Items[i], vk8sv1.ConditionSiteSynced); cond != nil && cond.Status == corev1.ConditionFalse &&
				cond.Reason == translate.ReasonNotForSites && strings.Contains(cond.Message, "DaemonSet node-agent") {
				n++
			}
		}
		return n == 9, nil
	})
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodPending {
			t.Errorf("host pod %s on %s is %s, want Pending", p.Name, p.Spec.NodeName, p.Status.Phase)
		}
	}
	waitFor(t, "a Warning Event NotForSites on a pod of node-agent", func(ctx context.Context) (bool, error) {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace(plainNS)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
			return e.Type == corev1.EventTypeWarning && e.Reason == translate.ReasonNotForSites && strings.HasPrefix(e.InvolvedObject.Name, "node-agent-")
		}), nil
	})

	// A pod bound by hand runs, in the same namespace.
	byHand := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: plainNS, Name: "by-hand"},
		Spec: corev1.PodSpec{NodeName: "site2-node1", TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
	mustCreate(t, c, byHand)
	waitPod(t, c, client.ObjectKeyFromObject(byHand), "pod by-hand Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	// What each site's own API server holds: only by-hand, on site2.
	for _, site := range []string{"site1", "site2", "site3"} {
		var list corev1.PodList
		if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace(siteNS)); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		want := []string(nil)
		if site == "site2" {
			want = []string{"by-hand"}
		}
		if !slices.Equal(names, want) {
			t.Errorf("pods in %s on %s: %v, want %v", siteNS, site, names, want)
		}
		if site == "site2" {
			continue
		}
		err := siteClient(t, site).Get(t.Context(), client.ObjectKey{Name: siteNS}, &corev1.Namespace{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s on %s: %v, want none", siteNS, site, err)
		}
	}
	// Still none a while later: the pods are not retried onto the sites.
	time.Sleep(3 * time.Second)
	for _, site := range []string{"site1", "site3"} {
		var list corev1.PodList
		if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace(siteNS)); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 0 {
			t.Errorf("%d pods in %s on %s, want none", len(list.Items), siteNS, site)
		}
	}
	if err := c.Delete(t.Context(), &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: plainNS, Name: "node-agent"}}); err != nil {
		t.Error(fmt.Errorf("delete the DaemonSet: %w", err))
	}
}

const outageNS = "outage"

// TestProviderOutageEvictsNothing stops the provider long enough for the host's node
// lifecycle controller to taint every virtual node unreachable and for the lab's default
// toleration of that taint (kwokconfig.DefaultTolerationSeconds, 30 s) to run out. The
// lab's host has Ready nodes of its own, so it evicts as a production host does: a pod
// bound by hand outside vK8s namespaces (the API server's default tolerations) is
// evicted, the control that shows the lab evicts at all. The 9 pods of a federated
// Deployment tolerate the taints for ever (admission): none is evicted or deleted on the
// host, no site pod is deleted or restarted, and their status flows again once the
// provider is back.
func TestProviderOutageEvictsNothing(t *testing.T) {
	c, siteNS := federatedNamespace(t, outageNS)
	hostNamespace(t, c, plainNS+"-outage")

	d := webhookDeployment("steady", 3, nil)
	d.Namespace = outageNS
	mustCreate(t, c, d)
	control := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: plainNS + "-outage", Name: "control"},
		Spec: corev1.PodSpec{NodeName: "site1-node2", TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
	mustCreate(t, c, control)
	var pods corev1.PodList
	waitForLong(t, 2*time.Minute, "9 pods of steady Running and Ready, and the control pod Running", func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &pods, client.InNamespace(outageNS), client.MatchingLabels{"app": "steady"}); err != nil {
			return false, err
		}
		ready := 0
		for i := range pods.Items {
			if webhookRunningReady(&pods.Items[i]) {
				ready++
			}
		}
		err := c.Get(ctx, client.ObjectKeyFromObject(control), control)
		return ready == 9 && len(pods.Items) == 9 && err == nil && control.Status.Phase == corev1.PodRunning, err
	})
	for _, p := range pods.Items {
		for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
			if !slices.ContainsFunc(p.Spec.Tolerations, func(tol corev1.Toleration) bool {
				return tol.Key == key && tol.Effect == corev1.TaintEffectNoExecute && tol.TolerationSeconds == nil
			}) {
				t.Errorf("pod %s does not tolerate %s for ever: %+v", p.Name, key, p.Spec.Tolerations)
			}
		}
	}
	hostUIDs := map[string]string{}
	for _, p := range pods.Items {
		hostUIDs[p.Name] = string(p.UID)
	}
	sitePods := func() map[string]string {
		out := map[string]string{}
		for _, site := range []string{"site1", "site2", "site3"} {
			var list corev1.PodList
			if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace(siteNS)); err != nil {
				t.Fatal(err)
			}
			for _, p := range list.Items {
				restarts := int32(0)
				for _, s := range p.Status.ContainerStatuses {
					restarts += s.RestartCount
				}
				out[site+"/"+p.Name] = fmt.Sprintf("%s restarts=%d deleting=%v", p.UID, restarts, p.DeletionTimestamp != nil)
			}
		}
		return out
	}
	before := sitePods()
	if len(before) != 9 {
		t.Fatalf("%d site pods, want 9: %v", len(before), before)
	}

	stopped := time.Now()
	stopProvider()
	t.Cleanup(func() { startProvider(t) })
	var firstTaint time.Duration
	waitForLong(t, 3*time.Minute, "the control pod evicted by the host's taint eviction", func(ctx context.Context) (bool, error) {
		if firstTaint == 0 {
			var n corev1.Node
			if err := c.Get(ctx, client.ObjectKey{Name: "site1-node2"}, &n); err == nil && slices.ContainsFunc(n.Spec.Taints, func(taint corev1.Taint) bool {
				return taint.Key == corev1.TaintNodeUnreachable && taint.Effect == corev1.TaintEffectNoExecute
			}) {
				firstTaint = time.Since(stopped)
				t.Logf("site1-node2 tainted unreachable:NoExecute %s after the provider stopped", firstTaint.Round(time.Second))
			}
		}
		err := c.Get(ctx, client.ObjectKeyFromObject(control), control)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && control.DeletionTimestamp != nil, err
	})
	t.Logf("the control pod was evicted %s after the provider stopped", time.Since(stopped).Round(time.Second))
	// The federated pods' tolerations would have run out with the control's.
	time.Sleep(5 * time.Second)
	var nodes corev1.NodeList
	if err := c.List(t.Context(), &nodes, client.MatchingLabels{vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}); err != nil {
		t.Fatal(err)
	}
	tainted := 0
	for _, n := range nodes.Items {
		if slices.ContainsFunc(n.Spec.Taints, func(taint corev1.Taint) bool {
			return taint.Key == corev1.TaintNodeUnreachable && taint.Effect == corev1.TaintEffectNoExecute
		}) {
			tainted++
		}
	}
	if tainted == 0 {
		t.Error("no virtual node has the unreachable NoExecute taint: the outage tested nothing")
	}
	var during corev1.PodList
	if err := c.List(t.Context(), &during, client.InNamespace(outageNS), client.MatchingLabels{"app": "steady"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range during.Items {
		if hostUIDs[p.Name] != string(p.UID) || p.DeletionTimestamp != nil {
			t.Errorf("host pod %s was evicted or replaced during the outage", p.Name)
		}
	}
	if len(during.Items) != 9 {
		t.Errorf("%d host pods of steady during the outage, want the 9", len(during.Items))
	}

	restarted := time.Now()
	startProvider(t)
	waitForLong(t, 2*time.Minute, "the 9 pods of steady Ready again", func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &pods, client.InNamespace(outageNS), client.MatchingLabels{"app": "steady"}); err != nil {
			return false, err
		}
		ready := 0
		for i := range pods.Items {
			stale := podCondition(&pods.Items[i], vk8sv1.ConditionStatusStale)
			if webhookRunningReady(&pods.Items[i]) && (stale == nil || stale.Status != corev1.ConditionTrue) {
				ready++
			}
		}
		return ready == 9, nil
	})
	t.Logf("status fresh on all 9 pods %s after the provider restarted (tainted virtual nodes during the outage: %d)",
		time.Since(restarted).Round(100*time.Millisecond), tainted)
	for _, p := range pods.Items {
		if hostUIDs[p.Name] != string(p.UID) {
			t.Errorf("host pod %s is new after the outage", p.Name)
		}
	}
	// Give the provider's sweep (providerSweep) a turn: it deletes site pods whose host
	// pod is gone, and none is.
	time.Sleep(2 * providerSweep)
	if after := sitePods(); !maps.Equal(after, before) {
		t.Errorf("site pods changed across the outage:\n before %v\n after  %v", before, after)
	}
}

// TestSiteAdminPodSurvives: a site administrator's pod in a site namespace, with the name a
// host pod then takes, is never changed or deleted; the host pod waits and says why
// (SiteSynced=False, reason SiteNameConflict, naming the pod), and runs once the name is
// free on the site.
func TestSiteAdminPodSurvives(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	ns := plainNS + "-names"
	hostNamespace(t, c, ns)
	siteNS := translate.SiteNamespace(provider.DefaultTenant, ns)
	bound := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
	}
	// The first pod makes the site namespace.
	first := bound("first", "site1-node1")
	mustCreate(t, c, first)
	waitPod(t, c, client.ObjectKeyFromObject(first), "pod first Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	sc := siteClient(t, "site1")
	admin := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "web-0", Labels: map[string]string{"owner": "site-admin"}},
		Spec: corev1.PodSpec{NodeName: "node2", Containers: []corev1.Container{{Name: "admin", Image: "busybox:1.36"}}}}
	mustCreate(t, sc, admin)
	mine := bound("web-0", "site1-node2")
	mustCreate(t, c, mine)
	waitPod(t, c, client.ObjectKeyFromObject(mine), "host pod web-0 naming the site's pod of the same name", func(p *corev1.Pod) bool {
		cond := podCondition(p, vk8sv1.ConditionSiteSynced)
		return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == translate.ReasonNameConflict &&
			strings.Contains(cond.Message, siteNS+"/web-0")
	})
	time.Sleep(2 * time.Second) // a few of the provider's retries
	var got corev1.Pod
	if err := sc.Get(t.Context(), client.ObjectKeyFromObject(admin), &got); err != nil {
		t.Fatalf("the site administrator's pod: %v", err)
	}
	if got.UID != admin.UID || got.DeletionTimestamp != nil || got.Labels["owner"] != "site-admin" || got.Labels[vk8sv1.LabelTenant] != "" ||
		got.Spec.Containers[0].Image != "busybox:1.36" {
		t.Errorf("the site administrator's pod was changed: uid %s (was %s), labels %v, image %s", got.UID, admin.UID, got.Labels, got.Spec.Containers[0].Image)
	}

	// The administrator frees the name: the host pod runs.
	if err := sc.Delete(t.Context(), admin, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitForLong(t, 2*time.Minute, "host pod web-0 Running once the name is free", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(mine), mine)
		return err == nil && mine.Status.Phase == corev1.PodRunning, err
	})
}

// TestSiteNodeNamesTooLong: a Site whose name makes <site>-<node> longer than a Node's
// hostname label allows is not Ready, and its Ready condition names the nodes and the
// fix; no virtual node of it is attempted, and the lab's own Sites are untouched.
func TestSiteNodeNamesTooLong(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	s := &vk8sv1.Site{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: "site3"}, s); err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("long", 15) // a valid Site name; "-node1" makes 66 characters
	long := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: vk8sv1.SiteSpec{KubeconfigSecretRef: s.Spec.KubeconfigSecretRef, NodeSelector: map[string]string{corev1.LabelHostname: "node1"}}}
	mustCreate(t, c, long)
	t.Cleanup(func() { _ = c.Delete(context.Background(), long) })
	waitFor(t, "Site "+name+" not Ready, naming its node and the fix", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(long), long); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(long.Status.Conditions, vk8sv1.ConditionReady)
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == sitereg.ReasonNodeNamesTooLong &&
			strings.Contains(cond.Message, name+"-node1") && strings.Contains(cond.Message, "Aggregate"), nil
	})
	var nodes corev1.NodeList
	if err := c.List(t.Context(), &nodes, client.MatchingLabels{vk8sv1.LabelSite: name}); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 0 || len(long.Status.VirtualNodes) != 0 {
		t.Errorf("Site %s: %d virtual nodes, status.virtualNodes %v; want none", name, len(nodes.Items), long.Status.VirtualNodes)
	}
}

// TestHangingSiteHoldsOnlyItself: site2's API server hangs on every pod create in the
// site namespace (a site-side admission webhook that never answers, as a broken policy
// engine does), while its reads answer. 10 pods sent to site2 first, then 20 to site1 and
// site3: the 20 run while site2's creates are still hanging in their first attempt (none
// has timed out, which takes the provider's 15 s site-call deadline), because site calls
// run on each site's own queue and workers, not on virtual-kubelet's pod workers that
// serve every site. Once the site's webhook is gone, site2's pods run too.
func TestHangingSiteHoldsOnlyItself(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	ns := plainNS + "-hang"
	hostNamespace(t, c, ns)

	// An HTTPS server that never answers: the site's API server waits for the webhook's
	// 30 s, longer than the provider's 15 s deadline of a site call.
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	srv.StartTLS()
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	site2 := siteClient(t, "site2")
	url := srv.URL + "/hang"
	hang := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "e2e-hang"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "hang.e2e.vk8s.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{vk8sv1.LabelHostNamespace: ns}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](30),
		}}}
	mustCreate(t, site2, hang)
	removed := false
	remove := func() {
		if !removed {
			removed = true
			_ = site2.Delete(context.Background(), hang)
		}
	}
	t.Cleanup(remove)

	bound := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "hang"}},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
	}
	for i := range 10 {
		mustCreate(t, c, bound(fmt.Sprintf("stuck-%d", i), fmt.Sprintf("site2-node%d", i%3+1)))
	}
	for i := range 20 {
		site := []string{"site1", "site3"}[i%2]
		mustCreate(t, c, bound(fmt.Sprintf("fine-%d", i), fmt.Sprintf("%s-node%d", site, i%3+1)))
	}
	var pods corev1.PodList
	waitForLong(t, 2*time.Minute, "the 20 pods of site1 and site3 Running", func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if strings.HasPrefix(p.Name, "fine-") && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 20, nil
	})
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Name, "stuck-") {
			continue
		}
		if cond := podCondition(&p, vk8sv1.ConditionSiteSynced); cond != nil && cond.Status == corev1.ConditionFalse {
			t.Errorf("pod %s of site2 already says %s: %s; the other sites' pods waited for site2's hanging calls", p.Name, cond.Reason, cond.Message)
		}
		if p.Status.Phase == corev1.PodRunning {
			t.Errorf("pod %s of site2 runs while site2's creates hang", p.Name)
		}
	}

	// Site2's reads answer and its writes hang: its Site and virtual nodes say so, so no new
	// pod goes there; the other sites stay Ready.
	siteReady := func(ctx context.Context, name string) *metav1.Condition {
		site := &vk8sv1.Site{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, site); err != nil {
			return nil
		}
		return meta.FindStatusCondition(site.Status.Conditions, vk8sv1.ConditionReady)
	}
	waitForLong(t, time.Minute, "Site site2 Ready=False, WritesTimingOut", func(ctx context.Context) (bool, error) {
		r := siteReady(ctx, "site2")
		return r != nil && r.Status == metav1.ConditionFalse && r.Reason == sitereg.ReasonWritesTimingOut, nil
	})
	t.Logf("Site site2: %s", siteReady(t.Context(), "site2").Message)
	waitNode(t, c, "site2-node1", "SiteConnected=False with reason WritesTimingOut and the unreachable taint", func(n *corev1.Node) bool {
		cond := nodeCondition(n, vk8sv1.ConditionSiteConnected)
		return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == sitereg.ReasonWritesTimingOut && hasTaint(n, vk8sv1.TaintSiteUnreachable)
	})
	if r := siteReady(t.Context(), "site1"); r == nil || r.Status != metav1.ConditionTrue {
		t.Errorf("Site site1 Ready: %+v; want True", r)
	}

	remove()
	waitForLong(t, 3*time.Minute, "site2's 10 pods Running once its webhook is gone", func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if strings.HasPrefix(p.Name, "stuck-") && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 10, nil
	})
	waitForLong(t, time.Minute, "Site site2 Ready again", func(ctx context.Context) (bool, error) {
		r := siteReady(ctx, "site2")
		return r != nil && r.Status == metav1.ConditionTrue, nil
	})
	waitNode(t, c, "site2-node1", "SiteConnected=True without the unreachable taint", func(n *corev1.Node) bool {
		cond := nodeCondition(n, vk8sv1.ConditionSiteConnected)
		return cond != nil && cond.Status == corev1.ConditionTrue && !hasTaint(n, vk8sv1.TaintSiteUnreachable)
	})
}

// secondHostSameTenant joins site1 of the fleet to the host of lab other, whose provider
// has the same tenant (vk8s): the fleet's host claimed the tenant there first, so the
// other host's Site is refused (Connected=False, TenantInUse) naming the fleet's host, and
// the fleet's pod on site1 survives. Without the claim, the other provider took the
// fleet's site pods for orphans of its own tenant and deleted them.
func secondHostSameTenant(t *testing.T, other client.Client) {
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	const ns = "claim"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	t.Cleanup(func() { _ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
	// Bound by hand to site1-node1: it reaches site1.
	mustCreate(t, c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "first-host"},
		Spec: corev1.PodSpec{NodeName: "site1-node1", Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}})
	site1 := siteClient(t, "site1")
	siteNS := translate.SiteNamespace(provider.DefaultTenant, ns)
	sp := &corev1.Pod{}
	waitFor(t, "the fleet's pod on site1", func(ctx context.Context) (bool, error) {
		err := site1.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "first-host"}, sp)
		return err == nil, client.IgnoreNotFound(err)
	})
	claim := &corev1.ConfigMap{}
	if err := site1.Get(t.Context(), client.ObjectKey{Namespace: sitereg.ClaimNamespace, Name: sitereg.ClaimName(provider.DefaultTenant)}, claim); err != nil {
		t.Fatalf("the fleet's tenant claim on site1: %v", err)
	}
	hostNS := &corev1.Namespace{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: metav1.NamespaceSystem}, hostNS); err != nil {
		t.Fatal(err)
	}
	if claim.Data[sitereg.ClaimKeyHostID] != string(hostNS.UID) {
		t.Errorf("claim on site1 names host %q, want the fleet host's kube-system UID %s", claim.Data[sitereg.ClaimKeyHostID], hostNS.UID)
	}

	// The other host gets a Site with the fleet's site1 kubeconfig.
	fleetSite := &vk8sv1.Site{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: "site1"}, fleetSite); err != nil {
		t.Fatal(err)
	}
	ref := fleetSite.Spec.KubeconfigSecretRef
	secret := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, other, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: "shared-site1"}, Data: secret.Data})
	mustCreate(t, other, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "shared-site1"},
		Spec: vk8sv1.SiteSpec{KubeconfigSecretRef: vk8sv1.SecretKeyReference{Namespace: ref.Namespace, Name: "shared-site1", Key: ref.Key}}})
	host, err := fleet.RESTConfig("host")
	if err != nil {
		t.Fatal(err)
	}
	site := &vk8sv1.Site{}
	waitFor(t, "the other host's Site refused with TenantInUse", func(ctx context.Context) (bool, error) {
		if err := other.Get(ctx, client.ObjectKey{Name: "shared-site1"}, site); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(site.Status.Conditions, vk8sv1.ConditionConnected)
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == sitereg.ReasonTenantInUse, nil
	})
	msg := meta.FindStatusCondition(site.Status.Conditions, vk8sv1.ConditionConnected).Message
	for _, want := range []string{host.Host, string(hostNS.UID), `tenant "vk8s"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("condition message %q does not name %q", msg, want)
		}
	}
	t.Logf("Site shared-site1 in the second host: %s", msg)
	// A provider that used the site sweeps it at once; give it time to.
	time.Sleep(5 * time.Second)
	now := &corev1.Pod{}
	if err := site1.Get(t.Context(), client.ObjectKeyFromObject(sp), now); err != nil || now.UID != sp.UID || now.DeletionTimestamp != nil {
		t.Errorf("the fleet's pod on site1 after the second host joined: %v, UID %s (was %s), deleting %v", err, now.UID, sp.UID, now.DeletionTimestamp)
	}
	if err := other.Get(t.Context(), client.ObjectKey{Name: "shared-site1-node1"}, &corev1.Node{}); !apierrors.IsNotFound(err) {
		t.Errorf("the other host has virtual node shared-site1-node1: %v", err)
	}
}

// TestSiteNamespacesCannotBeSquatted: a host namespace too long for <tenant>-<namespace>
// gets a shortened site namespace; another host namespace named as that shortened name
// without the tenant does not get the same site namespace, so neither's pods land in the
// other's. Before, the second mapped to exactly the first's site namespace.
func TestSiteNamespacesCannotBeSquatted(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	long := "long-" + strings.Repeat("n", 55)
	squat := strings.TrimPrefix(translate.SiteNamespace(provider.DefaultTenant, long), provider.DefaultTenant+"-")
	site1 := siteClient(t, "site1")
	seen := map[string]string{}
	for _, ns := range []string{long, squat} {
		mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		t.Cleanup(func() { _ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
		// Bound by hand: it reaches site1.
		mustCreate(t, c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"},
			Spec: corev1.PodSpec{NodeName: "site1-node1", Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}})
		siteNS := translate.SiteNamespace(provider.DefaultTenant, ns)
		sp := &corev1.Pod{}
		waitFor(t, "pod p of "+ns+" on site1", func(ctx context.Context) (bool, error) {
			err := site1.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "p"}, sp)
			return err == nil && sp.Labels[vk8sv1.LabelHostNamespace] == ns, client.IgnoreNotFound(err)
		})
		seen[ns] = siteNS
	}
	t.Logf("site namespaces: %s -> %s; %s -> %s", long, seen[long], squat, seen[squat])
	if seen[long] == seen[squat] {
		t.Fatalf("host namespaces %s and %s share site namespace %s", long, squat, seen[long])
	}
	for ns, siteNS := range seen {
		n := &corev1.Namespace{}
		if err := site1.Get(t.Context(), client.ObjectKey{Name: siteNS}, n); err != nil || n.Labels[vk8sv1.LabelHostNamespace] != ns {
			t.Errorf("site namespace %s: labels %v, %v; want host namespace %s", siteNS, n.Labels, err, ns)
		}
	}
	for _, ns := range []string{long, squat} {
		waitFor(t, "host pod p of "+ns+" Running", func(ctx context.Context) (bool, error) {
			p := &corev1.Pod{}
			err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "p"}, p)
			return err == nil && p.Status.Phase == corev1.PodRunning, err
		})
	}
}

// TestBoundPodStaysSynced: a pod bound by hand to a virtual node in a namespace vk8s does
// not manage, with a ConfigMap, keeps being synced: a site-side change to its ConfigMap
// copy does not get the copy deleted (the mirror leaves copies outside vK8s namespaces to
// the provider), and after a provider restart a host label change still reaches the site
// pod (the host pod keeps no PodScheduled of the site's, which made it look placed by the
// host's scheduler). Before, the copy was deleted and made again, and the restarted
// provider stopped syncing the pod.
func TestBoundPodStaysSynced(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	const ns = plainNS + "-bound"
	hostNamespace(t, c, ns)
	mustCreate(t, c, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "conf"}, Data: map[string]string{"k": "v"}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bound"},
		Spec: corev1.PodSpec{NodeName: "site1-node1", Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25",
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}}}}}}
	mustCreate(t, c, pod)
	site1 := siteClient(t, "site1")
	siteNS := translate.SiteNamespace(provider.DefaultTenant, ns)
	cm := &corev1.ConfigMap{}
	waitFor(t, "the pod Running and its ConfigMap on site1", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		err := site1.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "conf"}, cm)
		return err == nil && pod.Status.Phase == corev1.PodRunning, client.IgnoreNotFound(err)
	})
	// A site controller labels the copy.
	uid := cm.UID
	cm.Labels["site.example.com/seen"] = "yes"
	if err := site1.Update(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if err := site1.Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: "conf"}, cm); err != nil || cm.UID != uid || cm.Labels["site.example.com/seen"] != "yes" {
		t.Errorf("the ConfigMap copy after a site-side label: %v, UID %s (was %s), labels %v", err, cm.UID, uid, cm.Labels)
	}

	stopProvider()
	startProvider(t)
	waitAllVirtualNodes(t, c)
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatal(err)
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels["after-restart"] = "yes"
	if err := c.Update(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	sp := &corev1.Pod{}
	waitFor(t, "the host label on the site pod after a provider restart", func(ctx context.Context) (bool, error) {
		err := site1.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "bound"}, sp)
		return err == nil && sp.Labels["after-restart"] == "yes", client.IgnoreNotFound(err)
	})
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), pod); err != nil || pod.Status.Phase != corev1.PodRunning {
		t.Errorf("host pod after the restart: %v, phase %s", err, pod.Status.Phase)
	}
}

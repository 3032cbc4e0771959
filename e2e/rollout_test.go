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
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/translate"
)

// TestOverrideRollout is the canary seed scenario with the Override created after
// placement: only site2's pods restart, into the Override and back out of it, and the
// pods of site1 and site3 never restart (neither in the host nor on their sites).
func TestOverrideRollout(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	ctx := t.Context()
	waitAllVirtualNodes(t, c)
	// An earlier test's namespace may still be going away.
	gone, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := webhookNamespaceGone(gone, c, webhookNS); err != nil {
		t.Fatalf("namespace %s of an earlier test: %v", webhookNS, err)
	}
	wh := webhookStart(t)
	webhookCleanup(t, c, wh, webhookNS)
	webhookEnableNamespace(t, c)

	const app, v1, v2 = "rollout", "nginx:1.25", "nginx:1.26"
	siteNS := translate.SiteNamespace(provider.DefaultTenant, webhookNS)
	mustCreate(t, c, webhookDeployment(app, 3, nil))
	pods := webhookWaitPods(t, c, app, 9)
	// The pods of site1 and site3, by host UID, and their site pods' UIDs.
	kept := map[types.UID]string{}
	for _, p := range pods {
		if s := p.Labels[vk8sv1.LabelSite]; s != "site2" {
			kept[p.UID] = s
		}
		if p.Annotations[vk8sv1.AnnotationOverrideHash] != "none" {
			t.Errorf("pod %s: stamp %q, want none", p.Name, p.Annotations[vk8sv1.AnnotationOverrideHash])
		}
	}
	keptOnSites := rolloutSitePodUIDs(t, siteNS, app, "site1", "site3")
	if len(kept) != 6 || len(keptOnSites) != 6 {
		t.Fatalf("%d host pods and %d site pods on site1 and site3, want 6", len(kept), len(keptOnSites))
	}

	// The Override is created once the pods run, then named by the Deployment (a workload
	// naming a missing Override is refused at admission). Admission keeps the template,
	// so the Deployment controller starts no rollout of its own: the rollout controller
	// restarts site2's pods.
	tmpl := webhookDeployment(app, 3, nil).Spec.Template
	tmpl.Spec.Containers[0].Image = v2
	mustCreate(t, c, &vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: "canary"},
		Spec: vk8sv1.OverrideSpec{SiteList: []string{"site2"}, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Template: &tmpl}}})
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"canary"}}}`, vk8sv1.AnnotationOverrides)
	if err := c.Patch(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: app}},
		client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	site2 := rolloutWaitSite2(t, c, app, kept, v2, "canary", pods)
	t.Logf("site2 runs the canary %s after the Override was named", time.Since(start).Round(100*time.Millisecond))
	rolloutCheckSite2(t, siteNS, app, site2, v2)
	if got := webhookMetric(t, wh.metrics, "vk8s_federation_rollout_restarts_total", map[string]string{"site": "site2"}); got < 3 {
		t.Errorf("vk8s_federation_rollout_restarts_total{site=site2} = %v, want at least 3", got)
	}
	for _, s := range []string{"site1", "site3"} {
		if got := webhookMetric(t, wh.metrics, "vk8s_federation_rollout_restarts_total", map[string]string{"site": s}); got != 0 {
			t.Errorf("vk8s_federation_rollout_restarts_total{site=%s} = %v, want 0", s, got)
		}
	}
	rolloutWaitEvent(t, c, app, "SiteRolloutCompleted", "site site2: its 3 pods run Override canary")

	// Deleting the Override brings site2 back to the workload's own template, once the
	// namespace's PodDisruptionBudget allows it: the rollout evicts through the Eviction
	// API, as a node drain does, and says on the Deployment why it waits.
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: "hold"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}}
	mustCreate(t, c, pdb)
	waitFor(t, "the PodDisruptionBudget observed", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(pdb), pdb)
		return err == nil && pdb.Status.ObservedGeneration == pdb.Generation && pdb.Status.ExpectedPods == 9, err
	})
	if err := c.Delete(ctx, &vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: "canary"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a Warning Event "+federation.ReasonEvictionBlocked+" on the Deployment naming the budget", func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := c.List(ctx, &list, client.InNamespace(webhookNS)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
			return e.Regarding.Kind == "Deployment" && e.Regarding.Name == app && e.Type == corev1.EventTypeWarning &&
				e.Reason == federation.ReasonEvictionBlocked && strings.Contains(e.Note, "site site2") && strings.Contains(e.Note, "hold")
		}), nil
	})
	held, err := webhookPods(ctx, c, app)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range held {
		if p.Labels[vk8sv1.LabelSite] == "site2" && (p.DeletionTimestamp != nil || !slices.ContainsFunc(site2, func(q corev1.Pod) bool { return q.UID == p.UID })) {
			t.Errorf("pod %s of site2 restarted while the budget allowed no disruption", p.Name)
		}
	}
	if err := c.Delete(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	site2 = rolloutWaitSite2(t, c, app, kept, v1, "", site2)
	t.Logf("site2 is back on %s %s after the Override was deleted", v1, time.Since(start).Round(100*time.Millisecond))
	rolloutCheckSite2(t, siteNS, app, site2, v1)
	if got := rolloutSitePodUIDs(t, siteNS, app, "site1", "site3"); !maps.Equal(got, keptOnSites) {
		t.Errorf("site pods on site1 and site3 changed: %v, want %v", got, keptOnSites)
	}
}

// rolloutWaitSite2 waits until site2 runs 3 Ready pods of app, none of before's, with
// image and the override label, failing at once when a pod of site1 or site3 (kept) is
// replaced. It returns site2's pods.
func rolloutWaitSite2(t *testing.T, c client.Client, app string, kept map[types.UID]string, image, override string, before []corev1.Pod) []corev1.Pod {
	t.Helper()
	old := map[types.UID]bool{}
	for _, p := range before {
		if p.Labels[vk8sv1.LabelSite] == "site2" {
			old[p.UID] = true
		}
	}
	var site2 []corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := webhookPods(ctx, c, app)
		if err != nil {
			return false, err
		}
		site2 = site2[:0]
		others := map[types.UID]string{}
		for _, p := range pods {
			if s := p.Labels[vk8sv1.LabelSite]; s != "site2" {
				others[p.UID] = s
				continue
			}
			site2 = append(site2, p)
		}
		if !maps.Equal(others, kept) {
			return false, fmt.Errorf("the pods of site1 and site3 changed: %v, want %v", others, kept)
		}
		last = describeSite2(site2)
		return len(site2) == 3 && !slices.ContainsFunc(site2, func(p corev1.Pod) bool {
			return old[p.UID] || !webhookRunningReady(&p) || p.Spec.Containers[0].Image != image || p.Labels[vk8sv1.LabelOverride] != override
		}), nil
	})
	if err != nil {
		t.Fatalf("waiting for site2 to run 3 new pods of %s with %s (override %q): %v; last %s", app, image, override, err, last)
	}
	return site2
}

func describeSite2(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "[%s %s ready=%v %s override=%q] ", p.Name, p.UID, webhookRunningReady(&p), p.Spec.Containers[0].Image, p.Labels[vk8sv1.LabelOverride])
	}
	return b.String()
}

// rolloutCheckSite2 checks with the site's kubectl that site2 runs exactly the host's
// site2 pods, with image.
func rolloutCheckSite2(t *testing.T, siteNS, app string, host []corev1.Pod, image string) {
	t.Helper()
	want := map[string]string{}
	for _, p := range host {
		want[string(p.UID)] = image
	}
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		out, err := kubectlErr(t, "site2", "get", "pods", "-n", siteNS, "-l", "app="+app, "-o",
			`jsonpath={range .items[*]}{.metadata.labels.vk8s\.io/host-pod-uid}={.spec.containers[0].image}={.metadata.deletionTimestamp}{"\n"}{end}`)
		if err != nil {
			return false, err
		}
		last = out
		got := map[string]string{}
		for _, line := range strings.Fields(out) {
			// uid=image=deletionTimestamp: pods being deleted do not count.
			f := strings.Split(line, "=")
			if len(f) == 3 && f[2] == "" {
				got[f[0]] = f[1]
			}
		}
		return maps.Equal(got, want), nil
	})
	if err != nil {
		t.Fatalf("waiting for site2 to run the host's site2 pods with %s: %v; kubectl printed %q", image, err, last)
	}
}

// rolloutSitePodUIDs returns the UIDs of app's pods on sites, by name.
func rolloutSitePodUIDs(t *testing.T, siteNS, app string, sites ...string) map[string]types.UID {
	t.Helper()
	out := map[string]types.UID{}
	for _, s := range sites {
		var list corev1.PodList
		if err := siteClient(t, s).List(t.Context(), &list, client.InNamespace(siteNS), client.MatchingLabels{"app": app}); err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			out[s+"/"+p.Name] = p.UID
		}
	}
	return out
}

// rolloutWaitEvent waits for an Event on the Deployment with reason and note.
func rolloutWaitEvent(t *testing.T, c client.Client, app, reason, note string) {
	t.Helper()
	waitFor(t, "Event "+reason+" on the Deployment", func(ctx context.Context) (bool, error) {
		var list corev1.EventList
		if err := c.List(ctx, &list, client.InNamespace(webhookNS)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(list.Items, func(e corev1.Event) bool {
			return e.InvolvedObject.Kind == "Deployment" && e.InvolvedObject.Name == app && e.Reason == reason && e.Message == note
		}), nil
	})
}

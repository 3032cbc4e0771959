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
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

const (
	rebalanceNS = "rebalance"
	// rebalanceLabel puts a Site into the test's VirtualSite.
	rebalanceLabel = "e2e.vk8s.io/rebalance"
)

// TestRebalance changes the sites of a running Deployment through its VirtualSite: a
// site that joins gets its R pods, a site that leaves loses them, and the pods of the
// other sites are never restarted.
func TestRebalance(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	t.Cleanup(func() {
		bg, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := 1; i <= fleetSites; i++ {
			if err := rebalanceLabelSite(bg, c, fmt.Sprintf("site%d", i), false); err != nil {
				t.Errorf("take the test's label off site%d: %v", i, err)
			}
		}
	})
	webhookCleanup(t, c, webhookStart(t), rebalanceNS)
	ctx := t.Context()
	for _, s := range []string{"site1", "site2"} {
		if err := rebalanceLabelSite(ctx, c, s, true); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rebalanceNS}})
	mustCreate(t, c, &vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: rebalanceNS, Name: "some"},
		Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchLabels: map[string]string{rebalanceLabel: "in"}}}})
	mustCreate(t, c, &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: rebalanceNS, Name: "vk"},
		Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "some"}})
	waitFor(t, "the API server to send the namespace's workloads to the webhook", func(ctx context.Context) (bool, error) {
		d := rebalanceDeployment(1)
		err := c.Create(ctx, d, client.DryRunAll)
		return err == nil && *d.Spec.Replicas == 2, err
	})

	mustCreate(t, c, rebalanceDeployment(2))
	before := rebalanceWait(t, c, map[string]int{"site1": 2, "site2": 2})

	t.Run("a site that joins the virtual-site gets its 2 pods; the others are not restarted", func(t *testing.T) {
		if err := rebalanceLabelSite(ctx, c, "site3", true); err != nil {
			t.Fatal(err)
		}
		after := rebalanceWait(t, c, map[string]int{"site1": 2, "site2": 2, "site3": 2})
		rebalanceKept(t, before, after, "site1", "site2")
		rebalancePlan(t, c, "site1=2,site2=2,site3=2", 6)
		before = after
	})

	t.Run("a site that leaves loses its pods; the others are not restarted", func(t *testing.T) {
		if err := rebalanceLabelSite(ctx, c, "site1", false); err != nil {
			t.Fatal(err)
		}
		after := rebalanceWait(t, c, map[string]int{"site2": 2, "site3": 2})
		rebalanceKept(t, before, after, "site2", "site3")
		rebalancePlan(t, c, "site2=2,site3=2", 4)
	})
}

func rebalanceDeployment(replicas int32) *appsv1.Deployment {
	d := webhookDeployment("web", replicas, nil)
	d.Namespace = rebalanceNS
	return d
}

// rebalanceLabelSite puts a Site into the test's VirtualSite, or takes it out.
func rebalanceLabelSite(ctx context.Context, c client.Client, site string, in bool) error {
	value := `"in"`
	if !in {
		value = "null"
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, rebalanceLabel, value)
	err := c.Patch(ctx, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}}, client.RawPatch(types.MergePatchType, []byte(patch)))
	return client.IgnoreNotFound(err)
}

// rebalanceWait waits until web has exactly want pods per site, all Running and Ready, and
// returns their UIDs by site.
func rebalanceWait(t *testing.T, c client.Client, want map[string]int) map[string][]types.UID {
	t.Helper()
	var last map[string]int
	out := map[string][]types.UID{}
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var list corev1.PodList
		if err := c.List(ctx, &list, client.InNamespace(rebalanceNS), client.MatchingLabels{"app": "web"}); err != nil {
			return false, err
		}
		last, out = map[string]int{}, map[string][]types.UID{}
		ready := true
		for _, p := range list.Items {
			site := p.Labels[vk8sv1.LabelSite]
			last[site]++
			out[site] = append(out[site], p.UID)
			// Terminating pods count too: "exact" means nothing is left over.
			ready = ready && p.DeletionTimestamp == nil && webhookRunningReady(&p)
		}
		return ready && maps.Equal(last, want), nil
	})
	if err != nil {
		t.Fatalf("waiting for web's pods per site %v: have %v: %v", want, last, err)
	}
	for _, uids := range out {
		slices.Sort(uids)
	}
	return out
}

// rebalanceKept fails t when a site's pods changed between before and after.
func rebalanceKept(t *testing.T, before, after map[string][]types.UID, sites ...string) {
	t.Helper()
	for _, s := range sites {
		if !slices.Equal(before[s], after[s]) {
			t.Errorf("%s's pods were restarted: %v, then %v", s, before[s], after[s])
		}
	}
}

// rebalancePlan checks web's plan and total.
func rebalancePlan(t *testing.T, c client.Client, placement string, total int32) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: rebalanceNS, Name: "web"}, d); err != nil {
		t.Fatal(err)
	}
	if got := d.Annotations[vk8sv1.AnnotationPlacement]; got != placement || *d.Spec.Replicas != total || d.Annotations[vk8sv1.AnnotationReplicasPerSite] != "2" {
		t.Errorf("web: placement %q, spec.replicas %d, R %s; want %q, %d, 2", got, *d.Spec.Replicas, d.Annotations[vk8sv1.AnnotationReplicasPerSite], placement, total)
	}
}

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
	"maps"
	"slices"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// TestExamples applies the manifests of examples/ with kubectl, as the README tells users
// to: the seed scenario, the A/B test and a workload on two virtual-sites.
func TestExamples(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	// The examples live in namespace demo, which TestWebhook uses too.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := webhookNamespaceGone(ctx, c, webhookNS); err != nil {
		t.Fatalf("namespace %s is still there: %v", webhookNS, err)
	}
	webhookCleanup(t, c, webhookStart(t), webhookNS)

	kubectl(t, "host", "apply", "-f", "../examples/seed/00-namespace.yaml")
	waitFor(t, "the API server to send demo's workloads to the webhook", func(ctx context.Context) (bool, error) {
		d := webhookDeployment("probe", 1, nil)
		err := c.Create(ctx, d, client.DryRunAll)
		return err == nil && *d.Spec.Replicas == 3, err
	})

	t.Run("seed: deployment1 with 3 replicas is 9 pods, 3 per site", func(t *testing.T) {
		kubectl(t, "host", "apply", "-f", "../examples/seed/10-deployment1.yaml")
		webhookWaitPods(t, c, "deployment1", 9)
	})

	t.Run("A/B: variant-a on site1, variant-b on site3, the workload's own template on site2", func(t *testing.T) {
		kubectl(t, "host", "apply", "-f", "../examples/ab/ab-test.yaml")
		pods := webhookWaitPods(t, c, "shop", 6)
		want := map[string]struct{ image, override, variant string }{
			"site1": {"nginx:1.26", "variant-a", "a"},
			"site2": {"nginx:1.25", "", ""},
			"site3": {"nginx:1.27", "variant-b", "b"},
		}
		for _, p := range pods {
			w := want[p.Labels[vk8sv1.LabelSite]]
			ctr := p.Spec.Containers[0]
			variant := ""
			for _, e := range ctr.Env {
				if e.Name == "VARIANT" {
					variant = e.Value
				}
			}
			if ctr.Image != w.image || p.Labels[vk8sv1.LabelOverride] != w.override || variant != w.variant {
				t.Errorf("pod %s on %s: image %s, override %q, VARIANT %q; want %+v", p.Name, p.Labels[vk8sv1.LabelSite], ctr.Image, p.Labels[vk8sv1.LabelOverride], variant, w)
			}
		}
		// What runs on the sites is what the host shows.
		for site, w := range want {
			var list corev1.PodList
			if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace("vk8s-"+webhookNS), client.MatchingLabels{"app": "shop"}); err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 2 {
				t.Errorf("%s runs %d shop pods, want 2", site, len(list.Items))
			}
			for _, p := range list.Items {
				if p.Spec.Containers[0].Image != w.image {
					t.Errorf("%s's pod %s runs %s, want %s", site, p.Name, p.Spec.Containers[0].Image, w.image)
				}
			}
		}
	})

	t.Run("two virtual-sites: the union of their sites", func(t *testing.T) {
		kubectl(t, "host", "apply", "-f", "../examples/union/union.yaml")
		want := map[string]int{"site1": 2, "site3": 2}
		var last map[string]int
		err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := webhookPods(ctx, c, "catalog")
			if err != nil {
				return false, err
			}
			last = webhookPerSite(pods)
			return maps.Equal(last, want) && !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return !webhookRunningReady(&p) }), nil
		})
		if err != nil {
			t.Fatalf("catalog's pods per site %v, want %v: %v", last, want, err)
		}
	})

	t.Run("apps: a site-local Service, a StatefulSet with storage, a CronJob", func(t *testing.T) {
		kubectl(t, "host", "apply", "-f", "../examples/apps/")
		siteNS := "vk8s-" + webhookNS
		// deployment1's Service: on every site, its endpoints the site's own 3 pods.
		waitFor(t, "Service deployment1 with 3 endpoints of its own on every site, and the host saying so", func(ctx context.Context) (bool, error) {
			svc := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: "deployment1"}, svc); err != nil {
				return false, err
			}
			if svc.Annotations[vk8sv1.AnnotationSiteEndpoints] != "site1=3,site2=3,site3=3" {
				return false, nil
			}
			for _, site := range labSites {
				var eps discoveryv1.EndpointSliceList
				if err := siteClient(t, site).List(ctx, &eps, client.InNamespace(siteNS), client.MatchingLabels{discoveryv1.LabelServiceName: "deployment1"}); err != nil {
					return false, err
				}
				n := 0
				for _, s := range eps.Items {
					n += len(s.Endpoints)
				}
				if n != 3 {
					return false, nil
				}
			}
			return true, nil
		})
		// The StatefulSet: 2 per site, each ordinal's claim Bound on its site.
		webhookWaitPods(t, c, "nginx", 6)
		for _, site := range labSites {
			var claims corev1.PersistentVolumeClaimList
			if err := siteClient(t, site).List(t.Context(), &claims, client.InNamespace(siteNS)); err != nil {
				t.Fatal(err)
			}
			bound := 0
			for _, pvc := range claims.Items {
				if pvc.Status.Phase == corev1.ClaimBound {
					bound++
				}
			}
			if bound != 2 {
				t.Errorf("%s has %d Bound claims, want 2 (its 2 ordinals')", site, bound)
			}
		}
		// The CronJob: its first Job completes, 1 completion per site (it comes within a minute).
		waitForLong(t, 3*time.Minute, "a Job of CronJob hello Complete with 3 completions", func(ctx context.Context) (bool, error) {
			var jobs batchv1.JobList
			if err := c.List(ctx, &jobs, client.InNamespace(webhookNS), client.MatchingLabels{"app": "hello"}); err != nil {
				return false, err
			}
			for i := range jobs.Items {
				if j := &jobs.Items[i]; jobComplete(j) && j.Status.Succeeded == 3 && ptr.Deref(j.Spec.Completions, 0) == 3 {
					return true, nil
				}
			}
			return false, nil
		})
		// Stopped here: the namespace goes at the end, and its Jobs with it.
		kubectl(t, "host", "-n", webhookNS, "patch", "cronjob", "hello", "-p", `{"spec":{"suspend":true}}`)
	})
}

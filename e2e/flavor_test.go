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
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/overrides"
)

const flavorNS = "flavors"

// TestFlavors runs a Deployment with the default flavor (ves-io-tiny) on the lab with site3
// made a RegionalEdge site: site3's pods get the flavor's limits and requests (100m/256Mi,
// 25m/128Mi), on the host and on the site; the CustomerEdge sites keep the manifest's.
func TestFlavors(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	setType := func(ctx context.Context, typ vk8sv1.SiteType) error {
		patch := fmt.Sprintf(`{"spec":{"type":%q}}`, typ)
		return c.Patch(ctx, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "site3"}}, client.RawPatch(types.MergePatchType, []byte(patch)))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := setType(ctx, vk8sv1.SiteTypeCustomerEdge); err != nil {
			t.Errorf("site3 back to CustomerEdge: %v", err)
		}
	})
	if err := setType(t.Context(), vk8sv1.SiteTypeRegionalEdge); err != nil {
		t.Fatal(err)
	}
	wh := webhookStart(t)
	webhookCleanup(t, c, wh, flavorNS)
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: flavorNS}})
	mustCreate(t, c, &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: flavorNS, Name: "vk"},
		Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: lab.SharedNamespace + "/" + lab.AllSitesVirtualSite}})
	// A pod that says it is site3's is placed there: once the webhook's cache knows site3
	// is RegionalEdge, its dry run carries the flavor.
	waitFor(t, "the webhook to apply the flavor on site3", func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: flavorNS, Name: "probe", Labels: map[string]string{vk8sv1.LabelSite: "site3"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
		if err := c.Create(ctx, p, client.DryRunAll); err != nil {
			return false, nil
		}
		return p.Spec.Containers[0].Resources.Limits.Cpu().Equal(resource.MustParse("100m")), nil
	})

	manifest := corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("300m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
	}
	d := webhookDeployment("sized", 1, nil)
	d.Namespace = flavorNS
	d.Spec.Template.Spec.Containers[0].Resources = manifest
	mustCreate(t, c, d)

	tiny := overrides.BuiltinFlavors()[0]
	want, err := overrides.FlavorResources(&tiny)
	if err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	waitFor(t, "3 pods of sized, one per site, Running", func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &pods, client.InNamespace(flavorNS), client.MatchingLabels{"app": "sized"}); err != nil {
			return false, err
		}
		running := 0
		for i := range pods.Items {
			if webhookRunningReady(&pods.Items[i]) && pods.Items[i].DeletionTimestamp == nil {
				running++
			}
		}
		return running == 3 && len(pods.Items) == 3, nil
	})
	for _, p := range pods.Items {
		site := p.Labels[vk8sv1.LabelSite]
		expect := manifest
		if site == "site3" {
			expect = want
		}
		if got := p.Spec.Containers[0].Resources; !resourcesEqual(got, expect) {
			t.Errorf("host pod %s on %s: resources %v, want %v", p.Name, site, got, expect)
		}
		var onSite corev1.PodList
		if err := siteClient(t, site).List(t.Context(), &onSite, client.InNamespace("vk8s-"+flavorNS), client.MatchingLabels{"app": "sized"}); err != nil {
			t.Fatal(err)
		}
		if len(onSite.Items) != 1 || !resourcesEqual(onSite.Items[0].Spec.Containers[0].Resources, expect) {
			t.Errorf("%s runs %d pods of sized; want one with %v", site, len(onSite.Items), expect)
		}
	}
}

// resourcesEqual compares limits and requests by quantity.
func resourcesEqual(a, b corev1.ResourceRequirements) bool {
	same := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !v.Equal(w) {
				return false
			}
		}
		return true
	}
	return same(a.Limits, b.Limits) && same(a.Requests, b.Requests)
}

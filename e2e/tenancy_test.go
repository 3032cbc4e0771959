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
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/tenancy"
)

const (
	tenancyNS = "tenancy"
	// tenancyExcluded on a Site takes it out of the test's VirtualSite.
	tenancyExcluded = "tenancy.e2e.vk8s.io/excluded"
)

// TestTenancy checks the tenancy controllers of the provider against the lab: a
// VirtualKubernetes gets its site namespace and isolation NetworkPolicy on every site of
// its virtual-site, follows a site leaving it (keeping what a running pod still needs), and
// removes everything on deletion; VirtualSites report what they select.
func TestTenancy(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	ctx := t.Context()
	sites := []string{"site1", "site2", "site3"}
	siteNS := translate.SiteNamespace(provider.DefaultTenant, tenancyNS)
	if siteNS != "vk8s-tenancy" {
		t.Fatalf("site namespace %q", siteNS)
	}

	// The lab must look as it was afterwards, whatever happened: site3's label goes, the
	// namespace goes (and with it the VirtualKubernetes, whose finalizer the running
	// provider removes), and nothing of this test stays on the sites.
	t.Cleanup(func() {
		bg, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		setSiteLabel(bg, t, c, "site3", "")
		_ = c.Delete(bg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenancyNS}})
		err := wait.PollUntilContextCancel(bg, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKey{Name: tenancyNS}, &corev1.Namespace{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			// Do not leave a namespace stuck on the finalizer for later tests.
			vk := &vk8sv1.VirtualKubernetes{}
			if c.Get(bg, client.ObjectKey{Namespace: tenancyNS, Name: "vk"}, vk) == nil {
				_ = c.Patch(bg, vk, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
			}
			t.Errorf("namespace %s not gone: %v", tenancyNS, err)
		}
		for _, s := range sites {
			_ = siteClient(t, s).Delete(bg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: siteNS}})
		}
	})

	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenancyNS}})
	// Every Site but those labelled excluded.
	mustCreate(t, c, &vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: tenancyNS, Name: "edge"},
		Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: tenancyExcluded, Operator: metav1.LabelSelectorOpDoesNotExist}}}}})
	mustCreate(t, c, &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: tenancyNS, Name: "vk"},
		Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "edge"}})

	t.Run("the namespace and its NetworkPolicy on every site", func(t *testing.T) {
		vk := waitVirtualKubernetes(t, c, "Ready on 3 sites", func(vk *vk8sv1.VirtualKubernetes) bool {
			return meta.IsStatusConditionTrue(vk.Status.Conditions, vk8sv1.ConditionReady) && slices.Equal(vk.Status.Sites, sites)
		})
		cond := meta.FindStatusCondition(vk.Status.Conditions, vk8sv1.ConditionReady)
		if vk.Status.SiteNamespace != siteNS || vk.Status.ObservedGeneration != vk.Generation || cond.Reason != tenancy.ReasonProvisioned ||
			!slices.Contains(vk.Finalizers, vk8sv1.FinalizerSiteNamespaces) {
			t.Errorf("status %+v, finalizers %v", vk.Status, vk.Finalizers)
		}
		if want := "namespace vk8s-tenancy and NetworkPolicy vk8s-isolation exist on all 3 sites"; cond.Message != want {
			t.Errorf("Ready message %q, want %q", cond.Message, want)
		}
		for _, s := range sites {
			labels := kubectl(t, s, "get", "namespace", siteNS, "-o", "jsonpath={.metadata.labels}")
			if !strings.Contains(labels, `"vk8s.io/tenant":"vk8s"`) || !strings.Contains(labels, `"vk8s.io/host-namespace":"tenancy"`) {
				t.Errorf("%s: namespace labels %s", s, labels)
			}
			spec := kubectl(t, s, "-n", siteNS, "get", "networkpolicy", translate.IsolationPolicyName, "-o", "jsonpath={.spec}")
			var got map[string]any
			if err := json.Unmarshal([]byte(spec), &got); err != nil {
				t.Fatalf("%s: %v: %s", s, err, spec)
			}
			want := map[string]any{"podSelector": map[string]any{}, "policyTypes": []any{"Ingress"},
				"ingress": []any{map[string]any{"from": []any{map[string]any{"podSelector": map[string]any{}}}}}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: NetworkPolicy spec %s", s, spec)
			}
		}
		waitTenancyEvent(t, c, "vk", "Normal", tenancy.ReasonProvisioned)
	})

	t.Run("VirtualSite status lists its sites", func(t *testing.T) {
		waitVirtualSite(t, c, "edge", "3 sites", func(vs *vk8sv1.VirtualSite) bool {
			return slices.Equal(vs.Status.Sites, sites) && vs.Status.SiteCount == 3 &&
				meta.IsStatusConditionTrue(vs.Status.Conditions, vk8sv1.ConditionReady)
		})
	})

	// A pod of the namespace on site2 (bound to its virtual node, as the webhook would
	// place it), so that site2, when it leaves, keeps what the pod needs.
	waitAllVirtualNodes(t, c)
	pod := testPod("stays", "site2-node1")
	pod.Namespace = tenancyNS
	mustCreate(t, c, pod)
	waitPod(t, siteClient(t, "site2"), client.ObjectKey{Namespace: siteNS, Name: "stays"}, "site2 pod stays: Running",
		func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	t.Run("sites that leave the virtual-site", func(t *testing.T) {
		setSiteLabel(ctx, t, c, "site3", "true")
		setSiteLabel(ctx, t, c, "site2", "true")
		waitVirtualSite(t, c, "edge", "site1 only", func(vs *vk8sv1.VirtualSite) bool {
			return slices.Equal(vs.Status.Sites, []string{"site1"}) && vs.Status.SiteCount == 1
		})
		waitVirtualKubernetes(t, c, "site1 only, site2 departing", func(vk *vk8sv1.VirtualKubernetes) bool {
			return slices.Equal(vk.Status.Sites, []string{"site1"}) && slices.Equal(vk.Status.DepartedSites, []string{"site2"}) &&
				meta.IsStatusConditionTrue(vk.Status.Conditions, vk8sv1.ConditionReady)
		})
		waitSiteNamespaceGone(t, "site3", siteNS)
		// site2 still runs the pod: its namespace and isolation stay.
		kubectl(t, "site2", "-n", siteNS, "get", "networkpolicy", translate.IsolationPolicyName)
		// site2 comes back; then the pod goes and site2 leaves again: now it is emptied.
		setSiteLabel(ctx, t, c, "site2", "")
		waitVirtualKubernetes(t, c, "site1 and site2", func(vk *vk8sv1.VirtualKubernetes) bool {
			return slices.Equal(vk.Status.Sites, []string{"site1", "site2"}) && len(vk.Status.DepartedSites) == 0
		})
		if err := c.Delete(ctx, pod); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the host pod to go", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		setSiteLabel(ctx, t, c, "site2", "true")
		waitSiteNamespaceGone(t, "site2", siteNS)
		waitVirtualKubernetes(t, c, "site1 only, nothing departing", func(vk *vk8sv1.VirtualKubernetes) bool {
			return slices.Equal(vk.Status.Sites, []string{"site1"}) && len(vk.Status.DepartedSites) == 0
		})
		setSiteLabel(ctx, t, c, "site2", "")
		setSiteLabel(ctx, t, c, "site3", "")
		waitVirtualKubernetes(t, c, "Ready on 3 sites again", func(vk *vk8sv1.VirtualKubernetes) bool {
			return meta.IsStatusConditionTrue(vk.Status.Conditions, vk8sv1.ConditionReady) && slices.Equal(vk.Status.Sites, sites)
		})
		kubectl(t, "site3", "-n", siteNS, "get", "networkpolicy", translate.IsolationPolicyName)
	})

	t.Run("VirtualSites that select nothing say why", func(t *testing.T) {
		mustCreate(t, c, &vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: tenancyNS, Name: "nowhere"},
			Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchLabels: map[string]string{"region": "atlantis"}}}})
		mustCreate(t, c, &vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: tenancyNS, Name: "broken"},
			Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "region", Operator: metav1.LabelSelectorOpIn}}}}})
		for name, want := range map[string]struct{ reason, msg string }{
			"nowhere": {tenancy.ReasonNoSitesSelected, "no Site matches spec.siteSelector (region=atlantis), so workloads naming this virtual-site are refused; label Sites to match"},
			"broken":  {tenancy.ReasonInvalidSelector, "spec.siteSelector is invalid: values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty; fix it (kubectl edit virtualsite -n tenancy broken)"},
		} {
			vs := waitVirtualSite(t, c, name, "Ready=False", func(vs *vk8sv1.VirtualSite) bool {
				return meta.IsStatusConditionFalse(vs.Status.Conditions, vk8sv1.ConditionReady)
			})
			cond := meta.FindStatusCondition(vs.Status.Conditions, vk8sv1.ConditionReady)
			if cond.Reason != want.reason || !strings.HasPrefix(cond.Message, want.msg) || vs.Status.SiteCount != 0 || len(vs.Status.Sites) != 0 {
				t.Errorf("%s: Ready %s %q, sites %v; want %s %q...", name, cond.Reason, cond.Message, vs.Status.Sites, want.reason, want.msg)
			}
		}
		// The printer column reads the same.
		out := kubectl(t, "host", "-n", tenancyNS, "get", "virtualsites")
		if !strings.Contains(out, "nowhere") || !strings.Contains(out, "False") {
			t.Errorf("kubectl get virtualsites:\n%s", out)
		}
	})

	t.Run("deletion removes the namespace from every site", func(t *testing.T) {
		if err := c.Delete(ctx, &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: tenancyNS, Name: "vk"}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the VirtualKubernetes to go", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKey{Namespace: tenancyNS, Name: "vk"}, &vk8sv1.VirtualKubernetes{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		for _, s := range sites {
			waitSiteNamespaceGone(t, s, siteNS)
		}
	})

	t.Run("deleting the host namespace removes it from every site", func(t *testing.T) {
		// The VirtualSite goes with the namespace, at the same time as the
		// VirtualKubernetes: the finalizer works from the sites in its status.
		mustCreate(t, c, &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: tenancyNS, Name: "vk"},
			Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "edge"}})
		waitVirtualKubernetes(t, c, "Ready on 3 sites", func(vk *vk8sv1.VirtualKubernetes) bool {
			return meta.IsStatusConditionTrue(vk.Status.Conditions, vk8sv1.ConditionReady) && slices.Equal(vk.Status.Sites, sites)
		})
		if err := c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenancyNS}}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKey{Name: tenancyNS}, &corev1.Namespace{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		if err != nil {
			t.Fatalf("namespace %s not gone from the host: %v", tenancyNS, err)
		}
		for _, s := range sites {
			waitSiteNamespaceGone(t, s, siteNS)
		}
	})
}

// setSiteLabel sets tenancyExcluded on a Site to value, or removes it when value is empty.
func setSiteLabel(ctx context.Context, t *testing.T, c client.Client, site, value string) {
	t.Helper()
	v := "null"
	if value != "" {
		v = fmt.Sprintf("%q", value)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, tenancyExcluded, v)
	s := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}}
	if err := c.Patch(ctx, s, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Errorf("label Site %s: %v", site, err)
	}
}

func waitVirtualKubernetes(t *testing.T, c client.Client, what string, ok func(*vk8sv1.VirtualKubernetes) bool) *vk8sv1.VirtualKubernetes {
	t.Helper()
	var last *vk8sv1.VirtualKubernetes
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		vk := &vk8sv1.VirtualKubernetes{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: tenancyNS, Name: "vk"}, vk); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		last = vk
		return ok(vk), nil
	})
	if err != nil {
		t.Fatalf("waiting for VirtualKubernetes %s/vk: %s: %v; last status %+v", tenancyNS, what, err, last)
	}
	return last
}

func waitVirtualSite(t *testing.T, c client.Client, name, what string, ok func(*vk8sv1.VirtualSite) bool) *vk8sv1.VirtualSite {
	t.Helper()
	var last *vk8sv1.VirtualSite
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		vs := &vk8sv1.VirtualSite{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: tenancyNS, Name: name}, vs); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		last = vs
		return ok(vs), nil
	})
	if err != nil {
		t.Fatalf("waiting for VirtualSite %s/%s: %s: %v; last status %+v", tenancyNS, name, what, err, last)
	}
	return last
}

// waitSiteNamespaceGone waits until the namespace is gone from a site (the site's namespace
// controller empties it first).
func waitSiteNamespaceGone(t *testing.T, site, ns string) {
	t.Helper()
	sc := siteClient(t, site)
	err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		err := sc.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("waiting for namespace %s to go from %s: %v", ns, site, err)
	}
}

// waitTenancyEvent waits for an Event of type and reason on the VirtualKubernetes name.
func waitTenancyEvent(t *testing.T, c client.Client, name, typ, reason string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("a %s Event %s on VirtualKubernetes %s", typ, reason, name), func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := c.List(ctx, &list, client.InNamespace(tenancyNS)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
			return e.Regarding.Kind == "VirtualKubernetes" && e.Regarding.Name == name && e.Type == typ && e.Reason == reason
		}), nil
	})
}

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
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/translate"
)

const podSecurityNS = "podsecurity"

// TestPodSecurity: the site namespaces of a vK8s namespace enforce the Pod Security level
// of their Site (baseline by default), read from each site's own API server. A privileged
// pod sent to site2 stays off site2, and its host pod says why (the site, the level, the
// check it failed, the fix) in its SiteSynced condition and a Warning Event, while a
// baseline pod beside it runs. Setting site2's spec.podSecurity.enforce to privileged
// relabels site2's namespace (and only site2's), and the privileged pod runs; setting it
// back relabels the namespace again, and the pod keeps running.
func TestPodSecurity(t *testing.T) {
	c, siteNS := federatedNamespace(t, podSecurityNS)
	setSitePodSecurity(t, c, "site2", vk8sv1.PodSecurityBaseline)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		patch := fmt.Sprintf(`{"spec":{"podSecurity":{"enforce":%q}}}`, vk8sv1.PodSecurityBaseline)
		if err := c.Patch(ctx, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "site2"}},
			client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
			t.Errorf("set Site site2 back to baseline: %v", err)
		}
	})

	priv := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: podSecurityNS, Name: "privileged"},
		Spec: corev1.PodSpec{NodeName: "site2-node1", TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25",
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: podSecurityNS, Name: "plain"},
		Spec: corev1.PodSpec{NodeName: "site2-node2", TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
	mustCreate(t, c, priv)
	mustCreate(t, c, plain)

	waitPod(t, c, client.ObjectKeyFromObject(plain), "the baseline pod Running", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	want := []string{"site site2", siteNS, `level "baseline"`, "securityContext.privileged=true",
		`"podSecurity":{"enforce":"privileged"}`}
	refused := waitPod(t, c, client.ObjectKeyFromObject(priv), "the privileged pod refused by site2's Pod Security", func(p *corev1.Pod) bool {
		cond := podCondition(p, vk8sv1.ConditionSiteSynced)
		return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == translate.ReasonPodSecurity && containsAll(cond.Message, want)
	})
	if refused.Status.Phase != corev1.PodPending {
		t.Errorf("refused host pod is %s, want Pending", refused.Status.Phase)
	}
	t.Logf("host pod condition: %s", podCondition(refused, vk8sv1.ConditionSiteSynced).Message)
	waitFor(t, "a Warning Event PodSecurityRejected on host pod privileged", func(ctx context.Context) (bool, error) {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace(podSecurityNS)); err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == priv.Name && e.Type == corev1.EventTypeWarning &&
				e.Reason == translate.ReasonPodSecurity && containsAll(e.Message, want) {
				return true, nil
			}
		}
		return false, nil
	})
	if err := siteClient(t, "site2").Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: priv.Name}, &corev1.Pod{}); err == nil {
		t.Errorf("the privileged pod is on site2's API server")
	}
	for _, site := range []string{"site1", "site2", "site3"} {
		waitSiteNamespaceLevel(t, site, siteNS, vk8sv1.PodSecurityBaseline)
	}

	// site2 allows privileged pods: its namespace follows, the others do not.
	setSitePodSecurity(t, c, "site2", vk8sv1.PodSecurityPrivileged)
	waitSiteNamespaceLevel(t, "site2", siteNS, vk8sv1.PodSecurityPrivileged)
	waitPod(t, c, client.ObjectKeyFromObject(priv), "the privileged pod Running once site2 allows it", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	sp := &corev1.Pod{}
	if err := siteClient(t, "site2").Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: priv.Name}, sp); err != nil {
		t.Fatalf("the privileged pod is not on site2: %v", err)
	}
	if sc := sp.Spec.Containers[0].SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Errorf("site2's pod lost its privileged securityContext: %+v", sc)
	}
	for _, site := range []string{"site1", "site3"} {
		if got := siteNamespaceLevel(t, site, siteNS); got != string(vk8sv1.PodSecurityBaseline) {
			t.Errorf("namespace %s on %s enforces %q after site2 changed, want baseline", siteNS, site, got)
		}
	}

	// And back: the namespace is relabelled; the running pod stays (admission does not evict).
	setSitePodSecurity(t, c, "site2", vk8sv1.PodSecurityBaseline)
	waitSiteNamespaceLevel(t, "site2", siteNS, vk8sv1.PodSecurityBaseline)
	if err := siteClient(t, "site2").Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: priv.Name}, sp); err != nil || sp.DeletionTimestamp != nil {
		t.Errorf("the privileged pod on site2 after the level went back: %v (deleting: %v), want it running", err, sp.DeletionTimestamp)
	}
}

// setSitePodSecurity sets a Site's spec.podSecurity.enforce.
func setSitePodSecurity(t *testing.T, c client.Client, site string, level vk8sv1.PodSecurityLevel) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"podSecurity":{"enforce":%q}}}`, level)
	if err := c.Patch(t.Context(), &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}},
		client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatalf("set Site %s spec.podSecurity.enforce to %s: %v", site, level, err)
	}
}

// siteNamespaceLevel reads the enforced Pod Security level of a namespace from the site's
// own API server ("" when it has no such label, "<missing>" when there is no namespace).
func siteNamespaceLevel(t *testing.T, site, namespace string) string {
	t.Helper()
	ns := &corev1.Namespace{}
	if err := siteClient(t, site).Get(t.Context(), client.ObjectKey{Name: namespace}, ns); err != nil {
		return "<missing>"
	}
	return ns.Labels[vk8sv1.LabelPodSecurityEnforce]
}

// waitSiteNamespaceLevel waits until the namespace on site carries the Pod Security labels
// of level (enforce, warn and audit, version latest), read from the site's API server.
func waitSiteNamespaceLevel(t *testing.T, site, namespace string, level vk8sv1.PodSecurityLevel) {
	t.Helper()
	var last map[string]string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		ns := &corev1.Namespace{}
		if err := siteClient(t, site).Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		last = ns.Labels
		for k, v := range translate.PodSecurityLabels(level) {
			if ns.Labels[k] != v {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("waiting for namespace %s on %s to enforce Pod Security level %s: %v; its labels: %v", namespace, site, level, err, last)
	}
}

// containsAll says whether s contains every one of subs.
func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

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

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/provider"
)

const podsNS = "pods-e2e"

// siteNS is where the host namespace's pods run on the sites.
var siteNS = translate.SiteNamespace(provider.DefaultTenant, podsNS)

func TestProviderPods(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	ctx := t.Context()
	hostNamespace(t, host, podsNS)
	waitAllVirtualNodes(t, host)
	mustCreate(t, host, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: podsNS},
		Data: map[string]string{"mode": "edge"}})
	mustCreate(t, host, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: podsNS},
		StringData: map[string]string{"token": "s3cret"}})

	t.Run("a pod bound to site2-node3 runs on site2's node3 and shows Running in the host", func(t *testing.T) {
		p := testPod("web", "site2-node3")
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "mode"}}}}
		p.Spec.Volumes = []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "creds", MountPath: "/creds"}}
		mustCreate(t, host, p)
		hp := waitHostPod(t, "web", "Running with a pod IP", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != ""
		})
		sp := &corev1.Pod{}
		if err := siteClient(t, "site2").Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "web"}, sp); err != nil {
			t.Fatalf("the pod is not on site2: %v", err)
		}
		if sp.Spec.NodeName != "node3" {
			t.Errorf("site pod runs on %q, want node3", sp.Spec.NodeName)
		}
		if got := sp.Labels[vk8sv1.LabelHostPodUID]; got != string(hp.UID) {
			t.Errorf("site pod's host UID label = %q, want %q", got, hp.UID)
		}
		if got := sp.Labels[vk8sv1.LabelHostSite]; got != "site2" {
			t.Errorf("site pod's Site label = %q, want site2", got)
		}
		if hp.Status.PodIP != sp.Status.PodIP {
			t.Errorf("host pod IP %q, site pod IP %q: want the same", hp.Status.PodIP, sp.Status.PodIP)
		}
		if env := sp.Spec.Containers[0].Env[0]; env.ValueFrom == nil || env.Value != "" {
			t.Errorf("the environment was resolved into the site pod (%+v); want the reference", env)
		}
		for _, v := range sp.Spec.Volumes {
			if v.Projected != nil && strings.HasPrefix(v.Name, "kube-api-access-") && v.Name == hostTokenVolume(hp) {
				t.Errorf("the host's token volume %s reached the site", v.Name)
			}
		}
		out := kubectl(t, "host", "get", "pod", "web", "-n", podsNS, "-o", "wide", "--no-headers")
		if f := strings.Fields(out); len(f) < 7 || f[2] != "Running" || f[6] != "site2-node3" {
			t.Errorf("kubectl get pods -o wide: %q; want STATUS Running and NODE site2-node3", out)
		}
		// The pod's ConfigMap and Secret are on site2, and only there.
		for _, site := range []string{"site1", "site2", "site3"} {
			sc := siteClient(t, site)
			errCM := sc.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "settings"}, &corev1.ConfigMap{})
			errS := sc.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "creds"}, &corev1.Secret{})
			if site == "site2" && (errCM != nil || errS != nil) {
				t.Errorf("site2 lacks the pod's ConfigMap or Secret: %v, %v", errCM, errS)
			}
			if site != "site2" && (!apierrors.IsNotFound(errCM) || !apierrors.IsNotFound(errS)) {
				t.Errorf("%s has the ConfigMap or Secret of a pod it does not run: %v, %v", site, errCM, errS)
			}
		}
	})

	t.Run("the host status is the site's: phase, conditions, container statuses, pod IP", func(t *testing.T) {
		var hp, sp *corev1.Pod
		waitFor(t, "host and site statuses to agree", func(ctx context.Context) (bool, error) {
			hp, sp = &corev1.Pod{}, &corev1.Pod{}
			if err := host.Get(ctx, client.ObjectKey{Namespace: podsNS, Name: "web"}, hp); err != nil {
				return false, err
			}
			if err := siteClient(t, "site2").Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "web"}, sp); err != nil {
				return false, err
			}
			return equality.Semantic.DeepEqual(translate.HostStatus(hp, sp), hp.Status), nil
		})
		if len(hp.Status.ContainerStatuses) != 1 || hp.Status.StartTime == nil || len(hp.Status.Conditions) == 0 {
			t.Errorf("host status lacks what the site reported: %+v", hp.Status)
		}
	})

	t.Run("a pod's ServiceAccount is the site's: copied without the host's token, mounted by the site, its token calls the site's API", func(t *testing.T) {
		mustCreate(t, host, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "runner", Namespace: podsNS}})
		p := testPod("runner", "site2-node1")
		p.Spec.ServiceAccountName = "runner"
		mustCreate(t, host, p)
		hp := waitHostPod(t, "runner", "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		sp := waitSitePod(t, "site2", "runner", "present", func(*corev1.Pod) bool { return true })
		if err := siteClient(t, "site2").Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "runner"}, &corev1.ServiceAccount{}); err != nil {
			t.Errorf("the ServiceAccount is not on site2: %v", err)
		}
		siteToken, hostToken := hostTokenVolume(sp), hostTokenVolume(hp)
		if siteToken == "" || siteToken == hostToken {
			t.Errorf("site pod token volume %q (host's %q): want the site's own", siteToken, hostToken)
		}
		for _, v := range sp.Spec.Volumes {
			if v.Name != siteToken {
				continue
			}
			// The token, ca.crt and namespace, as the site's ServiceAccount admission mounts them.
			var token, ca, namespace bool
			for _, src := range ptr.Deref(v.Projected, corev1.ProjectedVolumeSource{}).Sources {
				token = token || src.ServiceAccountToken != nil
				ca = ca || src.ConfigMap != nil && src.ConfigMap.Name == "kube-root-ca.crt"
				namespace = namespace || src.DownwardAPI != nil && len(src.DownwardAPI.Items) > 0 && src.DownwardAPI.Items[0].Path == "namespace"
			}
			if !token || !ca || !namespace {
				t.Errorf("site token volume %+v: want a projected service-account token, ca.crt and namespace", v)
			}
		}
		if err := siteClient(t, "site2").Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "kube-root-ca.crt"}, &corev1.ConfigMap{}); err != nil {
			t.Errorf("the site namespace has no kube-root-ca.crt for the pod's ca.crt: %v", err)
		}
		// The token the site's kubelet mounts is bound to the site pod; one bound the same
		// way calls site2's API as the pod's ServiceAccount.
		if user := sitePodTokenUser(t, "site2", sp); user != "system:serviceaccount:"+siteNS+":runner" {
			t.Errorf("a token of the site pod's ServiceAccount authenticates on site2 as %q, want system:serviceaccount:%s:runner", user, siteNS)
		}
		if err := host.Delete(ctx, hp); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a pod's PersistentVolumeClaim is copied and stays until the host's claim goes", func(t *testing.T) {
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: podsNS},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		mustCreate(t, host, claim)
		p := testPod("keeper", "site1-node3")
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		mustCreate(t, host, p)
		site1 := siteClient(t, "site1")
		key := client.ObjectKey{Namespace: siteNS, Name: "data"}
		waitFor(t, "the claim on site1", func(ctx context.Context) (bool, error) {
			return site1.Get(ctx, key, &corev1.PersistentVolumeClaim{}) == nil, nil
		})
		// The pod goes; the claim, which holds the site's data, stays.
		if err := host.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the site pod to go", func(ctx context.Context) (bool, error) {
			return apierrors.IsNotFound(site1.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "keeper"}, &corev1.Pod{})), nil
		})
		time.Sleep(2 * providerSweep) // sweeps that would delete an unused copy have run
		if err := site1.Get(ctx, key, &corev1.PersistentVolumeClaim{}); err != nil {
			t.Fatalf("the claim left site1 with its pod: %v", err)
		}
		if err := host.Delete(ctx, claim); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the claim to leave site1 with the host's", func(ctx context.Context) (bool, error) {
			return apierrors.IsNotFound(site1.Get(ctx, key, &corev1.PersistentVolumeClaim{})), nil
		})
	})

	t.Run("label, annotation and image edits in the host reach the site pod", func(t *testing.T) {
		hp := &corev1.Pod{}
		if err := host.Get(ctx, client.ObjectKey{Namespace: podsNS, Name: "web"}, hp); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(hp.DeepCopy())
		hp.Labels["tier"] = "gold"
		hp.Annotations = map[string]string{"note": "edited"}
		hp.Spec.Containers[0].Image = "nginx:1.27"
		if err := host.Patch(ctx, hp, patch); err != nil {
			t.Fatal(err)
		}
		waitSitePod(t, "site2", "web", "label, annotation and image from the host", func(sp *corev1.Pod) bool {
			return sp.Labels["tier"] == "gold" && sp.Annotations["note"] == "edited" && sp.Spec.Containers[0].Image == "nginx:1.27"
		})
	})

	t.Run("a Secret edited in the host follows on the site", func(t *testing.T) {
		copied := &corev1.Secret{}
		if err := siteClient(t, "site2").Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "creds"}, copied); err != nil ||
			string(copied.Data["token"]) != "s3cret" {
			t.Fatalf("site2's copy of the Secret before the edit: %v, %q; want the host's value", err, copied.Data["token"])
		}
		s := &corev1.Secret{}
		if err := host.Get(ctx, client.ObjectKey{Namespace: podsNS, Name: "creds"}, s); err != nil {
			t.Fatal(err)
		}
		s.Data["token"] = []byte("rotated")
		if err := host.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the site's copy of the Secret to be rotated", func(ctx context.Context) (bool, error) {
			got := &corev1.Secret{}
			err := siteClient(t, "site2").Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "creds"}, got)
			return err == nil && string(got.Data["token"]) == "rotated", nil
		})
	})

	t.Run("a site pod deleted behind the provider's back is created again", func(t *testing.T) {
		sc := siteClient(t, "site2")
		old := waitSitePod(t, "site2", "web", "present", func(*corev1.Pod) bool { return true })
		if err := sc.Delete(ctx, old, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		waitSitePod(t, "site2", "web", "created again", func(sp *corev1.Pod) bool { return sp.UID != old.UID })
		waitHostPod(t, "web", "Running again", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	})

	t.Run("a restartPolicy Never pod deleted on its site fails in the host", func(t *testing.T) {
		p := testPod("once", "site1-node1")
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		mustCreate(t, host, p)
		waitHostPod(t, "once", "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		sp := waitSitePod(t, "site1", "once", "present", func(*corev1.Pod) bool { return true })
		if err := siteClient(t, "site1").Delete(ctx, sp, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		hp := waitHostPod(t, "once", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
		if hp.Status.Reason != translate.ReasonSitePodDeleted {
			t.Errorf("reason %q, want %q", hp.Status.Reason, translate.ReasonSitePodDeleted)
		}
	})

	t.Run("a pod that needs a missing ConfigMap waits, says why, and starts once it exists", func(t *testing.T) {
		p := testPod("needs-cm", "site3-node1")
		p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "late"}}}}
		mustCreate(t, host, p)
		waitHostPod(t, "needs-cm", "a SiteSynced=False condition naming the ConfigMap", func(p *corev1.Pod) bool {
			c := podCondition(p, vk8sv1.ConditionSiteSynced)
			return c != nil && c.Status == corev1.ConditionFalse && c.Reason == translate.ReasonMissingReference &&
				strings.Contains(c.Message, "ConfigMap "+podsNS+"/late")
		})
		mustCreate(t, host, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: podsNS}})
		waitHostPod(t, "needs-cm", "Running without the condition", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning && podCondition(p, vk8sv1.ConditionSiteSynced) == nil
		})
	})

	t.Run("a pod its site cannot schedule says why in the host, then runs once the site can", func(t *testing.T) {
		site := siteClient(t, "site3")
		setUnschedulable(t, site, "node2", true)
		t.Cleanup(func() { setUnschedulable(t, site, "node2", false) })
		mustCreate(t, host, testPod("cordoned", "site3-node2"))
		waitHostPod(t, "cordoned", "Pending with vk8s.io/SiteScheduled=False, the site scheduler's reason", func(p *corev1.Pod) bool {
			c := podCondition(p, vk8sv1.ConditionSiteScheduled)
			return p.Status.Phase == corev1.PodPending && c != nil && c.Status == corev1.ConditionFalse &&
				c.Reason == corev1.PodReasonUnschedulable && strings.Contains(c.Message, "unschedulable")
		})
		waitWarningEvent(t, "cordoned", translate.ReasonSiteUnschedulable, "unschedulable")
		setUnschedulable(t, site, "node2", false)
		waitHostPod(t, "cordoned", "Running with vk8s.io/SiteScheduled=True", func(p *corev1.Pod) bool {
			c := podCondition(p, vk8sv1.ConditionSiteScheduled)
			return p.Status.Phase == corev1.PodRunning && c != nil && c.Status == corev1.ConditionTrue
		})
	})

	t.Run("a pod the site refuses carries the site's error, then runs when the site accepts it", func(t *testing.T) {
		sc := siteClient(t, "site3")
		quota := &corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Name: "no-pods", Namespace: siteNS},
			Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}},
		}
		mustCreate(t, sc, quota)
		// Quota admission counts only once the quota controller has computed the usage.
		waitFor(t, "the site's quota to count the pod already there", func(ctx context.Context) (bool, error) {
			q := &corev1.ResourceQuota{}
			if err := sc.Get(ctx, client.ObjectKeyFromObject(quota), q); err != nil {
				return false, err
			}
			used := q.Status.Used[corev1.ResourcePods]
			return used.Value() >= 1, nil
		})
		mustCreate(t, host, testPod("refused", "site3-node2"))
		hp := waitHostPod(t, "refused", "a SiteSynced=False condition quoting the quota", func(p *corev1.Pod) bool {
			c := podCondition(p, vk8sv1.ConditionSiteSynced)
			return c != nil && c.Reason == translate.ReasonSiteRejected && strings.Contains(c.Message, "exceeded quota")
		})
		if hp.Status.Phase != corev1.PodPending {
			t.Errorf("phase %s, want Pending while the site refuses", hp.Status.Phase)
		}
		waitWarningEvent(t, "refused", translate.ReasonSiteRejected, "exceeded quota")
		if err := sc.Delete(ctx, quota); err != nil {
			t.Fatal(err)
		}
		waitHostPod(t, "refused", "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	})

	// A site's ValidatingAdmissionPolicy answers 422 Invalid unless its validation says
	// another reason: the pod as written is unacceptable there, so the host pod fails. With
	// reason Forbidden it answers 403, which the provider retries (as for a quota): the pod
	// runs once the policy lets it.
	t.Run("a pod a site's admission policy forbids says why within 30 s, and runs once the policy goes", func(t *testing.T) {
		sc := siteClient(t, "site1")
		deny := denyPodsPolicy(t, sc, "forbidden", metav1.StatusReasonForbidden)
		if !apierrors.IsForbidden(deny) || deny.(apierrors.APIStatus).Status().Code != 403 {
			t.Fatalf("site1's answer to a pod the policy forbids: %v (reason %q); want 403 Forbidden", deny, apierrors.ReasonForError(deny))
		}
		t.Logf("site1 answers: %d %s: %v", deny.(apierrors.APIStatus).Status().Code, apierrors.ReasonForError(deny), deny)
		p := testPod("forbidden", "site1-node2")
		p.Labels[denyLabel] = "forbidden"
		start := time.Now()
		mustCreate(t, host, p)
		hp := waitHostPod(t, "forbidden", "a SiteSynced=False condition quoting the policy", func(p *corev1.Pod) bool {
			c := podCondition(p, vk8sv1.ConditionSiteSynced)
			return c != nil && c.Reason == translate.ReasonSiteRejected && strings.Contains(c.Message, denyMessage("forbidden"))
		})
		waitWarningEvent(t, "forbidden", translate.ReasonSiteRejected, denyMessage("forbidden"))
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("the condition and the Event took %s, want at most 30 s", d)
		}
		if hp.Status.Phase != corev1.PodPending {
			t.Errorf("phase %s, want Pending while the site forbids the pod", hp.Status.Phase)
		}
		deletePolicy(t, sc, "forbidden")
		waitHostPod(t, "forbidden", "Running once the policy is gone", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	})

	t.Run("a pod a site's admission policy finds Invalid (its default reason) fails in the host, quoting the policy", func(t *testing.T) {
		sc := siteClient(t, "site1")
		for _, tc := range []struct {
			value  string
			reason metav1.StatusReason
		}{{"default", ""}, {"invalid", metav1.StatusReasonInvalid}} {
			deny := denyPodsPolicy(t, sc, tc.value, tc.reason)
			if !apierrors.IsInvalid(deny) || deny.(apierrors.APIStatus).Status().Code != 422 {
				t.Fatalf("site1's answer to a pod the policy (reason %q) finds Invalid: %v (reason %q); want 422 Invalid",
					tc.reason, deny, apierrors.ReasonForError(deny))
			}
			t.Logf("site1 answers (policy reason %q): %d %s: %v", tc.reason, deny.(apierrors.APIStatus).Status().Code, apierrors.ReasonForError(deny), deny)
			name := "invalid-" + tc.value
			p := testPod(name, "site1-node2")
			p.Labels[denyLabel] = tc.value
			start := time.Now()
			mustCreate(t, host, p)
			hp := waitHostPod(t, name, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
			if hp.Status.Reason != translate.ReasonSiteRejected || !strings.Contains(hp.Status.Message, denyMessage(tc.value)) {
				t.Errorf("reason %q, message %q; want %s quoting the policy", hp.Status.Reason, hp.Status.Message, translate.ReasonSiteRejected)
			}
			if c := podCondition(hp, vk8sv1.ConditionSiteSynced); c == nil || c.Status != corev1.ConditionFalse || !strings.Contains(c.Message, denyMessage(tc.value)) {
				t.Errorf("condition %s: %+v; want False quoting the policy", vk8sv1.ConditionSiteSynced, c)
			}
			waitWarningEvent(t, name, translate.ReasonSiteRejected, denyMessage(tc.value))
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("the Failed phase and the Event took %s, want at most 30 s", d)
			}
			deletePolicy(t, sc, tc.value)
		}
		// Failed for good: not created on the site later, even with the policies gone.
		time.Sleep(2 * providerSweep)
		for _, name := range []string{"invalid-default", "invalid-invalid"} {
			if err := sc.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: name}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
				t.Errorf("failed pod %s is on site1 (%v); want it never created", name, err)
			}
		}
	})

	t.Run("a site pod whose host pod does not exist is deleted", func(t *testing.T) {
		sc := siteClient(t, "site1")
		orphan := testPod("orphan", "")
		orphan.Namespace = siteNS
		orphan.Labels = map[string]string{vk8sv1.LabelTenant: provider.DefaultTenant,
			vk8sv1.LabelHostNamespace: podsNS, vk8sv1.LabelHostPodUID: "00000000-0000-0000-0000-000000000000"}
		mustCreate(t, sc, orphan)
		waitFor(t, "the orphan site pod to go", func(ctx context.Context) (bool, error) {
			err := sc.Get(ctx, client.ObjectKeyFromObject(orphan), &corev1.Pod{})
			return apierrors.IsNotFound(err), nil
		})
	})

	t.Run("deleting the host pod deletes the site pod and the copies no pod uses", func(t *testing.T) {
		hp := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: podsNS, Name: "web"}}
		if err := host.Delete(ctx, hp); err != nil {
			t.Fatal(err)
		}
		sc := siteClient(t, "site2")
		waitFor(t, "the host pod, the site pod and its Secret and ConfigMap to go", func(ctx context.Context) (bool, error) {
			gone := func(c client.Client, obj client.Object) bool {
				return apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: obj.GetName()}, obj))
			}
			return gone(host, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: podsNS, Name: "web"}}) &&
				gone(sc, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "web"}}) &&
				gone(sc, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "creds"}}) &&
				gone(sc, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "settings"}}), nil
		})
	})
}

// denyLabel is the label of pods that denyPodsPolicy's policies refuse.
const denyLabel = "vk8s-e2e/deny"

func denyMessage(value string) string {
	return fmt.Sprintf("pods labelled %s=%s may not run on this site", denyLabel, value)
}

// denyPodsPolicy installs on a site a ValidatingAdmissionPolicy and its binding, named
// deny-<value>, that refuse pods labelled denyLabel=value in siteNS (with reason; none:
// the API's default, Invalid), and returns the error the site answers a dry-run create of such a
// pod with, once the policy is in force. The policy goes when the test ends.
func denyPodsPolicy(t *testing.T, sc client.Client, value string, reason metav1.StatusReason) error {
	t.Helper()
	name := "deny-" + value
	v := admissionregistrationv1.Validation{
		Expression: fmt.Sprintf("!has(object.metadata.labels) || !(%q in object.metadata.labels) || object.metadata.labels[%q] != %q",
			denyLabel, denyLabel, value),
		Message: denyMessage(value),
	}
	if reason != "" {
		v.Reason = &reason
	}
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{v},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: siteNS},
			}},
		},
	}
	mustCreate(t, sc, policy)
	mustCreate(t, sc, binding)
	t.Cleanup(func() { deletePolicy(t, sc, value) })
	probe := testPod("probe-"+value, "")
	probe.Namespace = siteNS
	probe.Labels[denyLabel] = value
	var refusal error
	waitFor(t, "site policy "+name+" in force", func(ctx context.Context) (bool, error) {
		refusal = sc.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return refusal != nil && strings.Contains(refusal.Error(), denyMessage(value)), nil
	})
	return refusal
}

// deletePolicy removes what denyPodsPolicy installed.
func deletePolicy(t *testing.T, sc client.Client, value string) {
	t.Helper()
	meta := metav1.ObjectMeta{Name: "deny-" + value}
	for _, obj := range []client.Object{
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: meta},
		&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: meta},
	} {
		if err := sc.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %T %s: %v", obj, meta.Name, err)
		}
	}
}

// waitWarningEvent waits for a Warning Event on host pod name in podsNS with reason and a
// message containing text.
func waitWarningEvent(t *testing.T, name, reason, text string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("a Warning Event %s on host pod %s", reason, name), func(ctx context.Context) (bool, error) {
		evs := &corev1.EventList{}
		if err := hostClient(t).List(ctx, evs, client.InNamespace(podsNS)); err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == name && e.Type == corev1.EventTypeWarning && e.Reason == reason && strings.Contains(e.Message, text) {
				return true, nil
			}
		}
		return false, nil
	})
}

// testPod is a pod for virtual node node (none: unbound) that tolerates virtual nodes.
func testPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podsNS, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Tolerations:                   []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}},
			Containers:                    []corev1.Container{{Name: "app", Image: "nginx:1.25"}},
		},
	}
}

// sitePodTokenUser asks site for a token of pod's ServiceAccount bound to the pod, as the
// site's kubelet does for the pod's projected volume, and returns whom site's API server
// takes that token for.
func sitePodTokenUser(t *testing.T, site string, pod *corev1.Pod) string {
	t.Helper()
	cfg, err := fleet.RESTConfig(site)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := clientset(t, site).CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the site pod's ServiceAccount %s/%s: %v", pod.Namespace, pod.Spec.ServiceAccountName, err)
	}
	asPod, err := kubernetes.NewForConfig(&rest.Config{Host: cfg.Host, TLSClientConfig: rest.TLSClientConfig{CAData: cfg.CAData, CAFile: cfg.CAFile}, BearerToken: tr.Status.Token})
	if err != nil {
		t.Fatal(err)
	}
	review, err := asPod.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview on %s with the pod's token: %v", site, err)
	}
	return review.Status.UserInfo.Username
}

func hostTokenVolume(p *corev1.Pod) string {
	for _, v := range p.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") {
			return v.Name
		}
	}
	return ""
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// waitFor polls cond every 250ms for up to a minute.
func waitFor(t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, time.Minute, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func waitHostPod(t *testing.T, name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	return waitPod(t, hostClient(t), client.ObjectKey{Namespace: podsNS, Name: name}, "host pod "+name+": "+what, ok)
}

func waitSitePod(t *testing.T, site, name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	return waitPod(t, siteClient(t, site), client.ObjectKey{Namespace: siteNS, Name: name}, fmt.Sprintf("%s pod %s: %s", site, name, what), ok)
}

func waitPod(t *testing.T, c client.Client, key client.ObjectKey, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	if err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := c.Get(ctx, key, p); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		last = p
		return ok(p), nil
	}); err != nil {
		if last != nil {
			t.Fatalf("waiting for %s: %v; last phase %s, reason %q, conditions %+v", what, err, last.Status.Phase, last.Status.Reason, last.Status.Conditions)
		}
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return last
}

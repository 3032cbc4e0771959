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
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/provider"
)

// What the site's admission and the site's controller add to the site pods.
const (
	meshLabel       = "mesh.example.com/injected"
	meshAnnotation  = "mesh.example.com/status"
	mirrorRegistry  = "mirror.local/"
	ownerLabel      = "site.example.com/owner"
	ownerAnnotation = "site.example.com/note"
	// siteImage is the image the site controller gives its pod.
	siteImage = "registry.site2.example/nginx:1.25"
)

// TestSiteMutationsRespected: what a site adds to the pods vk8s creates there (SPEC §4,
// "Ownership") stays when the host pod changes and when the provider restarts, and so
// does what it adds to the copy of a Secret a pod uses. Site2
// runs a mutating webhook, as a service mesh injector and a registry mirror do, that adds
// a label and an annotation to the pods of the test's site namespace and rewrites their
// images to a mirror, at creation only; a site controller patches another pod at run time
// (a label, an annotation, its image). The host then labels and annotates both pods, drops
// its label, and changes one pod's image: each host change reaches the site, every site
// addition stays, and only the image the host itself changed replaces the mirror's.
// Before vk8s recorded what it last wrote, each host change put the site pod back to the
// host pod (losing the site's labels, annotations and images), and so did a restart; a
// label added to a copy was removed at once, and its annotations at the next host change.
func TestSiteMutationsRespected(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	ns := plainNS + "-mutation"
	hostNamespace(t, c, ns)
	siteNS := translate.SiteNamespace(provider.DefaultTenant, ns)
	site2 := siteClient(t, "site2")
	siteMutatingWebhook(t, site2, ns)

	// Bound by hand, and tolerating vk8s' taint by its key: a pod bound by hand alone is
	// taken, after a provider restart, for one the host's scheduler placed (its status has
	// the site's PodScheduled=True) and left alone.
	bound := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](1),
				Tolerations: []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}},
				Containers:  []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
	}
	admitted, patched := bound("admitted", "site2-node1"), bound("patched", "site2-node2")
	// Pod patched uses a Secret, which vk8s copies to site2 with it. (Not a ConfigMap: in
	// a namespace that is not a vK8s namespace, the mirror deletes the provider's copy of a
	// ConfigMap whenever it looks at it, and the provider makes it again.)
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds", Labels: map[string]string{"app": "creds"}},
		Data: map[string][]byte{"mode": []byte("edge")}}
	mustCreate(t, c, creds)
	patched.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}
	for _, p := range []*corev1.Pod{admitted, patched} {
		mustCreate(t, c, p)
		waitPod(t, c, client.ObjectKeyFromObject(p), "pod "+p.Name+" Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	}
	sitePod := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: siteNS, Name: name} }
	sp := waitPod(t, site2, sitePod("admitted"), "site pod admitted, as site2's admission made it", func(*corev1.Pod) bool { return true })
	if sp.Labels[meshLabel] != "true" || sp.Annotations[meshAnnotation] != "injected" || sp.Spec.Containers[0].Image != mirrorRegistry+"nginx:1.25" {
		t.Fatalf("site2's webhook did not mutate the site pod: labels %v, annotations %v, image %s", sp.Labels, sp.Annotations, sp.Spec.Containers[0].Image)
	}
	// A site controller's additions to site pod patched, at run time.
	siteController := func(t *testing.T) {
		t.Helper()
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"ops"},"annotations":{%q:"kept"}},"spec":{"containers":[{"name":"app","image":%q}]}}`,
			ownerLabel, ownerAnnotation, siteImage)
		if err := site2.Patch(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "patched"}},
			client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
			t.Fatalf("patch the site pod as a site controller: %v", err)
		}
	}
	siteController(t)

	// kept checks the site's additions to pod name; image is the image it should have.
	kept := func(t *testing.T, name, image string) {
		t.Helper()
		sp := &corev1.Pod{}
		if err := site2.Get(t.Context(), sitePod(name), sp); err != nil {
			t.Fatal(err)
		}
		label, annotation := meshLabel, meshAnnotation
		if name == "patched" {
			label, annotation = ownerLabel, ownerAnnotation
		}
		if sp.Labels[label] == "" || sp.Annotations[annotation] == "" || sp.Spec.Containers[0].Image != image {
			t.Errorf("site pod %s lost what the site added: labels %v, annotations %v, image %s (want %s, label %s, annotation %s)",
				name, sp.Labels, sp.Annotations, sp.Spec.Containers[0].Image, image, label, annotation)
		}
		if sp.Labels[vk8sv1.LabelTenant] != provider.DefaultTenant || sp.Labels["app"] != name {
			t.Errorf("site pod %s lost vk8s' labels or the host's: %v", name, sp.Labels)
		}
	}
	// settled waits until the host's change reached site pod name, then a little longer, so
	// that a later write putting the site pod back would be seen.
	settled := func(t *testing.T, name, what string, ok func(*corev1.Pod) bool) {
		t.Helper()
		waitPod(t, site2, sitePod(name), "site pod "+name+": "+what, ok)
		time.Sleep(2 * time.Second)
	}

	t.Run("host label and annotation edits reach the site; the site's additions stay", func(t *testing.T) {
		for _, name := range []string{"admitted", "patched"} {
			kubectl(t, "host", "label", "pod", name, "-n", ns, "tier=gold")
			kubectl(t, "host", "annotate", "pod", name, "-n", ns, "note=edited")
		}
		for _, name := range []string{"admitted", "patched"} {
			settled(t, name, "tier=gold and note=edited", func(p *corev1.Pod) bool {
				return p.Labels["tier"] == "gold" && p.Annotations["note"] == "edited"
			})
		}
		kept(t, "admitted", mirrorRegistry+"nginx:1.25")
		kept(t, "patched", siteImage)
	})

	t.Run("a copy keeps what the site added to it; the host's data and labels reach it", func(t *testing.T) {
		key := client.ObjectKey{Namespace: siteNS, Name: "creds"}
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"ops"},"annotations":{%q:"kept"}}}`, ownerLabel, ownerAnnotation)
		if err := site2.Patch(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "creds"}},
			client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatalf("patch the copy as a site controller: %v", err)
		}
		creds.Data["mode"] = []byte("core")
		creds.Labels["tier"] = "gold"
		if err := c.Update(t.Context(), creds); err != nil {
			t.Fatal(err)
		}
		copied := &corev1.Secret{}
		waitFor(t, "the copy of creds with mode=core and tier=gold", func(ctx context.Context) (bool, error) {
			err := site2.Get(ctx, key, copied)
			return err == nil && string(copied.Data["mode"]) == "core" && copied.Labels["tier"] == "gold", client.IgnoreNotFound(err)
		})
		time.Sleep(2 * time.Second) // a write putting the copy back would be seen
		if err := site2.Get(t.Context(), key, copied); err != nil {
			t.Fatal(err)
		}
		if copied.Labels[ownerLabel] != "ops" || copied.Annotations[ownerAnnotation] != "kept" || copied.Labels["app"] != "creds" ||
			copied.Labels[vk8sv1.LabelTenant] != provider.DefaultTenant || string(copied.Data["mode"]) != "core" {
			t.Errorf("the copy of creds: labels %v, annotations %v, mode %s; want the site's label and annotation kept, the host's labels and data",
				copied.Labels, copied.Annotations, copied.Data["mode"])
		}
	})

	t.Run("a label the host drops goes, an image the host changes replaces the mirror's", func(t *testing.T) {
		kubectl(t, "host", "label", "pod", "patched", "-n", ns, "tier-")
		kubectl(t, "host", "label", "pod", "admitted", "-n", ns, "tier-")
		kubectl(t, "host", "set", "image", "pod/admitted", "-n", ns, "app=nginx:1.27")
		settled(t, "patched", "without tier", func(p *corev1.Pod) bool { _, ok := p.Labels["tier"]; return !ok })
		kept(t, "patched", siteImage)
		settled(t, "admitted", "without tier, image nginx:1.27", func(p *corev1.Pod) bool {
			_, ok := p.Labels["tier"]
			return !ok && p.Spec.Containers[0].Image == "nginx:1.27"
		})
		kept(t, "admitted", "nginx:1.27")
	})

	t.Run("a provider restart reverts nothing", func(t *testing.T) {
		siteController(t) // again, so that this part stands on its own
		stopProvider()
		startProvider(t)
		// A host change to the other pod arriving shows the new provider has taken the
		// pods in: a restarted provider compares every host pod with its site pod first.
		kubectl(t, "host", "label", "pod", "admitted", "-n", ns, "tier=silver")
		settled(t, "admitted", "tier=silver", func(p *corev1.Pod) bool { return p.Labels["tier"] == "silver" })
		kept(t, "patched", siteImage)
		kept(t, "admitted", "nginx:1.27")
		for _, name := range []string{"admitted", "patched"} {
			hp := &corev1.Pod{}
			if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, hp); err != nil {
				t.Fatal(err)
			}
			if hp.Status.Phase != corev1.PodRunning {
				t.Errorf("host pod %s is %s, want Running", name, hp.Status.Phase)
			}
		}
	})
}

// siteMutatingWebhook registers on site a mutating webhook served by this process that,
// when a pod of hostNamespace's site namespace is created, adds meshLabel and
// meshAnnotation and moves every container's image to mirrorRegistry.
func siteMutatingWebhook(t *testing.T, site client.Client, hostNamespace string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(mutatePod))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	url := srv.URL + "/mutate"
	hook := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "e2e-site-mutation"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "mutation.e2e.vk8s.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url,
				CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
			// At creation only, as sidecar injectors and registry mirrors do: a later write
			// that puts the pod back is not mutated again, so the test sees it.
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{vk8sv1.LabelHostNamespace: hostNamespace}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
		}}}
	mustCreate(t, site, hook)
	t.Cleanup(func() { _ = site.Delete(context.Background(), hook) })
}

// mutatePod answers an AdmissionReview of a pod with a JSON patch adding meshLabel and
// meshAnnotation and prefixing every container's image with mirrorRegistry.
func mutatePod(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "want an AdmissionReview", http.StatusBadRequest)
		return
	}
	var pod corev1.Pod
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	escape := strings.NewReplacer("~", "~0", "/", "~1").Replace
	var ops []op
	if pod.Labels == nil {
		ops = append(ops, op{"add", "/metadata/labels", map[string]string{}})
	}
	if pod.Annotations == nil {
		ops = append(ops, op{"add", "/metadata/annotations", map[string]string{}})
	}
	ops = append(ops, op{"add", "/metadata/labels/" + escape(meshLabel), "true"},
		op{"add", "/metadata/annotations/" + escape(meshAnnotation), "injected"})
	for i, ctr := range pod.Spec.Containers {
		ops = append(ops, op{"replace", fmt.Sprintf("/spec/containers/%d/image", i), mirrorRegistry + ctr.Image})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, Patch: patch,
		PatchType: ptr.To(admissionv1.PatchTypeJSONPatch)}
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}

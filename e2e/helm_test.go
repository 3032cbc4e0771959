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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/lab"
)

const helmNS = "helm"

// TestHelmChart installs a chart written as public charts are (e2e/testdata/charts/shop: a
// Deployment, its Service, a ConfigMap, a ServiceAccount, a PodDisruptionBudget, a Redis
// with its own Service, a post-install hook Job; no vk8s annotation, no storage class) with
// `helm install --wait` into a vK8s namespace, reads each site's share from the site's API
// server, and checks that `helm uninstall` leaves nothing of it on any site.
func TestHelmChart(t *testing.T) {
	c, siteNS := federatedNamespace(t, helmNS)

	t.Run("helm install --wait succeeds: 2 web and 1 Redis per site, the hook Job ran on every site", func(t *testing.T) {
		out := helm(t, "install", "shop", "testdata/charts/shop", "--namespace", helmNS, "--wait", "--timeout", "4m")
		if !strings.Contains(out, "STATUS: deployed") {
			t.Errorf("helm install: %s", out)
		}
		web := &appsv1.Deployment{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: helmNS, Name: "shop-shop"}, web); err != nil {
			t.Fatal(err)
		}
		if *web.Spec.Replicas != 6 || web.Status.ReadyReplicas != 6 {
			t.Errorf("Deployment shop-shop: replicas %d, ready %d; want 6 and 6 (2 per site on 3 sites)", *web.Spec.Replicas, web.Status.ReadyReplicas)
		}
		for _, site := range labSites {
			sc := siteClient(t, site)
			for component, want := range map[string]int{"web": 2, "redis": 1} {
				var pods corev1.PodList
				if err := sc.List(t.Context(), &pods, client.InNamespace(siteNS), client.MatchingLabels{
					"app.kubernetes.io/instance": "shop", "app.kubernetes.io/name": "shop", "app.kubernetes.io/component": component}); err != nil {
					t.Fatal(err)
				}
				running := 0
				for _, p := range pods.Items {
					if p.Status.Phase == corev1.PodRunning {
						running++
					}
				}
				if running != want {
					t.Errorf("%s runs %d pods of shop %q, want %d", site, running, component, want)
				}
			}
			// Both Services are on the site, each with endpoints of the site's own pods.
			for svc, want := range map[string]int{"shop-shop": 2, "shop-shop-redis": 1} {
				waitFor(t, fmt.Sprintf("%s's endpoints of Service %s", site, svc), func(ctx context.Context) (bool, error) {
					var slices discoveryv1.EndpointSliceList
					if err := sc.List(ctx, &slices, client.InNamespace(siteNS), client.MatchingLabels{discoveryv1.LabelServiceName: svc}); err != nil {
						return false, err
					}
					n := 0
					for _, s := range slices.Items {
						n += len(s.Endpoints)
					}
					return n == want, nil
				})
			}
			for _, obj := range []client.Object{&corev1.ConfigMap{}, &corev1.ServiceAccount{}} {
				if err := sc.Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: "shop-shop"}, obj); err != nil {
					t.Errorf("%T shop-shop on %s: %v", obj, site, err)
				}
			}
		}
		// The post-install hook Job completed (Helm waited for it), with a pod on every site,
		// and Helm deleted it (hook-delete-policy hook-succeeded); its Events stay.
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: helmNS, Name: "shop-shop-migrations"}, &batchv1.Job{}); err == nil {
			t.Error("the hook Job is still on the host; Helm deletes it once it succeeded")
		}
		var events corev1.EventList
		if err := c.List(t.Context(), &events, client.InNamespace(helmNS)); err != nil {
			t.Fatal(err)
		}
		created, completed := 0, false
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "Job" && e.InvolvedObject.Name == "shop-shop-migrations" {
				switch e.Reason {
				case "SuccessfulCreate":
					created += int(max(e.Count, 1))
				case "Completed":
					completed = true
				}
			}
		}
		if !completed || created != 3 {
			t.Errorf("hook Job shop-shop-migrations: Completed %v, %d pods created; want Completed, 3 (1 per site)", completed, created)
		}
	})

	t.Run("helm uninstall leaves nothing on any site", func(t *testing.T) {
		helm(t, "uninstall", "shop", "--namespace", helmNS, "--wait", "--timeout", "3m")
		waitForLong(t, 2*time.Minute, "no object of release shop on any site", func(ctx context.Context) (bool, error) {
			for _, site := range labSites {
				left, err := siteLeftovers(ctx, siteClient(t, site), siteNS)
				if err != nil || len(left) > 0 {
					return false, err
				}
			}
			return true, nil
		})
	})
}

// siteLeftovers lists what a site namespace holds besides what every namespace has of its
// own (the default ServiceAccount, kube-root-ca.crt).
func siteLeftovers(ctx context.Context, c client.Client, namespace string) ([]string, error) {
	var left []string
	for _, list := range []client.ObjectList{&corev1.PodList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{}, &corev1.SecretList{},
		&corev1.ServiceAccountList{}, &corev1.PersistentVolumeClaimList{}, &batchv1.JobList{}} {
		if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
		items, _ := meta.ExtractList(list)
		for _, it := range items {
			o := it.(client.Object)
			if (o.GetName() == "default" && strings.HasSuffix(fmt.Sprintf("%T", o), "ServiceAccount")) || o.GetName() == "kube-root-ca.crt" {
				continue
			}
			left = append(left, fmt.Sprintf("%T %s", o, o.GetName()))
		}
	}
	return left, nil
}

// helm runs the lab's helm against the host, with its own configuration and cache.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := helmErr(t.Context(), t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// helmErr is helm returning its error (with its output) instead of failing; ctx bounds it
// (a cleanup has no t.Context()).
func helmErr(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	kc, err := fleet.Kubeconfig("host")
	if err != nil {
		return "", err
	}
	return helmAt(ctx, kc, filepath.Join(fleet.Dir(), "helm"), args...)
}

// helmAt runs the lab's helm with the kubeconfig kc, its configuration and cache in home.
func helmAt(ctx context.Context, kc, home string, args ...string) (string, error) {
	bin, err := lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")}.Path("helm")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "--kubeconfig", kc)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

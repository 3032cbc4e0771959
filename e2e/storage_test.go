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
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

const storageNS = "storage"

// TestStatefulSetStorage runs a StatefulSet written as the Kubernetes documentation writes
// it (a headless Service, volumeClaimTemplates without a storageClassName) at 2 replicas per
// site in a vK8s namespace, and reads each site's claims from the site's own API server:
// the host claims are Bound (to the StorageClass "vk8s", the lab host's default) so the host
// scheduler places the pods, each ordinal's claim is on its own site and Bound there (to the
// lab site's default class), and scaling down and up keeps every claim on its site.
func TestStatefulSetStorage(t *testing.T) {
	c, siteNS := federatedNamespace(t, storageNS)

	labels := map[string]string{"app": "nginx"}
	mustCreate(t, c, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: storageNS, Name: "nginx", Labels: labels},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels, Ports: []corev1.ServicePort{{Name: "web", Port: 80}}}})
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: storageNS, Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "nginx", Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{Name: "nginx", Image: "registry.k8s.io/nginx-slim:0.24",
						Ports:        []corev1.ContainerPort{{Name: "web", ContainerPort: 80}},
						VolumeMounts: []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}}}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "www"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				},
			}},
		},
	}
	mustCreate(t, c, sts)

	// settled waits until the StatefulSet runs want pods per site, each Running on the site
	// of its ordinal, with its claim Bound on the host and on that site, and returns the
	// site claims by site and name.
	settled := func(t *testing.T, perSite int) map[string]map[string]corev1.PersistentVolumeClaim {
		t.Helper()
		total := perSite * len(labSites)
		var why string
		var claims map[string]map[string]corev1.PersistentVolumeClaim
		waitForLong(t, 4*time.Minute, fmt.Sprintf("%d pods of StatefulSet web Running, %d per site, their claims Bound on their sites", total, perSite),
			func(ctx context.Context) (bool, error) {
				var pods corev1.PodList
				if err := c.List(ctx, &pods, client.InNamespace(storageNS), client.MatchingLabels(labels)); err != nil {
					return false, err
				}
				claims = map[string]map[string]corev1.PersistentVolumeClaim{}
				for _, site := range labSites {
					var list corev1.PersistentVolumeClaimList
					if err := siteClient(t, site).List(ctx, &list, client.InNamespace(siteNS)); err != nil {
						return false, err
					}
					claims[site] = map[string]corev1.PersistentVolumeClaim{}
					for _, pvc := range list.Items {
						claims[site][pvc.Name] = pvc
					}
				}
				running := map[string]int{}
				for i := range pods.Items {
					p := &pods.Items[i]
					site := p.Labels[vk8sv1.LabelSite]
					if !webhookRunningReady(p) || p.DeletionTimestamp != nil {
						why = p.Name + " is not Running and Ready"
						return false, nil
					}
					hc := &corev1.PersistentVolumeClaim{}
					if err := c.Get(ctx, client.ObjectKey{Namespace: storageNS, Name: "www-" + p.Name}, hc); err != nil {
						return false, client.IgnoreNotFound(err)
					}
					if hc.Status.Phase != corev1.ClaimBound || ptr.Deref(hc.Spec.StorageClassName, "") != vk8sv1.StorageClassName {
						why = fmt.Sprintf("host claim %s: %s, class %v", hc.Name, hc.Status.Phase, ptr.Deref(hc.Spec.StorageClassName, "<none>"))
						return false, nil
					}
					sc, ok := claims[site]["www-"+p.Name]
					if !ok || sc.Status.Phase != corev1.ClaimBound {
						why = fmt.Sprintf("claim www-%s on %s: %v %s", p.Name, site, ok, sc.Status.Phase)
						return false, nil
					}
					running[site]++
				}
				for _, site := range labSites {
					if running[site] != perSite {
						why = fmt.Sprintf("Running per site %v", running)
						return false, nil
					}
				}
				return len(pods.Items) == total, nil
			})
		if t.Failed() {
			t.Logf("last: %s", why)
		}
		return claims
	}

	var before map[string]map[string]corev1.PersistentVolumeClaim
	t.Run("2 per site: 6 Running pods, 6 claims Bound, 2 on each site", func(t *testing.T) {
		before = settled(t, 2)
		for _, site := range labSites {
			if len(before[site]) != 2 {
				t.Errorf("%s has claims %v, want 2", site, slices.Sorted(maps.Keys(before[site])))
			}
			for name, pvc := range before[site] {
				if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName == vk8sv1.StorageClassName {
					t.Errorf("claim %s on %s has class %v; want the site's default", name, site, ptr.Deref(pvc.Spec.StorageClassName, "<none>"))
				}
			}
		}
		// The ordinals' stable network identity is on their sites: hostname and subdomain
		// of each site pod, and the headless Service of the namespace.
		for _, site := range labSites {
			var pods corev1.PodList
			if err := siteClient(t, site).List(t.Context(), &pods, client.InNamespace(siteNS), client.MatchingLabels(labels)); err != nil {
				t.Fatal(err)
			}
			for _, p := range pods.Items {
				if p.Spec.Hostname != p.Name || p.Spec.Subdomain != "nginx" {
					t.Errorf("site pod %s on %s: hostname %q, subdomain %q; want %q and nginx", p.Name, site, p.Spec.Hostname, p.Spec.Subdomain, p.Name)
				}
			}
			svc := &corev1.Service{}
			if err := siteClient(t, site).Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: "nginx"}, svc); err != nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("headless Service nginx on %s: %v, clusterIP %q", site, err, svc.Spec.ClusterIP)
			}
		}
	})

	t.Run("scaling down and up keeps every ordinal's claim on its site", func(t *testing.T) {
		scale := func(n int32) {
			t.Helper()
			s := &appsv1.StatefulSet{}
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(sts), s); err != nil {
				t.Fatal(err)
			}
			patch := client.MergeFrom(s.DeepCopy())
			s.Annotations[vk8sv1.AnnotationReplicasPerSite] = strconv.Itoa(int(n))
			s.Spec.Replicas = ptr.To(n)
			if err := c.Patch(t.Context(), s, patch); err != nil {
				t.Fatal(err)
			}
		}
		scale(1)
		settled(t, 1)
		scale(2)
		after := settled(t, 2)
		// Every claim made for 2 per site is still there, the same object, on its site.
		for _, site := range labSites {
			for name, pvc := range before[site] {
				got, ok := after[site][name]
				if !ok || got.UID != pvc.UID {
					t.Errorf("claim %s on %s: present %v, UID %s; want the one from before the scale-down (%s)", name, site, ok, got.UID, pvc.UID)
				}
			}
		}
	})

	t.Run("a claim template with an unknown StorageClass is refused, and nothing is made", func(t *testing.T) {
		bad := sts.DeepCopy()
		bad.ObjectMeta = metav1.ObjectMeta{Namespace: storageNS, Name: "bad"}
		bad.Spec.VolumeClaimTemplates[0].Spec.StorageClassName = ptr.To("premium")
		err := c.Create(t.Context(), bad)
		want := `spec.volumeClaimTemplates[0].spec.storageClassName: invalid value "premium": the host has no StorageClass of that name`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("create: %v; want the rejection %q", err, want)
		}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(bad), &appsv1.StatefulSet{}); !apierrors.IsNotFound(err) {
			t.Errorf("StatefulSet bad after the rejection: %v, want NotFound", err)
		}
		// A claim written by hand that names the host's storage is refused the same way.
		err = c.Create(t.Context(), &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: storageNS, Name: "scratch"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("premium"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}})
		if err == nil || !strings.Contains(err.Error(), `spec.storageClassName: invalid value "premium"`) {
			t.Errorf("claim of StorageClass premium: %v; want a rejection naming the field", err)
		}
	})

	t.Run("a claim deleted on the host goes from its sites", func(t *testing.T) {
		if err := c.Delete(t.Context(), sts, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
			t.Fatal(err)
		}
		waitForLong(t, 2*time.Minute, "the StatefulSet's pods gone", func(ctx context.Context) (bool, error) {
			var pods corev1.PodList
			err := c.List(ctx, &pods, client.InNamespace(storageNS), client.MatchingLabels(labels))
			return err == nil && len(pods.Items) == 0, err
		})
		if err := c.DeleteAllOf(t.Context(), &corev1.PersistentVolumeClaim{}, client.InNamespace(storageNS)); err != nil {
			t.Fatal(err)
		}
		waitForLong(t, 2*time.Minute, "no claim of the namespace on any site, no host volume of vk8s left", func(ctx context.Context) (bool, error) {
			for _, site := range labSites {
				var list corev1.PersistentVolumeClaimList
				if err := siteClient(t, site).List(ctx, &list, client.InNamespace(siteNS)); err != nil || len(list.Items) > 0 {
					return false, err
				}
			}
			var pvs corev1.PersistentVolumeList
			if err := c.List(ctx, &pvs); err != nil {
				return false, err
			}
			for _, pv := range pvs.Items {
				if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == storageNS {
					return false, nil
				}
			}
			return true, nil
		})
	})
}

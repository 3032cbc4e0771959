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

package translate

import (
	"strings"
	"testing"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

func TestSiteNamespace(t *testing.T) {
	if got := SiteNamespace("acme", "demo"); got != "acme-demo" {
		t.Errorf("SiteNamespace = %s", got)
	}
	long := strings.Repeat("n", 60)
	a, b := SiteNamespace("acme", long), SiteNamespace("acme", long+"x")
	for _, got := range []string{a, b} {
		if len(got) > 63 || len(validation.IsDNS1123Label(got)) != 0 {
			t.Errorf("SiteNamespace = %q: not a namespace name", got)
		}
	}
	if a == b || a != SiteNamespace("acme", long) {
		t.Errorf("shortened names must be stable and distinct: %s %s", a, b)
	}
	// A host namespace named as another's shortened site namespace does not get it.
	squat := strings.TrimPrefix(a, "acme-")
	if got := SiteNamespace("acme", squat); got == a || len(got) != 63 {
		t.Errorf("host namespace %s maps to %s, the site namespace of %s", squat, got, long)
	}
	// 63 characters that do not look shortened stay as they are.
	exact := strings.Repeat("m", 63-len("acme-"))
	if got := SiteNamespace("acme", exact); got != "acme-"+exact {
		t.Errorf("SiteNamespace(%s) = %s", exact, got)
	}
}

func TestValidTenant(t *testing.T) {
	for tenant, ok := range map[string]bool{"vk8s": true, "prod2": true, "prod-eu": false, "": false, "Prod": false, strings.Repeat("a", 21): false} {
		err := ValidTenant(tenant)
		if (err == nil) != ok {
			t.Errorf("ValidTenant(%q) = %v, want ok %v", tenant, err, ok)
		}
	}
	if err := ValidTenant("prod-eu"); err == nil || !strings.Contains(err.Error(), "prod + eu-shop and prod-eu + shop") {
		t.Errorf("the message does not say why: %v", err)
	}
}

func hostPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "demo", UID: "uid-1", ResourceVersion: "7",
			Labels:          map[string]string{"app": "web"},
			Annotations:     map[string]string{"note": "x"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web", UID: "rs"}},
		},
		Spec: corev1.PodSpec{
			NodeName:          "site1-node2",
			NodeSelector:      map[string]string{"vk8s.io/site": "site1"},
			PriorityClassName: "high", Priority: new(int32),
			ServiceAccountName: "app",
			Tolerations: []corev1.Toleration{
				{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpEqual, Value: vk8sv1.TaintValue, Effect: corev1.TaintEffectNoSchedule},
				{Key: "dedicated", Operator: corev1.TolerationOpExists},
			},
			Affinity: &corev1.Affinity{
				NodeAffinity:    &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{}},
				PodAntiAffinity: &corev1.PodAntiAffinity{},
			},
			Volumes: []corev1.Volume{
				{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
			},
			Containers: []corev1.Container{{
				Name: "app", Image: "app:v1",
				Env: []corev1.EnvVar{{Name: "K", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k", LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
					{Name: "config", MountPath: "/etc/app"},
				},
			}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func TestSitePod(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   Target
		wantNode string
	}{
		{"per node", Target{Tenant: "acme", Site: "site1", SiteNode: "node2"}, "node2"},
		{"aggregate", Target{Tenant: "acme", Site: "site1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := hostPod()
			orig := in.DeepCopy()
			got, err := SitePod(in, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if in.Spec.NodeName != orig.Spec.NodeName || len(in.Spec.Volumes) != 2 {
				t.Error("SitePod changed its input")
			}
			if got.Name != "web-1" || got.Namespace != "acme-demo" || got.UID != "" || got.ResourceVersion != "" || got.OwnerReferences != nil {
				t.Errorf("metadata %+v", got.ObjectMeta)
			}
			want := map[string]string{"app": "web", vk8sv1.LabelTenant: "acme", vk8sv1.LabelHostNamespace: "demo", vk8sv1.LabelHostPodUID: "uid-1",
				vk8sv1.LabelHostSite: "site1"}
			for k, v := range want {
				if got.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, got.Labels[k], v)
				}
			}
			if got.Annotations["note"] != "x" {
				t.Errorf("annotations %v", got.Annotations)
			}
			// What vk8s wrote is recorded, so that what the site's admission changes stays.
			wantRecord := `{"labels":{"app":"web"},"annotations":{"note":"x"},"images":{"app":"app:v1"}}`
			if rec := got.Annotations[vk8sv1.AnnotationLastApplied]; rec != wantRecord {
				t.Errorf("record %s, want %s", rec, wantRecord)
			}
			s := got.Spec
			if s.NodeName != "" || s.NodeSelector != nil || s.PriorityClassName != "" || s.Priority != nil {
				t.Errorf("host placement kept: node %q selector %v priority %q/%v", s.NodeName, s.NodeSelector, s.PriorityClassName, s.Priority)
			}
			if len(s.Tolerations) != 1 || s.Tolerations[0].Key != "dedicated" {
				t.Errorf("tolerations %v, want only the user's", s.Tolerations)
			}
			if len(s.Volumes) != 1 || s.Volumes[0].Name != "config" || len(s.Containers[0].VolumeMounts) != 1 {
				t.Errorf("service account token volume kept: %v %v", s.Volumes, s.Containers[0].VolumeMounts)
			}
			if s.ServiceAccountName != "app" || s.Containers[0].Env[0].ValueFrom.SecretKeyRef == nil {
				t.Errorf("references must stay references: sa %q env %+v", s.ServiceAccountName, s.Containers[0].Env)
			}
			if s.Affinity == nil || s.Affinity.PodAntiAffinity == nil {
				t.Fatalf("pod anti-affinity dropped: %+v", s.Affinity)
			}
			na := s.Affinity.NodeAffinity
			if tc.wantNode == "" {
				if na != nil {
					t.Errorf("aggregate: node affinity %+v, want none", na)
				}
				return
			}
			req := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
			if req.Key != corev1.LabelHostname || req.Values[0] != tc.wantNode {
				t.Errorf("pinned by %+v, want hostname %s", req, tc.wantNode)
			}
			if got.Status.Phase != "" {
				t.Errorf("status copied: %v", got.Status.Phase)
			}
		})
	}
}

// TestSitePodRecordIsVK8s: a host pod that carries vk8s' record itself (a site pod's
// manifest applied to the host) does not pass it off as what vk8s wrote.
func TestSitePodRecordIsVK8s(t *testing.T) {
	p := hostPod()
	p.Annotations[vk8sv1.AnnotationLastApplied] = `{"labels":{"forged":"yes"}}`
	got, err := SitePod(p, Target{Tenant: "acme", Site: "site1"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"labels":{"app":"web"},"annotations":{"note":"x"},"images":{"app":"app:v1"}}`
	if rec := got.Annotations[vk8sv1.AnnotationLastApplied]; rec != want {
		t.Errorf("record %s, want %s", rec, want)
	}
}

func TestSitePodRejects(t *testing.T) {
	p := hostPod()
	if _, err := SitePod(p, Target{Site: "s"}); err == nil || !strings.Contains(err.Error(), "tenant") {
		t.Errorf("no tenant: %v", err)
	}
	if _, err := SitePod(p, Target{Tenant: "a"}); err == nil || !strings.Contains(err.Error(), "site") {
		t.Errorf("no site: %v", err)
	}
	p.UID = ""
	if _, err := SitePod(p, Target{Tenant: "a", Site: "s"}); err == nil || !strings.Contains(err.Error(), "UID") {
		t.Errorf("no UID: %v", err)
	}
}

func TestReachesSite(t *testing.T) {
	everything := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	byKey := []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}}
	daemon := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "kube-proxy", Controller: ptr.To(true)}}
	scheduled := corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}}
	for _, tc := range []struct {
		name    string
		managed bool
		owners  []metav1.OwnerReference
		tols    []corev1.Toleration
		status  corev1.PodStatus
		want    bool
		why     string
	}{
		{name: "a vK8s namespace's pod", managed: true, owners: daemon, tols: everything, status: scheduled, want: true},
		{name: "tolerates vk8s' taint by its key", tols: byKey, status: scheduled, want: true},
		{name: "a DaemonSet's pod that tolerates it by its key", owners: daemon, tols: byKey, status: scheduled, want: true},
		{name: "bound by hand (nodeName), no toleration", want: true},
		{name: "a host-wide DaemonSet tolerating everything", owners: daemon, tols: everything, status: scheduled, want: false, why: "DaemonSet kube-proxy"},
		{name: "a DaemonSet's pod not yet marked scheduled", owners: daemon, tols: everything, want: false, why: "host-wide DaemonSets never run on sites"},
		{name: "scheduled there because it tolerates everything", tols: everything, status: scheduled, want: false, why: "only because it tolerates every taint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "p", OwnerReferences: tc.owners},
				Spec: corev1.PodSpec{NodeName: "site1-node1", Tolerations: tc.tols}, Status: tc.status}
			got, why := ReachesSite(pod, tc.managed)
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("ReachesSite = %v, %q; want %v, containing %q", got, why, tc.want, tc.why)
			}
			if !got && !strings.Contains(why, vk8sv1.TaintKey) {
				t.Errorf("the message %q names no fix", why)
			}
		})
	}
}

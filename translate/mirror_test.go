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
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestSiteService(t *testing.T) {
	host := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}", "vk8s.io/site-endpoints": "site1=1", "lb.example.com/tier": "gold"}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.9", ClusterIPs: []string{"10.96.0.9"}, ExternalIPs: []string{"192.0.2.1"},
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080}},
		},
	}
	obj, err := SiteCopy(KindService, host, "acme-shop", "acme")
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*corev1.Service)
	want := corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Errorf("site Service spec (-want +got):\n%s", diff)
	}
	if got.Namespace != "acme-shop" || got.Labels[vk8sv1.LabelTenant] != "acme" || got.Labels[vk8sv1.LabelHostNamespace] != "shop" ||
		got.Annotations["lb.example.com/tier"] != "gold" || len(got.Annotations) != 2 ||
		got.Annotations[vk8sv1.AnnotationLastApplied] != `{"labels":{"app":"web"},"annotations":{"lb.example.com/tier":"gold"}}` {
		t.Errorf("site Service meta %+v", got.ObjectMeta)
	}

	// What the site's API server and controllers make of it is the same copy.
	stored := got.DeepCopy()
	stored.Annotations["cloud.example.com/lb-id"] = "lb-1" // a site's own annotation
	stored.Spec.ClusterIP, stored.Spec.ClusterIPs = "10.0.0.7", []string{"10.0.0.7"}
	stored.Spec.IPFamilies, stored.Spec.IPFamilyPolicy = []corev1.IPFamily{corev1.IPv4Protocol}, ptrTo(corev1.IPFamilyPolicySingleStack)
	stored.Spec.Ports[0].NodePort, stored.Spec.Ports[0].Protocol = 31000, corev1.ProtocolTCP
	stored.Spec.SessionAffinity = corev1.ServiceAffinityNone
	stored.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	stored.Spec.InternalTrafficPolicy = ptrTo(corev1.ServiceInternalTrafficPolicyCluster)
	if _, update := CopyUpdate(got, stored); update {
		t.Error("the site's defaulted Service, with an annotation of its own, is taken for a changed one")
	}
	changed := stored.DeepCopy()
	changed.Spec.Ports[0].Port = 81
	if _, update := CopyUpdate(got, changed); !update {
		t.Error("a changed port is taken for the same Service")
	}
	host.Annotations["lb.example.com/tier"] = "silver"
	obj, _ = SiteCopy(KindService, host, "acme-shop", "acme")
	out, update := CopyUpdate(obj, stored)
	if a := out.GetAnnotations(); !update || a["lb.example.com/tier"] != "silver" || a["cloud.example.com/lb-id"] != "lb-1" {
		t.Errorf("the host's changed annotation: update %v, annotations %v; want the host's and the site's", update, a)
	}
	host.Annotations["lb.example.com/tier"] = "gold"

	// A headless Service stays headless, so a StatefulSet's pods keep their DNS names.
	host.Spec.Type, host.Spec.ClusterIP = corev1.ServiceTypeClusterIP, corev1.ClusterIPNone
	obj, _ = SiteCopy(KindService, host, "acme-shop", "acme")
	if s := obj.(*corev1.Service); s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("headless: cluster IP %q", s.Spec.ClusterIP)
	}
	// A port without a target port gets the port, as the API server defaults it.
	host.Spec.Ports[0].TargetPort = intstr.IntOrString{}
	obj, _ = SiteCopy(KindService, host, "acme-shop", "acme")
	defaulted := obj.(*corev1.Service).DeepCopy()
	defaulted.Spec.Ports[0].TargetPort = intstr.FromInt32(80)
	if !SameCopy(obj, defaulted) {
		t.Error("a defaulted target port is taken for a change")
	}
}

// TestCopyUpdate: a copy made by SiteCopy, then changed by the site, then its host object
// changed: CopyUpdate writes what the host changed, puts the content back, and keeps the
// labels and annotations the site added or rewrote. A copy the site only added to needs no
// update, so a site's admission that adds a label on every write is not fought.
func TestCopyUpdate(t *testing.T) {
	noRecord := func(cm *corev1.ConfigMap) { delete(cm.Annotations, vk8sv1.AnnotationLastApplied) }
	for _, tc := range []struct {
		name            string
		site            func(*corev1.ConfigMap) // what the site did to the copy
		host            func(*corev1.ConfigMap) // what the host changed since
		wantUpdate      bool
		wantLabels      map[string]string // without vk8s' own
		wantAnnotations map[string]string // without the record
		wantData        string
	}{{
		name:       "nothing changed",
		wantLabels: map[string]string{"app": "web", "tier": "gold"}, wantData: "v1",
	}, {
		name:       "the site added a label and an annotation: nothing to write",
		site:       func(cm *corev1.ConfigMap) { cm.Labels["policy/checked"] = "yes"; cm.Annotations["policy/at"] = "now" },
		wantLabels: map[string]string{"app": "web", "tier": "gold", "policy/checked": "yes"}, wantAnnotations: map[string]string{"policy/at": "now"},
		wantData: "v1",
	}, {
		name:       "the host changes its data: it arrives, the site's additions stay",
		site:       func(cm *corev1.ConfigMap) { cm.Labels["policy/checked"] = "yes"; cm.Annotations["policy/at"] = "now" },
		host:       func(cm *corev1.ConfigMap) { cm.Data["k"] = "v2" },
		wantUpdate: true,
		wantLabels: map[string]string{"app": "web", "tier": "gold", "policy/checked": "yes"}, wantAnnotations: map[string]string{"policy/at": "now"},
		wantData: "v2",
	}, {
		name:       "the site edits the data: put back, the site's label stays",
		site:       func(cm *corev1.ConfigMap) { cm.Labels["policy/checked"] = "yes"; cm.Data["k"] = "site" },
		wantUpdate: true,
		wantLabels: map[string]string{"app": "web", "tier": "gold", "policy/checked": "yes"}, wantData: "v1",
	}, {
		name:       "the host drops a label: it goes, the site's stays",
		site:       func(cm *corev1.ConfigMap) { cm.Labels["policy/checked"] = "yes" },
		host:       func(cm *corev1.ConfigMap) { delete(cm.Labels, "tier") },
		wantUpdate: true,
		wantLabels: map[string]string{"app": "web", "policy/checked": "yes"}, wantData: "v1",
	}, {
		name:       "a value the site rewrote stays while the host's does not change",
		site:       func(cm *corev1.ConfigMap) { cm.Labels["tier"] = "site" },
		wantLabels: map[string]string{"app": "web", "tier": "site"}, wantData: "v1",
	}, {
		name:       "a value the site rewrote gives way when the host's changes",
		site:       func(cm *corev1.ConfigMap) { cm.Labels["tier"] = "site" },
		host:       func(cm *corev1.ConfigMap) { cm.Labels["tier"] = "platinum" },
		wantUpdate: true,
		wantLabels: map[string]string{"app": "web", "tier": "platinum"}, wantData: "v1",
	}, {
		name:       "no record (made before vk8s kept one): the site's label stays, the record is written",
		site:       func(cm *corev1.ConfigMap) { noRecord(cm); cm.Labels["policy/checked"] = "yes" },
		wantUpdate: true,
		wantLabels: map[string]string{"app": "web", "tier": "gold", "policy/checked": "yes"}, wantData: "v1",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			host := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "settings", Labels: map[string]string{"app": "web", "tier": "gold"}},
				Data: map[string]string{"k": "v1"}}
			obj, err := SiteCopy(KindConfigMap, host, "acme-shop", "acme")
			if err != nil {
				t.Fatal(err)
			}
			have := obj.(*corev1.ConfigMap).DeepCopy()
			if tc.site != nil {
				tc.site(have)
			}
			host = host.DeepCopy()
			if tc.host != nil {
				tc.host(host)
			}
			want, err := SiteCopy(KindConfigMap, host, "acme-shop", "acme")
			if err != nil {
				t.Fatal(err)
			}
			orig := want.(*corev1.ConfigMap).DeepCopy()
			out, update := CopyUpdate(want, have)
			if !cmp.Equal(want, orig) {
				t.Error("CopyUpdate changed its input")
			}
			if update != tc.wantUpdate {
				t.Errorf("update = %v, want %v", update, tc.wantUpdate)
			}
			got := out.(*corev1.ConfigMap)
			if got.Labels[vk8sv1.LabelTenant] != "acme" || got.Labels[vk8sv1.LabelHostNamespace] != "shop" {
				t.Errorf("vk8s' labels lost: %v", got.Labels)
			}
			if diff := cmp.Diff(tc.wantLabels, copyApplied(got).Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAnnotations, copyApplied(got).Annotations, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if got.Data["k"] != tc.wantData {
				t.Errorf("data %v, want k=%s", got.Data, tc.wantData)
			}
			if _, again := CopyUpdate(want, got); again {
				t.Error("CopyUpdate of the updated copy asks for another update")
			}
		})
	}
}

func TestSiteRoleBinding(t *testing.T) {
	host := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: "shop"},
			{Kind: rbacv1.ServiceAccountKind, Name: "ci", Namespace: "tools"},
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"},
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:shop"},
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"},
		},
	}
	obj, err := SiteCopy(KindRoleBinding, host, "acme-shop", "acme")
	if err != nil {
		t.Fatal(err)
	}
	want := []rbacv1.Subject{
		{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: "acme-shop"},
		{Kind: rbacv1.ServiceAccountKind, Name: "ci", Namespace: "acme-tools"},
		// Users and other groups are host identities: the site has its own of those names.
		{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:acme-shop"},
	}
	if diff := cmp.Diff(want, obj.(*rbacv1.RoleBinding).Subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
	if host.Subjects[0].Namespace != "shop" {
		t.Error("the host RoleBinding was changed")
	}
}

func TestSiteNetworkPolicy(t *testing.T) {
	host := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "from-tools"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "tools"}}},
				{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{"shop", "ops"}}}}},
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}},
			}}},
		},
	}
	obj, err := SiteCopy(KindNetworkPolicy, host, "acme-shop", "acme")
	if err != nil {
		t.Fatal(err)
	}
	from := obj.(*networkingv1.NetworkPolicy).Spec.Ingress[0].From
	if from[0].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "acme-tools" ||
		cmp.Diff([]string{"acme-shop", "acme-ops"}, from[1].NamespaceSelector.MatchExpressions[0].Values) != "" ||
		from[2].NamespaceSelector.MatchLabels["team"] != "blue" {
		t.Errorf("peers %+v", from)
	}
	if host.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "tools" {
		t.Error("the host NetworkPolicy was changed")
	}
}

func TestMirrored(t *testing.T) {
	for kind, want := range map[string]bool{KindService: true, KindConfigMap: true, KindServiceAccount: true, KindRole: true,
		KindRoleBinding: true, KindNetworkPolicy: true, KindSecret: false, KindPersistentVolumeClaim: false} {
		if Mirrored(kind) != want {
			t.Errorf("Mirrored(%s) = %v", kind, !want)
		}
	}
	if !Skipped(KindServiceAccount, "default") || !Skipped(KindConfigMap, "kube-root-ca.crt") || Skipped(KindServiceAccount, "app") {
		t.Error("Skipped")
	}
}

func ptrTo[T any](v T) *T { return &v }

// The kinds table and the mirror agree on what is mirrored.
func TestNamespaceKindsMirrored(t *testing.T) {
	for _, k := range NamespaceKinds {
		if got := Mirrored(k.Kind); got != (k.Fate == FateMirrored) {
			t.Errorf("%s: Mirrored %v, fate %s", k.Kind, got, k.Fate)
		}
	}
}

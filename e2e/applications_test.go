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
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
)

const appsNS = "apps"

var labSites = []string{"site1", "site2", "site3"}

// TestApplications runs what an application is besides its pods in a vK8s namespace, and
// reads each site's share from the site's own API server: Services that are site-local on
// every site (their endpoints are the site's own pods), their status on the host, and the
// ConfigMaps, ServiceAccounts, Roles, RoleBindings and NetworkPolicies of the namespace on
// every site, where a ServiceAccount can do what its Role allows and nothing elsewhere.
func TestApplications(t *testing.T) {
	c, siteNS := federatedNamespace(t, appsNS)

	web := webhookDeployment("web", 1, nil)
	web.Namespace = appsNS
	mustCreate(t, c, web)
	service := func(name string, mutate func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: name, Labels: map[string]string{"tier": "front"}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}}}}
		if mutate != nil {
			mutate(s)
		}
		mustCreate(t, c, s)
		return s
	}
	// siteService waits until every site has the copy of Service name for which ok holds.
	siteService := func(name, what string, ok func(site string, s *corev1.Service) bool) map[string]*corev1.Service {
		t.Helper()
		got := map[string]*corev1.Service{}
		waitFor(t, "Service "+name+" on every site: "+what, func(ctx context.Context) (bool, error) {
			for _, site := range labSites {
				s := &corev1.Service{}
				if err := siteClient(t, site).Get(ctx, client.ObjectKey{Namespace: siteNS, Name: name}, s); err != nil || !ok(site, s) {
					return false, client.IgnoreNotFound(err)
				}
				got[site] = s
			}
			return true, nil
		})
		return got
	}

	t.Run("a ClusterIP Service is on every site, its endpoints the site's own pods", func(t *testing.T) {
		service("web", nil)
		copies := siteService("web", "with the site's own cluster IP", func(_ string, s *corev1.Service) bool {
			return s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone && s.Labels[vk8sv1.LabelTenant] == provider.DefaultTenant
		})
		for site, s := range copies {
			if !maps.Equal(s.Spec.Selector, map[string]string{"app": "web"}) || s.Labels["tier"] != "front" {
				t.Errorf("%s: selector %v labels %v", site, s.Spec.Selector, s.Labels)
			}
		}
		// Each site's EndpointSlices list exactly the site's own pod of web.
		waitFor(t, "each site's endpoints of web to be its own pod", func(ctx context.Context) (bool, error) {
			for _, site := range labSites {
				sc := siteClient(t, site)
				var pods corev1.PodList
				if err := sc.List(ctx, &pods, client.InNamespace(siteNS), client.MatchingLabels{"app": "web"}); err != nil {
					return false, err
				}
				var want []string
				for _, p := range pods.Items {
					if p.Status.PodIP != "" && p.DeletionTimestamp == nil {
						want = append(want, p.Status.PodIP)
					}
				}
				var slicesOf discoveryv1.EndpointSliceList
				if err := sc.List(ctx, &slicesOf, client.InNamespace(siteNS), client.MatchingLabels{discoveryv1.LabelServiceName: "web"}); err != nil {
					return false, err
				}
				var got []string
				for _, s := range slicesOf.Items {
					for _, e := range s.Endpoints {
						got = append(got, e.Addresses...)
					}
				}
				slices.Sort(want)
				slices.Sort(got)
				if len(want) != 1 || !slices.Equal(want, got) {
					return false, nil
				}
			}
			return true, nil
		})
		// The host Service says what each site has.
		waitFor(t, "the host Service web to count 1 Ready endpoint per site", func(ctx context.Context) (bool, error) {
			s := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: appsNS, Name: "web"}, s); err != nil {
				return false, err
			}
			cond := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionSitesReady)
			return s.Annotations[vk8sv1.AnnotationSiteEndpoints] == "site1=1,site2=1,site3=1" && cond != nil && cond.Status == metav1.ConditionTrue, nil
		})
	})

	t.Run("a change of the host Service reaches every site; its deletion removes it", func(t *testing.T) {
		s := &corev1.Service{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: appsNS, Name: "web"}, s); err != nil {
			t.Fatal(err)
		}
		s.Spec.Ports[0].Port = 8080
		if err := c.Update(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		siteService("web", "port 8080", func(_ string, s *corev1.Service) bool { return len(s.Spec.Ports) == 1 && s.Spec.Ports[0].Port == 8080 })
		// A copy changed on a site is put back.
		s1 := &corev1.Service{}
		if err := siteClient(t, "site1").Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: "web"}, s1); err != nil {
			t.Fatal(err)
		}
		s1.Spec.Selector = map[string]string{"app": "other"}
		if err := siteClient(t, "site1").Update(t.Context(), s1); err != nil {
			t.Fatal(err)
		}
		siteService("web", "its selector put back", func(_ string, s *corev1.Service) bool { return s.Spec.Selector["app"] == "web" })
		if err := c.Delete(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "Service web gone from every site", func(ctx context.Context) (bool, error) {
			for _, site := range labSites {
				err := siteClient(t, site).Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "web"}, &corev1.Service{})
				if !apierrors.IsNotFound(err) {
					return false, client.IgnoreNotFound(err)
				}
			}
			return true, nil
		})
	})

	t.Run("headless, NodePort, LoadBalancer and ExternalName Services", func(t *testing.T) {
		service("web-headless", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone })
		service("web-nodeport", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
		service("web-lb", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer })
		service("docs", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName, s.Spec.Selector, s.Spec.Ports = corev1.ServiceTypeExternalName, "docs.example.com", nil, nil
		})
		siteService("web-headless", "headless", func(_ string, s *corev1.Service) bool { return s.Spec.ClusterIP == corev1.ClusterIPNone })
		siteService("web-nodeport", "a node port of the site's", func(_ string, s *corev1.Service) bool {
			return s.Spec.Type == corev1.ServiceTypeNodePort && s.Spec.Ports[0].NodePort != 0
		})
		siteService("docs", "ExternalName docs.example.com", func(_ string, s *corev1.Service) bool {
			return s.Spec.Type == corev1.ServiceTypeExternalName && s.Spec.ExternalName == "docs.example.com"
		})
		lbs := siteService("web-lb", "LoadBalancer", func(_ string, s *corev1.Service) bool { return s.Spec.Type == corev1.ServiceTypeLoadBalancer })
		// The lab's sites have no load balancer controller: be site1's and site3's.
		for site, ip := range map[string]string{"site1": "192.0.2.11", "site3": "192.0.2.13"} {
			s := lbs[site]
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
			if err := siteClient(t, site).Status().Update(t.Context(), s); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the host Service web-lb to show site1's and site3's load balancers", func(ctx context.Context) (bool, error) {
			s := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: appsNS, Name: "web-lb"}, s); err != nil {
				return false, err
			}
			var ips []string
			for _, in := range s.Status.LoadBalancer.Ingress {
				ips = append(ips, in.IP)
			}
			return slices.Equal(ips, []string{"192.0.2.11", "192.0.2.13"}) &&
				s.Annotations[vk8sv1.AnnotationSiteLoadBalancers] == "site1=192.0.2.11,site3=192.0.2.13", nil
		})
	})

	t.Run("a Service selecting nothing says so on the host", func(t *testing.T) {
		service("nothing", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "absent"} })
		waitFor(t, "Service nothing not SitesReady, naming the sites", func(ctx context.Context) (bool, error) {
			s := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: appsNS, Name: "nothing"}, s); err != nil {
				return false, err
			}
			cond := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionSitesReady)
			return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == "NoEndpoints" &&
				strings.Contains(cond.Message, "site1, site2, site3") && strings.Contains(cond.Message, "app=absent"), nil
		})
	})

	t.Run("ConfigMaps, ServiceAccounts, RBAC and NetworkPolicies on every site", func(t *testing.T) {
		mustCreate(t, c, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "settings"}, Data: map[string]string{"mode": "on"}})
		mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "reader"}})
		mustCreate(t, c, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "pod-reader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}})
		mustCreate(t, c, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "reader"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: appsNS}}})
		mustCreate(t, c, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "web-from-front"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}}})
		waitFor(t, "the ConfigMap, ServiceAccount, Role, RoleBinding and NetworkPolicy on every site", func(ctx context.Context) (bool, error) {
			for _, site := range labSites {
				sc := siteClient(t, site)
				cm, rb := &corev1.ConfigMap{}, &rbacv1.RoleBinding{}
				for _, get := range []struct {
					name string
					obj  client.Object
				}{{"settings", cm}, {"reader", &corev1.ServiceAccount{}}, {"pod-reader", &rbacv1.Role{}}, {"reader", rb}, {"web-from-front", &networkingv1.NetworkPolicy{}}} {
					if err := sc.Get(ctx, client.ObjectKey{Namespace: siteNS, Name: get.name}, get.obj); err != nil {
						return false, client.IgnoreNotFound(err)
					}
				}
				if cm.Data["mode"] != "on" || len(rb.Subjects) != 1 || rb.Subjects[0].Namespace != siteNS {
					return false, nil
				}
			}
			return true, nil
		})
		// The ServiceAccount may list pods in its site namespace, and nothing in another.
		cfg, err := fleet.RESTConfig("site2")
		if err != nil {
			t.Fatal(err)
		}
		tr, err := clientset(t, "site2").CoreV1().ServiceAccounts(siteNS).CreateToken(t.Context(), "reader",
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		asReader, err := kubernetes.NewForConfig(&rest.Config{Host: cfg.Host, TLSClientConfig: rest.TLSClientConfig{CAData: cfg.CAData, CAFile: cfg.CAFile}, BearerToken: tr.Status.Token})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the site ServiceAccount reader to list pods in its namespace", func(ctx context.Context) (bool, error) {
			_, err := asReader.CoreV1().Pods(siteNS).List(ctx, metav1.ListOptions{})
			return err == nil, nil
		})
		if _, err := asReader.CoreV1().Pods("kube-system").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("reader lists pods in kube-system: %v, want Forbidden", err)
		}
		if _, err := asReader.CoreV1().Secrets(siteNS).List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("reader lists Secrets in its namespace: %v, want Forbidden (its Role allows pods only)", err)
		}
		// Deleted on the host, gone from every site.
		if err := c.Delete(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "settings"}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "ConfigMap settings gone from every site", func(ctx context.Context) (bool, error) {
			for _, site := range labSites {
				if err := siteClient(t, site).Get(ctx, client.ObjectKey{Namespace: siteNS, Name: "settings"}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
					return false, client.IgnoreNotFound(err)
				}
			}
			return true, nil
		})
	})

	t.Run("a kind a vK8s namespace does not hold is refused, naming it and the kinds it holds", func(t *testing.T) {
		ingress := func(namespace string) *networkingv1.Ingress {
			return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "web"},
				Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}
		}
		var err error
		// The API server learns of the policy (and of the namespace's label) through informers.
		waitFor(t, "an Ingress refused in the vK8s namespace", func(ctx context.Context) (bool, error) {
			err = c.Create(ctx, ingress(appsNS), client.DryRunAll)
			return err != nil, nil
		})
		for _, want := range []string{"Ingress (networking.k8s.io/v1) cannot be created in vK8s namespace " + appsNS,
			"Pod, Deployment", "Service", "PodDisruptionBudget", "docs/applications.md", "a Service of type LoadBalancer"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not say %q", err, want)
			}
		}
		if !apierrors.IsForbidden(err) {
			t.Errorf("refusal %v: want Forbidden", err)
		}
		// The kinds a vK8s namespace holds are left out of the policy's match by API group
		// and resource: another kind of their groups is still refused.
		template := &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "web"},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}}
		if err := c.Create(t.Context(), template, client.DryRunAll); !apierrors.IsForbidden(err) ||
			!strings.Contains(err.Error(), "PodTemplate (core/v1) cannot be created in vK8s namespace "+appsNS) {
			t.Errorf("PodTemplate in the vK8s namespace: %v, want refused as a kind a vK8s namespace does not hold", err)
		}
		// Kinds meaningful on the host are accepted there; other namespaces are not vk8s' business.
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "web"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
		if err := c.Create(t.Context(), pdb, client.DryRunAll); err != nil {
			t.Errorf("PodDisruptionBudget in the vK8s namespace: %v", err)
		}
		if err := c.Create(t.Context(), ingress("default"), client.DryRunAll); err != nil {
			t.Errorf("Ingress in namespace default: %v", err)
		}
	})

	t.Run("a RoleBinding to a ServiceAccount outside vK8s namespaces is refused, and nothing is made", func(t *testing.T) {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "escalate"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "default"}}}
		err := c.Create(t.Context(), rb)
		want := `subjects[0]: invalid value "ServiceAccount kube-system/default": namespace "kube-system" is not a vK8s namespace`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("create: %v; want the rejection %q", err, want)
		}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(rb), &rbacv1.RoleBinding{}); !apierrors.IsNotFound(err) {
			t.Errorf("RoleBinding escalate after the rejection: %v, want NotFound", err)
		}
		for _, site := range labSites {
			if err := siteClient(t, site).Get(t.Context(), client.ObjectKey{Namespace: siteNS, Name: "escalate"}, &rbacv1.RoleBinding{}); !apierrors.IsNotFound(err) {
				t.Errorf("RoleBinding escalate on %s: %v, want NotFound", site, err)
			}
		}
	})
}

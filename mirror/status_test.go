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

package mirror

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestServiceStatus(t *testing.T) {
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", Generation: 2},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"}}}
	for _, tc := range []struct {
		name        string
		svc         *corev1.Service
		views       []siteView
		endpoints   string
		lbs         string
		ingress     []string
		status      metav1.ConditionStatus
		reason, msg string
	}{
		{name: "every site ready, two load balancers", svc: web,
			views: []siteView{{site: "site1", ready: 2, ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}}, {site: "site2", ready: 1},
				{site: "site3", ready: 3, ingress: []corev1.LoadBalancerIngress{{Hostname: "lb.example.com"}}}},
			endpoints: "site1=2,site2=1,site3=3", lbs: "site1=192.0.2.1,site3=lb.example.com", ingress: []string{"192.0.2.1", "lb.example.com"},
			status: metav1.ConditionTrue, reason: ReasonEndpointsReady, msg: "every site has Ready endpoints of its own"},
		{name: "a site without endpoints, another not read", svc: web,
			views:     []siteView{{site: "site1", ready: 2}, {site: "site2", ready: 0}, {site: "site3", ready: -1}},
			endpoints: "site1=2,site2=0,site3=unknown", lbs: "",
			status: metav1.ConditionFalse, reason: ReasonNoEndpoints, msg: "no Ready endpoint on site2, site3 (not read: the site is not connected): the selector app=web"},
		{name: "no selector", svc: &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "x.example.com"}},
			views: []siteView{{site: "site1", ready: 0}}, endpoints: "site1=0",
			status: metav1.ConditionTrue, reason: ReasonNoSelector, msg: "selects no pods"},
		{name: "no site yet", svc: web, endpoints: "",
			status: metav1.ConditionFalse, reason: ReasonNoEndpoints, msg: "the namespace runs on no site yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			annotations, st := serviceStatus(tc.svc, tc.views)
			if annotations[vk8sv1.AnnotationSiteEndpoints] != tc.endpoints {
				t.Errorf("site endpoints %q, want %q", annotations[vk8sv1.AnnotationSiteEndpoints], tc.endpoints)
			}
			if tc.svc.Spec.Type == corev1.ServiceTypeLoadBalancer && annotations[vk8sv1.AnnotationSiteLoadBalancers] != tc.lbs {
				t.Errorf("site load balancers %q, want %q", annotations[vk8sv1.AnnotationSiteLoadBalancers], tc.lbs)
			}
			var ingress []string
			for _, in := range st.LoadBalancer.Ingress {
				ingress = append(ingress, in.IP+in.Hostname)
			}
			if strings.Join(ingress, ",") != strings.Join(tc.ingress, ",") {
				t.Errorf("ingress %v, want %v", ingress, tc.ingress)
			}
			c := meta.FindStatusCondition(st.Conditions, vk8sv1.ConditionSitesReady)
			if c == nil || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.msg) {
				t.Errorf("condition %+v, want %s %s containing %q", c, tc.status, tc.reason, tc.msg)
			}
		})
	}
}

func TestReadyEndpoints(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = indexer.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}})
	nodes := corelisters.NewNodeLister(indexer)
	eps := []*discoveryv1.EndpointSlice{{Endpoints: []discoveryv1.Endpoint{
		{Addresses: []string{"10.0.0.1"}, NodeName: ptr.To("node1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		{Addresses: []string{"10.0.0.2"}, NodeName: ptr.To("node1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		{Addresses: []string{"10.0.0.3"}, NodeName: ptr.To("node9")}, // another site's node of the same cluster
		{Addresses: []string{"10.0.0.4"}},
	}}}
	if got := readyEndpoints(eps, nodes); got != 2 {
		t.Errorf("ready endpoints %d, want 2 (node1's Ready one and the one without a node)", got)
	}
}

// TestKeptView checks that what serviceStatus writes of each site is what keptView reads
// back: a replica keeps the other replicas' sites as they wrote them.
func TestKeptView(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"}}}
	views := []siteView{
		{site: "paris", ready: 2, ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}},
		{site: "tokyo", ready: 0, ingress: []corev1.LoadBalancerIngress{{Hostname: "lb.tokyo.example"}, {IP: "192.0.2.9"}}},
		{site: "lima", ready: -1},
	}
	annotations, status := serviceStatus(svc, views)
	svc.Annotations, svc.Status = annotations, status
	for _, want := range views {
		if got := keptView(svc, want.site); !reflect.DeepEqual(got, want) {
			t.Errorf("keptView(%s) = %+v, want %+v", want.site, got, want)
		}
	}
	if got := keptView(svc, "oslo"); got.ready != -1 || len(got.ingress) != 0 {
		t.Errorf("keptView of a site never written = %+v, want unknown", got)
	}
}

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

package federation

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// TestResolveReadsMissesLive: `kubectl apply -f` of a VirtualSite and the Deployment that
// names it sends the Deployment before the webhook's cache holds the VirtualSite; the
// resolver reads it from the API server before it calls it missing.
func TestResolveReadsMissesLive(t *testing.T) {
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "vk"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/all-sites"}}
	site := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "site1", Labels: map[string]string{"region": "asia"}}}
	asia := &vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "asia"},
		Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchLabels: map[string]string{"region": "asia"}}}}
	cache := fake.NewClientBuilder().WithScheme(s).WithObjects(vk, site).Build()
	live := fake.NewClientBuilder().WithScheme(s).WithObjects(vk, site, asia).Build()
	annotations := map[string]string{vk8sv1.AnnotationVirtualSites: "asia"}

	if _, err := NewResolver(cache, "", "").Resolve(t.Context(), "demo", annotations, Strict); err == nil {
		t.Fatal("the cache alone resolved a VirtualSite it does not hold")
	}
	f, err := NewResolver(cache, "", "").ReadMissesFrom(live).Resolve(t.Context(), "demo", annotations, Strict)
	if err != nil {
		t.Fatalf("Resolve with the live reader: %v", err)
	}
	if len(f.Sites) != 1 || f.Sites[0] != "site1" {
		t.Errorf("sites %v, want [site1]", f.Sites)
	}
}

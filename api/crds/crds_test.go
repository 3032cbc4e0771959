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

package crds

import "testing"

func TestAllDecodesEveryKind(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"sites.vk8s.io":             "Cluster",
		"virtualsites.vk8s.io":      "Namespaced",
		"virtualkubernetes.vk8s.io": "Namespaced",
		"overrides.vk8s.io":         "Namespaced",
		"workloadflavors.vk8s.io":   "Cluster",
	}
	if len(all) != len(want) {
		t.Fatalf("got %d CRDs, want %d", len(all), len(want))
	}
	shortNames := map[string]string{}
	for _, crd := range all {
		for _, n := range crd.Spec.Names.ShortNames {
			shortNames[n] = crd.Name
		}
	}
	for _, crd := range all {
		scope, ok := want[crd.Name]
		if !ok {
			t.Errorf("unexpected CRD %s", crd.Name)
			continue
		}
		if string(crd.Spec.Scope) != scope {
			t.Errorf("%s: scope %s, want %s", crd.Name, crd.Spec.Scope, scope)
		}
		if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Subresources == nil || crd.Spec.Versions[0].Subresources.Status == nil {
			t.Errorf("%s: want one version with the status subresource", crd.Name)
		}
		// kubectl expands a category before a short name: a category named like a short
		// name (VirtualKubernetes' vk8s) would hide that kind behind every kind.
		if got := crd.Spec.Names.Categories; len(got) != 1 || got[0] != "vk8s-all" {
			t.Errorf("%s: categories %v, want [vk8s-all]", crd.Name, got)
		}
		for _, c := range crd.Spec.Names.Categories {
			if kind, ok := shortNames[c]; ok {
				t.Errorf("%s: category %s is also the short name of %s", crd.Name, c, kind)
			}
		}
	}
}

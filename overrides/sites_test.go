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

package overrides

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestSelectSites(t *testing.T) {
	site := func(name string, typ vk8sv1.SiteType, kv ...string) vk8sv1.Site {
		s := vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}, Spec: vk8sv1.SiteSpec{Type: typ}}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
		return s
	}
	sites := []vk8sv1.Site{
		site("site3", vk8sv1.SiteTypeRegionalEdge, "region", "eu"),
		site("site1", "", "region", "eu", "tier", "gold"), // no type: CustomerEdge
		site("site2", vk8sv1.SiteTypeCustomerEdge, "region", "us"),
		site("site4", vk8sv1.SiteTypeRegionalEdge),
	}
	vs := func(sel metav1.LabelSelector, typ vk8sv1.SiteType) *vk8sv1.VirtualSite {
		return &vk8sv1.VirtualSite{Spec: vk8sv1.VirtualSiteSpec{SiteSelector: sel, SiteType: typ}}
	}
	tests := []struct {
		name    string
		vs      *vk8sv1.VirtualSite
		want    []string
		wantErr string
	}{
		{"empty selector selects every site, sorted", vs(metav1.LabelSelector{}, ""), []string{"site1", "site2", "site3", "site4"}, ""},
		{"match labels", vs(metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}, ""), []string{"site1", "site3"}, ""},
		{"match labels and type", vs(metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}, vk8sv1.SiteTypeRegionalEdge), []string{"site3"}, ""},
		{"type defaults to CustomerEdge", vs(metav1.LabelSelector{}, vk8sv1.SiteTypeCustomerEdge), []string{"site1", "site2"}, ""},
		{"expression", vs(metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "region", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"us"}}}}, ""), []string{"site1", "site3", "site4"}, ""},
		{"exists", vs(metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpExists}}}, ""), []string{"site1"}, ""},
		{"nothing matches", vs(metav1.LabelSelector{MatchLabels: map[string]string{"region": "ap"}}, ""), nil, ""},
		{"invalid operator", vs(metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "region", Operator: "Near", Values: []string{"eu"}}}}, ""), nil, `"Near" is not a valid label selector operator`},
		{"In without values", vs(metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "region", Operator: metav1.LabelSelectorOpIn}}}, ""), nil, "for 'in', 'notin' operators, values set can't be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SelectSites(tt.vs, sites)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sites (-want +got):\n%s", diff)
			}
		})
	}
	if (SiteSelector{}).Matches(&sites[0]) {
		t.Error("the zero SiteSelector selects a site")
	}
}

func TestParseVirtualSiteRef(t *testing.T) {
	tests := []struct {
		in     string
		want   VirtualSiteRef
		wantOK bool
	}{
		{"shared/all", VirtualSiteRef{"shared", "all"}, true},
		{"edge", VirtualSiteRef{"demo", "edge"}, true},
		{"/edge", VirtualSiteRef{"", "edge"}, false},
		{"shared/", VirtualSiteRef{"shared", ""}, false},
		{"a/b/c", VirtualSiteRef{"a", "b/c"}, false},
		{"", VirtualSiteRef{"demo", ""}, false},
	}
	for _, tt := range tests {
		got, ok := ParseVirtualSiteRef(tt.in, "demo")
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseVirtualSiteRef(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

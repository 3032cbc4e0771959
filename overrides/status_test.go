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

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestOverrideStatus(t *testing.T) {
	sites := sets.New("site1", "site2", "site3")
	valid := func(list ...string) *vk8sv1.Override {
		o := &vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "canary", Generation: 3},
			Spec: vk8sv1.OverrideSpec{SiteList: list, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Replicas: new(int32)}}}
		return o
	}
	for _, tc := range []struct {
		name    string
		o       *vk8sv1.Override
		sites   []string
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{"every site exists", valid("site3", "site1"), []string{"site1", "site3"}, metav1.ConditionTrue, ReasonSitesFound, "every Site of spec.siteList exists (2)"},
		{"a site is missing", valid("site2", "site9"), []string{"site2"}, metav1.ConditionFalse, ReasonSitesNotFound,
			"spec.siteList names Sites that do not exist: site9; the Override takes effect there once they are registered (kubectl get sites lists them), and on 1 other Sites now"},
		{"invalid", func() *vk8sv1.Override {
			o := valid("site1")
			o.Spec.DeploymentSpec.Paused = new(bool)
			return o
		}(), []string{"site1"}, metav1.ConditionFalse, ReasonInvalid, "spec.deploymentSpec.paused: Forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := OverrideStatus(tc.o, sites)
			if strings.Join(st.Sites, ",") != strings.Join(tc.sites, ",") || st.ObservedGeneration != 3 {
				t.Errorf("sites %v, observedGeneration %d; want %v, 3", st.Sites, st.ObservedGeneration, tc.sites)
			}
			c := meta.FindStatusCondition(st.Conditions, vk8sv1.ConditionReady)
			if c == nil || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) || c.ObservedGeneration != 3 {
				t.Errorf("Ready %+v, want %s %s containing %q", c, tc.status, tc.reason, tc.message)
			}
		})
	}
}

func TestFlavorStatus(t *testing.T) {
	f := BuiltinFlavors()[0]
	f.Generation = 2
	c := meta.FindStatusCondition(FlavorStatus(&f).Conditions, vk8sv1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonValid || c.ObservedGeneration != 2 {
		t.Errorf("ves-io-tiny: Ready %+v, want True Valid", c)
	}
	f.Spec.CPU = resource.MustParse("1m")
	c = meta.FindStatusCondition(FlavorStatus(&f).Conditions, vk8sv1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonInvalid || !strings.Contains(c.Message, "spec.cpu: Invalid value: \"1m\": must be at least 4m") {
		t.Errorf("1m of CPU: Ready %+v, want False Invalid naming spec.cpu", c)
	}
}

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

package placement

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// canary is Override canary on site2 running nginx:2.
func canary() *vk8sv1.Override {
	t := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:2"}}},
	}
	return &vk8sv1.Override{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "canary"},
		Spec:       vk8sv1.OverrideSpec{SiteList: []string{"site2"}, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Template: &t}},
	}
}

func named(o *vk8sv1.Override, name string) *vk8sv1.Override {
	o.Name = name
	return o
}

func TestSiteStep(t *testing.T) {
	pod := func(name string) *corev1.Pod { return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	names := func(ps []*corev1.Pod) []string {
		var out []string
		for _, x := range ps {
			out = append(out, x.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name           string
		pods           []RolloutPod
		planned, maxUn int
		wantVictims    []string
		wantStale      int
		wantSettled    bool
	}{
		{"nothing stale, all Ready: settled", []RolloutPod{{Pod: pod("a"), Ready: true}, {Pod: pod("b"), Ready: true}}, 2, 1, nil, 0, true},
		{"one at a time", []RolloutPod{{Pod: pod("a"), Ready: true, Stale: true}, {Pod: pod("b"), Ready: true, Stale: true}, {Pod: pod("c"), Ready: true, Stale: true}}, 3, 1, []string{"a"}, 3, false},
		{"a replacement not Ready uses the budget", []RolloutPod{{Pod: pod("a"), Ready: false}, {Pod: pod("b"), Ready: true, Stale: true}, {Pod: pod("c"), Ready: true, Stale: true}}, 3, 1, nil, 2, false},
		{"a pod being deleted and its replacement not created yet use the budget", []RolloutPod{{Pod: pod("a"), Terminating: true}, {Pod: pod("b"), Ready: true, Stale: true}, {Pod: pod("c"), Ready: true, Stale: true}}, 3, 1, nil, 2, false},
		{"stale pods that are not Ready go first and cost nothing", []RolloutPod{{Pod: pod("a"), Stale: true}, {Pod: pod("b"), Ready: true, Stale: true}, {Pod: pod("c"), Ready: true, Stale: true}}, 3, 2, []string{"a", "b"}, 3, false},
		{"no stale pods, but one not Ready: not settled", []RolloutPod{{Pod: pod("a")}, {Pod: pod("b"), Ready: true}}, 2, 1, nil, 0, false},
		{"fewer pods than planned: not settled", []RolloutPod{{Pod: pod("a"), Ready: true}}, 2, 1, nil, 0, false},
		{"DaemonSets plan no count: the live pods count", []RolloutPod{{Pod: pod("a"), Ready: true, Stale: true}, {Pod: pod("b"), Ready: true}}, 0, 1, []string{"a"}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			victims, staleCount, settled := SiteStep(tc.pods, tc.planned, tc.maxUn)
			if !slices.Equal(names(victims), tc.wantVictims) || staleCount != tc.wantStale || settled != tc.wantSettled {
				t.Errorf("SiteStep: victims %v, stale %d, settled %v; want %v, %d, %v", names(victims), staleCount, settled, tc.wantVictims, tc.wantStale, tc.wantSettled)
			}
		})
	}
	for _, tc := range []struct {
		v       *intstr.IntOrString
		planned int
		want    int
	}{
		{nil, 3, 1}, {nil, 8, 2}, {ptr.To(intstr.FromString("50%")), 3, 1}, {ptr.To(intstr.FromString("100%")), 3, 3},
		{ptr.To(intstr.FromInt32(0)), 3, 1}, {ptr.To(intstr.FromInt32(2)), 3, 2},
	} {
		if got := MaxUnavailable(tc.v, intstr.FromString(DefaultMaxUnavailable), tc.planned); got != tc.want {
			t.Errorf("MaxUnavailable(%v, %d) = %d, want %d", tc.v, tc.planned, got, tc.want)
		}
	}
}

func TestOverrideStamp(t *testing.T) {
	o := canary()
	same := o.DeepCopy()
	same.Spec.SiteList = []string{"site1", "site3"}
	same.Spec.DeploymentSpec.Replicas = ptr.To[int32](5)
	same.Spec.DeploymentSpec.Template.Labels["z"] = "1"
	same.Spec.DeploymentSpec.Template.Labels["a"] = "1"
	o.Spec.DeploymentSpec.Template.Labels["a"] = "1"
	o.Spec.DeploymentSpec.Template.Labels["z"] = "1"
	image := o.DeepCopy()
	image.Spec.DeploymentSpec.Template.Spec.Containers[0].Image = "nginx:3"
	if Stamp(nil) != StampNone || Stamp(o) != Stamp(same) || Stamp(o) == Stamp(image) ||
		Stamp(o) == Stamp(named(o.DeepCopy(), "other")) || len(Stamp(o)) != 10 {
		t.Errorf("stamps: none %s, o %s, same but site list and replicas %s, other image %s", Stamp(nil), Stamp(o), Stamp(same), Stamp(image))
	}
}

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

package vnode

import (
	"testing"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testNode(cpu string) *corev1.Node {
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("4Gi")}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "site-n", Labels: map[string]string{"a": "b"}},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

func TestWithTaintsKeepsOthers(t *testing.T) {
	ours := corev1.Taint{Key: vk8sv1.TaintKey, Value: vk8sv1.TaintValue, Effect: corev1.TaintEffectNoSchedule}
	notReady := corev1.Taint{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule}
	got := withTaints([]corev1.Taint{notReady}, []corev1.Taint{ours})
	if len(got) != 2 || got[0] != notReady || got[1] != ours {
		t.Errorf("withTaints = %v", got)
	}
	if again := withTaints(got, []corev1.Taint{ours}); len(again) != 2 {
		t.Errorf("taint added twice: %v", again)
	}
}

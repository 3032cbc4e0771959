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

package fleet

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/placement"
)

// now is the clock of the tests.
var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

// site is a Site of type typ, Connected and Ready unless a reason is given for Connected
// to be False.
func site(name string, typ vk8sv1.SiteType, notConnected string) vk8sv1.Site {
	s := vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"region": "eu"}},
		Spec: vk8sv1.SiteSpec{Type: typ, NodeMode: vk8sv1.NodeModePerNode}}
	hb := ago(12 * time.Second)
	s.Status = vk8sv1.SiteStatus{NodeCount: 3, KubernetesVersion: "v1.35.4", LastHeartbeatTime: &hb,
		Conditions: []metav1.Condition{
			{Type: vk8sv1.ConditionConnected, Status: metav1.ConditionTrue, Reason: "Connected"},
			{Type: vk8sv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready"},
		}}
	if notConnected != "" {
		for i := range s.Status.Conditions {
			s.Status.Conditions[i].Status, s.Status.Conditions[i].Reason, s.Status.Conditions[i].Message = metav1.ConditionFalse, notConnected, "cannot reach it"
		}
	}
	return s
}

// vnode is virtual node <site>-node<i> with 4 CPUs and 8Gi.
func vnode(site string, i int, taints ...corev1.Taint) corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-node%d", site, i), Labels: map[string]string{vk8sv1.LabelSite: site, "disk": map[bool]string{true: "ssd", false: "hdd"}[i%2 == 1]}},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110"),
		}},
	}
}

// podOpt changes a test pod.
type podOpt func(*corev1.Pod)

// pod is a Running, Ready pod of owner on node <site>-node1, admitted without an Override.
func pod(name, site string, opts ...podOpt) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, UID: types.UID("uid-" + name),
			Labels:      map[string]string{"app": "web", vk8sv1.LabelSite: site},
			Annotations: map[string]string{vk8sv1.AnnotationOverrideHash: placement.StampNone}},
		Spec: corev1.PodSpec{NodeName: site + "-node1", Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		}},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func notReady(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func terminating(p *corev1.Pod) {
	t := ago(time.Second)
	p.DeletionTimestamp = &t
}

func onNode(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func image(i string) podOpt { return func(p *corev1.Pod) { p.Spec.Containers[0].Image = i } }

func label(k, v string) podOpt { return func(p *corev1.Pod) { p.Labels[k] = v } }

func annotate(k, v string) podOpt { return func(p *corev1.Pod) { p.Annotations[k] = v } }

// withOverride stamps a pod as admitted with o.
func withOverride(o *vk8sv1.Override) podOpt {
	return func(p *corev1.Pod) {
		p.Labels[vk8sv1.LabelOverride] = o.Name
		p.Annotations[vk8sv1.AnnotationOverrideHash] = placement.Stamp(o)
	}
}

// override is an Override on sites running image.
func override(name, image string, sites ...string) vk8sv1.Override {
	t := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
	}
	return vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name},
		Spec: vk8sv1.OverrideSpec{SiteList: sites, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Template: &t}}}
}

// event is an event of the object kind/name (uid) at ago d.
func event(kind, name string, uid types.UID, reason, message string, d time.Duration) corev1.Event {
	return corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "demo", Name: fmt.Sprintf("%s.%s", name, reason), CreationTimestamp: ago(d)},
		InvolvedObject: corev1.ObjectReference{Kind: kind, Name: name, UID: uid},
		Type:           corev1.EventTypeNormal, Reason: reason, Message: message, LastTimestamp: ago(d),
	}
}

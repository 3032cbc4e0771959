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

package provider

import (
	"strings"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// knownPods mirrors virtual-kubelet's pod controller handler: an Update or Delete for a
// pod it had no Add for is a bug (virtual-kubelet panics).
type knownPods struct {
	t     *testing.T
	known map[string]bool
	adds  []string
}

func (k *knownPods) OnAdd(obj any, _ bool) {
	p := obj.(*corev1.Pod)
	k.known[p.Name] = true
	k.adds = append(k.adds, p.ResourceVersion)
}

func (k *knownPods) OnUpdate(_, obj any) {
	if p := obj.(*corev1.Pod); !k.known[p.Name] {
		k.t.Errorf("Update of pod %s (version %s) that had no Add", p.Name, p.ResourceVersion)
	}
}

func (k *knownPods) OnDelete(obj any) {
	if p := obj.(*corev1.Pod); !k.known[p.Name] {
		k.t.Errorf("Delete of pod %s that had no Add", p.Name)
	}
	delete(k.known, obj.(*corev1.Pod).Name)
}

func TestPodBoundBeforeItsVirtualNode(t *testing.T) {
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	version := func(rv string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "early", Namespace: "ns", UID: "u1", ResourceVersion: rv},
			Spec:       corev1.PodSpec{NodeName: "site1-node4"},
		}
	}
	host := fake.NewClientset(version("1"))
	started := make(chan struct{})
	close(started)
	p := &Pods{
		cfg: PodsConfig{
			Host: host, HostPods: corelisters.NewPodLister(pods), HostNodes: corelisters.NewNodeLister(nodes),
			HostPodsOn: func(node string) []*corev1.Pod {
				var out []*corev1.Pod
				for _, o := range pods.List() {
					if o.(*corev1.Pod).Spec.NodeName == node {
						out = append(out, o.(*corev1.Pod))
					}
				}
				return out
			},
			Timeout: time.Second,
		},
		ctx: t.Context(), started: started, log: logr.Discard(), clusters: map[string]*cluster{},
	}
	vk := &knownPods{t: t, known: map[string]bool{}}
	h := cache.FilteringResourceEventHandler{FilterFunc: func(obj any) bool { return p.Owns(obj.(*corev1.Pod)) }, Handler: vk}

	// Bound to a node that does not exist: turned down, also when it changes.
	v1, v2 := version("1"), version("2")
	_ = pods.Add(v1)
	h.OnAdd(v1, false)
	_ = pods.Update(v2)
	h.OnUpdate(v1, v2)
	if len(vk.adds) != 0 {
		t.Fatalf("pod on a missing node was passed to the pod controller: %v", vk.adds)
	}

	// The virtual node appears (and a plain node, which picks nothing up).
	NodeAddedSync := func(n *corev1.Node) {
		_ = nodes.Add(n)
		p.NodeAdded(n)
	}
	NodeAddedSync(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other"}})
	NodeAddedSync(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "site1-node4",
		Labels: map[string]string{vk8sv1.LabelSite: "site1", vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}}})
	var patch k8stesting.PatchAction
	for deadline := time.Now().Add(5 * time.Second); patch == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, a := range host.Actions() {
			if pa, ok := a.(k8stesting.PatchAction); ok && pa.GetSubresource() == "status" && pa.GetName() == "early" {
				patch = pa
			}
		}
	}
	if patch == nil {
		t.Fatalf("no status write for the pod when its node appeared; actions %v", host.Actions())
	}
	for _, want := range []string{string(vk8sv1.ConditionSiteSynced), translate.ReasonNodeRegistered, "site1-node4", `"uid":"u1"`} {
		if !strings.Contains(string(patch.GetPatch()), want) {
			t.Errorf("status patch %s lacks %q", patch.GetPatch(), want)
		}
	}

	// The update that the write causes is the pod controller's Add, the next ones Updates.
	v3, v4 := version("3"), version("4")
	_ = pods.Update(v3)
	h.OnUpdate(v2, v3)
	_ = pods.Update(v4)
	h.OnUpdate(v3, v4)
	if len(vk.adds) != 1 || vk.adds[0] != "3" {
		t.Errorf("Adds %v, want one, of version 3", vk.adds)
	}

	// Forgotten once the host is past the versions turned down, and when the pod is gone.
	p.pruneEarly()
	if _, ok := p.early.Load(v1.UID); !ok {
		t.Errorf("forgotten at once; want kept for a while")
	}
	v, _ := p.early.Load(v1.UID)
	v.(*earlyPod).seen = time.Now().Add(-time.Hour)
	p.pruneEarly()
	if _, ok := p.early.Load(v1.UID); ok {
		t.Errorf("still remembered after the pod controller took it in")
	}
	p.rememberEarly(version("9"))
	_ = pods.Delete(v4)
	p.pruneEarly()
	if _, ok := p.early.Load(v1.UID); ok {
		t.Errorf("still remembered after the pod is gone")
	}
}

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
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// A pod bound by hand (spec.nodeName) to a virtual node that is not registered yet is
// turned down by the pod controller's event filter (Owns), since its node is not a
// virtual node, and virtual-kubelet's pod controller only takes pods in when an informer
// event passes that filter. When the node appears, the provider writes a condition into
// the status of each such pod, as the node's kubelet would: the update event that follows
// passes the filter, which virtual-kubelet takes as the pod's Add.
//
// For that the filter must keep its word about the versions it turned down: the
// FilteringResourceEventHandler evaluates both the old and the new object of an update, at
// the time of the update. Were the old version (turned down while the node was missing)
// to pass now, virtual-kubelet would get an Update for a pod it never had an Add for,
// which panics ("Pod not found in known pods"). So Owns remembers, per UID, the
// resourceVersions it turned down for want of the node (early), and turns them down again.
//
// An informer resync was the other way to make virtual-kubelet look again; it was not
// taken: it is periodic rather than on demand, it replays every pod of the host to every
// handler, and a resync delivers the same object as old and new, which a filter that keeps
// its word can only pass as an Update, never as an Add.

// earlyPod is a host pod Owns turned down because its node did not exist.
type earlyPod struct {
	key  string // namespace/name
	mu   sync.Mutex
	rvs  map[string]bool // resourceVersions turned down
	seen time.Time       // last turned down, or picked up
}

// earlyVersion says whether Owns turned this version of pod down for want of its node.
func (p *Pods) earlyVersion(pod *corev1.Pod) bool {
	v, ok := p.early.Load(pod.UID)
	if !ok {
		return false
	}
	e := v.(*earlyPod)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rvs[pod.ResourceVersion]
}

// rememberEarly records a version of pod that Owns turned down because its node does not
// exist.
func (p *Pods) rememberEarly(pod *corev1.Pod) {
	v, _ := p.early.LoadOrStore(pod.UID, &earlyPod{key: pod.Namespace + "/" + pod.Name, rvs: map[string]bool{}})
	e := v.(*earlyPod)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rvs[pod.ResourceVersion] = true
	e.seen = time.Now()
}

// NodeAdded hands the pods bound to a virtual node before it was registered to the pod
// controller, by writing the status condition vk8s.io/SiteSynced=False (reason
// VirtualNodeRegistered) into each: the update event takes them in. It is the host node
// informer's Add handler and does not block.
func (p *Pods) NodeAdded(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok || n.Labels[vk8sv1.LabelSite] == "" || n.Labels[vk8sv1.LabelType] != vk8sv1.TypeVirtualKubelet {
		return
	}
	var pods []*corev1.Pod
	for _, pod := range p.cfg.HostPodsOn(n.Name) {
		if _, ok := p.early.Load(pod.UID); ok {
			pods = append(pods, pod)
		}
	}
	if len(pods) == 0 {
		return
	}
	go func() {
		<-p.started
		for _, pod := range pods {
			if err := p.pickUp(p.ctx, pod, n); err != nil {
				p.log.Error(err, "Pod bound before its virtual node was registered is not picked up", "pod", pod.Namespace+"/"+pod.Name)
			}
		}
	}()
}

// pickUp writes the condition that tells a pod bound early that its node is here (a
// strategic merge patch of the status: no conflict with other writers of the status).
func (p *Pods) pickUp(ctx context.Context, pod *corev1.Pod, n *corev1.Node) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if v, ok := p.early.Load(pod.UID); ok {
		e := v.(*earlyPod)
		e.mu.Lock()
		e.seen = time.Now()
		e.mu.Unlock()
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pod.UID},
		"status": map[string]any{"conditions": []corev1.PodCondition{{
			Type: vk8sv1.ConditionSiteSynced, Status: corev1.ConditionFalse, Reason: translate.ReasonNodeRegistered,
			Message: fmt.Sprintf("virtual node %s was registered after the pod was bound to it; the pod is being created on site %s",
				n.Name, n.Labels[vk8sv1.LabelSite]),
			LastTransitionTime: metav1.Now(),
		}}},
	})
	if err != nil {
		return err
	}
	_, err = p.cfg.Host.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: "vk8s-provider"}, "status")
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("write status of host pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// pruneEarly forgets pods bound early that are gone, and those the pod controller has
// taken in: the host's version of the pod is one Owns did not turn down, and has been for a
// while (virtual-kubelet's informer delivers it within that time). A pod still at a version
// turned down is kept, however long: its next update must still be an Add.
func (p *Pods) pruneEarly() {
	p.early.Range(func(uid, v any) bool {
		e := v.(*earlyPod)
		ns, name, _ := cache.SplitMetaNamespaceKey(e.key)
		host, err := p.cfg.HostPods.Pods(ns).Get(name)
		e.mu.Lock()
		done := err != nil || host.UID != uid ||
			(!e.rvs[host.ResourceVersion] && time.Since(e.seen) > 2*time.Minute)
		e.mu.Unlock()
		if done {
			p.early.Delete(uid)
		}
		return true
	})
}

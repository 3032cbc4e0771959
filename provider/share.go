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
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/cache"
)

// shareUnchanged returns the host pod informer's transform: next (which strips the
// managedFields), then a new version of a pod shares with the version the cache holds the
// spec, labels, annotations and owner references that did not change.
//
// virtual-kubelet keeps the version of every pod it last synced to the provider (its
// knownPod.lastPodUsed) for as long as the pod lives; a pod's later versions are mostly
// status writes, so without this that version is a whole second pod in memory, which the
// cache no longer holds. With it, what is kept beyond the cache is that version's status
// and a few strings. Cached objects are never changed in place, so sharing their parts is
// safe.
func shareUnchanged(store cache.Store, next cache.TransformFunc) cache.TransformFunc {
	return func(obj any) (any, error) {
		obj, err := next(obj)
		if err != nil {
			return obj, err
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return obj, nil
		}
		got, ok, err := store.Get(pod)
		if err != nil || !ok {
			return pod, nil //nolint:nilerr // nothing to share with
		}
		old, ok := got.(*corev1.Pod)
		if !ok || old == pod || old.UID != pod.UID {
			return pod, nil
		}
		if equality.Semantic.DeepEqual(&old.Spec, &pod.Spec) {
			pod.Spec = old.Spec
		}
		if maps.Equal(old.Labels, pod.Labels) {
			pod.Labels = old.Labels
		}
		if maps.Equal(old.Annotations, pod.Annotations) {
			pod.Annotations = old.Annotations
		}
		if equality.Semantic.DeepEqual(old.OwnerReferences, pod.OwnerReferences) {
			pod.OwnerReferences = old.OwnerReferences
		}
		return pod, nil
	}
}

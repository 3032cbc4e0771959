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

package translate

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// Kinds of the objects a pod references that vk8s copies to the pod's site.
const (
	KindConfigMap      = "ConfigMap"
	KindSecret         = "Secret"
	KindServiceAccount = "ServiceAccount"
	// KindPersistentVolumeClaim copies are made once and deleted only with the host's
	// claim: deleting one would delete the site's data.
	KindPersistentVolumeClaim = "PersistentVolumeClaim"
)

// Ref names an object in the pod's namespace that the pod needs on its site.
type Ref struct {
	Kind string
	Name string
	// Optional is true when every use of the object in the pod is optional: the pod starts
	// without it.
	Optional bool
}

// References lists the ConfigMaps, Secrets (image pull secrets included),
// PersistentVolumeClaims and the ServiceAccount a pod uses, sorted by kind and name, each once. The "default"
// ServiceAccount and the host's token volume (with its kube-root-ca.crt ConfigMap) are
// left out: every site namespace has its own.
func References(spec *corev1.PodSpec) []Ref {
	type key struct{ kind, name string }
	seen := map[key]bool{} // value: optional in every use so far
	add := func(kind, name string, optional *bool) {
		if name == "" {
			return
		}
		opt := optional != nil && *optional
		k := key{kind, name}
		if prev, ok := seen[k]; ok {
			seen[k] = prev && opt
			return
		}
		seen[k] = opt
	}
	for _, v := range spec.Volumes {
		if isHostTokenVolume(v) {
			// The host's token, CA and namespace stay in the host (SitePod drops them).
			continue
		}
		switch {
		case v.ConfigMap != nil:
			add(KindConfigMap, v.ConfigMap.Name, v.ConfigMap.Optional)
		case v.Secret != nil:
			add(KindSecret, v.Secret.SecretName, v.Secret.Optional)
		case v.PersistentVolumeClaim != nil:
			add(KindPersistentVolumeClaim, v.PersistentVolumeClaim.ClaimName, nil)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add(KindConfigMap, s.ConfigMap.Name, s.ConfigMap.Optional)
				}
				if s.Secret != nil {
					add(KindSecret, s.Secret.Name, s.Secret.Optional)
				}
			}
		}
	}
	containers := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil {
					add(KindConfigMap, e.ConfigMapRef.Name, e.ConfigMapRef.Optional)
				}
				if e.SecretRef != nil {
					add(KindSecret, e.SecretRef.Name, e.SecretRef.Optional)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					add(KindConfigMap, r.Name, r.Optional)
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					add(KindSecret, r.Name, r.Optional)
				}
			}
		}
	}
	containers(spec.InitContainers)
	containers(spec.Containers)
	for _, s := range spec.ImagePullSecrets {
		// A missing pull secret does not stop a kubelet from trying the pull.
		add(KindSecret, s.Name, ptr.To(true))
	}
	if sa := spec.ServiceAccountName; sa != "" && sa != "default" {
		add(KindServiceAccount, sa, nil)
	}
	out := make([]Ref, 0, len(seen))
	for k, opt := range seen {
		out = append(out, Ref{Kind: k.kind, Name: k.name, Optional: opt})
	}
	slices.SortFunc(out, func(a, b Ref) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Uses reports whether the pod spec references the object.
func Uses(spec *corev1.PodSpec, kind, name string) bool {
	for _, r := range References(spec) {
		if r.Kind == kind && r.Name == name {
			return true
		}
	}
	return false
}

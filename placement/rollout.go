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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// StampNone is the vk8s.io/override-hash of a pod admitted without an Override.
const StampNone = "none"

// Stamp returns what pod admission records in vk8s.io/override-hash for Override o (nil:
// none): a short hash of its name and its template, the parts of an Override that change a
// pod (the name is label vk8s.io/override). Replicas and strategy are left out, so
// changing them restarts nothing.
func Stamp(o *vk8sv1.Override) string {
	if o == nil {
		return StampNone
	}
	h := sha256.New()
	h.Write([]byte(o.Name))
	h.Write([]byte{0})
	if t := o.Spec.DeploymentSpec.Template; t != nil {
		// encoding/json sorts map keys: the same template always hashes the same.
		raw, _ := json.Marshal(t)
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// Stale says whether pod was admitted with something else than what Override o (nil:
// none) gives now. A pod without a stamp was admitted before stamps existed: it is stale
// only when its vk8s.io/override label names another Override (or none), so upgrading
// vk8s does not restart every pod.
func Stale(pod *corev1.Pod, o *vk8sv1.Override) bool {
	if got, ok := pod.Annotations[vk8sv1.AnnotationOverrideHash]; ok {
		return got != Stamp(o)
	}
	want := ""
	if o != nil {
		want = o.Name
	}
	return pod.Labels[vk8sv1.LabelOverride] != want
}

// RolloutPod is a live pod of a site, as a rollout step sees it.
type RolloutPod struct {
	Pod *corev1.Pod
	// Stale: admitted with another Override than the site's current one.
	Stale bool
	// Ready: Ready and not being deleted.
	Ready bool
	// Terminating: being deleted (or deleted by the rollout, before the cache says so).
	Terminating bool
}

// SiteStep decides one step of a site's rollout: which pods to delete now so that no more
// than maxUnavailable of the site's planned pods are unavailable, counting the pods
// already unavailable. Stale pods that are not Ready are deleted first and cost nothing
// (they are unavailable already); Ready stale pods follow, within the budget. It also
// returns how many stale pods remain before this step, and whether the site is settled:
// nothing stale, nothing terminating, every pod Ready and at least planned of them.
func SiteStep(pods []RolloutPod, planned, maxUnavailable int) (victims []*corev1.Pod, staleCount int, settled bool) {
	available, live, terminating := 0, 0, 0
	for _, p := range pods {
		switch {
		case p.Terminating:
			terminating++
			continue
		case p.Ready:
			available++
		}
		live++
		if p.Stale {
			staleCount++
		}
	}
	if planned < live {
		planned = live
	}
	settled = staleCount == 0 && terminating == 0 && available == live && live >= planned
	budget := maxUnavailable - (planned - available)
	for _, p := range pods {
		if p.Stale && !p.Terminating && !p.Ready {
			victims = append(victims, p.Pod)
		}
	}
	for _, p := range pods {
		if budget <= 0 {
			break
		}
		if p.Stale && !p.Terminating && p.Ready {
			victims = append(victims, p.Pod)
			budget--
		}
	}
	return victims, staleCount, settled
}

// DefaultMaxUnavailable is the pace of workloads that set none: the Deployment API's
// default.
const DefaultMaxUnavailable = "25%"

// MaxUnavailable scales a maxUnavailable (nil: def) to n pods, rounding down, but at least
// 1 so that a rollout or a rebalance always proceeds.
func MaxUnavailable(v *intstr.IntOrString, def intstr.IntOrString, n int) int {
	if v == nil {
		v = &def
	}
	m, err := intstr.GetScaledValueFromIntOrPercent(v, n, false)
	if err != nil || m < 1 {
		return 1
	}
	return m
}

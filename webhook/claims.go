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

package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

// admitClaim is the mutating handler of PersistentVolumeClaims created in vK8s namespaces
// (docs/applications.md, "Storage"). A claim there is a claim on the sites, so its host
// StorageClass must be one of vk8s' provisioner: a claim that names none (or "", or the
// host's own default, which the API server wrote in before this webhook ran) gets the
// StorageClass of vk8s' provisioner; one that names another class is refused, naming the
// classes it may use.
func (a *admitter) admitClaim(ctx context.Context, req admission.Request) admission.Response {
	claim := &corev1.PersistentVolumeClaim{}
	if resp := a.decodeInVK8s(ctx, req, claim); resp != nil {
		return *resp
	}
	class, warning, err := a.claimClass(ctx, "spec.storageClassName", claim.Spec.StorageClassName)
	if err != nil {
		return a.answer(ctx, err)
	}
	if class == "" {
		return admission.Allowed("a StorageClass of vk8s' provisioner")
	}
	claim.Spec.StorageClassName = &class
	raw, err := json.Marshal(claim)
	if err != nil {
		return a.answer(ctx, err)
	}
	resp := admission.PatchResponseFromRaw(req.Object.Raw, raw)
	if warning != "" {
		resp = resp.WithWarnings(warning)
	}
	return resp
}

// claimClass checks the StorageClass a claim in a vK8s namespace names at field: it
// returns "" when it may stay, or the class of vk8s' provisioner it becomes (with a
// warning when the claim named another), or a rejection.
func (a *admitter) claimClass(ctx context.Context, field string, name *string) (string, string, error) {
	var list storagev1.StorageClassList
	if err := a.cache.List(ctx, &list); err != nil {
		return "", "", err
	}
	var ours []string
	var hostDefault, ourDefault string
	classes := map[string]*storagev1.StorageClass{}
	for i := range list.Items {
		sc := &list.Items[i]
		classes[sc.Name] = sc
		isDefault := sc.Annotations[vk8sv1.AnnotationDefaultStorageClass] == "true"
		if sc.Provisioner == vk8sv1.StorageProvisioner {
			ours = append(ours, sc.Name)
			if isDefault {
				ourDefault = sc.Name
			}
		} else if isDefault {
			hostDefault = sc.Name
		}
	}
	slices.Sort(ours)
	requested := ""
	if name != nil {
		requested = *name
	}
	if sc := classes[requested]; sc != nil && sc.Provisioner == vk8sv1.StorageProvisioner {
		return "", "", nil
	}
	fix := fmt.Sprintf("leave %s out (the sites' default storage), or name a StorageClass of provisioner %s (%s)",
		field, vk8sv1.StorageProvisioner, strings.Join(ours, ", "))
	if len(ours) == 0 {
		return "", "", federation.Invalid(reasonStorageClass, field, requested,
			fmt.Sprintf("a claim in a vK8s namespace is a claim on the sites, and the host has no StorageClass of provisioner %s", vk8sv1.StorageProvisioner),
			"start the vk8s provider, which creates the StorageClass "+vk8sv1.StorageClassName+", or create one")
	}
	// What a claim that names no class becomes: vk8s' default class, else "vk8s", else
	// the first.
	mine := ourDefault
	if mine == "" && slices.Contains(ours, vk8sv1.StorageClassName) {
		mine = vk8sv1.StorageClassName
	}
	if mine == "" {
		mine = ours[0]
	}
	switch {
	case requested == "":
		return mine, "", nil
	case requested == hostDefault:
		// The API server's DefaultStorageClass admission wrote the host's default in.
		return mine, fmt.Sprintf("%s: the host's default StorageClass %q provisions host volumes; in a vK8s namespace the claim is on the sites, with StorageClass %q",
			field, requested, mine), nil
	case classes[requested] == nil:
		return "", "", federation.Invalid(reasonStorageClass, field, requested, "the host has no StorageClass of that name", fix)
	}
	return "", "", federation.Invalid(reasonStorageClass, field, requested,
		fmt.Sprintf("StorageClass %q provisions host volumes (provisioner %s), and a claim in a vK8s namespace is a claim on the sites",
			requested, classes[requested].Provisioner),
		fix+"; to give the sites' claims a class of theirs, create a StorageClass of provisioner "+vk8sv1.StorageProvisioner+
			" with parameter "+vk8sv1.ParameterSiteStorageClass)
}

// validateClaimTemplates refuses a StatefulSet whose volumeClaimTemplates name a
// StorageClass its claims could not have (admitClaim).
func (a *admitter) validateClaimTemplates(ctx context.Context, templates []corev1.PersistentVolumeClaim) error {
	for i, t := range templates {
		if _, _, err := a.claimClass(ctx, fmt.Sprintf("spec.volumeClaimTemplates[%d].spec.storageClassName", i), t.Spec.StorageClassName); err != nil {
			return err
		}
	}
	return nil
}

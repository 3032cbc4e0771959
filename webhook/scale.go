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
	"net/http"
	"strconv"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

// admitScale is the mutating handler of the scale subresource of Deployments,
// StatefulSets and ReplicaSets: the replicas written there are a total, rounded up to a
// multiple of the sites (or rejected in strict mode). The workload's
// vk8s.io/replicas-per-site follows right after (federation.Refresher).
func (a *admitter) admitScale(ctx context.Context, req admission.Request) admission.Response {
	scale, old := &autoscalingv1.Scale{}, &autoscalingv1.Scale{}
	if err := a.decoder.Decode(req, scale); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if err := a.decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if scale.Spec.Replicas == old.Spec.Replicas {
		return admission.Allowed("replicas unchanged")
	}
	kind := kindOfResource(req.Resource.Resource)
	parent := federation.NewWorkload(kind)
	if parent == nil {
		return admission.Allowed("not a workload")
	}
	if err := a.api.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: req.Name}, parent); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return admission.Allowed("workload not found")
		}
		return a.answer(ctx, err)
	}
	if federation.OwnedByWorkload(parent) {
		return admission.Allowed("scaled by its owner")
	}
	fed, err := a.state.Resolver.Resolve(ctx, req.Namespace, parent.GetAnnotations(), federation.Lenient)
	switch {
	case err != nil:
		return a.answer(ctx, err)
	case fed == nil:
		return admission.Allowed("not a vK8s namespace")
	case len(fed.Sites) == 0:
		return a.answer(ctx, noSites(fed, parent.GetAnnotations(), false))
	}
	keep, _ := strconv.ParseInt(parent.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite], 10, 32)
	r, err := fed.PerSite(scale.Spec.Replicas, int32(keep), a.cfg.StrictReplicas)
	if err != nil {
		return a.answer(ctx, &federation.Rejection{Reason: reasonReplicas, Message: err.Error()})
	}
	plan, err := fed.Plan(r)
	if err != nil {
		return a.answer(ctx, federation.Invalid(reasonReplicas, "spec.replicas", scale.Spec.Replicas, err.Error(), "lower the replicas"))
	}
	var warnings []string
	if plan.Total != scale.Spec.Replicas {
		msg := roundedUp("spec.replicas", scale.Spec.Replicas, plan.Total, r, len(fed.Sites))
		warnings = append(warnings, msg)
		if a.recorder != nil {
			a.recorder.Eventf(parent, nil, corev1.EventTypeNormal, "ReplicasRoundedUp", "Scale", "%s", msg)
		}
		scale.Spec.Replicas = plan.Total
	}
	if req.DryRun == nil || !*req.DryRun {
		a.refresh(federation.RefreshItem{Kind: kind, Namespace: req.Namespace, Name: req.Name, Total: plan.Total, R: r})
	}
	raw, err := json.Marshal(scale)
	if err != nil {
		return a.answer(ctx, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(warnings...)
}

func kindOfResource(resource string) string {
	switch resource {
	case "deployments":
		return "Deployment"
	case "statefulsets":
		return "StatefulSet"
	case "replicasets":
		return "ReplicaSet"
	}
	return ""
}

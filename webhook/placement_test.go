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
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"
)

func TestCarryOver(t *testing.T) {
	token := corev1.Volume{Name: "kube-api-access-1", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}
	tokenMount := corev1.VolumeMount{Name: token.Name, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}
	notReady := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}
	userTol := corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists}
	template := corev1.PodSpec{
		Containers:  []corev1.Container{{Name: "app", Image: "v1"}},
		Tolerations: []corev1.Toleration{userTol},
	}
	pod := corev1.PodSpec{
		Containers: []corev1.Container{
			{Name: "app", Image: "v1", VolumeMounts: []corev1.VolumeMount{tokenMount}},
			{Name: "proxy", Image: "injected", VolumeMounts: []corev1.VolumeMount{tokenMount}},
		},
		Volumes:            []corev1.Volume{token},
		Tolerations:        []corev1.Toleration{userTol, notReady},
		ServiceAccountName: "default", SchedulerName: "default-scheduler",
		PriorityClassName: "high", Priority: ptr.To[int32](1000),
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "from-sa"}},
	}
	for _, tc := range []struct {
		name     string
		template *corev1.PodSpec
		out      corev1.PodSpec
		want     corev1.PodSpec
		resolve  bool
	}{
		{
			name:     "an Override's template gets admission's additions",
			template: &template,
			out:      corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "v2"}, {Name: "debug", Image: "busybox"}}},
			want: corev1.PodSpec{
				Containers: []corev1.Container{
					{Name: "app", Image: "v2", VolumeMounts: []corev1.VolumeMount{tokenMount}},
					{Name: "debug", Image: "busybox", VolumeMounts: []corev1.VolumeMount{tokenMount}},
					{Name: "proxy", Image: "injected", VolumeMounts: []corev1.VolumeMount{tokenMount}},
				},
				Volumes:            []corev1.Volume{token},
				Tolerations:        []corev1.Toleration{notReady},
				ServiceAccountName: "default", SchedulerName: "default-scheduler",
				PriorityClassName: "high", Priority: ptr.To[int32](1000),
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "from-sa"}},
			},
		},
		{
			name:     "what the Override sets stays; another priority class is resolved by the caller",
			template: &template,
			out: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "v2"}}, ServiceAccountName: "canary",
				PriorityClassName: "low", AutomountServiceAccountToken: ptr.To(false)},
			want: corev1.PodSpec{
				Containers: []corev1.Container{
					{Name: "app", Image: "v2", VolumeMounts: []corev1.VolumeMount{tokenMount}},
					{Name: "proxy", Image: "injected", VolumeMounts: []corev1.VolumeMount{tokenMount}},
				},
				Volumes:            []corev1.Volume{token},
				Tolerations:        []corev1.Toleration{notReady},
				ServiceAccountName: "canary", SchedulerName: "default-scheduler", AutomountServiceAccountToken: ptr.To(false),
				PriorityClassName: "low",
				ImagePullSecrets:  []corev1.LocalObjectReference{{Name: "from-sa"}},
			},
			resolve: true,
		},
		{
			name:     "a bare pod: only what admission is known to add",
			template: nil,
			out:      corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "v2"}}},
			want: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: "v2", VolumeMounts: []corev1.VolumeMount{tokenMount}}},
				Volumes:    []corev1.Volume{token},
				// userTol and the proxy were the pod's own: the Override's template replaces them.
				Tolerations:        []corev1.Toleration{notReady},
				ServiceAccountName: "default", SchedulerName: "default-scheduler",
				PriorityClassName: "high", Priority: ptr.To[int32](1000),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.out.DeepCopy()
			resolve := carryOver(out, &pod, tc.template)
			if resolve != tc.resolve || !apiequality.Semantic.DeepEqual(*out, tc.want) {
				t.Errorf("got %+v (resolve %v)\nwant %+v (resolve %v)", *out, resolve, tc.want, tc.resolve)
			}
		})
	}
}

func TestRestrictSites(t *testing.T) {
	spec := &corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpExists}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "vk8s.io/site", Operator: corev1.NodeSelectorOpIn, Values: []string{"old"}}}},
		}}}}}
	restrictSites(spec, []string{"site1", "site2"})
	restrictSites(spec, []string{"site2"})
	terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 2 || len(terms[0].MatchExpressions) != 2 || terms[0].MatchExpressions[0].Key != "disk" ||
		!slices.Equal(terms[0].MatchExpressions[1].Values, []string{"site2"}) || len(terms[1].MatchExpressions) != 1 ||
		!slices.Equal(terms[1].MatchExpressions[0].Values, []string{"site2"}) {
		t.Errorf("terms %+v", terms)
	}
	tol := &corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}
	tolerateVirtualNodes(tol)
	if len(tol.Tolerations) != 1 {
		t.Errorf("a toleration of everything was not enough: %v", tol.Tolerations)
	}
}

func TestTolerateOutages(t *testing.T) {
	defaults := []corev1.Toleration{ // what the API server's DefaultTolerationSeconds adds
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
	}
	forever := []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	}
	custom := corev1.Toleration{Key: "dedicated", Value: "edge", Effect: corev1.TaintEffectNoSchedule}
	for _, tc := range []struct {
		name     string
		in, want []corev1.Toleration
	}{
		{"the API server's defaults lose their limit", defaults, forever},
		{"none: added", nil, forever},
		{"the manifest's own limit goes too, others stay", []corev1.Toleration{custom,
			{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](30)}},
			[]corev1.Toleration{custom, forever[1], forever[0]}},
		{"everything tolerated for ever already", []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &corev1.PodSpec{Tolerations: slices.Clone(tc.in)}
			tolerateOutages(spec)
			if !apiequality.Semantic.DeepEqual(spec.Tolerations, tc.want) {
				t.Errorf("tolerations %+v, want %+v", spec.Tolerations, tc.want)
			}
		})
	}
}

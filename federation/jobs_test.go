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

package federation

import (
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestJobShares(t *testing.T) {
	pod := func(site string, phase corev1.PodPhase, restarts int32) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{vk8sv1.LabelSite: site}},
			Status: corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{RestartCount: restarts}}}}
	}
	job := func(restart corev1.RestartPolicy, annotations map[string]string) *batchv1.Job {
		a := map[string]string{vk8sv1.AnnotationPlacement: "site1=2,site2=2,site3=2", vk8sv1.AnnotationReplicasPerSite: "1"}
		for k, v := range annotations {
			a[k] = v
		}
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Annotations: a},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: restart}}}}
	}
	for _, tc := range []struct {
		name                       string
		job                        *batchv1.Job
		pods                       []corev1.Pod
		succeeded, failed, exceeds string
	}{
		{
			name: "each site against its own completions and limit; a site without pods shows",
			job:  job(corev1.RestartPolicyNever, map[string]string{vk8sv1.AnnotationCompletionsPerSite: "2", vk8sv1.AnnotationBackoffLimitPerSite: "1"}),
			pods: []corev1.Pod{pod("site1", corev1.PodSucceeded, 0), pod("site1", corev1.PodSucceeded, 0),
				pod("site2", corev1.PodFailed, 0), pod("site2", corev1.PodRunning, 0)},
			succeeded: "site1=2/2,site2=0/2,site3=0/2", failed: "site1=0/1,site2=1/1,site3=0/1",
		},
		{
			name: "a second failure on one site passes its limit, though the sites together are within theirs",
			job:  job(corev1.RestartPolicyNever, map[string]string{vk8sv1.AnnotationCompletionsPerSite: "2", vk8sv1.AnnotationBackoffLimitPerSite: "1"}),
			pods: []corev1.Pod{pod("site1", corev1.PodSucceeded, 0), pod("site2", corev1.PodFailed, 0), pod("site2", corev1.PodFailed, 0),
				pod("site4", corev1.PodRunning, 0)},
			succeeded: "site1=1/2,site2=0/2,site3=0/2,site4=0/2", failed: "site1=0/1,site2=2/1,site3=0/1,site4=0/1", exceeds: "site2",
		},
		{
			name:      "OnFailure: restarts of running pods count, and reaching the limit is enough",
			job:       job(corev1.RestartPolicyOnFailure, map[string]string{vk8sv1.AnnotationBackoffLimitPerSite: "3"}),
			pods:      []corev1.Pod{pod("site3", corev1.PodRunning, 2), pod("site3", corev1.PodPending, 1), pod("site1", corev1.PodSucceeded, 4)},
			succeeded: "site1=1,site2=0,site3=0", failed: "site1=0/3,site2=0/3,site3=3/3", exceeds: "site3",
		},
		{
			name:      "OnFailure with a limit of 0: one restart",
			job:       job(corev1.RestartPolicyOnFailure, map[string]string{vk8sv1.AnnotationBackoffLimitPerSite: "0"}),
			pods:      []corev1.Pod{pod("site1", corev1.PodRunning, 0), pod("site2", corev1.PodRunning, 1)},
			succeeded: "site1=0,site2=0,site3=0", failed: "site1=0/0,site2=1/0,site3=0/0", exceeds: "site2",
		},
		{
			name:      "no per-site limit (a Job admitted before it existed): counts only, never failed by vk8s",
			job:       job(corev1.RestartPolicyNever, nil),
			pods:      []corev1.Pod{pod("site1", corev1.PodFailed, 0), pod("site1", corev1.PodFailed, 0), pod("", corev1.PodFailed, 0)},
			succeeded: "site1=0,site2=0,site3=0", failed: "site1=2,site2=0,site3=0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := countJobShares(tc.job, tc.pods)
			if got := s.Succeeded(); got != tc.succeeded {
				t.Errorf("succeeded %q, want %q", got, tc.succeeded)
			}
			if got := s.Failed(); got != tc.failed {
				t.Errorf("failed %q, want %q", got, tc.failed)
			}
			got := ""
			if e := s.Exceeded(); e != nil {
				got = e.Site
			}
			if got != tc.exceeds {
				t.Errorf("exceeded %q, want %q", got, tc.exceeds)
			}
		})
	}
}

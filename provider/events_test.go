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
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
)

// virtual-kubelet's hand-off Events go; its Warnings and everything else stay.
func TestWithoutHandOffs(t *testing.T) {
	fake := record.NewFakeRecorder(10)
	rec := withoutHandOffs{fake}
	pod := &corev1.Pod{}
	rec.Event(pod, corev1.EventTypeNormal, "ProviderCreateSuccess", "Create pod in provider successfully")
	rec.Eventf(pod, corev1.EventTypeNormal, "ProviderDeleteSuccess", "Delete pod in provider successfully")
	rec.AnnotatedEventf(pod, nil, corev1.EventTypeNormal, "ProviderUpdateSuccess", "Update pod in provider successfully")
	rec.Event(pod, corev1.EventTypeWarning, "ProviderCreateFailed", "invalid")
	rec.Eventf(pod, corev1.EventTypeNormal, "SitePodCreated", "created on site %s", "site1")
	close(fake.Events)
	var got []string
	for e := range fake.Events {
		got = append(got, e)
	}
	want := []string{"Warning ProviderCreateFailed invalid", "Normal SitePodCreated created on site site1"}
	if !slices.Equal(got, want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
}

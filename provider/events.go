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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// handOffReasons are the reasons of virtual-kubelet's Normal Events on a pod it handed the
// provider (its CreatePod, UpdatePod and DeletePod returned). vk8s' calls only queue the
// pod for its site, so "Create pod in provider successfully" says nothing has happened
// yet; what did happen on the site has Events of its own (SitePodCreated, or a Warning
// saying why not).
var handOffReasons = map[string]bool{
	"ProviderCreateSuccess": true,
	"ProviderUpdateSuccess": true,
	"ProviderDeleteSuccess": true,
}

// withoutHandOffs is virtual-kubelet's pod controller's recorder: rec without the
// hand-off Events (handOffReasons), each of which was a write to the host's API server
// and its storage for every pod created, updated or deleted. virtual-kubelet's Warnings
// stay.
type withoutHandOffs struct {
	record.EventRecorder
}

func (r withoutHandOffs) Event(obj runtime.Object, eventtype, reason, message string) {
	if eventtype == corev1.EventTypeNormal && handOffReasons[reason] {
		return
	}
	r.EventRecorder.Event(obj, eventtype, reason, message)
}

func (r withoutHandOffs) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	if eventtype == corev1.EventTypeNormal && handOffReasons[reason] {
		return
	}
	r.EventRecorder.Eventf(obj, eventtype, reason, messageFmt, args...)
}

func (r withoutHandOffs) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	if eventtype == corev1.EventTypeNormal && handOffReasons[reason] {
		return
	}
	r.EventRecorder.AnnotatedEventf(obj, annotations, eventtype, reason, messageFmt, args...)
}

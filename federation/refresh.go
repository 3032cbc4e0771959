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
	"context"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// RefreshItem asks to set vk8s.io/replicas-per-site to R on a workload (Kind Deployment,
// StatefulSet or ReplicaSet) once its spec.replicas is Total.
type RefreshItem struct {
	Kind, Namespace, Name string
	Total, R              int32
	attempt               int
}

// Refresher writes vk8s.io/replicas-per-site after a write through the scale subresource,
// which cannot carry it: once the new total is stored, it patches the annotation, and the
// workload's own admission records the placement. Admission of the scale enqueues the
// work; the Refresher is a manager.Runnable.
type Refresher struct {
	s     *State
	queue workqueue.TypedDelayingInterface[RefreshItem]
}

const (
	refreshDelay    = 200 * time.Millisecond
	refreshAttempts = 50
)

func newRefresher(s *State) *Refresher {
	return &Refresher{s: s, queue: workqueue.NewTypedDelayingQueue[RefreshItem]()}
}

// Enqueue asks for item a moment from now.
func (r *Refresher) Enqueue(item RefreshItem) { r.queue.AddAfter(item, refreshDelay) }

// NeedLeaderElection is false: admission on any replica enqueues, and the replica that
// admitted the scale writes the annotation.
func (r *Refresher) NeedLeaderElection() bool { return false }

// Start processes the queue until ctx ends; it is a manager.Runnable.
func (r *Refresher) Start(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	for {
		item, shutdown := r.queue.Get()
		if shutdown {
			return nil
		}
		if err := r.Refresh(ctx, item); err != nil {
			if item.attempt < refreshAttempts {
				item.attempt++
				r.queue.AddAfter(item, refreshDelay)
			} else {
				ctrl.LoggerFrom(ctx).Error(err, "Recording replicas per site after a scale failed", "kind", item.Kind,
					"workload", types.NamespacedName{Namespace: item.Namespace, Name: item.Name})
			}
		}
		r.queue.Done(item)
	}
}

// NewWorkload returns an empty object of a workload kind (Deployment, StatefulSet,
// ReplicaSet, DaemonSet, Job, CronJob), or nil.
func NewWorkload(kind string) client.Object {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "ReplicaSet":
		return &appsv1.ReplicaSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	case "Job":
		return &batchv1.Job{}
	case "CronJob":
		return &batchv1.CronJob{}
	}
	return nil
}

// Refresh does one item: it patches the annotation once the workload's total is the
// item's (and asks again later while it is not yet).
func (r *Refresher) Refresh(ctx context.Context, item RefreshItem) error {
	obj := NewWorkload(item.Kind)
	if _, _, scalable := replicasOf(obj); !scalable {
		return nil
	}
	if err := r.s.API.Get(ctx, client.ObjectKey{Namespace: item.Namespace, Name: item.Name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	replicas, _, _ := replicasOf(obj)
	if ptr.Deref(replicas, 1) != item.Total {
		// The scale write is not stored yet, or another write followed it.
		if item.attempt < refreshAttempts {
			item.attempt++
			r.queue.AddAfter(item, refreshDelay)
		}
		return nil
	}
	want := strconv.FormatInt(int64(item.R), 10)
	if obj.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite] == want {
		return nil
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, vk8sv1.AnnotationReplicasPerSite, want)
	if err := r.s.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return fmt.Errorf("patch %s %s/%s: %w", item.Kind, item.Namespace, item.Name, err)
	}
	return nil
}

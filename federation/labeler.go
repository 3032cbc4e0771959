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
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// namespaceLabeler keeps vk8sv1.LabelVirtualKubernetes on exactly the namespaces that hold a
// VirtualKubernetes (the oldest one's name), so the webhook configurations reach them and
// nothing else. A namespace keeps the label while its VirtualKubernetes finalizes.
type namespaceLabeler struct {
	client client.Client
	now    func() time.Time

	mu sync.Mutex
	// unbacked records when a labelled namespace was first seen without a
	// VirtualKubernetes: the admission of a new one labels its namespace a moment before
	// the object is stored, so the label goes only after labelGrace.
	unbacked map[string]time.Time
}

// labelGrace is how long a label without a VirtualKubernetes stays.
const labelGrace = 5 * time.Second

func setupNamespaceLabeler(mgr manager.Manager, name string) error {
	l := &namespaceLabeler{client: mgr.GetClient(), now: time.Now, unbacked: map[string]time.Time{}}
	return builder.ControllerManagedBy(mgr).
		Named(name+"-namespaces").
		For(&corev1.Namespace{}).
		Watches(&vk8sv1.VirtualKubernetes{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: o.GetNamespace()}}}
		})).
		Complete(l)
}

// Reconcile sets or removes the label of one namespace.
func (l *namespaceLabeler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := &corev1.Namespace{}
	if err := l.client.Get(ctx, req.NamespacedName, ns); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	vk, err := NewResolver(l.client, "", "").VirtualKubernetes(ctx, ns.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	want := ""
	if vk != nil {
		want = vk.Name
	}
	l.mu.Lock()
	if _, labelled := ns.Labels[vk8sv1.LabelVirtualKubernetes]; want == "" && labelled {
		first, seen := l.unbacked[ns.Name]
		if !seen {
			first = l.now()
			l.unbacked[ns.Name] = first
		}
		if wait := labelGrace - l.now().Sub(first); wait > 0 {
			l.mu.Unlock()
			return reconcile.Result{RequeueAfter: wait}, nil
		}
	}
	delete(l.unbacked, ns.Name)
	l.mu.Unlock()
	return reconcile.Result{}, LabelNamespace(ctx, l.client, ns, want)
}

// LabelNamespace sets vk8sv1.LabelVirtualKubernetes on ns to value, or removes it when value is
// empty.
func LabelNamespace(ctx context.Context, c client.Client, ns *corev1.Namespace, value string) error {
	cur, has := ns.Labels[vk8sv1.LabelVirtualKubernetes]
	if (value == "" && !has) || (value != "" && cur == value) || (value != "" && ns.DeletionTimestamp != nil) {
		return nil
	}
	patch := client.MergeFrom(ns.DeepCopy())
	if value == "" {
		delete(ns.Labels, vk8sv1.LabelVirtualKubernetes)
	} else {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[vk8sv1.LabelVirtualKubernetes] = value
	}
	if err := c.Patch(ctx, ns, patch); err != nil {
		return fmt.Errorf("label namespace %s: %w", ns.Name, err)
	}
	return nil
}

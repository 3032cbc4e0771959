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

package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/printers"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/fleet"
)

// settle is how long -w waits after a change for the ones that come with it (a pod's
// status, its events, the ReplicaSet's) before it prints: one line per site and step, not
// one per object written.
const settle = 300 * time.Millisecond

// watchStatus prints a workload's rows, then the rows that change, until ctx ends: the
// table printer keeps its header, as kubectl get -w does; JSON and YAML print the whole
// status again. It reads through informers (a controller-runtime cache) of what
// readStatus reads, woken by their events.
func (o *options) watchStatus(ctx context.Context, out io.Writer, s *session, kind, name string) error {
	sch, err := scheme.New()
	if err != nil {
		return err
	}
	c, err := cache.New(s.config, cache.Options{Scheme: sch, Mapper: s.mapper,
		DefaultNamespaces: map[string]cache.Config{s.namespace: {}}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    poke,
		UpdateFunc: func(_, n any) { poke(n) },
		DeleteFunc: poke,
	}
	objects := []client.Object{&corev1.Pod{}, &corev1.Event{}, &vk8sv1.Override{}, &vk8sv1.Site{}, &corev1.Node{}}
	switch kind {
	case fleet.KindDeployment:
		objects = append(objects, &appsv1.Deployment{}, &appsv1.ReplicaSet{})
	case fleet.KindStatefulSet:
		objects = append(objects, &appsv1.StatefulSet{})
	case fleet.KindDaemonSet:
		objects = append(objects, &appsv1.DaemonSet{})
	case fleet.KindJob:
		objects = append(objects, &batchv1.Job{})
	case fleet.KindCronJob:
		objects = append(objects, &batchv1.CronJob{}, &batchv1.Job{})
	}
	for _, obj := range objects {
		inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return notInstalled(err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		cancel()
		if err := <-done; err != nil {
			return err
		}
		return ctx.Err()
	}
	// One tab writer for the whole watch: it remembers its column widths, so later rows
	// line up under the first ones, as kubectl get -w prints them.
	p, tw := o.tablePrinter(), printers.GetNewTabWriter(out)
	var last map[string]fleet.StatusRow
	for {
		in, err := readStatus(ctx, c, kind, s.namespace, name)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		rows, err := fleet.Status(in)
		if err != nil {
			return err
		}
		var diff []fleet.StatusRow
		for _, r := range rows {
			if prev, ok := last[r.Site]; !ok || !reflect.DeepEqual(prev, r) {
				diff = append(diff, r)
			}
		}
		if last == nil || len(diff) > 0 {
			if o.output == "json" || o.output == "yaml" {
				if last != nil && o.output == "yaml" {
					fmt.Fprintln(tw, "---")
				}
				diff = rows
			}
			if err := o.printStatus(tw, p, kind, s.namespace, name, diff); err != nil {
				return err
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		last = map[string]fleet.StatusRow{}
		for _, r := range rows {
			last[r.Site] = r
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			return err
		case <-changed:
		}
		// Let the writes that come together arrive, then read them all at once.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(settle):
		}
	}
}

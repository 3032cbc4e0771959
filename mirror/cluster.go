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

package mirror

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/go-logr/logr"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/translate"
)

// item is one host object to bring to a site cluster: its copy made equal to it, or
// deleted when the object is gone or its namespace does not run on the cluster's sites.
type item struct {
	Kind      string
	Namespace string // the host namespace
	Name      string
}

func (i item) String() string { return i.Kind + " " + i.Namespace + "/" + i.Name }

// indexService indexes a site's EndpointSlices by "<site namespace>/<service name>".
const indexService = "vk8s.io/service"

// cluster is what the mirror keeps per site cluster connection (sitereg.Conn.Key): caches
// of the copies this host put there (label vk8s.io/tenant) and of their Services'
// EndpointSlices (which carry their Service's labels), one work queue and its workers, so
// a slow or dead cluster only slows its own.
type cluster struct {
	key    string
	server string
	client kubernetes.Interface
	log    logr.Logger

	factory   informers.SharedInformerFactory
	copies    map[string]cache.SharedIndexInformer // by kind
	endpoints cache.SharedIndexInformer
	queue     workqueue.TypedRateLimitingInterface[item]

	// namespaces holds the site namespaces known to exist.
	namespaces sync.Map

	cancel context.CancelFunc
	done   chan struct{}
}

func newCluster(conn *sitereg.Conn, tenant string, log logr.Logger) *cluster {
	sel := labels.Set{vk8sv1.LabelTenant: tenant}.AsSelector().String()
	f := informers.NewSharedInformerFactoryWithOptions(conn.Client, 0,
		// managedFields are never read from the caches, and an update without them keeps
		// the site's.
		informers.WithTransform(crcache.TransformStripManagedFields()),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	c := &cluster{
		key: conn.Key, server: conn.Server, client: conn.Client, log: log.WithValues("cluster", conn.Server),
		factory: f,
		copies: map[string]cache.SharedIndexInformer{
			translate.KindService:        f.Core().V1().Services().Informer(),
			translate.KindConfigMap:      f.Core().V1().ConfigMaps().Informer(),
			translate.KindServiceAccount: f.Core().V1().ServiceAccounts().Informer(),
			translate.KindRole:           f.Rbac().V1().Roles().Informer(),
			translate.KindRoleBinding:    f.Rbac().V1().RoleBindings().Informer(),
			translate.KindNetworkPolicy:  f.Networking().V1().NetworkPolicies().Informer(),
		},
		endpoints: f.Discovery().V1().EndpointSlices().Informer(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[item](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: "vk8s-mirror-" + sitereg.ShortKey(conn.Key)}),
		done: make(chan struct{}),
	}
	_ = c.endpoints.AddIndexers(cache.Indexers{indexService: func(obj any) ([]string, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
	}})
	return c
}

// synced says whether the cluster's caches hold what the site has.
func (c *cluster) synced() bool {
	if !c.endpoints.HasSynced() {
		return false
	}
	for _, inf := range c.copies {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// copy returns the cached copy of kind siteNamespace/name, or nil.
func (c *cluster) copy(kind, siteNamespace, name string) metaObject {
	inf, ok := c.copies[kind]
	if !ok {
		return nil
	}
	obj, exists, err := inf.GetIndexer().GetByKey(siteNamespace + "/" + name)
	if err != nil || !exists {
		return nil
	}
	o, _ := obj.(metaObject)
	return o
}

// endpointSlices returns the cached EndpointSlices of a site Service.
func (c *cluster) endpointSlices(siteNamespace, service string) []*discoveryv1.EndpointSlice {
	objs, err := c.endpoints.GetIndexer().ByIndex(indexService, siteNamespace+"/"+service)
	if err != nil {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, s)
		}
	}
	return out
}

// queueCopies queues every cached copy, so that those whose host object is gone, or
// whose namespace left the cluster's sites, are deleted.
func (c *cluster) queueCopies() {
	for kind, inf := range c.copies {
		for _, obj := range inf.GetStore().List() {
			if it, ok := copyItem(kind, obj); ok {
				c.queue.Add(it)
			}
		}
	}
}

// copyItem is the item of a copy on a site, named by its host namespace.
func copyItem(kind string, obj any) (item, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(metaObject)
	if !ok {
		return item{}, false
	}
	ns := o.(metav1.Object).GetLabels()[vk8sv1.LabelHostNamespace]
	return item{Kind: kind, Namespace: ns, Name: o.GetName()}, ns != ""
}

// startCluster wires a new cluster's informers to the mirror and runs its workers once its
// caches are filled: nothing is created or deleted before.
func (m *Mirror) startCluster(c *cluster) {
	ctx, cancel := context.WithCancel(m.ctx)
	c.cancel = cancel
	for kind, inf := range c.copies {
		// A copy changed or deleted on the site is put right.
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj any) {
				if it, ok := copyItem(kind, obj); ok {
					c.queue.Add(it)
				}
			},
			DeleteFunc: func(obj any) {
				if it, ok := copyItem(kind, obj); ok {
					c.queue.Add(it)
				}
			},
		})
	}
	// The status of a Service follows its sites' endpoints and load balancers.
	status := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if o, ok := obj.(metav1.Object); ok && o.GetLabels()[vk8sv1.LabelHostNamespace] != "" {
			name := o.GetName()
			if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
				name = s.Labels[discoveryv1.LabelServiceName]
			}
			m.status.Add(o.GetLabels()[vk8sv1.LabelHostNamespace] + "/" + name)
		}
	}
	for _, inf := range []cache.SharedIndexInformer{c.endpoints, c.copies[translate.KindService]} {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: status, UpdateFunc: func(_, obj any) { status(obj) }, DeleteFunc: status,
		})
	}
	c.factory.Start(ctx.Done())
	go func() {
		defer close(c.done)
		if !cache.WaitForCacheSync(ctx.Done(), c.synced, m.cfg.HostPods.HasSynced) {
			return
		}
		c.log.V(1).Info("Mirror caches synced")
		var wg sync.WaitGroup
		for range m.cfg.Workers {
			wg.Go(func() {
				for m.processNext(ctx, c) {
				}
			})
		}
		<-ctx.Done()
		c.queue.ShutDown()
		wg.Wait()
	}()
}

// processNext syncs the next item of c's queue.
func (m *Mirror) processNext(ctx context.Context, c *cluster) bool {
	it, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(it)
	start := time.Now()
	err := m.sync(ctx, c, it)
	m.metrics.syncs.WithLabelValues(it.Kind, result(err)).Observe(time.Since(start).Seconds())
	switch {
	case err == nil || errors.Is(err, errSkip):
		c.queue.Forget(it)
	default:
		c.log.Error(err, "Mirroring failed; retrying", "item", it.String())
		c.queue.AddRateLimited(it)
	}
	return true
}

// stop ends the cluster's informers and workers and waits for the workers.
func (c *cluster) stop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.queue.ShutDown()
	c.factory.Shutdown()
	<-c.done
}

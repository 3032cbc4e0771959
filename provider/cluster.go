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
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/vk8s-io/vk8s/sitereg"
)

// indexHostPod indexes site pods by "<host namespace>/<name>", the host pod's key.
const indexHostPod = "vk8s.io/host-pod"

// item is one unit of work on a site cluster: a host pod to converge (Kind empty) or an
// object a pod references (Kind set), in host namespace Namespace.
type item struct {
	Kind      string
	Namespace string
	Name      string
}

func (i item) String() string {
	if i.Kind == "" {
		return "pod " + i.Namespace + "/" + i.Name
	}
	return i.Kind + " " + i.Namespace + "/" + i.Name
}

// cluster is what the pod lifecycle keeps per site cluster connection (sitereg.Conn.Key):
// caches of the objects this host put there (label vk8s.io/tenant), one work queue and its
// workers. Sites that are node-selected slices of one cluster share it, so a cluster's
// namespaces and copies are managed in one place; a slow or dead cluster only slows its
// own workers.
type cluster struct {
	key    string
	client kubernetes.Interface
	log    logr.Logger

	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
	copies  map[string]cache.SharedIndexInformer // by kind
	queue   workqueue.TypedRateLimitingInterface[item]

	// namespaces holds the site namespaces known to exist (name -> siteNamespace).
	namespaces sync.Map
	// podSecurity is the Pod Security level last brought to every namespace this host
	// created on the cluster ("" until the first pass). Only syncPodSecurity uses it, and
	// the queue runs its one item one at a time.
	podSecurity vk8sv1.PodSecurityLevel
	// refused holds the host pods ("<namespace>/<name>") the cluster's Pod Security
	// Admission refused, queued again at once when the level changes.
	refused sync.Map
	// sites holds the Sites this cluster served (name -> true), whose pods go elsewhere
	// when its connection closes.
	sites sync.Map

	cancel context.CancelFunc
	done   chan struct{}
}

// siteNamespace is what a cluster knows of one of its site namespaces.
type siteNamespace struct {
	// level is the Pod Security level vk8s last made sure of.
	level vk8sv1.PodSecurityLevel
	// created says vk8s created it, so that level is in force there (a site
	// administrator's namespace keeps its own labels).
	created bool
}

func newCluster(conn *sitereg.Conn, tenant string, log logr.Logger) (*cluster, error) {
	sel := labels.Set{vk8sv1.LabelTenant: tenant}.AsSelector().String()
	factory := informers.NewSharedInformerFactoryWithOptions(conn.Client, 0,
		// As the host's caches (newLifecycle): managedFields are never read from them.
		informers.WithTransform(crcache.TransformStripManagedFields()),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	pods := factory.Core().V1().Pods().Informer()
	if err := pods.AddIndexers(cache.Indexers{indexHostPod: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Labels[vk8sv1.LabelHostNamespace] == "" {
			return nil, nil
		}
		return []string{p.Labels[vk8sv1.LabelHostNamespace] + "/" + p.Name}, nil
	}}); err != nil {
		return nil, fmt.Errorf("site cluster %s: %w", conn.Server, err)
	}
	return &cluster{
		key:     conn.Key,
		client:  conn.Client,
		log:     log.WithValues("cluster", conn.Server),
		factory: factory,
		pods:    pods,
		copies: map[string]cache.SharedIndexInformer{
			translate.KindConfigMap:             factory.Core().V1().ConfigMaps().Informer(),
			translate.KindSecret:                factory.Core().V1().Secrets().Informer(),
			translate.KindServiceAccount:        factory.Core().V1().ServiceAccounts().Informer(),
			translate.KindPersistentVolumeClaim: factory.Core().V1().PersistentVolumeClaims().Informer(),
		},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[item](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: "vk8s-site-" + sitereg.ShortKey(conn.Key)}),
		done: make(chan struct{}),
	}, nil
}

// synced reports whether the cluster's caches hold what the site has.
func (c *cluster) synced() bool {
	if !c.pods.HasSynced() {
		return false
	}
	for _, inf := range c.copies {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// sitePod returns the site pod of host pod namespace/name from the cache, or nil.
func (c *cluster) sitePod(namespace, name string) *corev1.Pod {
	objs, err := c.pods.GetIndexer().ByIndex(indexHostPod, namespace+"/"+name)
	if err != nil || len(objs) == 0 {
		return nil
	}
	p, _ := objs[0].(*corev1.Pod)
	return p
}

// copy returns the site's copy of a referenced object from the cache, or nil.
func (c *cluster) copy(kind, siteNamespace, name string) metav1.Object {
	inf, ok := c.copies[kind]
	if !ok {
		return nil
	}
	obj, exists, err := inf.GetIndexer().GetByKey(siteNamespace + "/" + name)
	if err != nil || !exists {
		return nil
	}
	m, _ := obj.(metav1.Object)
	return m
}

// sitePodsIn lists the cached site pods of a site namespace.
func (c *cluster) sitePodsIn(siteNamespace string) []*corev1.Pod {
	objs, err := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, siteNamespace)
	if err != nil {
		return nil
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

// allSitePods lists every cached site pod of this host.
func (c *cluster) allSitePods() []*corev1.Pod {
	objs := c.pods.GetIndexer().List()
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
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

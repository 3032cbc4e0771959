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
	"errors"
	"fmt"
	"time"

	"github.com/vk8s-io/vk8s/mirror"

	"github.com/vk8s-io/vk8s/vklogr"

	"github.com/vk8s-io/vk8s/translate"

	"github.com/go-logr/logr"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/vk8s-io/vk8s/sitereg"
)

// indexNodeName indexes host pods by the node they are bound to.
const indexNodeName = "spec.nodeName"

// The host informers of the pods and what they use (copied to the sites), virtual-kubelet's
// pod status writes and deletions, and the Events on host pods.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=pods/status,verbs=update;patch
// +kubebuilder:rbac:groups="",resources=nodes;namespaces;configmaps;secrets;serviceaccounts;persistentvolumeclaims;services,verbs=get;list;watch
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// lifecycle runs the pods of every virtual node: one virtual-kubelet PodController over
// one host pod informer, shared by all virtual nodes (nodeutil.NewNode would build caches
// per node), with Pods as its provider.
type lifecycle struct {
	podFactory informers.SharedInformerFactory
	objFactory informers.SharedInformerFactory
	pods       *Pods
	mirror     *mirror.Mirror
	controller *node.PodController
	broadcast  record.EventBroadcaster
	workers    int
	log        logr.Logger
}

// mirrorConfig is what the lifecycle's mirror needs beside the host informers.
type mirrorConfig struct {
	siteEvents             <-chan event.GenericEvent
	virtualKubernetesSites func(ctx context.Context, namespace string) ([]string, bool, error)
}

// podClients are the host clients of the pod lifecycle (hostClients).
type podClients struct {
	// host reads (informers) and writes everything but what the others do.
	host kubernetes.Interface
	// status writes the pods' status (virtual-kubelet's pod controller).
	status kubernetes.Interface
	// events records the Events on host pods.
	events kubernetes.Interface
}

func newLifecycle(clients podClients, reg *sitereg.Registry, siteEvents <-chan event.GenericEvent,
	cfg Config, scheme *runtime.Scheme, mc mirrorConfig) (*lifecycle, error) {
	host := clients.host
	log := cfg.Logger.WithName("pods")
	// Only scheduled pods can be on a virtual node.
	// managedFields (a few hundred bytes to kilobytes an object) are never read from these
	// caches: every write is an update of the provider's own fields or a status, and the
	// API server keeps an object's managedFields when an update carries none.
	strip := crcache.TransformStripManagedFields()
	podFactory := informers.NewSharedInformerFactoryWithOptions(host, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	}))
	objFactory := informers.NewSharedInformerFactoryWithOptions(host, 0, informers.WithTransform(strip))
	podInformer := podFactory.Core().V1().Pods()
	if err := podInformer.Informer().SetTransform(shareUnchanged(podInformer.Informer().GetStore(), strip)); err != nil {
		return nil, err
	}
	core := objFactory.Core().V1()
	broadcast := record.NewBroadcaster()
	recorder := broadcast.NewRecorder(scheme, corev1.EventSource{Component: "vk8s-provider"})
	synced := []cache.InformerSynced{
		podInformer.Informer().HasSynced, core.Nodes().Informer().HasSynced,
		core.ConfigMaps().Informer().HasSynced, core.Secrets().Informer().HasSynced,
		core.ServiceAccounts().Informer().HasSynced, core.PersistentVolumeClaims().Informer().HasSynced,
		objFactory.Storage().V1().StorageClasses().Informer().HasSynced, core.Namespaces().Informer().HasSynced,
	}
	if err := podInformer.Informer().AddIndexers(cache.Indexers{indexNodeName: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, err
	}
	byNode := podInformer.Informer().GetIndexer()
	// The namespace's objects other than the pods' references go to its sites with the
	// mirror, over the same host informers.
	mir, err := mirror.New(mirror.Config{
		Tenant: cfg.Tenant, Registry: reg, Host: host, HostInformers: objFactory,
		HostPods: podInformer.Informer(), HostNodes: core.Nodes().Lister(),
		VirtualKubernetesSites: mc.virtualKubernetesSites, SiteEvents: mc.siteEvents,
		Recorder: recorder, Log: cfg.Logger.WithName("mirror"), MetricsRegisterer: cfg.MetricsRegisterer,
	})
	if err != nil {
		return nil, err
	}
	pods, err := NewPods(PodsConfig{
		Tenant:                     cfg.Tenant,
		Host:                       host,
		HostPods:                   podInformer.Lister(),
		HostNodes:                  core.Nodes().Lister(),
		HostConfigMaps:             core.ConfigMaps().Lister(),
		HostSecrets:                core.Secrets().Lister(),
		HostServiceAccounts:        core.ServiceAccounts().Lister(),
		HostPersistentVolumeClaims: core.PersistentVolumeClaims().Lister(),
		HostStorageClasses:         objFactory.Storage().V1().StorageClasses().Lister(),
		HostNamespaces:             core.Namespaces().Lister(),
		HostSynced: func() bool {
			for _, s := range synced {
				if !s() {
					return false
				}
			}
			return true
		},
		HostPodsOn: func(node string) []*corev1.Pod {
			objs, _ := byNode.ByIndex(indexNodeName, node)
			out := make([]*corev1.Pod, 0, len(objs))
			for _, o := range objs {
				if p, ok := o.(*corev1.Pod); ok {
					out = append(out, p)
				}
			}
			return out
		},
		Registry:          reg,
		SiteEvents:        siteEvents,
		Recorder:          recorder,
		Log:               log,
		SweepInterval:     cfg.SweepInterval,
		MetricsRegisterer: cfg.MetricsRegisterer,
		Mirrored:          mir.Mirrored,
		TracerProvider:    cfg.TracerProvider,
	})
	if err != nil {
		return nil, err
	}
	for kind, inf := range map[string]cache.SharedIndexInformer{
		translate.KindConfigMap: core.ConfigMaps().Informer(), translate.KindSecret: core.Secrets().Informer(),
		translate.KindServiceAccount: core.ServiceAccounts().Informer(), translate.KindPersistentVolumeClaim: core.PersistentVolumeClaims().Informer(),
	} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj any) { pods.HostObjectChanged(kind, obj) },
			DeleteFunc: func(obj any) { pods.HostObjectChanged(kind, obj) },
		}); err != nil {
			return nil, err
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(pods.StatusWritesHandler()); err != nil {
		return nil, err
	}
	// Pods bound to a virtual node before it was registered are picked up when it is.
	if _, err := core.Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: pods.NodeAdded}); err != nil {
		return nil, err
	}
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient:         pods.StatusClient(clients.status.CoreV1()),
		PodInformer:       podInformer,
		EventRecorder:     withoutHandOffs{recorder},
		Provider:          pods,
		ConfigMapInformer: core.ConfigMaps(),
		SecretInformer:    core.Secrets(),
		ServiceInformer:   core.Services(),
		PodEventFilterFunc: func(_ context.Context, p *corev1.Pod) bool {
			return pods.Owns(p)
		},
		// Environment from ConfigMaps and Secrets stays a reference: the site resolves it
		// from the copies, and values never sit in the site pod's spec.
		SkipDownwardAPIResolution: true,
		// client-go's default (10 per second overall) would make the status of the 300th
		// of 100 pods x 3 status changes wait 30 s: one process serves every site.
		SyncPodsFromKubernetesRateLimiter:    podQueueRateLimiter(),
		SyncPodStatusFromProviderRateLimiter: podQueueRateLimiter(),
		DeletePodsFromKubernetesRateLimiter:  podQueueRateLimiter(),
	})
	if err != nil {
		return nil, fmt.Errorf("pod controller: %w", err)
	}
	broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: clients.events.CoreV1().Events("")})
	return &lifecycle{
		podFactory: podFactory, objFactory: objFactory, pods: pods, mirror: mir, controller: pc,
		broadcast: broadcast, workers: cfg.PodWorkers, log: log,
	}, nil
}

// podQueueRateLimiter is the rate limiter of virtual-kubelet's pod queues: per item
// exponential backoff on failure, and an overall bound sized for a process that serves
// thousands of pods (the host client's own rate limit still applies).
func podQueueRateLimiter() workqueue.TypedRateLimiter[any] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 30*time.Second),
		&workqueue.TypedBucketRateLimiter[any]{Limiter: rate.NewLimiter(rate.Limit(500), 1000)},
	)
}

// Start runs until ctx ends: the host caches first, then the site side and the pod
// controller, which deletes dangling site pods only after every cache is filled.
func (l *lifecycle) Start(ctx context.Context) error {
	defer l.broadcast.Shutdown()
	ctx = vklog.WithLogger(ctx, vklogr.New(l.log))
	l.podFactory.Start(ctx.Done())
	l.objFactory.Start(ctx.Done())
	defer l.podFactory.Shutdown()
	defer l.objFactory.Shutdown()
	for _, f := range []informers.SharedInformerFactory{l.podFactory, l.objFactory} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok && ctx.Err() == nil {
				return fmt.Errorf("host cache of %v did not sync", typ)
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.pods.Run(ctx) }()
	err := l.controller.Run(ctx, l.workers)
	cancel()
	return errors.Join(err, <-done)
}

// NeedLeaderElection is true: two providers must not run the same pods.
func (l *lifecycle) NeedLeaderElection() bool { return true }

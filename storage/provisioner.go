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

package storage

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/vk8s-io/vk8s/promreg"
)

// Annotations of the PersistentVolume controller's protocol with external provisioners:
// it names the provisioner of a claim it wants provisioned (for a class that binds on
// first consumer, once the scheduler chose a node), and a provisioned volume names its
// provisioner, which deletes it when its claim is gone and its reclaim policy is Delete.
const (
	annStorageProvisioner = "volume.kubernetes.io/storage-provisioner"
	annProvisionedBy      = "pv.kubernetes.io/provisioned-by"
)

// Provisioner is a dynamic provisioner of one cluster: it makes the PersistentVolume of
// every claim that the cluster's PersistentVolume controller hands to Name, and deletes
// such a volume once it is Released with reclaim policy Delete. What a volume is comes
// from Volume; this loop is the protocol, shared by the host's StorageClass "vk8s" and
// the lab's sites (package lab/sitestorage). It is a manager.Runnable.
//
// It is written on client-go's informers and work queue rather than on
// sig-storage-lib-external-provisioner, whose NewProvisionController registers types in
// client-go's global Scheme: done while other clients of the process decode (the
// provider's runnables start together), that is a concurrent map write, fatal to the
// process.
type Provisioner struct {
	// Name is the provisioner's name, as StorageClasses name it.
	Name string
	// Client is the cluster's client.
	Client kubernetes.Interface
	// Volume returns the PersistentVolume name of claim of class; the loop adds the claim
	// reference, the class and the provisioner's annotation. An error is a Warning Event
	// ProvisioningFailed on the claim, which is tried again only when it changes.
	Volume func(name string, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) (*corev1.PersistentVolume, error)
	// Log is its logger.
	Log logr.Logger
	// MetricsRegisterer receives vk8s_storage_operations_total. Nil: none.
	MetricsRegisterer prometheus.Registerer
	// Workers is the number of workers. Zero: 2.
	Workers int
}

// Start provisions until ctx ends.
func (p *Provisioner) Start(ctx context.Context) error {
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vk8s_storage_operations_total",
		Help: "Volumes provisioned and deleted, by provisioner, operation (provision, delete) and result (ok, error).",
	}, []string{"provisioner", "operation", "result"})
	if p.MetricsRegisterer != nil {
		var err error
		if ops, err = promreg.Register(p.MetricsRegisterer, ops); err != nil {
			return err
		}
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: p.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	factory := informers.NewSharedInformerFactory(p.Client, 10*time.Minute)
	l := &loop{
		Provisioner: p, ops: ops,
		recorder: broadcaster.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: p.Name}),
		claims:   factory.Core().V1().PersistentVolumeClaims().Lister(),
		volumes:  factory.Core().V1().PersistentVolumes().Lister(),
		classes:  factory.Storage().V1().StorageClasses().Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vk8s-storage-" + p.Name}),
	}
	defer l.queue.ShutDown()
	enqueue := func(prefix string) cache.ResourceEventHandler {
		add := func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				l.queue.Add(prefix + key)
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) }}
	}
	if _, err := factory.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(enqueue(claimKey)); err != nil {
		return err
	}
	if _, err := factory.Core().V1().PersistentVolumes().Informer().AddEventHandler(enqueue(volumeKey)); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("storage %s: cache of %v did not sync", p.Name, typ)
		}
	}
	p.Log.Info("Provisioning", "provisioner", p.Name)
	for range cmp.Or(p.Workers, 2) {
		go l.work(ctx)
	}
	<-ctx.Done()
	return nil
}

// Keys of the work queue: a claim's or a volume's cache key behind a prefix.
const (
	claimKey  = "claim:"
	volumeKey = "volume:"
)

type loop struct {
	*Provisioner
	ops      *prometheus.CounterVec
	recorder record.EventRecorder
	claims   corelisters.PersistentVolumeClaimLister
	volumes  corelisters.PersistentVolumeLister
	classes  storagelisters.StorageClassLister
	queue    workqueue.TypedRateLimitingInterface[string]
}

func (l *loop) work(ctx context.Context) {
	for {
		key, shutdown := l.queue.Get()
		if shutdown {
			return
		}
		var err error
		if k, ok := strings.CutPrefix(key, claimKey); ok {
			err = l.provision(ctx, k)
		} else if k, ok := strings.CutPrefix(key, volumeKey); ok {
			err = l.reclaim(ctx, k)
		}
		if err != nil {
			l.Log.Error(err, "Storage operation failed; retrying", "item", key)
			l.queue.AddRateLimited(key)
		} else {
			l.queue.Forget(key)
		}
		l.queue.Done(key)
	}
}

// provision makes the volume of claim key when the PersistentVolume controller handed it
// to this provisioner and it has none.
func (l *loop) provision(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	claim, err := l.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if claim.Spec.VolumeName != "" || claim.DeletionTimestamp != nil || claim.Annotations[annStorageProvisioner] != l.Name ||
		claim.Spec.StorageClassName == nil {
		return nil
	}
	pvName := "pvc-" + string(claim.UID)
	if _, err := l.volumes.Get(pvName); err == nil {
		return nil
	}
	class, err := l.classes.Get(*claim.Spec.StorageClassName)
	if err != nil || class.Provisioner != l.Name {
		// The class went or changed; the claim comes back when it changes.
		return nil
	}
	pv, err := l.Volume(pvName, claim, class)
	if err != nil {
		l.ops.WithLabelValues(l.Name, "provision", "error").Inc()
		l.recorder.Event(claim, corev1.EventTypeWarning, "ProvisioningFailed", err.Error())
		return nil
	}
	if pv.Annotations == nil {
		pv.Annotations = map[string]string{}
	}
	pv.Annotations[annProvisionedBy] = l.Name
	pv.Spec.StorageClassName = class.Name
	pv.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
		Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID, ResourceVersion: claim.ResourceVersion}
	_, err = l.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		l.ops.WithLabelValues(l.Name, "provision", "error").Inc()
		return fmt.Errorf("create volume %s of claim %s: %w", pvName, key, err)
	}
	l.ops.WithLabelValues(l.Name, "provision", "ok").Inc()
	l.recorder.Eventf(claim, corev1.EventTypeNormal, "ProvisioningSucceeded", "Successfully provisioned volume %s", pvName)
	return nil
}

// reclaim deletes volume name, one of this provisioner's, once its claim is gone and its
// reclaim policy is Delete.
func (l *loop) reclaim(ctx context.Context, name string) error {
	pv, err := l.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pv.Annotations[annProvisionedBy] != l.Name || pv.Status.Phase != corev1.VolumeReleased ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.DeletionTimestamp != nil {
		return nil
	}
	err = l.Client.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pv.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		l.ops.WithLabelValues(l.Name, "delete", "error").Inc()
		return fmt.Errorf("delete released volume %s: %w", name, err)
	}
	l.ops.WithLabelValues(l.Name, "delete", "ok").Inc()
	return nil
}

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

// Package sitestorage gives the lab's sites the storage a real site has: a default
// StorageClass ("standard", binding on first consumer, as most clusters' default class
// does) and a provisioner for it, run as `vk8s lab site-storage` by each site's kwokctl as
// a component of the cluster. A real site provisions a volume of its cloud, SAN or local
// disks; a lab site has no disks to give, and kwok never mounts a volume, so the
// provisioner makes a PersistentVolume that any node of the site may use (as network
// storage is) and nothing behind it. Without it every claim on a lab site stays Pending,
// and so does every pod that uses one: vk8s must be tested against sites that bind claims.
//
// The provisioner is package storage's, as for the host's StorageClass "vk8s".
package sitestorage

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/vk8s-io/vk8s/storage"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Subcommand is the provisioner's subcommand of `vk8s lab`; Component its name among a
// site's components.
const (
	Subcommand = "site-storage"
	Component  = "vk8s-site-storage"
)

// ClassName is the lab sites' default StorageClass; Provisioner its provisioner.
const (
	ClassName   = "standard"
	Provisioner = "site-storage.lab.vk8s.io"
)

// volumeRoot is the path the lab's site volumes name (nothing is made there).
const volumeRoot = "/var/lib/vk8s-lab/volumes"

// Class is the lab sites' default StorageClass.
func Class() *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ClassName,
			Annotations: map[string]string{vk8sv1.AnnotationDefaultStorageClass: "true"},
		},
		Provisioner:          Provisioner,
		ReclaimPolicy:        ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode:    ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		AllowVolumeExpansion: ptr.To(true),
	}
}

// Run provisions the volumes of the site whose API server kubeconfig names until ctx
// ends. It waits for the API server (kwokctl starts its components together), then makes
// sure Class exists.
func Run(ctx context.Context, kubeconfig string, log logr.Logger) error {
	var c kubernetes.Interface
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		if c == nil {
			// kwokctl may start its components before it writes the kubeconfig.
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				log.Info("Waiting for the site's kubeconfig", "err", err.Error())
				return false, nil
			}
			if c, err = kubernetes.NewForConfig(cfg); err != nil {
				return false, err
			}
		}
		_, err := c.StorageV1().StorageClasses().Create(ctx, Class(), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			log.Info("Waiting for the site's API server", "err", err.Error())
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the site's API server (kubeconfig %s) never answered: %w", kubeconfig, err)
	}
	p := &storage.Provisioner{Name: Provisioner, Client: c, Volume: volume, Log: log}
	return p.Start(ctx)
}

// volume is a volume of the claim's size that every node of the site may use.
func volume(name string, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) (*corev1.PersistentVolume, error) {
	size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return nil, fmt.Errorf("claim %s/%s requests no storage size", claim.Namespace, claim.Name)
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    claim.Spec.VolumeMode,
			PersistentVolumeReclaimPolicy: ptr.Deref(class.ReclaimPolicy, corev1.PersistentVolumeReclaimDelete),
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: filepath.Join(volumeRoot, name),
				Type: ptr.To(corev1.HostPathDirectoryOrCreate),
			}},
		},
	}, nil
}

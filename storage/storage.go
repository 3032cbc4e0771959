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

// Package storage is the host side of the sites' volumes. A claim in a vK8s namespace (a
// StatefulSet's volumeClaimTemplates, or a claim written by hand) is a claim on the sites:
// the provider copies it to the site of each pod that uses it, and that site binds the
// copy to a volume of its own (package provider). On the host the claim must still be
// Bound, or the host scheduler never places its pod: the StorageClass "vk8s"
// (vk8sv1.StorageClassName) and its provisioner here bind it to a PersistentVolume that
// stands for the copies on the sites. That volume names the claim (a CSI volume of driver
// sites.vk8s.io whose handle is <namespace>/<claim>), may be used on any virtual node (node
// affinity on vk8s.io/site), and is never mounted: no kubelet runs on a virtual node.
//
// Provisioner is the external-provisioner protocol with the PersistentVolume controller
// (claims handed over by annotation, Released volumes deleted), shared with the lab's
// sites, which need a provisioner of their own (package lab/sitestorage). Deleting the
// host claim deletes its volume (reclaim policy Delete) and, through the provider, the
// copies on the sites.
//
// docs/applications.md says how a host makes "vk8s" its default StorageClass, so that
// manifests without a storageClassName work unchanged.
package storage

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Class is the host's StorageClass "vk8s". A default StorageClass (isDefault) is what
// claims without a storageClassName get.
func Class(isDefault bool) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:   vk8sv1.StorageClassName,
			Labels: map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s},
		},
		Provisioner:          vk8sv1.StorageProvisioner,
		ReclaimPolicy:        ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode:    ptr.To(storagev1.VolumeBindingImmediate),
		AllowVolumeExpansion: ptr.To(true),
	}
	if isDefault {
		sc.Annotations = map[string]string{vk8sv1.AnnotationDefaultStorageClass: "true"}
	}
	return sc
}

// Config configures the host's provisioner.
type Config struct {
	// Host is the host cluster's client.
	Host kubernetes.Interface
	// Log is the provisioner's logger.
	Log logr.Logger
	// MetricsRegisterer receives the provisioner's metrics. Nil: controller-runtime's
	// registry.
	MetricsRegisterer prometheus.Registerer
}

// Sites is the host's provisioner of claims on the sites. It is a manager.Runnable.
type Sites struct {
	cfg Config
}

// New returns the host's provisioner.
func New(cfg Config) *Sites {
	if cfg.MetricsRegisterer == nil {
		cfg.MetricsRegisterer = ctrlmetrics.Registry
	}
	return &Sites{cfg: cfg}
}

// Start makes sure the StorageClass "vk8s" exists (it leaves one that does alone: an
// administrator may have made it the default) and provisions until ctx ends.
func (s *Sites) Start(ctx context.Context) error {
	if _, err := s.cfg.Host.StorageV1().StorageClasses().Create(ctx, Class(false), metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		// Without the right to create it (an installation that ships it), claims of a
		// class made by hand are still provisioned.
		s.cfg.Log.Error(err, "Could not create the StorageClass; claims of an existing class of the provisioner are still bound",
			"storageClass", vk8sv1.StorageClassName, "provisioner", vk8sv1.StorageProvisioner)
	}
	p := &Provisioner{Name: vk8sv1.StorageProvisioner, Client: s.cfg.Host, Volume: Volume, Log: s.cfg.Log, MetricsRegisterer: s.cfg.MetricsRegisterer}
	return p.Start(ctx)
}

// Volume is the host PersistentVolume name of claim of class (pure): its size and access
// modes, the class's reclaim policy, usable on every virtual node. A claim that selects
// volumes by label cannot be served: the sites choose their volumes. Deleting it removes
// nothing else: the site volumes go with the copies of the claim, which the provider
// deletes with the host claim.
func Volume(name string, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) (*corev1.PersistentVolume, error) {
	if claim.Spec.Selector != nil {
		return nil, fmt.Errorf("claim %s/%s has spec.selector, which StorageClass %s cannot honour: each site binds "+
			"the claim to a volume of its own; remove the selector", claim.Namespace, claim.Name, class.Name)
	}
	size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return nil, fmt.Errorf("claim %s/%s requests no storage size (spec.resources.requests.storage)", claim.Namespace, claim.Name)
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    claim.Spec.VolumeMode,
			PersistentVolumeReclaimPolicy: ptr.Deref(class.ReclaimPolicy, corev1.PersistentVolumeReclaimDelete),
			MountOptions:                  class.MountOptions,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver:       vk8sv1.StorageProvisioner,
				VolumeHandle: claim.Namespace + "/" + claim.Name,
			}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: vk8sv1.LabelSite, Operator: corev1.NodeSelectorOpExists}},
			}}}},
		},
	}, nil
}

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
	"strings"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

// ConfigMaps, Secrets and ServiceAccounts that pods use are copied into the site namespace
// before the pod is created there, kept equal to the host's while a pod on that cluster
// uses them, and deleted from the site when none does: a Secret reaches only the clusters
// that run a pod using it. PersistentVolumeClaims are copied the same way but stay until
// the host's claim is deleted, since the site's volume holds the data.

// hostObject returns a host object a pod references.
func (p *Pods) hostObject(kind, namespace, name string) (metav1.Object, error) {
	switch kind {
	case translate.KindConfigMap:
		return p.cfg.HostConfigMaps.ConfigMaps(namespace).Get(name)
	case translate.KindSecret:
		return p.cfg.HostSecrets.Secrets(namespace).Get(name)
	case translate.KindServiceAccount:
		return p.cfg.HostServiceAccounts.ServiceAccounts(namespace).Get(name)
	case translate.KindPersistentVolumeClaim:
		return p.cfg.HostPersistentVolumeClaims.PersistentVolumeClaims(namespace).Get(name)
	}
	return nil, fmt.Errorf("unknown kind %s", kind)
}

// ensureRefs copies what a host pod references to its site namespace. A missing object
// the pod needs is an error (the pod waits, as a kubelet makes it wait); a missing
// optional one is left out.
func (p *Pods) ensureRefs(ctx context.Context, c *cluster, host *corev1.Pod, siteNamespace string) error {
	for _, r := range translate.References(&host.Spec) {
		obj, err := p.hostObject(r.Kind, host.Namespace, r.Name)
		if apierrors.IsNotFound(err) {
			p.reportMissing(host, r)
			if r.Optional {
				continue
			}
			return fmt.Errorf("%s %s/%s, which the pod uses, does not exist", r.Kind, host.Namespace, r.Name)
		}
		if err != nil {
			return err
		}
		if err := p.ensureCopy(ctx, c, r.Kind, obj, siteNamespace); err != nil {
			return err
		}
	}
	return nil
}

// Event reasons for missing references, virtual-kubelet's (and so its e2e suite's).
const (
	ReasonOptionalConfigMapNotFound  = "OptionalConfigMapNotFound"
	ReasonMandatoryConfigMapNotFound = "MandatoryConfigMapNotFound"
	ReasonOptionalSecretNotFound     = "OptionalSecretNotFound"
	ReasonMandatorySecretNotFound    = "MandatorySecretNotFound"
)

// reportMissing records a Warning Event on the host pod for a ConfigMap or Secret it
// references that does not exist, as virtual-kubelet does when it resolves environment.
func (p *Pods) reportMissing(host *corev1.Pod, r translate.Ref) {
	var reason string
	switch {
	case r.Kind == translate.KindConfigMap && r.Optional:
		reason = ReasonOptionalConfigMapNotFound
	case r.Kind == translate.KindConfigMap:
		reason = ReasonMandatoryConfigMapNotFound
	case r.Kind == translate.KindSecret && r.Optional:
		reason = ReasonOptionalSecretNotFound
	case r.Kind == translate.KindSecret:
		reason = ReasonMandatorySecretNotFound
	default:
		return
	}
	p.cfg.Recorder.Eventf(host, corev1.EventTypeWarning, reason, "%s %q not found", strings.ToLower(r.Kind), r.Name)
}

// ensureCopy creates or updates the site's copy of a host object. An object of the same
// name that vk8s did not create is left alone and reported.
func (p *Pods) ensureCopy(ctx context.Context, c *cluster, kind string, host metav1.Object, siteNamespace string) error {
	want, err := translate.SiteCopy(kind, host, siteNamespace, p.cfg.Tenant)
	if err != nil {
		return err
	}
	if claim, ok := want.(*corev1.PersistentVolumeClaim); ok {
		claim.Spec.StorageClassName = translate.SiteStorageClass(claim.Spec.StorageClassName, p.hostClass(claim.Spec.StorageClassName))
	}
	have := c.copy(kind, siteNamespace, host.GetName())
	if have == nil {
		err := c.create(ctx, want)
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		if have, err = c.get(ctx, kind, siteNamespace, host.GetName()); err != nil {
			return err
		}
		if have.GetLabels()[vk8sv1.LabelTenant] != p.cfg.Tenant {
			return fmt.Errorf("%s %s/%s exists on the site and vk8s did not create it; rename one of them",
				kind, siteNamespace, host.GetName())
		}
	}
	// What the site added to the copy's labels and annotations stays.
	want, update := translate.CopyUpdate(want, have)
	if !update {
		return nil
	}
	want.SetResourceVersion(have.GetResourceVersion())
	err = c.update(ctx, want)
	if apierrors.IsInvalid(err) && kind != translate.KindPersistentVolumeClaim {
		// An immutable copy whose host object changed: replace it.
		if err := c.delete(ctx, kind, siteNamespace, host.GetName()); err != nil {
			return err
		}
		want.SetResourceVersion("")
		return c.create(ctx, want)
	}
	return err
}

// syncCopy keeps one copy on a site cluster: equal to the host object while a pod there
// uses it, deleted when none does or the host object is gone.
func (p *Pods) syncCopy(ctx context.Context, c *cluster, it item) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if it.Namespace == "" || p.mirrored(ctx, it.Kind, it.Namespace) {
		return nil
	}
	siteNamespace := translate.SiteNamespace(p.cfg.Tenant, it.Namespace)
	have := c.copy(it.Kind, siteNamespace, it.Name)
	// A claim stays while the host's does, used or not: its data lives on the site.
	used := it.Kind == translate.KindPersistentVolumeClaim || p.copyUsed(c, it, siteNamespace)
	host, err := p.hostObject(it.Kind, it.Namespace, it.Name)
	if apierrors.IsNotFound(err) || (err == nil && !used) {
		if have == nil {
			return nil
		}
		return c.delete(ctx, it.Kind, siteNamespace, it.Name)
	}
	if err != nil {
		return err
	}
	return p.ensureCopy(ctx, c, it.Kind, host, siteNamespace)
}

// copyUsed reports whether a pod on the cluster, or a host pod on its way there, uses the
// object.
func (p *Pods) copyUsed(c *cluster, it item, siteNamespace string) bool {
	for _, sp := range c.sitePodsIn(siteNamespace) {
		if translate.Uses(&sp.Spec, it.Kind, it.Name) {
			return true
		}
	}
	hostPods, err := p.cfg.HostPods.Pods(it.Namespace).List(labels.Everything())
	if err != nil {
		return true
	}
	for _, hp := range hostPods {
		if hp.Status.Phase == corev1.PodSucceeded || hp.Status.Phase == corev1.PodFailed || !translate.Uses(&hp.Spec, it.Kind, it.Name) {
			continue
		}
		site, _, err := p.placement(hp)
		if err != nil {
			continue
		}
		if key, err := p.cfg.Registry.Key(site); err != nil || key == c.key {
			// A disconnected site may be this cluster: keep the copy.
			return true
		}
	}
	return false
}

// HostObjectChanged queues the copies of a host ConfigMap, Secret or ServiceAccount on
// every cluster that has one, so that they follow it.
func (p *Pods) HostObjectChanged(kind string, obj any) {
	item := refItemFromHost(kind, obj)
	if item.Name == "" {
		return
	}
	siteNamespace := translate.SiteNamespace(p.cfg.Tenant, item.Namespace)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clusters {
		if c.copy(kind, siteNamespace, item.Name) != nil {
			c.queue.Add(item)
		}
	}
}

func refItemFromHost(kind string, obj any) item {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return item{}
	}
	return item{Kind: kind, Namespace: m.GetNamespace(), Name: m.GetName()}
}

func (c *cluster) create(ctx context.Context, obj metav1.Object) error {
	var err error
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		_, err = c.client.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Secret:
		_, err = c.client.CoreV1().Secrets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.ServiceAccount:
		_, err = c.client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.PersistentVolumeClaim:
		_, err = c.client.CoreV1().PersistentVolumeClaims(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		return fmt.Errorf("cannot create %T", obj)
	}
	return wrapCopy("create", obj, err)
}

func (c *cluster) update(ctx context.Context, obj metav1.Object) error {
	var err error
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		_, err = c.client.CoreV1().ConfigMaps(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *corev1.Secret:
		_, err = c.client.CoreV1().Secrets(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *corev1.ServiceAccount:
		_, err = c.client.CoreV1().ServiceAccounts(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *corev1.PersistentVolumeClaim:
		// Only the size can change: patch it onto the site's claim, which the site filled in.
		cur, gerr := c.client.CoreV1().PersistentVolumeClaims(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
		if gerr != nil {
			return wrapCopy("update", obj, gerr)
		}
		cur.Labels, cur.Spec.Resources.Requests = o.Labels, o.Spec.Resources.Requests
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[vk8sv1.AnnotationLastApplied] = o.Annotations[vk8sv1.AnnotationLastApplied]
		_, err = c.client.CoreV1().PersistentVolumeClaims(o.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
	default:
		return fmt.Errorf("cannot update %T", obj)
	}
	return wrapCopy("update", obj, err)
}

func (c *cluster) get(ctx context.Context, kind, namespace, name string) (metav1.Object, error) {
	var obj metav1.Object
	var err error
	switch kind {
	case translate.KindConfigMap:
		obj, err = c.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	case translate.KindSecret:
		obj, err = c.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	case translate.KindServiceAccount:
		obj, err = c.client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	case translate.KindPersistentVolumeClaim:
		obj, err = c.client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
	default:
		return nil, fmt.Errorf("unknown kind %s", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s/%s on the site: %w", kind, namespace, name, err)
	}
	return obj, nil
}

func (c *cluster) delete(ctx context.Context, kind, namespace, name string) error {
	var err error
	switch kind {
	case translate.KindConfigMap:
		err = c.client.CoreV1().ConfigMaps(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	case translate.KindSecret:
		err = c.client.CoreV1().Secrets(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	case translate.KindServiceAccount:
		err = c.client.CoreV1().ServiceAccounts(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	case translate.KindPersistentVolumeClaim:
		err = c.client.CoreV1().PersistentVolumeClaims(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	default:
		return fmt.Errorf("unknown kind %s", kind)
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s %s/%s on the site: %w", kind, namespace, name, err)
	}
	return nil
}

func wrapCopy(verb string, obj metav1.Object, err error) error {
	if err == nil {
		return nil
	}
	kind := fmt.Sprintf("%T", obj)
	if ro, ok := obj.(runtime.Object); ok && ro.GetObjectKind().GroupVersionKind().Kind != "" {
		kind = ro.GetObjectKind().GroupVersionKind().Kind
	}
	return fmt.Errorf("%s %s %s/%s on the site: %w", verb, kind, obj.GetNamespace(), obj.GetName(), err)
}

// mirrored says whether the mirror keeps copies of kind in namespace (PodsConfig.Mirrored).
func (p *Pods) mirrored(ctx context.Context, kind, namespace string) bool {
	return p.cfg.Mirrored != nil && p.cfg.Mirrored(ctx, kind, namespace)
}

// hostClass is the host's StorageClass of that name; nil when name is nil or the host has
// none.
func (p *Pods) hostClass(name *string) *storagev1.StorageClass {
	if name == nil || p.cfg.HostStorageClasses == nil {
		return nil
	}
	class, err := p.cfg.HostStorageClasses.Get(*name)
	if err != nil {
		return nil
	}
	return class
}

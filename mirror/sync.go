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
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/tenancy"
	"github.com/vk8s-io/vk8s/translate"
)

// errSkip says an item needs no more work (a conflict reported on the host object).
var errSkip = errors.New("skip")

// sync brings one host object's copy on cluster c to what it should be: equal to the host
// object when its namespace runs on one of c's sites, else gone. vk8s changes or deletes
// only the copies it made (labels vk8s.io/tenant and vk8s.io/host-namespace); an object of
// the same name that someone else made is left alone and reported on the host object.
func (m *Mirror) sync(ctx context.Context, c *cluster, it item) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	if _, ok := m.host[it.Kind]; !ok {
		return fmt.Errorf("unknown kind %s", it.Kind)
	}
	// Outside vK8s namespaces the copies are the provider's (the ConfigMaps and
	// ServiceAccounts of pods sent to a virtual node on purpose): the mirror leaves them.
	if _, vk8s, err := m.cfg.VirtualKubernetesSites(ctx, it.Namespace); err != nil || !vk8s {
		return err
	}
	siteNS := translate.SiteNamespace(m.cfg.Tenant, it.Namespace)
	have := c.copy(it.Kind, siteNS, it.Name)
	hostObj, exists, err := m.hostObject(it.Kind, it.Namespace, it.Name)
	if err != nil {
		return err
	}
	wanted := false
	if exists && !translate.Skipped(it.Kind, it.Name) {
		clusters, err := m.wantedClusters(ctx, it.Namespace)
		if err != nil {
			return err
		}
		_, wanted = clusters[c.key]
	}
	if !wanted {
		if have == nil || !m.ours(have, it.Namespace) {
			return nil
		}
		return m.delete(ctx, c, it.Kind, have)
	}
	want, err := translate.SiteCopy(it.Kind, hostObj.(metav1.Object), siteNS, m.cfg.Tenant)
	if err != nil {
		return err
	}
	if have == nil {
		if err := m.ensureNamespace(ctx, c, it.Namespace); err != nil {
			return err
		}
		err := m.create(ctx, c, it.Kind, want)
		if !apierrors.IsAlreadyExists(err) {
			return m.refused(hostObj, c, it, "create", err)
		}
		// Not in the cache: made meanwhile, or someone else's.
		if have, err = m.get(ctx, c, it.Kind, siteNS, it.Name); err != nil {
			return err
		}
	}
	if !m.ours(have, it.Namespace) {
		m.event(hostObj, "SiteCopyConflict", "%s %s/%s exists on the site cluster %s and vk8s did not create it; it is left alone: rename one of them",
			it.Kind, siteNS, it.Name, c.server)
		return errSkip
	}
	// What the site added to the copy's labels and annotations (a cloud's load balancer,
	// a policy engine) stays.
	want, update := translate.CopyUpdate(want, have.(metav1.Object))
	if !update {
		return nil
	}
	want.SetResourceVersion(have.(metav1.Object).GetResourceVersion())
	err = m.update(ctx, c, it.Kind, want)
	if apierrors.IsInvalid(err) {
		// A field that cannot change (a RoleBinding's roleRef, a Service's type): replace it.
		if err := m.delete(ctx, c, it.Kind, have); err != nil {
			return err
		}
		want.SetResourceVersion("")
		err = m.create(ctx, c, it.Kind, want)
	}
	return m.refused(hostObj, c, it, "update", err)
}

// refused reports a site's refusal of a copy on its host object, and returns err.
func (m *Mirror) refused(host metaObject, c *cluster, it item, verb string, err error) error {
	m.metrics.ops.WithLabelValues(it.Kind, verb, result(err)).Inc()
	if err != nil && (apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)) {
		m.event(host, "SiteCopyRefused", "site cluster %s refused to %s the copy of %s %s: %v", c.server, verb, it.Kind, it.Name, err)
	}
	return err
}

// ours says whether a copy is this host's copy of an object of hostNamespace.
func (m *Mirror) ours(copy metaObject, hostNamespace string) bool {
	l := copy.(metav1.Object).GetLabels()
	return l[vk8sv1.LabelTenant] == m.cfg.Tenant && l[vk8sv1.LabelHostNamespace] == hostNamespace
}

// ensureNamespace creates the site namespace of a host namespace on c when it is missing
// (tenancy.EnsureNamespace: the VirtualKubernetes controller and the provider make the
// same namespace, at the Pod Security level of the cluster's Sites, and keep that level
// when it changes).
func (m *Mirror) ensureNamespace(ctx context.Context, c *cluster, hostNamespace string) error {
	name := translate.SiteNamespace(m.cfg.Tenant, hostNamespace)
	if _, ok := c.namespaces.Load(name); ok {
		return nil
	}
	if _, err := tenancy.EnsureNamespace(ctx, c.client, m.cfg.Tenant, hostNamespace, m.cfg.Registry.PodSecurity(c.key)); err != nil {
		return err
	}
	c.namespaces.Store(name, true)
	return nil
}

// create, update, get and delete call the site's API server for the copy's kind.

func (m *Mirror) create(ctx context.Context, c *cluster, kind string, obj metav1.Object) error {
	var err error
	switch o := obj.(type) {
	case *corev1.Service:
		_, err = c.client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.ConfigMap:
		_, err = c.client.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.ServiceAccount:
		_, err = c.client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *rbacv1.Role:
		_, err = c.client.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *rbacv1.RoleBinding:
		_, err = c.client.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *networkingv1.NetworkPolicy:
		_, err = c.client.NetworkingV1().NetworkPolicies(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		return fmt.Errorf("cannot create %T", obj)
	}
	if err != nil && apierrors.IsNotFound(err) {
		// The namespace went (deleted by hand, or by tenancy's cleanup): make it again.
		c.namespaces.Delete(obj.GetNamespace())
	}
	return wrap("create", kind, obj, err)
}

func (m *Mirror) update(ctx context.Context, c *cluster, kind string, obj metav1.Object) error {
	var err error
	switch o := obj.(type) {
	case *corev1.Service:
		_, err = c.client.CoreV1().Services(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *corev1.ConfigMap:
		_, err = c.client.CoreV1().ConfigMaps(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *corev1.ServiceAccount:
		_, err = c.client.CoreV1().ServiceAccounts(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *rbacv1.Role:
		_, err = c.client.RbacV1().Roles(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *rbacv1.RoleBinding:
		_, err = c.client.RbacV1().RoleBindings(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *networkingv1.NetworkPolicy:
		_, err = c.client.NetworkingV1().NetworkPolicies(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	default:
		return fmt.Errorf("cannot update %T", obj)
	}
	return wrap("update", kind, obj, err)
}

func (m *Mirror) get(ctx context.Context, c *cluster, kind, namespace, name string) (metaObject, error) {
	var obj metaObject
	var err error
	switch kind {
	case translate.KindService:
		obj, err = c.client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	case translate.KindConfigMap:
		obj, err = c.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	case translate.KindServiceAccount:
		obj, err = c.client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	case translate.KindRole:
		obj, err = c.client.RbacV1().Roles(namespace).Get(ctx, name, metav1.GetOptions{})
	case translate.KindRoleBinding:
		obj, err = c.client.RbacV1().RoleBindings(namespace).Get(ctx, name, metav1.GetOptions{})
	case translate.KindNetworkPolicy:
		obj, err = c.client.NetworkingV1().NetworkPolicies(namespace).Get(ctx, name, metav1.GetOptions{})
	default:
		return nil, fmt.Errorf("unknown kind %s", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s/%s on the site: %w", kind, namespace, name, err)
	}
	return obj, nil
}

// delete deletes a copy, only that incarnation of it (UID precondition).
func (m *Mirror) delete(ctx context.Context, c *cluster, kind string, obj metaObject) error {
	o := obj.(metav1.Object)
	opts := metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(o.GetUID()))}
	ns, name := o.GetNamespace(), o.GetName()
	var err error
	switch kind {
	case translate.KindService:
		err = c.client.CoreV1().Services(ns).Delete(ctx, name, opts)
	case translate.KindConfigMap:
		err = c.client.CoreV1().ConfigMaps(ns).Delete(ctx, name, opts)
	case translate.KindServiceAccount:
		err = c.client.CoreV1().ServiceAccounts(ns).Delete(ctx, name, opts)
	case translate.KindRole:
		err = c.client.RbacV1().Roles(ns).Delete(ctx, name, opts)
	case translate.KindRoleBinding:
		err = c.client.RbacV1().RoleBindings(ns).Delete(ctx, name, opts)
	case translate.KindNetworkPolicy:
		err = c.client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, opts)
	default:
		return fmt.Errorf("unknown kind %s", kind)
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		err = nil
	}
	m.metrics.ops.WithLabelValues(kind, "delete", result(err)).Inc()
	return wrap("delete", kind, o, err)
}

func wrap(verb, kind string, obj metav1.Object, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s %s/%s on the site: %w", verb, kind, obj.GetNamespace(), obj.GetName(), err)
}

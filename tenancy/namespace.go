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

package tenancy

import (
	"context"
	"fmt"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// EnsureNamespace makes the site namespace of hostNamespace exist on a site, with its
// "default" ServiceAccount. A namespace vk8s creates carries the Pod Security labels of
// level, and gets them again when they differ (the Site's level changed, or someone
// edited them on the site); a namespace vk8s did not create (a site administrator's) is
// used as it is, its labels untouched. It reports whether vk8s created the namespace
// (translate.CreatedByVK8s), that is whether level is in force there.
func EnsureNamespace(ctx context.Context, c kubernetes.Interface, tenant, hostNamespace string, level vk8sv1.PodSecurityLevel) (bool, error) {
	want := translate.Namespace(tenant, hostNamespace, level)
	nss := c.CoreV1().Namespaces()
	ns, err := nss.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ns, err = nss.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			ns, err = nss.Get(ctx, want.Name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return false, fmt.Errorf("get or create namespace %s: %w", want.Name, err)
	}
	created := translate.CreatedByVK8s(ns, tenant, hostNamespace)
	if owner := ns.Labels[vk8sv1.LabelTenant]; owner != "" && !created {
		// SiteNamespace is injective, so only a hash collision or a hand-made label gets
		// here: never put one host namespace's pods into another's.
		return false, fmt.Errorf("site namespace %s belongs to host namespace %q of tenant %q, not to %q of tenant %q: "+
			"rename one of the host namespaces, or delete the site namespace if nothing uses it",
			ns.Name, ns.Labels[vk8sv1.LabelHostNamespace], owner, hostNamespace, tenant)
	}
	if created {
		if _, err := SetPodSecurity(ctx, c, ns, level); err != nil {
			return true, err
		}
	}
	// The site's ServiceAccount admission refuses pods until the namespace's "default"
	// ServiceAccount exists, which its controller creates a moment later: make it now.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: want.Name}}
	_, err = c.CoreV1().ServiceAccounts(want.Name).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return created, fmt.Errorf("create ServiceAccount %s/default: %w", want.Name, err)
	}
	return created, nil
}

// SetPodSecurity gives a site namespace vk8s created (translate.CreatedByVK8s: call it for
// no other) the Pod Security labels of level when they differ, reading it again when
// someone wrote it meanwhile: the provider and the VirtualKubernetes controller both follow
// a level change. It reports whether it wrote.
func SetPodSecurity(ctx context.Context, c kubernetes.Interface, ns *corev1.Namespace, level vk8sv1.PodSecurityLevel) (bool, error) {
	tenant, hostNamespace := ns.Labels[vk8sv1.LabelTenant], ns.Labels[vk8sv1.LabelHostNamespace]
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		upd, changed := translate.WithPodSecurity(ns, level)
		if !changed || !translate.CreatedByVK8s(ns, tenant, hostNamespace) {
			return nil
		}
		_, err := c.CoreV1().Namespaces().Update(ctx, upd, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			fresh, gerr := c.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			ns = fresh
		}
		wrote = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("set Pod Security level %s on namespace %s: %w", level, ns.Name, err)
	}
	return wrote, nil
}

// ensurePolicy creates the isolation NetworkPolicy, or puts back its spec and labels when
// someone changed them.
func ensurePolicy(ctx context.Context, c kubernetes.Interface, want *networkingv1.NetworkPolicy) error {
	nps := c.NetworkingV1().NetworkPolicies(want.Namespace)
	have, err := nps.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := nps.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create NetworkPolicy %s/%s: %w", want.Namespace, want.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get NetworkPolicy %s/%s: %w", want.Namespace, want.Name, err)
	}
	labelsOK := true
	for k, v := range want.Labels {
		labelsOK = labelsOK && have.Labels[k] == v
	}
	if labelsOK && equality.Semantic.DeepEqual(have.Spec, want.Spec) {
		return nil
	}
	upd := have.DeepCopy()
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		upd.Labels[k] = v
	}
	upd.Spec = want.Spec
	if _, err := nps.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update NetworkPolicy %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}

// provision makes sure the site namespace (at Pod Security level level) and its isolation
// NetworkPolicy exist on one site cluster.
func provision(ctx context.Context, c kubernetes.Interface, tenant, hostNamespace string, level vk8sv1.PodSecurityLevel) error {
	if _, err := EnsureNamespace(ctx, c, tenant, hostNamespace, level); err != nil {
		return err
	}
	return ensurePolicy(ctx, c, translate.IsolationPolicy(tenant, hostNamespace))
}

// cleanupMode says what cleanup may remove.
type cleanupMode int

const (
	// departed: the site left the virtual-site. While pods of the namespace run there
	// (placed through ves.io/virtual-sites), their isolation stays.
	departed cleanupMode = iota
	// deleting: the VirtualKubernetes is being deleted; the namespace is no longer a vK8s
	// namespace, so its NetworkPolicy goes at once.
	deleting
)

// cleanupResult says what cleanup left on a site.
type cleanupResult struct {
	// done: nothing is left to wait for (what remains stays for good).
	done bool
	// note says what was removed or kept, for logs and Events.
	note string
}

// cleanup removes from one site cluster what vk8s made for hostNamespace: the namespace
// when vk8s created it and it holds no pods and no PersistentVolumeClaims (a claim's volume
// holds data), else the isolation NetworkPolicy alone (see cleanupMode for when it stays).
// A namespace vk8s did not create is never deleted.
func cleanup(ctx context.Context, c kubernetes.Interface, tenant, hostNamespace string, mode cleanupMode) (cleanupResult, error) {
	name := translate.SiteNamespace(tenant, hostNamespace)
	ns, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return cleanupResult{done: true, note: "namespace " + name + " does not exist"}, nil
	case err != nil:
		return cleanupResult{}, fmt.Errorf("get namespace %s: %w", name, err)
	}
	if ns.DeletionTimestamp != nil {
		return cleanupResult{done: true, note: "namespace " + name + " is being deleted"}, nil
	}
	pods, err := c.CoreV1().Pods(name).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return cleanupResult{}, fmt.Errorf("list pods in %s: %w", name, err)
	}
	hasPods := len(pods.Items) > 0
	if hasPods && mode == departed {
		return cleanupResult{note: "pods of the namespace still run in " + name + "; its NetworkPolicy stays until they are gone"}, nil
	}
	claims, err := c.CoreV1().PersistentVolumeClaims(name).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return cleanupResult{}, fmt.Errorf("list PersistentVolumeClaims in %s: %w", name, err)
	}
	hasClaims := len(claims.Items) > 0
	if translate.CreatedByVK8s(ns, tenant, hostNamespace) && !hasPods && !hasClaims {
		err := c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(ns.UID))})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return cleanupResult{}, fmt.Errorf("delete namespace %s: %w", name, err)
		}
		return cleanupResult{done: true, note: "deleted namespace " + name}, nil
	}
	if err := deletePolicy(ctx, c, tenant, name); err != nil {
		return cleanupResult{}, err
	}
	switch {
	case !translate.CreatedByVK8s(ns, tenant, hostNamespace):
		return cleanupResult{done: true, note: "deleted NetworkPolicy " + translate.IsolationPolicyName + "; namespace " + name + " stays: vk8s did not create it"}, nil
	case hasPods:
		return cleanupResult{note: "deleted NetworkPolicy " + translate.IsolationPolicyName + "; waiting for the pods in " + name + " to go before deleting the namespace"}, nil
	default:
		return cleanupResult{done: true, note: "deleted NetworkPolicy " + translate.IsolationPolicyName + "; namespace " + name + " stays: it holds PersistentVolumeClaims (their volumes hold data)"}, nil
	}
}

// deletePolicy deletes the isolation NetworkPolicy of a site namespace when vk8s made it.
func deletePolicy(ctx context.Context, c kubernetes.Interface, tenant, namespace string) error {
	nps := c.NetworkingV1().NetworkPolicies(namespace)
	np, err := nps.Get(ctx, translate.IsolationPolicyName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("get NetworkPolicy %s/%s: %w", namespace, translate.IsolationPolicyName, err)
	case np.Labels[vk8sv1.LabelTenant] != tenant:
		return nil // not ours
	}
	err = nps.Delete(ctx, translate.IsolationPolicyName, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(np.UID))})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete NetworkPolicy %s/%s: %w", namespace, translate.IsolationPolicyName, err)
	}
	return nil
}

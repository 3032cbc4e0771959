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
)

// EnsureNamespace creates the site namespace of hostNamespace on a site when it is
// missing, and its "default" ServiceAccount. An existing namespace is used as it is.
func EnsureNamespace(ctx context.Context, c kubernetes.Interface, tenant, hostNamespace string) error {
	ns := translate.Namespace(tenant, hostNamespace)
	_, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns.Name, err)
	}
	// The site's ServiceAccount admission refuses pods until the namespace's "default"
	// ServiceAccount exists, which its controller creates a moment later: make it now.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns.Name}}
	_, err = c.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ServiceAccount %s/default: %w", ns.Name, err)
	}
	return nil
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

// provision makes sure the site namespace and its isolation NetworkPolicy exist on one
// site cluster.
func provision(ctx context.Context, c kubernetes.Interface, tenant, hostNamespace string) error {
	if err := EnsureNamespace(ctx, c, tenant, hostNamespace); err != nil {
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

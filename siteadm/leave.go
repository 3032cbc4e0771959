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

package siteadm

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
)

// LeaveConfig says which Site leave removes, and how.
type LeaveConfig struct {
	// Name of the Site.
	Name string
	// Tenant is the host's tenant (the provider's --tenant).
	Tenant string
	// Force leaves while vK8s pods run on the Site: they are deleted in the host (their
	// controllers make them again on the other sites) and on the site.
	Force bool
	// HostOnly undoes the host side alone, for a site that is gone or unreachable; the
	// site's objects are left, and named.
	HostOnly bool
	// SiteTimeout bounds each call to the site. Zero: DefaultSiteTimeout.
	SiteTimeout time.Duration
	// Progress receives a line per step; nil: none.
	Progress io.Writer
}

// podDrainWait is how long leave --force waits for the provider to delete the Site's pods
// on the site before the Site goes.
const podDrainWait = 30 * time.Second

// Leave removes Site cfg.Name: in the host the Site and the Secret join made; on the site
// (admin, the site administrator's configuration; nil with HostOnly) the ServiceAccount,
// ClusterRole and ClusterRoleBinding join made, this host's pods on the Site's nodes, and,
// when no other Site of this host is on that cluster, this host's site namespaces and its
// tenant claim. It refuses while vK8s pods run on the Site, unless cfg.Force; and
// refuses a site kubeconfig that reaches another cluster than the Site's.
func Leave(ctx context.Context, host client.Client, admin *rest.Config, cfg LeaveConfig) error {
	cfg.SiteTimeout = cmp.Or(cfg.SiteTimeout, DefaultSiteTimeout)
	var sc kubernetes.Interface
	var server string
	if !cfg.HostOnly {
		if admin == nil {
			return newError(CauseInvalid, nil, "leave needs the site administrator's kubeconfig (--site-kubeconfig) to remove what join made on the site, or --host-only")
		}
		siteCfg, c, err := siteClient(admin, cfg.SiteTimeout)
		if err != nil {
			return err
		}
		sc, server = c, siteCfg.Host
	}
	return leave(ctx, host, sc, server, cfg)
}

// leave is Leave with the site's client made (nil with HostOnly).
func leave(ctx context.Context, host client.Client, sc kubernetes.Interface, server string, cfg LeaveConfig) error {
	out := cfg.Progress
	if out == nil {
		out = io.Discard
	}
	site := &vk8sv1.Site{}
	if err := host.Get(ctx, client.ObjectKey{Name: cfg.Name}, site); apierrors.IsNotFound(err) {
		return newError(CauseNotFound, err, "no Site %s in the host: `vk8s site list` shows the Sites", cfg.Name)
	} else if err != nil {
		return hostFailure("get Site "+cfg.Name, err)
	}
	pods, err := sitePods(ctx, host, cfg.Name)
	if err != nil {
		return err
	}
	if len(pods) > 0 && !cfg.Force {
		return newError(CausePodsRunning, nil,
			"%d vK8s pods run on Site %s (%s): move them first (scale their workloads, or take the Site out of their virtual-sites), "+
				"or pass --force, which deletes them (their controllers make them again on the other sites)",
			len(pods), cfg.Name, podNames(pods, 5))
	}
	if !cfg.HostOnly {
		ns, err := sc.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			return siteFailure(server, "reading namespace kube-system", err)
		}
		if id := site.Status.ClusterID; id != "" && id != string(ns.UID) {
			return newError(CauseInvalid, nil,
				"the site kubeconfig reaches the cluster at %s (cluster ID %s), not Site %s's (cluster ID %s): pass the kubeconfig of Site %s's cluster",
				server, ns.UID, cfg.Name, id, cfg.Name)
		}
	}

	if len(pods) > 0 {
		fmt.Fprintf(out, "deleting the %d vK8s pods on Site %s\n", len(pods), cfg.Name)
		for i := range pods {
			if err := host.Delete(ctx, &pods[i]); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete pod %s/%s in the host: %w", pods[i].Namespace, pods[i].Name, err)
			}
		}
		// The provider deletes them on the site while it still has the Site.
		_ = wait.PollUntilContextTimeout(ctx, time.Second, podDrainWait, true, func(ctx context.Context) (bool, error) {
			left, err := sitePods(ctx, host, cfg.Name)
			return err == nil && len(left) == 0, nil
		})
	}

	fmt.Fprintf(out, "deleting Site %s in the host\n", cfg.Name)
	if err := host.Delete(ctx, site); err != nil && !apierrors.IsNotFound(err) {
		return hostFailure("delete Site "+cfg.Name, err)
	}
	ref := site.Spec.KubeconfigSecretRef
	secret := &corev1.Secret{}
	switch err := host.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("get Secret %s/%s in the host: %w", ref.Namespace, ref.Name, err)
	case secret.Labels[vk8sv1.LabelManagedBy] == vk8sv1.ManagedByVK8s && secret.Labels[vk8sv1.LabelSite] == cfg.Name:
		fmt.Fprintf(out, "deleting Secret %s/%s in the host\n", ref.Namespace, ref.Name)
		if err := host.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete Secret %s/%s in the host: %w", ref.Namespace, ref.Name, err)
		}
	default:
		fmt.Fprintf(out, "Secret %s/%s stays in the host: join did not make it\n", ref.Namespace, ref.Name)
	}

	name := AccountName(cfg.Tenant, cfg.Name)
	if cfg.HostOnly {
		fmt.Fprintf(out, "on the site, what join made stays; remove it with the site administrator's kubeconfig:\n"+
			"  kubectl delete clusterrolebinding,clusterrole %s; kubectl -n %s delete serviceaccount %s\n", name, Namespace, name)
		return nil
	}
	others, err := sitesOnCluster(ctx, host, site.Status.ClusterID, cfg.Name)
	if err != nil {
		return err
	}
	// A Site that never connected has no cluster ID, and cannot tell which Sites share
	// its cluster: the namespaces and the claim then stay.
	last := site.Status.ClusterID != "" && len(others) == 0
	if err := cleanSite(ctx, sc, site, cfg, last, out); err != nil {
		return siteFailure(server, "removing what join made", err)
	}
	return nil
}

// cleanSite removes on the site what vk8s made for Site site: this host's pods on its
// nodes; when last (no other Site of this host is on the cluster), its site namespaces
// and its tenant claim; the account of join; and namespace Namespace when vk8s made it and
// nothing else is left in it.
func cleanSite(ctx context.Context, sc kubernetes.Interface, site *vk8sv1.Site, cfg LeaveConfig, last bool, out io.Writer) error {
	tenantSel := labels.Set{vk8sv1.LabelTenant: cfg.Tenant}.AsSelector().String()
	nodeSel := labels.SelectorFromSet(site.Spec.NodeSelector)
	nodes, err := sc.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodeSel.String()})
	if err != nil {
		return fmt.Errorf("list the Site's nodes: %w", err)
	}
	mine := map[string]bool{}
	for _, n := range nodes.Items {
		mine[n.Name] = true
	}
	pods, err := sc.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: tenantSel})
	if err != nil {
		return fmt.Errorf("list the tenant's pods: %w", err)
	}
	for _, p := range pods.Items {
		if mine[p.Spec.NodeName] || (last && p.Spec.NodeName == "") {
			fmt.Fprintf(out, "deleting pod %s/%s on the site\n", p.Namespace, p.Name)
			if err := sc.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err)
			}
		}
	}
	if last {
		nss, err := sc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: tenantSel})
		if err != nil {
			return fmt.Errorf("list the tenant's namespaces: %w", err)
		}
		for _, ns := range nss.Items {
			if ns.Labels[vk8sv1.LabelHostNamespace] == "" {
				continue
			}
			fmt.Fprintf(out, "deleting namespace %s on the site\n", ns.Name)
			if err := sc.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete namespace %s: %w", ns.Name, err)
			}
		}
		claim := sitereg.ClaimName(cfg.Tenant)
		fmt.Fprintf(out, "deleting the tenant claim %s/%s on the site\n", sitereg.ClaimNamespace, claim)
		if err := sc.CoreV1().ConfigMaps(sitereg.ClaimNamespace).Delete(ctx, claim, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete ConfigMap %s/%s: %w", sitereg.ClaimNamespace, claim, err)
		}
	}
	name := AccountName(cfg.Tenant, cfg.Name)
	fmt.Fprintf(out, "deleting on the site: ClusterRoleBinding and ClusterRole %s, ServiceAccount %s/%s\n", name, Namespace, name)
	for _, del := range []func() error{
		func() error { return sc.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{}) },
		func() error { return sc.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{}) },
		func() error { return sc.CoreV1().ServiceAccounts(Namespace).Delete(ctx, name, metav1.DeleteOptions{}) },
	} {
		if err := del(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return deleteNamespaceIfEmpty(ctx, sc, out)
}

// deleteNamespaceIfEmpty deletes namespace Namespace when vk8s made it and it holds no
// ServiceAccount but "default" and no ConfigMap but the API server's CA.
func deleteNamespaceIfEmpty(ctx context.Context, sc kubernetes.Interface, out io.Writer) error {
	ns, err := sc.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && ns.Labels[vk8sv1.LabelManagedBy] != vk8sv1.ManagedByVK8s) {
		return nil
	} else if err != nil {
		return err
	}
	sas, err := sc.CoreV1().ServiceAccounts(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	cms, err := sc.CoreV1().ConfigMaps(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, sa := range sas.Items {
		if sa.Name != "default" {
			return nil
		}
	}
	for _, cm := range cms.Items {
		if cm.Name != "kube-root-ca.crt" {
			return nil
		}
	}
	fmt.Fprintf(out, "deleting namespace %s on the site: nothing of vk8s is left in it\n", Namespace)
	if err := sc.CoreV1().Namespaces().Delete(ctx, Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// sitePods are the pods of the host bound to Site site's virtual nodes that have not
// ended.
func sitePods(ctx context.Context, host client.Client, site string) ([]corev1.Pod, error) {
	var nodes corev1.NodeList
	if err := host.List(ctx, &nodes, client.MatchingLabels{vk8sv1.LabelSite: site}); err != nil {
		return nil, fmt.Errorf("list the virtual nodes of Site %s: %w", site, err)
	}
	var out []corev1.Pod
	for _, n := range nodes.Items {
		var pods corev1.PodList
		if err := host.List(ctx, &pods, client.MatchingFields{"spec.nodeName": n.Name}); err != nil {
			return nil, fmt.Errorf("list the pods of node %s: %w", n.Name, err)
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// podNames names up to max of pods, and how many more there are.
func podNames(pods []corev1.Pod, max int) string {
	names := make([]string, 0, len(pods))
	for _, p := range pods {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	slices.Sort(names)
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
	}
	return strings.Join(names, ", ")
}

// sitesOnCluster are the Sites of the host, but except, on the cluster of ID id.
func sitesOnCluster(ctx context.Context, host client.Client, id, except string) ([]string, error) {
	var list vk8sv1.SiteList
	if err := host.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list Sites in the host: %w", err)
	}
	var out []string
	for _, s := range list.Items {
		if s.Name != except && id != "" && s.Status.ClusterID == id {
			out = append(out, s.Name)
		}
	}
	return out, nil
}

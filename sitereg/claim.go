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

package sitereg

import (
	"context"
	"fmt"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ClaimNamespace holds the tenant claims on a site cluster.
const ClaimNamespace = "vk8s-system"

// Keys of a claim ConfigMap's data.
const (
	ClaimKeyHostID   = "hostID"
	ClaimKeyHostName = "hostName"
)

// Claim says which host serves a tenant on the site clusters. vk8s finds its own objects
// on a site by their tenant label, so two hosts with one tenant on one site would each
// take the other's pods for orphans and delete them. Before a connection is used, the
// registry writes the claim on its cluster (ConfigMap ClaimNamespace/tenant-<tenant>),
// or finds it written by this host; a claim by another host refuses the connection
// (reason TenantInUse) until that host's claim is deleted.
type Claim struct {
	// Tenant is the provider's tenant.
	Tenant string
	// HostID identifies the host cluster: the UID of its kube-system namespace.
	HostID string
	// HostName is how messages name the host, e.g. its API server's address.
	HostName string
}

// ClaimName is the name of the ConfigMap of tenant's claim on a site.
func ClaimName(tenant string) string { return "tenant-" + tenant }

// ensure writes the claim on the cluster of client, or checks that this host wrote it.
func (cl *Claim) ensure(ctx context.Context, client kubernetes.Interface, server string) error {
	name := ClaimName(cl.Tenant)
	want := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ClaimNamespace, Name: name, Labels: map[string]string{
			vk8sv1.LabelTenant: cl.Tenant, vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s,
		}},
		Data: map[string]string{ClaimKeyHostID: cl.HostID, ClaimKeyHostName: cl.HostName},
	}
	cms := client.CoreV1().ConfigMaps(ClaimNamespace)
	have, err := cms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ClaimNamespace,
			Labels: map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s}}}
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s for the tenant claim: %w", ClaimNamespace, err)
		}
		have, err = cms.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Another host claimed it at the same moment.
			have, err = cms.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("claim tenant %s on the site (ConfigMap %s/%s): %w", cl.Tenant, ClaimNamespace, name, err)
	}
	if id := have.Data[ClaimKeyHostID]; id != cl.HostID {
		return newSiteError(ReasonTenantInUse, nil,
			"the cluster at %s already serves tenant %q for another host, %s (cluster ID %s), as ConfigMap %s/%s on the site says; "+
				"two hosts with one tenant would delete each other's pods: give this host another tenant (the provider's --tenant), "+
				"or, if that host no longer uses the site, delete the ConfigMap",
			server, cl.Tenant, have.Data[ClaimKeyHostName], id, ClaimNamespace, name)
	}
	return nil
}

// clusterIdentity reads the identity of the cluster of client, whose API server is at
// server: the UID of its kube-system namespace, which lives as long as the cluster and no
// other cluster shares (the host's identity in a Claim is the same).
func clusterIdentity(ctx context.Context, client kubernetes.Interface, server string) (string, error) {
	ns, err := client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return "", newSiteError(ReasonForbidden, err,
			"the credentials may not get namespace %s at %s (403 Forbidden), whose UID tells vk8s which cluster a Site reaches: grant the kubeconfig's user get on namespaces",
			metav1.NamespaceSystem, server)
	case err != nil:
		return "", fmt.Errorf("read the identity of the cluster (namespace %s): %w", metav1.NamespaceSystem, err)
	case ns.UID == "":
		return "", fmt.Errorf("namespace %s at %s has no UID", metav1.NamespaceSystem, server)
	}
	return string(ns.UID), nil
}

// clusterChanged is the refusal of a kubeconfig that reaches another cluster than the
// one Site site was registered with (its status.clusterID, was).
func clusterChanged(site, secret, server, was, now string) *siteError {
	return newSiteError(ReasonClusterChanged, nil,
		"the kubeconfig in Secret %s reaches another cluster (%s, cluster ID %s) than the one Site %s was registered with (cluster ID %s; "+
			"the ID is the UID of the cluster's kube-system namespace): vk8s does not use it, so that nothing is created or deleted on "+
			"either cluster, and the Site's virtual nodes and pods stay as they are. Point the Secret back at the Site's cluster; or, "+
			"to move the Site to the other cluster on purpose, delete the Site and create it again",
		secret, server, now, site, was)
}

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

package lab

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab/kwokconfig"
	"github.com/vk8s-io/vk8s/siteadm"
)

const (
	// Tenant is the tenant of the lab's provider (the provider's default).
	Tenant = "vk8s"
	// SystemNamespace holds the lab's Site kubeconfig Secrets in the host.
	SystemNamespace = "vk8s-system"
	// SharedNamespace holds VirtualSites that every vK8s namespace may reference.
	SharedNamespace = "shared"
	// AllSitesVirtualSite selects every Site of the lab.
	AllSitesVirtualSite = "all-sites"

	// LabelRegion is the region label of a lab Site, the value its nodes carry in
	// topology.kubernetes.io/region.
	LabelRegion = "region"
	// LabelSiteIndex is the 1-based number of a lab Site.
	LabelSiteIndex = "site-index"

	kwokNodeAnnotation = kwokconfig.KwokNodeAnnotation
	kubeconfigKey      = "kubeconfig"
)

// regions is the round-robin list of regions given to the lab's sites, so selectors over
// regions have something to choose from.
var regions = []string{"eu-west", "us-east", "ap-south"}

// SiteName is the name of the i-th site (1-based): site1, site2, ...
func SiteName(i int) string { return fmt.Sprintf("site%d", i) }

// NodeName is the name of the j-th node (1-based) of a site cluster: node1, node2, ...
func NodeName(j int) string { return fmt.Sprintf("node%d", j) }

// Region is the region of the i-th site.
func Region(i int) string { return regions[(i-1)%len(regions)] }

// SiteNode is the kwok node j of site i as Up makes it, for tests that take a node away and
// put it back.
func SiteNode(site, j int) *corev1.Node { return siteNode(site, j) }

// siteNode is the kwok node j of site i: realistic capacity, allocatable a little below it
// as a kubelet reserves, and the labels a real node carries.
func siteNode(site, j int) *corev1.Node {
	name := NodeName(j)
	region := Region(site)
	zone := fmt.Sprintf("%s-%c", region, 'a'+rune((j-1)%3))
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				kwokNodeAnnotation: "fake",
				// Where kwok serves the node's resource metrics (siteMetricsConfig), as
				// metrics-server and vk8s read the annotation.
				vk8sv1.AnnotationResourceMetricsPath: "/metrics/nodes/" + name + "/metrics/resource",
			},
			Labels: map[string]string{
				corev1.LabelHostname:           name,
				corev1.LabelOSStable:           "linux",
				corev1.LabelArchStable:         "amd64",
				corev1.LabelInstanceTypeStable: "lab.xlarge",
				corev1.LabelTopologyRegion:     region,
				corev1.LabelTopologyZone:       zone,
				"type":                         "kwok",
			},
		},
		Status: corev1.NodeStatus{
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("16"),
				corev1.ResourceMemory:           resource.MustParse("64Gi"),
				corev1.ResourcePods:             resource.MustParse("110"),
				corev1.ResourceEphemeralStorage: resource.MustParse("200Gi"),
			},
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("15800m"),
				corev1.ResourceMemory:           resource.MustParse("62Gi"),
				corev1.ResourcePods:             resource.MustParse("110"),
				corev1.ResourceEphemeralStorage: resource.MustParse("190Gi"),
			},
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:    "amd64",
				OperatingSystem: "linux",
			},
		},
	}
}

// HostNodes is how many nodes of its own the lab's host has.
const HostNodes = 2

// HostNodeName is the name of the j-th node (1-based) of the host's own: host-node1, ...
func HostNodeName(j int) string { return fmt.Sprintf("host-node%d", j) }

// hostNode is the host's own kwok node j: a real host has healthy nodes besides the
// virtual ones, so its node lifecycle controller is not in full disruption when every
// virtual node stops reporting, and evicts as it would in production. They are in a zone
// of their own, as the host's nodes are not at any site.
func hostNode(j int) *corev1.Node {
	n := siteNode(1, j)
	n.Name = HostNodeName(j)
	delete(n.Annotations, vk8sv1.AnnotationResourceMetricsPath)
	n.Labels[corev1.LabelHostname] = n.Name
	n.Labels[corev1.LabelTopologyRegion] = "host"
	n.Labels[corev1.LabelTopologyZone] = "host-a"
	return n
}

// siteObjects returns the host objects that register site i: its kubeconfig Secret (without
// the annotations of its token) and the Site that points at it.
func siteObjects(lab string, i int, kubeconfig []byte) (*corev1.Secret, *vk8sv1.Site) {
	name := SiteName(i)
	// As `vk8s site join` makes it (siteadm.HostSecret), marked as the lab's.
	secret := siteadm.HostSecret(SystemNamespace, Tenant, name, kubeconfig, siteadm.Token{})
	secret.Annotations = nil
	secret.Labels[vk8sv1.LabelLab] = lab
	site := &vk8sv1.Site{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				vk8sv1.LabelLab: lab,
				LabelRegion:     Region(i),
				LabelSiteIndex:  fmt.Sprint(i),
			},
		},
		Spec: vk8sv1.SiteSpec{
			KubeconfigSecretRef: vk8sv1.SecretKeyReference{
				Namespace: SystemNamespace,
				Name:      secret.Name,
				Key:       kubeconfigKey,
			},
			Type:     vk8sv1.SiteTypeCustomerEdge,
			NodeMode: vk8sv1.NodeModePerNode,
		},
	}
	return secret, site
}

// allSites is the VirtualSite shared/all-sites: an empty selector selects every Site.
func allSites() *vk8sv1.VirtualSite {
	return &vk8sv1.VirtualSite{
		ObjectMeta: metav1.ObjectMeta{Name: AllSitesVirtualSite, Namespace: SharedNamespace},
		Spec:       vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{}},
	}
}

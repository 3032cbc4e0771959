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
	"slices"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/kubeletapi"
)

// Pods answers the kubelet API's questions from its caches.
var _ kubeletapi.Resolver = (*Pods)(nil)

// Pod implements kubeletapi.Resolver: where host pod namespace/name runs.
func (p *Pods) Pod(_ context.Context, namespace, name string) (*kubeletapi.PodTarget, error) {
	host, err := p.cfg.HostPods.Pods(namespace).Get(name)
	if err != nil {
		return nil, errdefs.NotFoundf("pod %s/%s: not bound to a node", namespace, name)
	}
	site, _, err := p.placement(host)
	if err != nil {
		return nil, errdefs.AsNotFound(fmt.Errorf("pod %s/%s: %w", namespace, name, err))
	}
	sp, _ := p.find(namespace, name)
	if sp == nil || sp.Labels[vk8sv1.LabelHostPodUID] != string(host.UID) {
		return nil, errdefs.NotFoundf("pod %s/%s is not on site %s yet", namespace, name, site)
	}
	conn, err := p.cfg.Registry.Get(site)
	if err != nil {
		return nil, err
	}
	return &kubeletapi.PodTarget{
		Node: host.Spec.NodeName, Site: conn, Namespace: sp.Namespace, Name: sp.Name, SiteNode: sp.Spec.NodeName,
	}, nil
}

// Node implements kubeletapi.Resolver: the site and real nodes a virtual node stands for.
func (p *Pods) Node(_ context.Context, name string) (*kubeletapi.NodeTarget, error) {
	n, err := p.cfg.HostNodes.Get(name)
	if err != nil || n.Labels[vk8sv1.LabelSite] == "" || n.Labels[vk8sv1.LabelType] != vk8sv1.TypeVirtualKubelet {
		return nil, errdefs.NotFoundf("node %s is not a virtual node of vk8s", name)
	}
	conn, err := p.cfg.Registry.Get(n.Labels[vk8sv1.LabelSite])
	if err != nil {
		return nil, err
	}
	if siteNode := n.Labels[vk8sv1.LabelSiteNode]; siteNode != "" {
		return &kubeletapi.NodeTarget{Site: conn, SiteNodes: []string{siteNode}}, nil
	}
	nodes, err := conn.Nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	t := &kubeletapi.NodeTarget{Site: conn}
	for _, sn := range nodes {
		t.SiteNodes = append(t.SiteNodes, sn.Name)
	}
	slices.Sort(t.SiteNodes)
	return t, nil
}

// NodePods implements kubeletapi.Resolver: the host pods bound to a virtual node.
func (p *Pods) NodePods(_ context.Context, name string) ([]*corev1.Pod, error) {
	return p.cfg.HostPodsOn(name), nil
}

// HostPod implements kubeletapi.Resolver: the host pod a site pod runs for.
func (p *Pods) HostPod(site, namespace, name string) (kubeletapi.HostPod, bool) {
	sp, ok := p.SitePod(site, namespace, name)
	if !ok {
		return kubeletapi.HostPod{}, false
	}
	return kubeletapi.HostPod{
		Namespace: sp.Labels[vk8sv1.LabelHostNamespace], Name: sp.Name, UID: types.UID(sp.Labels[vk8sv1.LabelHostPodUID]),
	}, true
}

// SitePod implements kubeletapi.Resolver: a site pod of this host, from the site's cache.
func (p *Pods) SitePod(site, namespace, name string) (*corev1.Pod, bool) {
	key, err := p.cfg.Registry.Key(site)
	if err != nil {
		return nil, false
	}
	p.mu.Lock()
	c := p.clusters[key]
	p.mu.Unlock()
	if c == nil {
		return nil, false
	}
	obj, ok, err := c.pods.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	sp, _ := obj.(*corev1.Pod)
	if sp == nil || sp.Labels[vk8sv1.LabelTenant] != p.cfg.Tenant {
		return nil, false
	}
	return sp, true
}

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
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/translate"
)

// Reasons of a host Service's vk8s.io/SitesReady condition.
const (
	ReasonEndpointsReady = "EndpointsReady"
	ReasonNoEndpoints    = "NoEndpoints"
	ReasonNoSelector     = "NoSelector"
)

// siteView is what one site shows of a Service.
type siteView struct {
	site string
	// ready counts the Ready endpoints on the site's nodes; -1 when the site cannot be read.
	ready   int
	ingress []corev1.LoadBalancerIngress
}

// runStatus writes the status of host Services from their sites until ctx ends.
func (m *Mirror) runStatus(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), m.cfg.HostPods.HasSynced) {
		return
	}
	for range m.cfg.Workers {
		go func() {
			for {
				key, shutdown := m.status.Get()
				if shutdown {
					return
				}
				if err := m.writeStatus(ctx, key); err != nil {
					m.log.Error(err, "Writing a Service's status from its sites failed; retrying", "service", key)
					m.status.AddRateLimited(key)
				} else {
					m.status.Forget(key)
				}
				m.status.Done(key)
			}
		}()
	}
}

// +kubebuilder:rbac:groups="",resources=services;services/status,verbs=patch

// writeStatus writes into host Service key (namespace/name) what its sites show: the Ready
// endpoints of each site (vk8s.io/site-endpoints), the load balancer of each site
// (status.loadBalancer.ingress, and vk8s.io/site-load-balancers naming each site's), and
// the condition vk8s.io/SitesReady. It writes only what changed.
func (m *Mirror) writeStatus(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	obj, exists, err := m.hostObject(translate.KindService, ns, name)
	if err != nil || !exists {
		return err
	}
	svc := obj.(*corev1.Service)
	if _, vk8s, err := m.cfg.VirtualKubernetesSites(ctx, ns); err != nil || !vk8s {
		return err
	}
	sites, err := m.sitesOf(ctx, ns)
	if err != nil {
		return err
	}
	views := make([]siteView, 0, len(sites))
	for _, s := range sites {
		if !m.cfg.Registry.Owns(s) {
			// Another replica reads that site (package shard) and writes its part; this one
			// keeps it.
			views = append(views, keptView(svc, s))
			continue
		}
		views = append(views, m.siteView(s, translate.SiteNamespace(m.cfg.Tenant, ns), name))
	}
	annotations, status := serviceStatus(svc, views)

	if !maps.Equal(pick(svc.Annotations, vk8sAnnotations), annotations) {
		patch := map[string]any{}
		for _, k := range vk8sAnnotations {
			if v, ok := annotations[k]; ok {
				patch[k] = v
			} else {
				patch[k] = nil
			}
		}
		raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": patch}})
		if _, err := m.cfg.Host.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, raw, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
			return client404(err, "annotate Service %s", key)
		}
	}
	if !equality.Semantic.DeepEqual(svc.Status, status) {
		// A strategic merge patch: the condition merges by type, the other writers'
		// conditions stay, and no resourceVersion races the annotations' patch.
		st := map[string]any{"conditions": []metav1.Condition{*meta.FindStatusCondition(status.Conditions, vk8sv1.ConditionSitesReady)}}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			st["loadBalancer"] = map[string]any{"ingress": status.LoadBalancer.Ingress}
		}
		raw, _ := json.Marshal(map[string]any{"status": st})
		if _, err := m.cfg.Host.CoreV1().Services(ns).Patch(ctx, name, types.StrategicMergePatchType, raw,
			metav1.PatchOptions{FieldManager: fieldManager}, "status"); err != nil {
			return client404(err, "write the status of Service %s", key)
		}
	}
	return nil
}

// keptView is what host Service svc says of site now, as the replica that reads the site
// (package shard) last wrote it: its count of Ready endpoints (-1 when none was written,
// or "unknown") and its load balancer ingress.
func keptView(svc *corev1.Service, site string) siteView {
	v := siteView{site: site, ready: -1}
	for entry := range strings.SplitSeq(svc.Annotations[vk8sv1.AnnotationSiteEndpoints], ",") {
		if k, n, ok := strings.Cut(entry, "="); ok && k == site {
			if c, err := strconv.Atoi(n); err == nil {
				v.ready = c
			}
		}
	}
	addresses := map[string]bool{}
	for entry := range strings.SplitSeq(svc.Annotations[vk8sv1.AnnotationSiteLoadBalancers], ",") {
		if k, a, ok := strings.Cut(entry, "="); ok && k == site {
			addresses[a] = true
		}
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if addresses[cmp.Or(in.IP, in.Hostname)] {
			v.ingress = append(v.ingress, in)
		}
	}
	return v
}

// fieldManager is vk8s' field manager on host Services.
const fieldManager = "vk8s-provider"

// vk8sAnnotations are the annotations vk8s writes on host Services.
var vk8sAnnotations = []string{vk8sv1.AnnotationSiteEndpoints, vk8sv1.AnnotationSiteLoadBalancers}

func pick(m map[string]string, keys []string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func client404(err error, format string, args ...any) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// siteView reads what a site shows of Service siteNamespace/name from the mirror's cache
// of its cluster.
func (m *Mirror) siteView(site, siteNamespace, name string) siteView {
	v := siteView{site: site, ready: -1}
	conn, err := m.cfg.Registry.Get(site)
	if err != nil {
		return v
	}
	m.mu.Lock()
	c := m.clusters[conn.Key]
	m.mu.Unlock()
	if c == nil || !c.synced() {
		return v
	}
	v.ready = readyEndpoints(c.endpointSlices(siteNamespace, name), conn.Nodes)
	if cp, ok := c.copy(translate.KindService, siteNamespace, name).(*corev1.Service); ok {
		v.ingress = cp.Status.LoadBalancer.Ingress
	}
	return v
}

// readyEndpoints counts the Ready endpoints of slices on the nodes nodes lists (a site's
// own, when one cluster holds several sites), or without a node.
func readyEndpoints(eps []*discoveryv1.EndpointSlice, nodes corelisters.NodeLister) int {
	n := 0
	for _, s := range eps {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if e.NodeName != nil {
				if _, err := nodes.Get(*e.NodeName); err != nil {
					continue
				}
			}
			n += len(e.Addresses)
		}
	}
	return n
}

// serviceStatus is what a host Service shows of its sites (pure): the annotations vk8s
// writes on it, and its status.
func serviceStatus(svc *corev1.Service, views []siteView) (map[string]string, corev1.ServiceStatus) {
	status := *svc.Status.DeepCopy()
	annotations := map[string]string{}
	var counts, lbs, none []string
	var ingress []corev1.LoadBalancerIngress
	for _, v := range views {
		if v.ready < 0 {
			counts = append(counts, v.site+"=unknown")
			none = append(none, v.site+" (not read: the site is not connected)")
		} else {
			counts = append(counts, v.site+"="+strconv.Itoa(v.ready))
			if v.ready == 0 {
				none = append(none, v.site)
			}
		}
		for _, in := range v.ingress {
			ingress = append(ingress, in)
			lbs = append(lbs, v.site+"="+cmp.Or(in.IP, in.Hostname))
		}
	}
	annotations[vk8sv1.AnnotationSiteEndpoints] = strings.Join(counts, ",")
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		annotations[vk8sv1.AnnotationSiteLoadBalancers] = strings.Join(lbs, ",")
		status.LoadBalancer.Ingress = ingress
	}
	cond := metav1.Condition{Type: vk8sv1.ConditionSitesReady, ObservedGeneration: svc.Generation}
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName || len(svc.Spec.Selector) == 0:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonNoSelector
		cond.Message = "the Service selects no pods (ExternalName, or endpoints written by hand): each site's copy has none of its own"
	case len(none) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNoEndpoints
		cond.Message = fmt.Sprintf("no Ready endpoint on %s: the selector %s selects no Ready pod of the namespace there; "+
			"check the selector against the pods' labels (kubectl get pods -l %s -L %s)",
			strings.Join(none, ", "), labels.Set(svc.Spec.Selector), labels.Set(svc.Spec.Selector), vk8sv1.LabelSite)
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonEndpointsReady
		cond.Message = fmt.Sprintf("every site has Ready endpoints of its own (%s)", strings.Join(counts, ", "))
	}
	if len(views) == 0 && cond.Reason == ReasonEndpointsReady {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonNoEndpoints, "the namespace runs on no site yet"
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	return annotations, status
}

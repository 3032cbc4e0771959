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

package fleet

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
)

// SiteRow is one line of `kubectl vk8s sites`: a Site, its virtual nodes and the pods on
// them.
type SiteRow struct {
	// Name of the Site.
	Name string `json:"name"`
	// Type and Mode are the Site's spec.type and spec.nodeMode, defaulted.
	Type vk8sv1.SiteType `json:"type"`
	Mode vk8sv1.NodeMode `json:"mode"`
	// Connected and Ready are the statuses of the Site's conditions (Unknown when absent).
	Connected metav1.ConditionStatus `json:"connected"`
	Ready     metav1.ConditionStatus `json:"ready"`
	// Reason and Message are those of the first of Connected and Ready that is not True.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Unschedulable is the Site's spec.unschedulable.
	Unschedulable bool `json:"unschedulable,omitempty"`
	// Nodes is the Site's status.nodeCount: the site's own nodes.
	Nodes int32 `json:"nodes"`
	// VirtualNodes are the host nodes labelled vk8s.io/site with the Site's name, sorted.
	VirtualNodes []string `json:"virtualNodes,omitempty"`
	// CPU and Memory are the allocatable of its virtual nodes, summed.
	CPU    resource.Quantity `json:"cpu"`
	Memory resource.Quantity `json:"memory"`
	// Pods counts the pods on its virtual nodes that have not ended (as kubectl describe
	// node counts them).
	Pods int `json:"pods"`
	// KubernetesVersion is the site's, as its API server reported it.
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// LastHeartbeatTime is when vk8s last reached the site.
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
}

// Sites returns a row per Site, sorted by name. nodes are the host's nodes (those without
// vk8s.io/site are ignored) and pods the host's pods, of every namespace.
func Sites(sites []vk8sv1.Site, nodes []corev1.Node, pods []corev1.Pod) []SiteRow {
	bySite := map[string][]*corev1.Node{}
	siteOfNode := map[string]string{}
	for i := range nodes {
		n := &nodes[i]
		if s := n.Labels[vk8sv1.LabelSite]; s != "" {
			bySite[s] = append(bySite[s], n)
			siteOfNode[n.Name] = s
		}
	}
	podsOf := map[string]int{}
	for i := range pods {
		p := &pods[i]
		if s, ok := siteOfNode[p.Spec.NodeName]; ok && !ended(p) {
			podsOf[s]++
		}
	}
	rows := make([]SiteRow, 0, len(sites))
	for i := range sites {
		s := &sites[i]
		r := SiteRow{
			Name:              s.Name,
			Type:              overrides.SiteType(s),
			Mode:              s.Spec.NodeMode,
			Connected:         conditionStatus(s.Status.Conditions, vk8sv1.ConditionConnected),
			Ready:             conditionStatus(s.Status.Conditions, vk8sv1.ConditionReady),
			Unschedulable:     s.Spec.Unschedulable,
			Nodes:             s.Status.NodeCount,
			Pods:              podsOf[s.Name],
			KubernetesVersion: s.Status.KubernetesVersion,
			LastHeartbeatTime: s.Status.LastHeartbeatTime,
			CPU:               *resource.NewQuantity(0, resource.DecimalSI),
			Memory:            *resource.NewQuantity(0, resource.BinarySI),
		}
		if r.Mode == "" {
			r.Mode = vk8sv1.NodeModePerNode
		}
		for _, typ := range []string{vk8sv1.ConditionConnected, vk8sv1.ConditionReady} {
			if c := meta.FindStatusCondition(s.Status.Conditions, typ); c != nil && c.Status != metav1.ConditionTrue {
				r.Reason, r.Message = c.Reason, c.Message
				break
			}
		}
		for _, n := range bySite[s.Name] {
			r.VirtualNodes = append(r.VirtualNodes, n.Name)
			if q, ok := n.Status.Allocatable[corev1.ResourceCPU]; ok {
				r.CPU.Add(q)
			}
			if q, ok := n.Status.Allocatable[corev1.ResourceMemory]; ok {
				r.Memory.Add(q)
			}
		}
		slices.Sort(r.VirtualNodes)
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b SiteRow) int { return strings.Compare(a.Name, b.Name) })
	return rows
}

// SitesTable returns rows as a table: NAME, TYPE, MODE, CONNECTED, READY, NODES (the
// site's), CPU, MEMORY (allocatable of its virtual nodes), PODS, HEARTBEAT (its age); with
// -o wide also VIRTUAL-NODES, VERSION and REASON.
func SitesTable(rows []SiteRow, now time.Time) *metav1.Table {
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name"},
		{Name: "Type", Type: "string"},
		{Name: "Mode", Type: "string"},
		{Name: "Connected", Type: "string"},
		{Name: "Ready", Type: "string"},
		{Name: "Nodes", Type: "integer"},
		{Name: "CPU", Type: "string"},
		{Name: "Memory", Type: "string"},
		{Name: "Pods", Type: "integer"},
		{Name: "Heartbeat", Type: "string"},
		{Name: "Virtual-Nodes", Type: "integer", Priority: 1},
		{Name: "Version", Type: "string", Priority: 1},
		{Name: "Reason", Type: "string", Priority: 1},
	}}
	for i := range rows {
		r := &rows[i]
		ready := string(r.Ready)
		if r.Unschedulable {
			ready += ",SchedulingDisabled"
		}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells: []any{r.Name, string(r.Type), string(r.Mode), string(r.Connected), ready, int64(r.Nodes),
				r.CPU.String(), r.Memory.String(), int64(r.Pods), Age(r.LastHeartbeatTime, now),
				int64(len(r.VirtualNodes)), orNone(r.KubernetesVersion), orNone(r.Reason)},
			Object: runtime.RawExtension{},
		})
	}
	return t
}

// ended says whether a pod has run to its end (Succeeded or Failed).
func ended(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// conditionStatus returns the status of condition typ, Unknown when it is absent.
func conditionStatus(conditions []metav1.Condition, typ string) metav1.ConditionStatus {
	if c := meta.FindStatusCondition(conditions, typ); c != nil {
		return c.Status
	}
	return metav1.ConditionUnknown
}

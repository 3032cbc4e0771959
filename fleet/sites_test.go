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
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestSites(t *testing.T) {
	hostNode := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "host-node1"}}
	aggregate := site("site2", vk8sv1.SiteTypeRegionalEdge, "Unreachable")
	aggregate.Spec.NodeMode = ""
	aggregate.Spec.Unschedulable = true
	untyped := site("site3", "", "")
	untyped.Status.Conditions = nil
	nodes := []corev1.Node{vnode("site1", 1), vnode("site1", 2), vnode("site2", 1), hostNode}
	pods := []corev1.Pod{
		pod("a", "site1"), pod("b", "site1", onNode("site1-node2")), pod("c", "site2", onNode("site2-node1")),
		pod("done", "site1", phase(corev1.PodSucceeded)), pod("failed", "site1", phase(corev1.PodFailed)),
		pod("host", "", onNode("host-node1")), pod("pending", "site1", onNode("")),
	}
	// Given out of order: rows are sorted by name.
	rows := Sites([]vk8sv1.Site{untyped, aggregate, site("site1", vk8sv1.SiteTypeCustomerEdge, "")}, nodes, pods)
	hb := ago(12 * time.Second)
	want := []SiteRow{
		{Name: "site1", Type: vk8sv1.SiteTypeCustomerEdge, Mode: vk8sv1.NodeModePerNode, Connected: metav1.ConditionTrue, Ready: metav1.ConditionTrue,
			Nodes: 3, VirtualNodes: []string{"site1-node1", "site1-node2"}, CPU: resource.MustParse("8"), Memory: resource.MustParse("16Gi"),
			Pods: 2, KubernetesVersion: "v1.35.4", LastHeartbeatTime: &hb},
		{Name: "site2", Type: vk8sv1.SiteTypeRegionalEdge, Mode: vk8sv1.NodeModePerNode, Connected: metav1.ConditionFalse, Ready: metav1.ConditionFalse,
			Reason: "Unreachable", Message: "cannot reach it", Unschedulable: true,
			Nodes: 3, VirtualNodes: []string{"site2-node1"}, CPU: resource.MustParse("4"), Memory: resource.MustParse("8Gi"),
			Pods: 1, KubernetesVersion: "v1.35.4", LastHeartbeatTime: &hb},
		{Name: "site3", Type: vk8sv1.SiteTypeCustomerEdge, Mode: vk8sv1.NodeModePerNode, Connected: metav1.ConditionUnknown, Ready: metav1.ConditionUnknown,
			Nodes: 3, CPU: resource.MustParse("0"), Memory: resource.MustParse("0"), KubernetesVersion: "v1.35.4", LastHeartbeatTime: &hb},
	}
	if diff := cmp.Diff(want, rows, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
		t.Errorf("Sites (-want +got):\n%s", diff)
	}

	table := SitesTable(rows, now)
	var names []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
	}
	if want := []string{"Name", "Type", "Mode", "Connected", "Ready", "Nodes", "CPU", "Memory", "Pods", "Heartbeat"}; !cmp.Equal(names, want) {
		t.Errorf("columns %v, want %v", names, want)
	}
	wantCells := [][]any{
		{"site1", "CustomerEdge", "PerNode", "True", "True", int64(3), "8", "16Gi", int64(2), "12s", int64(2), "v1.35.4", "<none>"},
		{"site2", "RegionalEdge", "PerNode", "False", "False,SchedulingDisabled", int64(3), "4", "8Gi", int64(1), "12s", int64(1), "v1.35.4", "Unreachable"},
		{"site3", "CustomerEdge", "PerNode", "Unknown", "Unknown", int64(3), "0", "0", int64(0), "12s", int64(0), "v1.35.4", "<none>"},
	}
	for i, r := range table.Rows {
		if diff := cmp.Diff(wantCells[i], r.Cells); diff != "" {
			t.Errorf("row %d (-want +got):\n%s", i, diff)
		}
	}
}

func TestAge(t *testing.T) {
	for _, tc := range []struct {
		t    *metav1.Time
		want string
	}{
		{nil, "<unknown>"},
		{&metav1.Time{}, "<unknown>"},
		{ptrTime(ago(5 * time.Second)), "5s"},
		{ptrTime(ago(3*time.Minute + 2*time.Second)), "3m2s"},
		{ptrTime(ago(49 * time.Hour)), "2d1h"},
	} {
		if got := Age(tc.t, now); got != tc.want {
			t.Errorf("Age(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

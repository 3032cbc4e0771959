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
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// labSites are three Sites: site1 and site3 CustomerEdge, site2 RegionalEdge.
func labSites() []vk8sv1.Site {
	return []vk8sv1.Site{site("site1", vk8sv1.SiteTypeCustomerEdge, ""), site("site2", vk8sv1.SiteTypeRegionalEdge, ""), site("site3", "", "")}
}

func labNodes() []corev1.Node {
	var out []corev1.Node
	for _, s := range []string{"site1", "site2", "site3"} {
		for i := 1; i <= 3; i++ {
			out = append(out, vnode(s, i))
		}
	}
	return out
}

func TestStatus(t *testing.T) {
	variantA, variantB := override("variant-a", "nginx:1.26", "site1"), override("variant-b", "nginx:1.27", "site3")
	ab := map[string]string{vk8sv1.AnnotationPlacement: "site1=2,site2=2,site3=2", vk8sv1.AnnotationOverrides: "variant-a, variant-b, gone"}
	seed := map[string]string{vk8sv1.AnnotationPlacement: "site1=3,site2=3,site3=3", vk8sv1.AnnotationReplicasPerSite: "3"}
	row := func(site string, typ vk8sv1.SiteType, desired, current, ready, upToDate int32, override string, images ...string) StatusRow {
		return StatusRow{Site: site, Type: typ, Desired: desired, Current: current, Ready: ready, UpToDate: upToDate, Override: override,
			Flavor: "ves-io-tiny", FlavorApplied: typ == vk8sv1.SiteTypeRegionalEdge, Images: images, Nodes: []string{site + "-node1"}}
	}
	ce, re := vk8sv1.SiteTypeCustomerEdge, vk8sv1.SiteTypeRegionalEdge
	tmpl := func(selector map[string]string, tolerations ...corev1.Toleration) *corev1.PodTemplateSpec {
		return &corev1.PodTemplateSpec{Spec: corev1.PodSpec{NodeSelector: selector, Tolerations: tolerations, Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: vk8sv1.LabelSite, Operator: corev1.NodeSelectorOpIn, Values: []string{"site1", "site3"}},
			}}}},
		}}}}
	}
	taint := corev1.Taint{Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}
	dsNodes := append(labNodes(), vnode("site3", 4, taint))

	for _, tc := range []struct {
		name      string
		in        StatusInput
		want      []StatusRow
		wantError error
	}{{
		name: "seed: 3 per site, all Ready and up to date; the flavor applies on the RegionalEdge site",
		in: StatusInput{Workload: Workload{Kind: KindDeployment, Annotations: seed, Pods: []corev1.Pod{
			pod("a1", "site1"), pod("a2", "site1"), pod("a3", "site1"),
			pod("b1", "site2"), pod("b2", "site2"), pod("b3", "site2"),
			pod("c1", "site3"), pod("c2", "site3"), pod("c3", "site3"),
		}}, Sites: labSites(), Nodes: labNodes()},
		want: []StatusRow{
			row("site1", ce, 3, 3, 3, 3, "", "nginx:1.27"), row("site2", re, 3, 3, 3, 3, "", "nginx:1.27"), row("site3", ce, 3, 3, 3, 3, "", "nginx:1.27"),
		},
	}, {
		name: "A/B: each site's Override (a missing one is skipped), a stale pod is not up to date, a pod not Ready is not ready",
		in: StatusInput{Workload: Workload{Kind: KindDeployment, Annotations: ab, Pods: []corev1.Pod{
			pod("a1", "site1", withOverride(&variantA), image("nginx:1.26")), pod("a2", "site1", image("nginx:1.25")),
			pod("b1", "site2", image("nginx:1.25")), pod("b2", "site2", image("nginx:1.25"), notReady),
			pod("c1", "site3", withOverride(&variantB)), pod("c2", "site3", withOverride(&variantB)),
		}}, Sites: labSites(), Nodes: labNodes(), Overrides: []vk8sv1.Override{variantA, variantB}},
		want: []StatusRow{
			row("site1", ce, 2, 2, 2, 1, "variant-a", "nginx:1.25", "nginx:1.26"),
			row("site2", re, 2, 2, 1, 2, "", "nginx:1.25"),
			row("site3", ce, 2, 2, 2, 2, "variant-b", "nginx:1.27"),
		},
	}, {
		name: "pods of an older ReplicaSet are not up to date; terminating and ended pods are not current",
		in: StatusInput{Workload: Workload{Kind: KindDeployment, Annotations: map[string]string{vk8sv1.AnnotationPlacement: "site1=2"},
			Revision: map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: "new"}, Pods: []corev1.Pod{
				pod("new", "site1", label(appsv1.DefaultDeploymentUniqueLabelKey, "new")), pod("old", "site1", label(appsv1.DefaultDeploymentUniqueLabelKey, "old")),
				pod("going", "site1", terminating, label(appsv1.DefaultDeploymentUniqueLabelKey, "old")), pod("failed", "site1", phase(corev1.PodFailed)),
			}}, Sites: labSites(), Nodes: labNodes()},
		want: []StatusRow{{Site: "site1", Type: ce, Desired: 2, Current: 2, Terminating: 1, Ready: 2, UpToDate: 1, Flavor: "ves-io-tiny",
			Images: []string{"nginx:1.27"}, Nodes: []string{"site1-node1"}}},
	}, {
		name: "a site that left the plan and still has pods comes last, wanting none; a pod without the label is on its node's site",
		in: StatusInput{Workload: Workload{Kind: KindStatefulSet, Annotations: map[string]string{vk8sv1.AnnotationPlacement: "site3=1,site1=1", vk8sv1.AnnotationWorkloadFlavor: "ves-io-large"},
			Pods: []corev1.Pod{pod("web-0", "site3"), pod("web-1", "site1"), pod("web-2", "", onNode("site2-node1"))}},
			Sites: labSites(), Nodes: labNodes()},
		want: []StatusRow{
			{Site: "site3", Type: ce, Desired: 1, Current: 1, Ready: 1, UpToDate: 1, Flavor: "ves-io-large", Images: []string{"nginx:1.27"}, Nodes: []string{"site3-node1"}},
			{Site: "site1", Type: ce, Desired: 1, Current: 1, Ready: 1, UpToDate: 1, Flavor: "ves-io-large", Images: []string{"nginx:1.27"}, Nodes: []string{"site1-node1"}},
			{Site: "site2", Type: re, Desired: 0, Current: 1, Ready: 1, UpToDate: 1, Flavor: "ves-io-large", FlavorApplied: true, Images: []string{"nginx:1.27"}, Nodes: []string{"site2-node1"}},
		},
	}, {
		name: "DaemonSet: the nodes of its sites that it selects and whose taints it tolerates",
		in: StatusInput{Workload: Workload{Kind: KindDaemonSet, Annotations: map[string]string{vk8sv1.AnnotationPlacement: "site1,site3"},
			Template: tmpl(map[string]string{"disk": "ssd"})}, Sites: labSites(), Nodes: dsNodes},
		// site1-node1 and -node3 are ssd; site3-node4 is hdd... and tainted.
		want: []StatusRow{
			{Site: "site1", Type: ce, Desired: 2, Flavor: "ves-io-tiny"},
			{Site: "site3", Type: ce, Desired: 2, Flavor: "ves-io-tiny"},
		},
	}, {
		name: "DaemonSet tolerating the taint, without a node selector",
		in: StatusInput{Workload: Workload{Kind: KindDaemonSet, Annotations: map[string]string{vk8sv1.AnnotationPlacement: "site1,site3"},
			Template: tmpl(nil, corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists})}, Sites: labSites(), Nodes: dsNodes},
		want: []StatusRow{
			{Site: "site1", Type: ce, Desired: 3, Flavor: "ves-io-tiny"},
			{Site: "site3", Type: ce, Desired: 4, Flavor: "ves-io-tiny"},
		},
	}, {
		name: "Job: completions per site, succeeded from vk8s.io/site-succeeded",
		in: StatusInput{Workload: Workload{Kind: KindJob, Annotations: map[string]string{vk8sv1.AnnotationPlacement: "site1=2,site2=2",
			vk8sv1.AnnotationSiteSucceeded: "site1=2/2,site2=1/2"},
			Pods: []corev1.Pod{pod("j1", "site1", phase(corev1.PodSucceeded)), pod("j2", "site2", phase(corev1.PodSucceeded)), pod("j3", "site2")}},
			Sites: labSites(), Nodes: labNodes()},
		want: []StatusRow{
			{Site: "site1", Type: ce, Desired: 2, Succeeded: 2, Flavor: "ves-io-tiny"},
			{Site: "site2", Type: re, Desired: 2, Current: 1, Ready: 1, UpToDate: 1, Succeeded: 1, Flavor: "ves-io-tiny", FlavorApplied: true,
				Images: []string{"nginx:1.27"}, Nodes: []string{"site2-node1"}},
		},
	}, {
		name:      "no plan: not federated",
		in:        StatusInput{Workload: Workload{Kind: KindDeployment, Namespace: "plain", Name: "web"}},
		wantError: ErrNotFederated,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := Status(tc.in)
			if !errors.Is(err, tc.wantError) {
				t.Fatalf("Status: error %v, want %v", err, tc.wantError)
			}
			if diff := cmp.Diff(tc.want, rows); diff != "" {
				t.Errorf("Status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusLastEvent(t *testing.T) {
	const deployUID = types.UID("deploy")
	in := StatusInput{
		Workload: Workload{Kind: KindDeployment, Annotations: map[string]string{vk8sv1.AnnotationPlacement: "site1=1,site2=1,site3=1"},
			Owners: []types.UID{deployUID, "rs"},
			Pods:   []corev1.Pod{pod("a", "site1"), pod("b", "site2"), pod("c", "site3")}},
		Sites: labSites(), Nodes: labNodes(),
		Events: []corev1.Event{
			event("Pod", "a", "uid-a", "Scheduled", "Successfully assigned demo/a to site1-node1", time.Minute),
			event("Pod", "a", "uid-a", "Pulled", "newer", 30*time.Second),
			event("Pod", "b", "uid-b", "Scheduled", "Successfully assigned demo/b to site2-node1", 20*time.Second),
			// The workload's events count for the sites they name as a word.
			event("Deployment", "web", deployUID, "SiteRolloutStarted", "site site2: restarting 1 of 1 pods to run Override canary", 10*time.Second),
			event("Deployment", "web", deployUID, "ScalingReplicaSet", "Scaled up replica set web-1 to 3 (site3-node1 is no site)", 5*time.Second),
			// Another object's.
			event("Pod", "x", "uid-x", "Killing", "site3", time.Second),
		},
	}
	rows, err := Status(in)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows {
		if r.LastEvent != nil {
			got[r.Site] = r.LastEvent.Object + " " + r.LastEvent.Reason + " " + r.LastEvent.Message
		}
	}
	want := map[string]string{
		"site1": "pod/a Pulled newer",
		"site2": "deployment/web SiteRolloutStarted site site2: restarting 1 of 1 pods to run Override canary",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("last events (-want +got):\n%s", diff)
	}

	table := StatusTable(KindDeployment, rows, now)
	if got, want := table.Rows[1].Cells[8], "SiteRolloutStarted 10s ago"; got != want {
		t.Errorf("LAST-EVENT cell %q, want %q", got, want)
	}
	if got, want := table.Rows[2].Cells[8], "<none>"; got != want {
		t.Errorf("LAST-EVENT cell without events %q, want %q", got, want)
	}
}

// Events of the same second make the same LAST-EVENT whatever order the caches list them
// in (status -w printed a row again each time the order changed).
func TestStatusLastEventOfTheSameSecond(t *testing.T) {
	events := []corev1.Event{
		event("Pod", "a", "uid-a", "ProviderCreateSuccess", "Create pod in provider successfully", 16*time.Second),
		event("Pod", "a", "uid-a", "SitePodCreated", "created on site site1 as pod vk8s-demo/a", 16*time.Second),
		event("Pod", "a", "uid-a", "Scheduled", "Successfully assigned demo/a to site1-node1", 17*time.Second),
	}
	var seen []string
	for _, order := range [][]int{{0, 1, 2}, {1, 0, 2}, {2, 1, 0}, {2, 0, 1}} {
		in := StatusInput{
			Workload: Workload{Kind: KindDeployment, Annotations: map[string]string{vk8sv1.AnnotationPlacement: "site1=1"},
				Pods: []corev1.Pod{pod("a", "site1")}},
			Sites: labSites(), Nodes: labNodes(),
		}
		for _, i := range order {
			in.Events = append(in.Events, events[i])
		}
		rows, err := Status(in)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, rows[0].LastEvent.Reason)
	}
	if want := []string{"SitePodCreated", "SitePodCreated", "SitePodCreated", "SitePodCreated"}; !slices.Equal(seen, want) {
		t.Errorf("LAST-EVENT by the events' order: %v, want %v", seen, want)
	}
}

func TestStatusTable(t *testing.T) {
	rows := []StatusRow{
		{Site: "site1", Type: vk8sv1.SiteTypeCustomerEdge, Desired: 2, Current: 2, Ready: 1, UpToDate: 2, Succeeded: 7, Override: "variant-a", Flavor: "ves-io-tiny",
			Images: []string{"nginx:1.25", "nginx:1.26"}, Nodes: []string{"site1-node1", "site1-node2"}},
		{Site: "site2", Type: vk8sv1.SiteTypeRegionalEdge, Desired: 2, Flavor: "ves-io-tiny", FlavorApplied: true,
			LastEvent: &Event{Reason: "Scheduled", Object: "pod/b", Message: "assigned", Time: ago(time.Minute)}},
	}
	for _, tc := range []struct {
		kind     string
		progress string
		cells    [][]any
	}{
		{KindDeployment, "Up-to-date", [][]any{
			{"site1", int64(2), int64(2), int64(1), int64(2), "variant-a", "<manifest>", "nginx:1.25,nginx:1.26", "<none>", "CustomerEdge", "site1-node1,site1-node2", "<none>"},
			{"site2", int64(2), int64(0), int64(0), int64(0), "<none>", "ves-io-tiny", "<none>", "Scheduled 60s ago", "RegionalEdge", "<none>", "pod/b: assigned"},
		}},
		{KindCronJob, "Succeeded", [][]any{
			{"site1", int64(2), int64(2), int64(1), int64(7), "variant-a", "<manifest>", "nginx:1.25,nginx:1.26", "<none>", "CustomerEdge", "site1-node1,site1-node2", "<none>"},
			{"site2", int64(2), int64(0), int64(0), int64(0), "<none>", "ves-io-tiny", "<none>", "Scheduled 60s ago", "RegionalEdge", "<none>", "pod/b: assigned"},
		}},
	} {
		table := StatusTable(tc.kind, rows, now)
		if got := table.ColumnDefinitions[4].Name; got != tc.progress {
			t.Errorf("%s: column 5 %q, want %q", tc.kind, got, tc.progress)
		}
		for i, r := range table.Rows {
			if diff := cmp.Diff(tc.cells[i], r.Cells); diff != "" {
				t.Errorf("%s row %d (-want +got):\n%s", tc.kind, i, diff)
			}
		}
	}
}

func TestNamesSite(t *testing.T) {
	for _, tc := range []struct {
		message string
		want    bool
	}{
		{"site site2: restarting 3 of 3 pods", true},
		{"placement site1=2,site2=2 is now site1=2", true},
		{"evicted 1 pod off site2.", true},
		{"node site2-node1 is full", false},
		{"site22 is another", false},
		{"", false},
	} {
		if got := namesSite(tc.message, "site2"); got != tc.want {
			t.Errorf("namesSite(%q) = %v, want %v", tc.message, got, tc.want)
		}
	}
}

func TestEventTime(t *testing.T) {
	series := corev1.Event{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: ago(time.Hour)}, EventTime: metav1.NewMicroTime(now.Add(-time.Minute)),
		Series: &corev1.EventSeries{LastObservedTime: metav1.NewMicroTime(now.Add(-time.Second))}}
	if got := eventTime(&series); !got.Equal(ptrTime(ago(time.Second))) {
		t.Errorf("an events.k8s.io series' time %v, want its last observation", got)
	}
	core := corev1.Event{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: ago(time.Hour)}, FirstTimestamp: ago(time.Hour), LastTimestamp: ago(time.Minute)}
	if got := eventTime(&core); !got.Equal(ptrTime(ago(time.Minute))) {
		t.Errorf("a core/v1 event's time %v, want its lastTimestamp", got)
	}
}

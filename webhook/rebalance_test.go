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

package webhook

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

// rebalanceEnv stores the admitted Deployment web (R=3 on site1..site3), its ReplicaSet
// and one Ready pod per entry of sites; the Deployment is settled at the number of pods.
func rebalanceEnv(t *testing.T, sites ...string) (*env, *federation.Rebalancer, *appsv1.Deployment) {
	t.Helper()
	e := newEnv(t)
	rs, next := fleetWorkload(e, deployment("web", 3, nil))
	ctx := t.Context()
	slots := map[string]int{}
	for i, site := range sites {
		// As admission leaves them: on their site, numbered per site.
		p := next()
		slots[site]++
		p.Name = p.GenerateName + strconv.Itoa(i)
		p.Labels[vk8sv1.LabelSite] = site
		p.Annotations[vk8sv1.AnnotationSlot] = strconv.Itoa(slots[site])
		p.Annotations[corev1.PodDeletionCost] = strconv.Itoa(-slots[site])
		if err := e.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if err := e.c.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	d := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, d); err != nil {
		t.Fatal(err)
	}
	n := int32(len(sites))
	d.Spec.Replicas = &n
	if err := e.c.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n}
	if err := e.c.Status().Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	rs.Spec.Replicas = &n
	if err := e.c.Update(ctx, rs); err != nil {
		t.Fatal(err)
	}
	return e, federation.NewRebalancer(e.state, logr.Discard()), d
}

func perSite(t *testing.T, e *env) map[string][]string {
	t.Helper()
	var list corev1.PodList
	if err := e.c.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range list.Items {
		s := p.Labels[vk8sv1.LabelSite]
		out[s] = append(out[s], p.Annotations[vk8sv1.AnnotationSlot]+"/"+p.Annotations[corev1.PodDeletionCost])
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// event returns the first recorded Event with reason (draining the recorder), or "".
func (e *env) event(reason string) string {
	if evs := e.drainEvents(reason); len(evs) > 0 {
		return evs[0]
	}
	return ""
}

func TestRebalancerMovesSurplusToReachableSites(t *testing.T) {
	// An admission race put 4 pods on site1 and 2 on site2.
	e, r, d := rebalanceEnv(t, "site1", "site1", "site1", "site1", "site2", "site2", "site3", "site3", "site3")
	d.Spec.Replicas = ptr.To[int32](9)
	if err := r.Rebalance(t.Context(), &appsv1.Deployment{}, client.ObjectKeyFromObject(d)); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"site1": {"1/-1", "2/-2", "3/-3"}, "site2": {"1/-1", "2/-2"}, "site3": {"1/-1", "2/-2", "3/-3"}}
	if diff := cmp.Diff(want, perSite(t, e)); diff != "" {
		t.Errorf("pods per site after the move (-want +got):\n%s", diff)
	}
	if ev := e.event("Rebalanced"); !strings.Contains(ev, "moving 1 pods off sites with too many (site1 -1)") {
		t.Errorf("event %q", ev)
	}
}

func TestRebalancerWaitsForUnreachableSites(t *testing.T) {
	e, r, d := rebalanceEnv(t, "site1", "site1", "site1", "site1", "site2", "site2", "site3", "site3", "site3")
	site2 := &vk8sv1.Site{}
	if err := e.c.Get(t.Context(), client.ObjectKey{Name: "site2"}, site2); err != nil {
		t.Fatal(err)
	}
	meta.SetStatusCondition(&site2.Status.Conditions, metav1.Condition{Type: vk8sv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: "Unreachable"})
	if err := e.c.Update(t.Context(), site2); err != nil {
		t.Fatal(err)
	}
	if err := r.Rebalance(t.Context(), &appsv1.Deployment{}, client.ObjectKeyFromObject(d)); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"site1": {"1/-1", "2/-2", "3/-3", "4/-1000004"}, "site2": {"1/-1", "2/-2"}, "site3": {"1/-1", "2/-2", "3/-3"}}
	if diff := cmp.Diff(want, perSite(t, e)); diff != "" {
		t.Errorf("pods per site: none may move towards an unreachable site, the surplus is marked (-want +got):\n%s", diff)
	}
}

func TestRebalancerReplansWhenSitesChange(t *testing.T) {
	e, r, d := rebalanceEnv(t, "site1", "site1", "site1", "site2", "site2", "site2", "site3", "site3", "site3")
	ctx := t.Context()
	// site3 leaves shared/all-sites.
	site3 := &vk8sv1.Site{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: "site3"}, site3); err != nil {
		t.Fatal(err)
	}
	delete(site3.Labels, "fleet")
	if err := e.c.Update(ctx, site3); err != nil {
		t.Fatal(err)
	}
	if err := r.Rebalance(ctx, &appsv1.Deployment{}, client.ObjectKeyFromObject(d)); err != nil {
		t.Fatal(err)
	}
	got := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(d), got); err != nil {
		t.Fatal(err)
	}
	if p := got.Annotations[vk8sv1.AnnotationPlacement]; p != "site1=3,site2=3" {
		t.Errorf("placement %q, want site1=3,site2=3", p)
	}
	// The scale-down that admission's new spec.replicas starts takes site3's pods.
	want := map[string][]string{"site1": {"1/-1", "2/-2", "3/-3"}, "site2": {"1/-1", "2/-2", "3/-3"}, "site3": {"1/-1000001", "2/-1000002", "3/-1000003"}}
	if diff := cmp.Diff(want, perSite(t, e)); diff != "" {
		t.Errorf("pods per site (-want +got):\n%s", diff)
	}
	if ev := e.event("SitesChanged"); !strings.Contains(ev, "placement site1=3,site2=3,site3=3 is now site1=3,site2=3") {
		t.Errorf("event %q", ev)
	}
	// Once re-planned, nothing more happens until the ReplicaSet scaled down.
	if err := r.Rebalance(ctx, &appsv1.Deployment{}, client.ObjectKeyFromObject(d)); err != nil {
		t.Fatal(err)
	}
	if ev := e.event("SitesChanged"); ev != "" {
		t.Errorf("re-planned twice: %q", ev)
	}
}

func TestRebalancerLeavesRollingDeploymentsAlone(t *testing.T) {
	e, r, d := rebalanceEnv(t, "site1", "site1", "site1", "site1", "site2", "site2", "site3", "site3", "site3")
	d.Status.UpdatedReplicas = 4 // a rollout in progress
	if err := e.c.Status().Update(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := r.Rebalance(t.Context(), &appsv1.Deployment{}, client.ObjectKeyFromObject(d)); err != nil {
		t.Fatal(err)
	}
	if n := len(perSite(t, e)["site1"]); n != 4 {
		t.Errorf("site1 has %d pods, want its 4 while the Deployment rolls out", n)
	}
}

func TestRebalancerMapsPodsToWorkloads(t *testing.T) {
	e, r, _ := rebalanceEnv(t, "site1")
	var list corev1.PodList
	if err := e.c.List(t.Context(), &list, client.InNamespace(ns)); err != nil || len(list.Items) != 1 {
		t.Fatalf("pods %v, %v", list.Items, err)
	}
	p := &list.Items[0]
	want := []types.NamespacedName{{Namespace: ns, Name: "web"}}
	var got []types.NamespacedName
	for _, req := range r.PodWorkload(t.Context(), p, &appsv1.Deployment{}) {
		got = append(got, req.NamespacedName)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pod -> Deployment (-want +got):\n%s", diff)
	}
	if reqs := r.PodWorkload(t.Context(), p, &appsv1.ReplicaSet{}); len(reqs) != 0 {
		t.Errorf("a Deployment's pod maps to its bare ReplicaSet controller: %v", reqs)
	}
	if reqs := r.Federated(t.Context(), &appsv1.DeploymentList{}, ""); len(reqs) != 1 || reqs[0].Name != "web" {
		t.Errorf("federated Deployments %v", reqs)
	}
	if reqs := r.Federated(t.Context(), &appsv1.ReplicaSetList{}, ""); len(reqs) != 0 {
		t.Errorf("a Deployment's ReplicaSet listed as federated: %v", reqs)
	}
}

func TestRebalancerMovesStatefulSetOrdinals(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sts := created(e, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Template: podTemplate("db")}})
	sts.UID = "uid-db"
	if err := e.c.Create(ctx, sts); err != nil {
		t.Fatal(err)
	}
	if p := sts.Annotations[vk8sv1.AnnotationPlacement]; p != "site1=3,site2=3,site3=3" {
		t.Fatalf("placement %q", p)
	}
	for i := range 9 {
		p := podFrom(sts.Spec.Template, metav1.ObjectMeta{Namespace: ns, Name: "db-" + strconv.Itoa(i),
			Labels:          map[string]string{vk8sv1.LabelSite: []string{"site1", "site2", "site3"}[i/3], "apps.kubernetes.io/pod-index": strconv.Itoa(i)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: sts.UID, Controller: ptr.To(true)}}})
		if err := e.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	r := federation.NewRebalancer(e.state, logr.Discard())
	// site2 leaves: site3's block now starts at ordinal 3.
	site2 := &vk8sv1.Site{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: "site2"}, site2); err != nil {
		t.Fatal(err)
	}
	delete(site2.Labels, "fleet")
	if err := e.c.Update(ctx, site2); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(sts)
	if err := r.Rebalance(ctx, &appsv1.StatefulSet{}, key); err != nil {
		t.Fatal(err)
	}
	got := &appsv1.StatefulSet{}
	if err := e.c.Get(ctx, key, got); err != nil || got.Annotations[vk8sv1.AnnotationPlacement] != "site1=3,site3=3" {
		t.Fatalf("placement %q (%v), want site1=3,site3=3", got.Annotations[vk8sv1.AnnotationPlacement], err)
	}
	// As workload admission does on that write.
	got.Spec.Replicas = ptr.To[int32](6)
	if err := e.c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := r.Rebalance(ctx, &appsv1.StatefulSet{}, key); err != nil {
		t.Fatal(err)
	}
	var list corev1.PodList
	if err := e.c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, p := range list.Items {
		left = append(left, p.Name)
	}
	slices.Sort(left)
	// db-3 (site2, now site3's block) moves first, alone; db-6..8 are beyond the new total:
	// the StatefulSet controller removes them.
	if want := []string{"db-0", "db-1", "db-2", "db-4", "db-5", "db-6", "db-7", "db-8"}; !slices.Equal(left, want) {
		t.Errorf("pods left %v, want %v", left, want)
	}
}

func TestRebalancerWaitsForAScaleToReachThePlan(t *testing.T) {
	e, r, d := rebalanceEnv(t, "site1", "site1", "site1", "site1", "site2", "site2", "site3", "site3", "site3")
	// kubectl scale wrote the total; the webhook's refresher has not rewritten R yet.
	d.Spec.Replicas = ptr.To[int32](15)
	if err := e.c.Update(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := r.Rebalance(t.Context(), &appsv1.Deployment{}, client.ObjectKeyFromObject(d)); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"site1": {"1/-1", "2/-2", "3/-3", "4/-4"}, "site2": {"1/-1", "2/-2"}, "site3": {"1/-1", "2/-2", "3/-3"}}
	if diff := cmp.Diff(want, perSite(t, e)); diff != "" {
		t.Errorf("pods per site: nothing may change mid-scale (-want +got):\n%s", diff)
	}
}

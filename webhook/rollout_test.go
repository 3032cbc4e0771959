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
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

// rolloutFixture is Deployment web (3 per site on site1..site3) whose pods were admitted
// and run Ready in the fake client, a stand-in for its ReplicaSet controller, and the
// rollout controller over the same client.
type rolloutFixture struct {
	e    *env
	r    *federation.Rollout
	rs   *appsv1.ReplicaSet
	next func() *corev1.Pod
	n    int
	// deleted counts the pods the rollout deleted, by site; rounds the reconciles.
	deleted map[string]int
	// maxRound is the most pods of a site deleted in one reconcile; order the sites in
	// the order their first pod was deleted.
	maxRound map[string]int
	order    []string
	// seq is the site of every deletion, in order.
	seq []string
}

func newRolloutFixture(t *testing.T, d *appsv1.Deployment, before ...client.Object) *rolloutFixture {
	t.Helper()
	e := newEnv(t, before...)
	rs, next := fleetWorkload(e, d)
	f := &rolloutFixture{e: e, r: federation.NewRollout(e.state, e.c, e.c), rs: rs, next: next, deleted: map[string]int{}, maxRound: map[string]int{}}
	// The Deployment controller observed the Deployment.
	dep := &appsv1.Deployment{}
	f.get(client.ObjectKey{Namespace: ns, Name: d.Name}, dep)
	dep.Status.ObservedGeneration = dep.Generation
	if err := e.c.Status().Update(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	f.replace()
	f.readyAll()
	return f
}

func (f *rolloutFixture) get(key client.ObjectKey, obj client.Object) {
	f.e.t.Helper()
	if err := f.e.c.Get(f.e.t.Context(), key, obj); err != nil {
		f.e.t.Fatal(err)
	}
}

func (f *rolloutFixture) pods() []corev1.Pod {
	f.e.t.Helper()
	var list corev1.PodList
	if err := f.e.c.List(f.e.t.Context(), &list, client.InNamespace(ns)); err != nil {
		f.e.t.Fatal(err)
	}
	return list.Items
}

// replace creates pods, as the ReplicaSet controller does, until the ReplicaSet has its
// replicas; admission places and stamps them. They start not Ready.
func (f *rolloutFixture) replace() {
	f.e.t.Helper()
	for len(f.pods()) < int(*f.rs.Spec.Replicas) {
		p := admitPod(f.e, f.next())
		f.n++
		p.Name = fmt.Sprintf("%s-%d", f.rs.Name, f.n)
		p.UID = types.UID(p.Name)
		p.Status.Phase = corev1.PodPending
		if err := f.e.c.Create(f.e.t.Context(), p); err != nil {
			f.e.t.Fatal(err)
		}
	}
}

func (f *rolloutFixture) readyAll() {
	f.e.t.Helper()
	for _, p := range f.pods() {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if err := f.e.c.Status().Update(f.e.t.Context(), &p); err != nil {
			f.e.t.Fatal(err)
		}
	}
}

// reconcile runs the controller once and records what it deleted.
func (f *rolloutFixture) reconcile() int {
	f.e.t.Helper()
	before := map[string]string{}
	for _, p := range f.pods() {
		before[p.Name] = p.Labels[vk8sv1.LabelSite]
	}
	if _, err := f.r.Reconcile(f.e.t.Context(), federation.RolloutKey{Kind: "Deployment", Namespace: ns, Name: "web"}); err != nil {
		f.e.t.Fatal(err)
	}
	for _, p := range f.pods() {
		delete(before, p.Name)
	}
	round := map[string]int{}
	for _, site := range before {
		round[site]++
		f.deleted[site]++
		f.seq = append(f.seq, site)
		if !slices.Contains(f.order, site) {
			f.order = append(f.order, site)
		}
	}
	for site, n := range round {
		f.maxRound[site] = max(f.maxRound[site], n)
	}
	return len(before)
}

// converge replaces deleted pods and makes them Ready, reconciles, replaces the deleted
// pods and reconciles again with the replacements not Ready (nothing more may go), until
// a round deletes nothing.
func (f *rolloutFixture) converge() {
	f.e.t.Helper()
	for range 30 {
		f.replace()
		f.readyAll()
		n := f.reconcile()
		f.replace()
		if f.reconcile() != 0 {
			f.e.t.Fatalf("pods deleted while their site's replacements were not Ready")
		}
		f.readyAll()
		if n == 0 {
			return
		}
	}
	f.e.t.Fatal("the rollout did not converge in 30 rounds")
}

// images returns the images the pods of each site run.
func (f *rolloutFixture) images() map[string]string {
	out := map[string]string{}
	for _, p := range f.pods() {
		site := p.Labels[vk8sv1.LabelSite]
		img := p.Spec.Containers[0].Image
		if cur, ok := out[site]; ok && cur != img {
			img = cur + "+" + img
		}
		out[site] = img
	}
	return out
}

func (f *rolloutFixture) update(obj client.Object, change func()) {
	f.e.t.Helper()
	f.get(client.ObjectKeyFromObject(obj), obj)
	change()
	if err := f.e.c.Update(f.e.t.Context(), obj); err != nil {
		f.e.t.Fatal(err)
	}
}

func (f *rolloutFixture) events() []string { return f.e.drainEvents(" SiteRollout") }

func named(o *vk8sv1.Override, name string) *vk8sv1.Override {
	o.Name = name
	return o
}

func withStrategy(o *vk8sv1.Override, maxUnavailable intstr.IntOrString) *vk8sv1.Override {
	o.Spec.DeploymentSpec.Strategy = &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable}}
	return o
}

func TestRollout(t *testing.T) {
	const v1, v2 = "nginx:1.25", "nginx:2"
	annotated := func(names string) *appsv1.Deployment {
		return deployment("web", 3, map[string]string{vk8sv1.AnnotationOverrides: names})
	}
	for _, tc := range []struct {
		name string
		// d is the workload; before the objects that exist when its pods are admitted.
		d      *appsv1.Deployment
		before []client.Object
		// change happens once the pods run.
		change       func(f *rolloutFixture)
		wantDeleted  map[string]int
		wantMaxRound map[string]int
		wantOrder    []string
		wantImages   map[string]string
		wantEvents   []string
	}{{
		name: "an Override created after placement restarts only its site, one pod at a time (25% of 3, at least 1)",
		d:    deployment("web", 3, nil),
		change: func(f *rolloutFixture) {
			mustCreateObj(f, canary([]string{"site2"}, nil, v2))
			d := &appsv1.Deployment{}
			f.get(client.ObjectKey{Namespace: ns, Name: "web"}, d)
			f.update(d, func() { d.Annotations[vk8sv1.AnnotationOverrides] = "canary" })
		},
		wantDeleted:  map[string]int{"site2": 3},
		wantMaxRound: map[string]int{"site2": 1},
		wantImages:   map[string]string{"site1": v1, "site2": v2, "site3": v1},
		wantEvents: []string{
			"Normal SiteRolloutStarted site site2: restarting 3 of 3 pods to run Override canary",
			"Normal SiteRolloutCompleted site site2: its 3 pods run Override canary",
		},
	}, {
		name:   "a change of the Override's template restarts its site at the Override's maxUnavailable",
		d:      annotated("canary"),
		before: []client.Object{withStrategy(canary([]string{"site2"}, nil, v2), intstr.FromInt32(2))},
		change: func(f *rolloutFixture) {
			o := &vk8sv1.Override{}
			f.get(client.ObjectKey{Namespace: ns, Name: "canary"}, o)
			f.update(o, func() { o.Spec.DeploymentSpec.Template.Spec.Containers[0].Image = "nginx:3" })
		},
		wantDeleted:  map[string]int{"site2": 3},
		wantMaxRound: map[string]int{"site2": 2},
		wantImages:   map[string]string{"site1": v1, "site2": "nginx:3", "site3": v1},
	}, {
		name: "the workload's maxUnavailable paces the site when the Override sets none",
		d: func() *appsv1.Deployment {
			d := annotated("canary")
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromString("100%"))}}
			return d
		}(),
		before: []client.Object{canary([]string{"site2"}, nil, v2)},
		change: func(f *rolloutFixture) {
			o := &vk8sv1.Override{}
			f.get(client.ObjectKey{Namespace: ns, Name: "canary"}, o)
			f.update(o, func() { o.Spec.DeploymentSpec.Template.Spec.Containers[0].Image = "nginx:3" })
		},
		wantDeleted:  map[string]int{"site2": 3},
		wantMaxRound: map[string]int{"site2": 3},
		wantImages:   map[string]string{"site1": v1, "site2": "nginx:3", "site3": v1},
	}, {
		name:   "removing the Override restarts its sites back to the workload's template",
		d:      annotated("canary"),
		before: []client.Object{canary([]string{"site2"}, nil, v2)},
		change: func(f *rolloutFixture) {
			if err := f.e.c.Delete(f.e.t.Context(), &vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "canary"}}); err != nil {
				f.e.t.Fatal(err)
			}
		},
		wantDeleted:  map[string]int{"site2": 3},
		wantMaxRound: map[string]int{"site2": 1},
		wantImages:   map[string]string{"site1": v1, "site2": v1, "site3": v1},
		wantEvents: []string{
			"Normal SiteRolloutStarted site site2: restarting 3 of 3 pods to run the workload's own template (no Override)",
			"Normal SiteRolloutCompleted site site2: its 3 pods run the workload's own template (no Override)",
		},
	}, {
		name:   "an Override on two sites rolls them one after the other",
		d:      annotated("canary"),
		before: []client.Object{canary([]string{"site9"}, nil, v2)},
		change: func(f *rolloutFixture) {
			o := &vk8sv1.Override{}
			f.get(client.ObjectKey{Namespace: ns, Name: "canary"}, o)
			f.update(o, func() { o.Spec.SiteList = []string{"site3", "site1"} })
		},
		wantDeleted:  map[string]int{"site1": 3, "site3": 3},
		wantMaxRound: map[string]int{"site1": 1, "site3": 1},
		wantOrder:    []string{"site1", "site3"},
		wantImages:   map[string]string{"site1": v2, "site2": v1, "site3": v2},
	}, {
		name:   "changing only the Override's replicas or strategy restarts nothing",
		d:      annotated("canary"),
		before: []client.Object{canary([]string{"site2"}, nil, v2)},
		change: func(f *rolloutFixture) {
			o := &vk8sv1.Override{}
			f.get(client.ObjectKey{Namespace: ns, Name: "canary"}, o)
			f.update(o, func() {
				o.Spec.DeploymentSpec.Replicas = ptr.To[int32](3)
				withStrategy(o, intstr.FromString("50%"))
			})
		},
		wantDeleted: map[string]int{},
		wantImages:  map[string]string{"site1": v1, "site2": v2, "site3": v1},
	}, {
		name: "two Overrides of one site, created a then b: the annotation's order decides",
		d:    annotated("b, a"),
		before: []client.Object{
			named(canary([]string{"site9"}, nil, "nginx:a"), "a"), named(canary([]string{"site9"}, nil, "nginx:b"), "b"),
		},
		change:      moveToSite2("a", "b"),
		wantDeleted: map[string]int{"site2": 3},
		wantImages:  map[string]string{"site1": v1, "site2": "nginx:b", "site3": v1},
	}, {
		name: "two Overrides of one site, created b then a: the same result",
		d:    annotated("b, a"),
		before: []client.Object{
			named(canary([]string{"site9"}, nil, "nginx:a"), "a"), named(canary([]string{"site9"}, nil, "nginx:b"), "b"),
		},
		change:      moveToSite2("b", "a"),
		wantDeleted: map[string]int{"site2": 3},
		wantImages:  map[string]string{"site1": v1, "site2": "nginx:b", "site3": v1},
	}, {
		name:   "pods admitted before stamps existed are not restarted when their label names the site's Override",
		d:      annotated("canary"),
		before: []client.Object{canary([]string{"site2"}, nil, v2)},
		change: func(f *rolloutFixture) {
			for _, p := range f.pods() {
				f.update(&p, func() { delete(p.Annotations, vk8sv1.AnnotationOverrideHash) })
			}
		},
		wantDeleted: map[string]int{},
		wantImages:  map[string]string{"site1": v1, "site2": v2, "site3": v1},
	}, {
		name:   "pods admitted before stamps existed whose label names another Override are restarted",
		d:      annotated("canary"),
		before: []client.Object{canary([]string{"site2"}, nil, v2)},
		change: func(f *rolloutFixture) {
			for _, p := range f.pods() {
				f.update(&p, func() { delete(p.Annotations, vk8sv1.AnnotationOverrideHash) })
			}
			if err := f.e.c.Delete(f.e.t.Context(), &vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "canary"}}); err != nil {
				f.e.t.Fatal(err)
			}
		},
		wantDeleted:  map[string]int{"site2": 3},
		wantMaxRound: map[string]int{"site2": 1},
		wantImages:   map[string]string{"site1": v1, "site2": v1, "site3": v1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRolloutFixture(t, tc.d, tc.before...)
			if n := f.reconcile(); n != 0 {
				t.Fatalf("%d pods deleted before any change", n)
			}
			f.events()
			tc.change(f)
			f.converge()
			if !maps.Equal(f.deleted, tc.wantDeleted) {
				t.Errorf("deleted by site %v, want %v", f.deleted, tc.wantDeleted)
			}
			if tc.wantMaxRound != nil && !maps.Equal(f.maxRound, tc.wantMaxRound) {
				t.Errorf("most deleted in one round by site %v, want %v", f.maxRound, tc.wantMaxRound)
			}
			if tc.wantOrder != nil && !slices.Equal(f.order, tc.wantOrder) {
				t.Errorf("sites rolled in order %v, want %v", f.order, tc.wantOrder)
			}
			// One site at a time: the deletions of a site never interleave with another's.
			if got := slices.Compact(slices.Clone(f.seq)); !slices.Equal(got, f.order) {
				t.Errorf("deletions by site %v: sites interleave", f.seq)
			}
			if got := f.images(); !maps.Equal(got, tc.wantImages) {
				t.Errorf("images by site %v, want %v", got, tc.wantImages)
			}
			if len(f.pods()) != 9 {
				t.Errorf("%d pods, want 9", len(f.pods()))
			}
			if tc.wantEvents != nil {
				if got := f.events(); !slices.Equal(got, tc.wantEvents) {
					t.Errorf("events\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.wantEvents, "\n  "))
				}
			}
			if got := f.e.counter("vk8s_federation_rollout_restarts_total", "site", "site2"); got != float64(tc.wantDeleted["site2"]) {
				t.Errorf("vk8s_federation_rollout_restarts_total{site=site2} %v, want %d", got, tc.wantDeleted["site2"])
			}
		})
	}
}

func mustCreateObj(f *rolloutFixture, obj client.Object) {
	f.e.t.Helper()
	if err := f.e.c.Create(f.e.t.Context(), obj); err != nil {
		f.e.t.Fatal(err)
	}
}

func TestRolloutLeavesAlone(t *testing.T) {
	t.Run("a Deployment in its own rollout (pods of two ReplicaSets)", func(t *testing.T) {
		f := newRolloutFixture(t, deployment("web", 3, map[string]string{vk8sv1.AnnotationOverrides: "canary"}), canary([]string{"site9"}, nil, "nginx:2"))
		old := f.pods()[0]
		old.Name, old.UID, old.ResourceVersion = "web-old-1", "web-old-1", ""
		old.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-old", UID: "uid-web-old", Controller: ptr.To(true)}}
		mustCreateObj(f, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-old", UID: "uid-web-old",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "uid-web", Controller: ptr.To(true)}}},
			Spec: f.rs.Spec})
		mustCreateObj(f, &old)
		o := &vk8sv1.Override{}
		f.get(client.ObjectKey{Namespace: ns, Name: "canary"}, o)
		f.update(o, func() { o.Spec.SiteList = []string{"site2"} })
		if n := f.reconcile(); n != 0 {
			t.Errorf("%d pods deleted during the Deployment's own rollout", n)
		}
	})
	t.Run("a disconnected site waits, the next site goes first", func(t *testing.T) {
		f := newRolloutFixture(t, deployment("web", 3, map[string]string{vk8sv1.AnnotationOverrides: "canary"}), canary([]string{"site9"}, nil, "nginx:2"))
		s := &vk8sv1.Site{}
		f.get(client.ObjectKey{Name: "site1"}, s)
		s.Status.Conditions = []metav1.Condition{{Type: vk8sv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: "Unreachable", LastTransitionTime: metav1.Now()}}
		if err := f.e.c.Update(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		o := &vk8sv1.Override{}
		f.get(client.ObjectKey{Namespace: ns, Name: "canary"}, o)
		f.update(o, func() { o.Spec.SiteList = []string{"site1", "site2"} })
		f.converge()
		if !maps.Equal(f.deleted, map[string]int{"site2": 3}) {
			t.Errorf("deleted by site %v, want site2's 3 only", f.deleted)
		}
	})
}

func TestRolloutMapping(t *testing.T) {
	f := newRolloutFixture(t, deployment("web", 1, map[string]string{vk8sv1.AnnotationOverrides: "other, canary"}), canary([]string{"site2"}, nil, "nginx:2"),
		named(canary([]string{"site1"}, nil, "nginx:2"), "other"))
	ctx := t.Context()
	web := federation.RolloutKey{Kind: "Deployment", Namespace: ns, Name: "web"}
	o := &vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "canary"}}
	if got := f.r.OverrideKeys(ctx, o); !slices.Equal(got, []federation.RolloutKey{web}) {
		t.Errorf("Override canary maps to %v, want %v", got, web)
	}
	if got := f.r.OverrideKeys(ctx, named(o.DeepCopy(), "unused")); len(got) != 0 {
		t.Errorf("an Override no workload names maps to %v", got)
	}
	pod := f.pods()[0]
	if got := f.r.PodKeys(ctx, &pod); !slices.Equal(got, []federation.RolloutKey{web}) {
		t.Errorf("a pod of web's ReplicaSet maps to %v, want %v", got, web)
	}
	if got := f.r.WorkloadKeys(ctx, f.rs); !slices.Equal(got, []federation.RolloutKey{web}) {
		t.Errorf("web's ReplicaSet maps to %v, want %v", got, web)
	}
	sts := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-0",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", Controller: ptr.To(true)}}}}
	if got := f.r.PodKeys(ctx, sts); !slices.Equal(got, []federation.RolloutKey{{Kind: "StatefulSet", Namespace: ns, Name: "db"}}) {
		t.Errorf("a StatefulSet pod maps to %v", got)
	}
}

func TestPlacementSkipsPodsTheRolloutDeleted(t *testing.T) {
	f := newRolloutFixture(t, deployment("web", 3, nil))
	// The rollout deleted a pod of site2; the cache does not show it terminating yet.
	for _, p := range f.pods() {
		if p.Labels[vk8sv1.LabelSite] == "site2" {
			f.e.state.Deleted.Add(p.UID)
			break
		}
	}
	if site := pinnedSite(t, admitPod(f.e, f.next())); site != "site2" {
		t.Errorf("the replacement went to %s, want site2, whose pod the rollout deleted", site)
	}
}

func TestPlacementAfterTheRolloutDeletesTheLastAdmittedPod(t *testing.T) {
	f := newRolloutFixture(t, deployment("web", 3, nil))
	// The last pod admitted still has its reservation: no admission saw it in the cache.
	last := &corev1.Pod{}
	f.get(client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("%s-%d", f.rs.Name, f.n)}, last)
	site := last.Labels[vk8sv1.LabelSite]
	if err := f.r.Restart(t.Context(), nil, site, nil, []*corev1.Pod{last}); err != nil {
		t.Fatal(err)
	}
	if got := pinnedSite(t, admitPod(f.e, f.next())); got != site {
		t.Errorf("the replacement of a pod of %s went to %s", site, got)
	}
}

func TestRolloutStatefulSet(t *testing.T) {
	e := newEnv(t, canary([]string{"site9"}, nil, "nginx:2"))
	sts := created(e, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db", Annotations: map[string]string{vk8sv1.AnnotationOverrides: "canary"}},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Template: podTemplate("db")}})
	sts.UID = "uid-db"
	if err := e.c.Create(t.Context(), sts); err != nil {
		t.Fatal(err)
	}
	r := federation.NewRollout(e.state, e.c, e.c)
	// create stands in for the StatefulSet controller: it creates the missing ordinals.
	create := func() {
		for i := range 6 {
			name := fmt.Sprintf("db-%d", i)
			if err := e.c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &corev1.Pod{}); err == nil {
				continue
			}
			p := admitPod(e, podFrom(sts.Spec.Template, metav1.ObjectMeta{Namespace: ns, Name: name,
				Labels:          map[string]string{appsv1.PodIndexLabel: strconv.Itoa(i)},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: sts.UID, Controller: ptr.To(true)}}}))
			p.UID = types.UID(fmt.Sprintf("%s-%d", name, e.clock.now().UnixNano()))
			e.clock.add(time.Second)
			if err := e.c.Create(t.Context(), p); err != nil {
				t.Fatal(err)
			}
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			if err := e.c.Status().Update(t.Context(), p); err != nil {
				t.Fatal(err)
			}
		}
	}
	create()
	o := &vk8sv1.Override{}
	if err := e.c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "canary"}, o); err != nil {
		t.Fatal(err)
	}
	o.Spec.SiteList = []string{"site2"}
	if err := e.c.Update(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for range 10 {
		var before corev1.PodList
		if err := e.c.List(t.Context(), &before, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Reconcile(t.Context(), federation.RolloutKey{Kind: "StatefulSet", Namespace: ns, Name: "db"}); err != nil {
			t.Fatal(err)
		}
		var after corev1.PodList
		if err := e.c.List(t.Context(), &after, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if n := len(before.Items) - len(after.Items); n > 1 {
			t.Fatalf("%d pods deleted at once; a StatefulSet without maxUnavailable goes one at a time", n)
		}
		for _, p := range before.Items {
			if !slices.ContainsFunc(after.Items, func(q corev1.Pod) bool { return q.Name == p.Name }) {
				deleted = append(deleted, p.Name+"@"+p.Labels[vk8sv1.LabelSite])
			}
		}
		create()
	}
	slices.Sort(deleted)
	if want := []string{"db-2@site2", "db-3@site2"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want %v", deleted, want)
	}
	var pods corev1.PodList
	if err := e.c.List(t.Context(), &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		want := "nginx:1.25"
		if p.Labels[vk8sv1.LabelSite] == "site2" {
			want = "nginx:2"
		}
		if p.Spec.Containers[0].Image != want {
			t.Errorf("pod %s on %s runs %s, want %s", p.Name, p.Labels[vk8sv1.LabelSite], p.Spec.Containers[0].Image, want)
		}
	}
}

// moveToSite2 is a change that points the Overrides names at site2, in that order,
// reconciling after each.
func moveToSite2(names ...string) func(*rolloutFixture) {
	return func(f *rolloutFixture) {
		for _, name := range names {
			o := &vk8sv1.Override{}
			f.get(client.ObjectKey{Namespace: ns, Name: name}, o)
			f.update(o, func() { o.Spec.SiteList = []string{"site2"} })
			f.reconcile()
		}
	}
}

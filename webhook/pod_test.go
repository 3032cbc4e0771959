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
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

// fleetWorkload stores an admitted Deployment and its ReplicaSet, and returns a function
// that makes the ReplicaSet's next pod, as the ReplicaSet controller and the API server's
// own admission would (token volume, default tolerations, priority).
func fleetWorkload(e *env, d *appsv1.Deployment) (*appsv1.ReplicaSet, func() *corev1.Pod) {
	e.t.Helper()
	d = created(e, d)
	d.UID = types.UID("uid-" + d.Name)
	if err := e.c.Create(e.t.Context(), d); err != nil {
		e.t.Fatal(err)
	}
	tmpl := d.Spec.Template.DeepCopy()
	tmpl.Labels["pod-template-hash"] = "abc"
	sel := d.Spec.Selector.DeepCopy()
	sel.MatchLabels["pod-template-hash"] = "abc"
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: d.Name + "-abc", UID: types.UID("uid-" + d.Name + "-abc"), Annotations: d.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: sel, Template: *tmpl},
	}
	if err := e.c.Create(e.t.Context(), rs); err != nil {
		e.t.Fatal(err)
	}
	return rs, func() *corev1.Pod {
		return podFrom(rs.Spec.Template, metav1.ObjectMeta{GenerateName: rs.Name + "-", Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}})
	}
}

// podFrom makes a pod from a template with what the API server's admission adds.
func podFrom(t corev1.PodTemplateSpec, meta metav1.ObjectMeta) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: meta, Spec: *t.Spec.DeepCopy()}
	p.Labels = maps.Clone(t.Labels)
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	maps.Copy(p.Labels, meta.Labels)
	p.Annotations = maps.Clone(t.Annotations)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	maps.Copy(p.Annotations, meta.Annotations)
	p.Spec.ServiceAccountName = "default"
	p.Spec.Priority = ptr.To[int32](0)
	p.Spec.SchedulerName = corev1.DefaultSchedulerName
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "kube-api-access-x1", VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}})
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].VolumeMounts = append(p.Spec.Containers[i].VolumeMounts,
			corev1.VolumeMount{Name: "kube-api-access-x1", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true})
	}
	p.Spec.Tolerations = append(p.Spec.Tolerations,
		corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)})
	return p
}

// admitPod admits pod and returns the pod to create.
func admitPod(e *env, pod *corev1.Pod) *corev1.Pod {
	e.t.Helper()
	req := e.request(admissionv1.Create, pod, nil)
	resp := e.a.admitPod(e.t.Context(), req)
	out := &corev1.Pod{}
	patched(e.t, req, resp, out)
	if !sameIdentity(&pod.ObjectMeta, &out.ObjectMeta) {
		e.t.Fatalf("identity changed: %+v -> %+v", pod.ObjectMeta, out.ObjectMeta)
	}
	return out
}

// pinnedSite returns the single site a pod's required node affinity allows.
func pinnedSite(t testing.TB, p *corev1.Pod) string {
	t.Helper()
	s := siteRestriction(&p.Spec)
	if len(s) != 1 || p.Labels[vk8sv1.LabelSite] != s[0] {
		t.Fatalf("pod pinned to %v, labelled %q", s, p.Labels[vk8sv1.LabelSite])
	}
	return s[0]
}

func TestPlacementByDeficit(t *testing.T) {
	e := newEnv(t)
	_, next := fleetWorkload(e, deployment("web", 3, nil))
	counts := map[string]int{}
	slots := map[string][]string{}
	for range 9 {
		p := admitPod(e, next())
		site := pinnedSite(t, p)
		counts[site]++
		slots[site] = append(slots[site], p.Annotations[vk8sv1.AnnotationSlot]+"/"+p.Annotations[corev1.PodDeletionCost])
		if !slices.Contains(p.Spec.Tolerations, virtualNodeToleration) {
			t.Errorf("no virtual node toleration: %v", p.Spec.Tolerations)
		}
	}
	want := map[string]int{"site1": 3, "site2": 3, "site3": 3}
	if !maps.Equal(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	for site, s := range slots {
		if !slices.Equal(s, []string{"1/-1", "2/-2", "3/-3"}) {
			t.Errorf("%s: slots/deletion costs %v, want 1..3", site, s)
		}
	}
	// A tenth pod (the ReplicaSet replaces one) goes where the deficit is largest: all
	// sites are full, so to the one with the fewest pods, the first.
	if got := pinnedSite(t, admitPod(e, next())); got != "site1" {
		t.Errorf("surplus pod on %s, want site1", got)
	}
}

func TestPlacementReservationsExpire(t *testing.T) {
	e := newEnv(t)
	_, next := fleetWorkload(e, deployment("web", 3, nil))
	for _, want := range []string{"site1", "site2", "site3"} {
		if got := pinnedSite(t, admitPod(e, next())); got != want {
			t.Fatalf("placed on %s, want %s", got, want)
		}
	}
	// These pods never showed up (a later admission step refused them): once their
	// reservations expire, the sites count as empty again.
	e.clock.add(federation.DefaultReservationTTL + time.Second)
	p := admitPod(e, next())
	if got := pinnedSite(t, p); got != "site1" || p.Annotations[vk8sv1.AnnotationSlot] != "1" {
		t.Errorf("after expiry: %s slot %s, want site1 slot 1", got, p.Annotations[vk8sv1.AnnotationSlot])
	}
}

func TestPlacementSeesTheCache(t *testing.T) {
	e := newEnv(t, canary([]string{"site2"}, ptr.To[int32](1), ""))
	_, next := fleetWorkload(e, deployment("web", 3, map[string]string{vk8sv1.AnnotationOverrides: "canary"}))
	// Pods already running (visible in the cache) count; their reservations are matched,
	// not counted twice.
	for i := range 4 {
		p := admitPod(e, next())
		p.Name = fmt.Sprintf("web-abc-%d", i)
		if err := e.c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	counts := map[string]int{}
	var list corev1.PodList
	_ = e.c.List(t.Context(), &list)
	for _, p := range list.Items {
		counts[p.Labels[vk8sv1.LabelSite]]++
	}
	// Plan site1=3, site2=1, site3=3: the first four went to site1, site3, site1, site3
	// (largest deficit, then fewest pods, then the first). Counted once each, the
	// deficits are now 1, 1, 1; counted twice (cache and reservation), site2 would get
	// the rest.
	for range 3 {
		p := admitPod(e, next())
		counts[pinnedSite(t, p)]++
	}
	if want := map[string]int{"site1": 3, "site2": 1, "site3": 3}; !maps.Equal(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
}

func TestPlacementConcurrent(t *testing.T) {
	e := newEnv(t)
	_, next := fleetWorkload(e, deployment("web", 67, nil))
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 201 {
		p := next()
		wg.Go(func() {
			req := e.request(admissionv1.Create, p, nil)
			resp := e.a.admitPod(t.Context(), req)
			out := &corev1.Pod{}
			patched(t, req, resp, out)
			mu.Lock()
			counts[out.Labels[vk8sv1.LabelSite]]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if want := map[string]int{"site1": 67, "site2": 67, "site3": 67}; !maps.Equal(counts, want) {
		t.Errorf("201 concurrent admissions: %v, want %v", counts, want)
	}
}

func TestPlacementStatefulSetBlocks(t *testing.T) {
	e := newEnv(t)
	sts := created(e, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Template: podTemplate("db")}})
	sts.UID = "uid-db"
	sts.Annotations[vk8sv1.AnnotationPlacement] = "site2=2,site1=2,site3=2" // an order recorded earlier
	if err := e.c.Create(t.Context(), sts); err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 0; i < 7; i++ {
		p := podFrom(sts.Spec.Template, metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("db-%d", i),
			Labels:          map[string]string{appsv1.PodIndexLabel: strconv.Itoa(i)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: sts.UID, Controller: ptr.To(true)}}})
		got = append(got, pinnedSite(t, admitPod(e, p)))
	}
	// Ordinal 6 is beyond the plan (a scale-up racing the annotation): placed by deficit.
	want := []string{"site2", "site2", "site1", "site1", "site3", "site3", "site1"}
	if !slices.Equal(got, want) {
		t.Errorf("ordinals 0..6 on %v, want %v", got, want)
	}
}

func TestPlacementIndexedJob(t *testing.T) {
	e := newEnv(t)
	job := created(e, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idx"},
		Spec: batchv1.JobSpec{CompletionMode: ptr.To(batchv1.IndexedCompletion), Completions: ptr.To[int32](2), Parallelism: ptr.To[int32](2),
			Template: podTemplate("idx")}})
	job.UID = "uid-idx"
	if err := e.c.Create(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range 6 {
		p := podFrom(job.Spec.Template, metav1.ObjectMeta{Namespace: ns, GenerateName: fmt.Sprintf("idx-%d-", i),
			Annotations:     map[string]string{batchv1.JobCompletionIndexAnnotation: strconv.Itoa(i)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "idx", UID: job.UID, Controller: ptr.To(true)}}})
		got = append(got, pinnedSite(t, admitPod(e, p)))
	}
	if want := []string{"site1", "site1", "site2", "site2", "site3", "site3"}; !slices.Equal(got, want) {
		t.Errorf("indexes 0..5 on %v, want %v", got, want)
	}
}

// TestPlacementJobCompletionsPerSite: a non-indexed Job of 2 completions per site on 3
// sites, 1 at a time per site. site1's pods finish first; the host's job controller keeps 3
// pods running, and site1 gets none once it has its 2 pods, so every site completes exactly
// 2, even though the cache learns of each success late.
func TestPlacementJobCompletionsPerSite(t *testing.T) {
	e := newEnv(t)
	job := created(e, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "batch"},
		Spec: batchv1.JobSpec{Completions: ptr.To[int32](2), Parallelism: ptr.To[int32](1), Template: podTemplate("batch")}})
	if *job.Spec.Completions != 6 || *job.Spec.Parallelism != 3 {
		t.Fatalf("completions %d, parallelism %d; want 6 and 3", *job.Spec.Completions, *job.Spec.Parallelism)
	}
	job.UID = "uid-batch"
	if err := e.c.Create(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	n := 0
	create := func() *corev1.Pod {
		t.Helper()
		n++
		p := admitPod(e, podFrom(job.Spec.Template, metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("batch-%d", n),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "batch", UID: job.UID, Controller: ptr.To(true)}}}))
		p.UID = types.UID(p.Name)
		p.Labels[vk8sv1.LabelSite] = pinnedSite(t, p)
		if err := e.c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	succeed := func(p *corev1.Pod) {
		t.Helper()
		p.Status.Phase = corev1.PodSucceeded
		if err := e.c.Status().Update(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	running := map[string]*corev1.Pod{}
	for range 3 {
		p := create()
		running[p.Labels[vk8sv1.LabelSite]] = p
	}
	if len(running) != 3 {
		t.Fatalf("first 3 pods on %v, want one per site", slices.Sorted(maps.Keys(running)))
	}
	done := map[string]int{}
	// site1 is fast: it completes twice while site2 and site3 run their first pods. The
	// job controller creates each replacement before the webhook's cache shows the
	// success that made it.
	for range 2 {
		finished := running["site1"]
		done["site1"]++
		p := create()
		succeed(finished)
		running[p.Labels[vk8sv1.LabelSite]] = p
		if done["site1"] == 1 && p.Labels[vk8sv1.LabelSite] != "site1" {
			t.Errorf("after site1's first completion the replacement went to %s, want site1", p.Labels[vk8sv1.LabelSite])
		}
		if done["site1"] == 2 && p.Labels[vk8sv1.LabelSite] == "site1" {
			t.Error("site1 got a third pod after its 2 completions")
		}
	}
	// Everything else completes; the controller creates pods while completions are owed.
	for total := 2; total < 6; {
		for _, site := range []string{"site2", "site3"} {
			var mine []corev1.Pod
			var list corev1.PodList
			if err := e.c.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			for _, p := range list.Items {
				if p.Labels[vk8sv1.LabelSite] == site && p.Status.Phase != corev1.PodSucceeded {
					mine = append(mine, p)
				}
			}
			for i := range mine {
				succeed(&mine[i])
				done[site]++
				total++
			}
		}
		if total < 6 {
			create()
		}
	}
	if want := map[string]int{"site1": 2, "site2": 2, "site3": 2}; !maps.Equal(done, want) {
		t.Errorf("completions per site %v, want %v", done, want)
	}
}

// TestPlacementJobRetryOnItsSite: the 3 pods of a Job of 1 completion per site are
// admitted before the cache shows any; site2's fails and the others succeed before the
// next admission. The replacement goes to site2, the only site without its completion:
// the failed pod ends site2's reservation though no admission saw it running.
func TestPlacementJobRetryOnItsSite(t *testing.T) {
	e := newEnv(t)
	job := created(e, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "retry"},
		Spec: batchv1.JobSpec{Completions: ptr.To[int32](1), Template: podTemplate("retry")}})
	job.UID = "uid-retry"
	if err := e.c.Create(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	admit := func(n int) *corev1.Pod {
		t.Helper()
		p := admitPod(e, podFrom(job.Spec.Template, metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("retry-%d", n),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "retry", UID: job.UID, Controller: ptr.To(true)}}}))
		p.UID = types.UID(p.Name)
		p.Labels[vk8sv1.LabelSite] = pinnedSite(t, p)
		return p
	}
	first := []*corev1.Pod{admit(1), admit(2), admit(3)}
	for _, p := range first {
		p.Status.Phase = corev1.PodSucceeded
		if p.Labels[vk8sv1.LabelSite] == "site2" {
			p.Status.Phase = corev1.PodFailed
		}
		status := p.Status
		if err := e.c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		p.Status = status
		if err := e.c.Status().Update(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	if got := admit(4); got.Labels[vk8sv1.LabelSite] != "site2" || got.Annotations[vk8sv1.AnnotationSlot] != "2" {
		t.Errorf("the retry went to %s slot %s, want site2 slot 2 (slot 1 is its failed pod's)", got.Labels[vk8sv1.LabelSite], got.Annotations[vk8sv1.AnnotationSlot])
	}
}

func TestPlacementDaemonSetAndBoundPods(t *testing.T) {
	e := newEnv(t, canary([]string{"site2"}, nil, "agent:v2"))
	ds := created(e, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent", Annotations: map[string]string{vk8sv1.AnnotationOverrides: "canary"}},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: podTemplate("agent")}})
	ds.UID = "uid-agent"
	if err := e.c.Create(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	// The DaemonSet controller replaces the required node affinity with the node's name.
	tmpl := ds.Spec.Template.DeepCopy()
	tmpl.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchFields: []corev1.NodeSelectorRequirement{{Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{"site2-node3"}}}}}}
	tmpl.Labels = map[string]string{"app": "web"} // the Override's template says app=web; the selector's app=agent wins
	p := admitPod(e, podFrom(*tmpl, metav1.ObjectMeta{Namespace: ns, GenerateName: "agent-",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: ds.UID, Controller: ptr.To(true)}}}))
	if p.Labels[vk8sv1.LabelSite] != "site2" || p.Labels[vk8sv1.LabelOverride] != "canary" || p.Spec.Containers[0].Image != "agent:v2" {
		t.Errorf("DaemonSet pod on site2-node3: labels %v, image %s", p.Labels, p.Spec.Containers[0].Image)
	}
	if daemonPodNode(p) != "site2-node3" {
		t.Errorf("the DaemonSet's node pin was lost: %+v", p.Spec.Affinity)
	}

	bound := podFrom(podTemplate("solo"), metav1.ObjectMeta{Namespace: ns, Name: "solo"})
	bound.Spec.NodeName = "site3-node1"
	p = admitPod(e, bound)
	if p.Labels[vk8sv1.LabelSite] != "site3" || p.Spec.Affinity != nil || p.Spec.NodeName != "site3-node1" {
		t.Errorf("bound pod: labels %v, affinity %+v", p.Labels, p.Spec.Affinity)
	}
}

func TestPlacementBarePods(t *testing.T) {
	var existing []client.Object
	for i, site := range []string{"site1", "site1", "site3"} {
		existing = append(existing, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("old-%d", i),
			Labels: map[string]string{vk8sv1.LabelSite: site}}})
	}
	e := newEnv(t, existing...)
	var got []string
	for i := range 3 {
		got = append(got, pinnedSite(t, admitPod(e, podFrom(podTemplate("solo"), metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("solo-%d", i)}))))
	}
	// site1 has 2, site3 1, site2 none: site2, then site2 or site3 (1 each: the first), ...
	if want := []string{"site2", "site2", "site3"}; !slices.Equal(got, want) {
		t.Errorf("bare pods on %v, want %v", got, want)
	}
}

// TestDryRunPodsReserveNothing: a dry-run pod create (kubectl --dry-run=server, a bench's
// admission run) is placed as a real one would be and leaves no reservation, so the next
// real pods are placed as if it had never been.
func TestDryRunPodsReserveNothing(t *testing.T) {
	e := newEnv(t)
	_, next := fleetWorkload(e, deployment("web", 3, nil))
	var dry []string
	for range 3 {
		req := e.request(admissionv1.Create, next(), nil)
		req.DryRun = ptr.To(true)
		out := &corev1.Pod{}
		patched(t, req, e.a.admitPod(t.Context(), req), out)
		dry = append(dry, pinnedSite(t, out))
	}
	if n := e.state.Reservations.Count(); n != 0 {
		t.Errorf("%d reservations after 3 dry-run pods, want none", n)
	}
	// Each dry run is placed as the first real pod: the same site every time.
	first := pinnedSite(t, admitPod(e, next()))
	for i, site := range dry {
		if site != first {
			t.Errorf("dry-run pod %d on %s, the first real pod on %s: want the same", i, site, first)
		}
	}
	if n := e.state.Reservations.Count(); n != 1 {
		t.Errorf("%d reservations after one real pod, want 1", n)
	}
}

func TestOverrideAndFlavorAtPodAdmission(t *testing.T) {
	e := newEnv(t, canary([]string{"site2", "site4"}, nil, "nginx:2.0"),
		&vk8sv1.WorkloadFlavor{ObjectMeta: metav1.ObjectMeta{Name: "ves-io-medium"},
			Spec: vk8sv1.WorkloadFlavorSpec{CPU: resource.MustParse("250m"), Memory: resource.MustParse("512Mi")}})
	d := deployment("web", 1, map[string]string{
		vk8sv1.AnnotationOverrides: "canary", vk8sv1.AnnotationVirtualSites: "shared/all-sites, shared/regional", vk8sv1.AnnotationWorkloadFlavor: "ves-io-medium"})
	d.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
	_, next := fleetWorkload(e, d)
	bySite := map[string]*corev1.Pod{}
	for range 4 {
		p := admitPod(e, next())
		bySite[pinnedSite(t, p)] = p
	}
	for site, p := range bySite {
		c := p.Spec.Containers[0]
		wantImage, wantOverride := "nginx:1.25", ""
		if site == "site2" || site == "site4" {
			wantImage, wantOverride = "nginx:2.0", "canary"
		}
		if c.Image != wantImage || p.Labels[vk8sv1.LabelOverride] != wantOverride {
			t.Errorf("%s: image %s, override label %q; want %s, %q", site, c.Image, p.Labels[vk8sv1.LabelOverride], wantImage, wantOverride)
		}
		// What the API server's admission added survives the Override's template.
		if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].Name != "kube-api-access-x1" || len(c.VolumeMounts) != 1 ||
			p.Spec.ServiceAccountName != "default" || p.Spec.Priority == nil || p.Spec.SchedulerName != corev1.DefaultSchedulerName {
			t.Errorf("%s: admission's additions lost: volumes %v, mounts %v, sa %q, priority %v", site, p.Spec.Volumes, c.VolumeMounts, p.Spec.ServiceAccountName, p.Spec.Priority)
		}
		if n := len(p.Spec.Tolerations); n != 3 {
			t.Errorf("%s: tolerations %v, want not-ready, unreachable and the virtual node's", site, p.Spec.Tolerations)
		}
		if p.Labels["pod-template-hash"] != "abc" || p.Labels["app"] != "web" {
			t.Errorf("%s: the ReplicaSet's labels were lost: %v", site, p.Labels)
		}
		// ves-io-medium on the RegionalEdge site; the manifest elsewhere.
		wantRes := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
		if site == "site4" {
			wantRes = corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("62m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			}
		}
		if site == "site2" {
			wantRes = corev1.ResourceRequirements{} // the Override's template sets none
		}
		if !resourcesEqual(c.Resources, wantRes) {
			t.Errorf("%s: resources %+v, want %+v", site, c.Resources, wantRes)
		}
	}
	if len(bySite) != 4 {
		t.Errorf("pods on %v, want one on each of 4 sites", slices.Sorted(maps.Keys(bySite)))
	}
}

func resourcesEqual(a, b corev1.ResourceRequirements) bool {
	eq := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || v.Cmp(w) != 0 {
				return false
			}
		}
		return true
	}
	return eq(a.Limits, b.Limits) && eq(a.Requests, b.Requests)
}

func TestPodRejections(t *testing.T) {
	e := newEnv(t)
	orphan := podFrom(podTemplate("web"), metav1.ObjectMeta{Namespace: ns, GenerateName: "web-x-",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-x", UID: "gone", Controller: ptr.To(true)}}})
	denied(t, e.a.admitPod(t.Context(), e.request(admissionv1.Create, orphan, nil)),
		`metadata.ownerReferences: invalid value "ReplicaSet/web-x": the pod's ReplicaSet does not exist; create pods through an existing workload`)

	bare := podFrom(podTemplate("solo"), metav1.ObjectMeta{Namespace: ns, Name: "solo", Annotations: map[string]string{vk8sv1.AnnotationVirtualSites: "shared/nowhere"}})
	denied(t, e.a.admitPod(t.Context(), e.request(admissionv1.Create, bare, nil)),
		`metadata.annotations["ves.io/virtual-sites"]: invalid value "shared/nowhere": the virtual-sites select no Site; label Sites so that the VirtualSites select them, or name other virtual-sites (kubectl get sites --show-labels)`)
}

// TestPlacementRefusesNodesOutsideSites: a pod bound to a virtual node (spec.nodeName), or
// a DaemonSet's pod pinned to one, whose site its virtual-sites do not select is refused,
// naming the node, the pod's sites and the fix; a pod bound to a node of its sites, or to
// a host node that is not a virtual node, is admitted as before.
func TestPlacementRefusesNodesOutsideSites(t *testing.T) {
	e := newEnv(t)
	daemonSet := func(name string, annotations map[string]string) *appsv1.DaemonSet {
		ds := created(e, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: podTemplate(name)}})
		ds.UID = types.UID("uid-" + name)
		if err := e.c.Create(t.Context(), ds); err != nil {
			t.Fatal(err)
		}
		return ds
	}
	// daemonPod is the pod the DaemonSet controller makes of ds for node.
	daemonPod := func(ds *appsv1.DaemonSet, node string) *corev1.Pod {
		tmpl := ds.Spec.Template.DeepCopy()
		tmpl.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}
		return podFrom(*tmpl, metav1.ObjectMeta{Namespace: ns, GenerateName: ds.Name + "-",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: ptr.To(true)}}})
	}
	bound := func(node string, annotations map[string]string) *corev1.Pod {
		p := podFrom(podTemplate("solo"), metav1.ObjectMeta{Namespace: ns, Name: "solo", Annotations: annotations})
		p.Spec.NodeName = node
		return p
	}
	fix := func(site string) string {
		return "bind the pod to a node of its sites (kubectl get nodes -l vk8s.io/site), leave spec.nodeName empty so that vk8s places it, or name virtual-sites that select " +
			site + " in ves.io/virtual-sites"
	}
	agent := daemonSet("agent", map[string]string{vk8sv1.AnnotationVirtualSites: "shared/first-two"})
	everywhere := daemonSet("everywhere", map[string]string{vk8sv1.AnnotationVirtualSites: "shared/all-sites, shared/regional"})
	restart := func(name string) string {
		return "the DaemonSet's template names sites that are no longer its own: restart it (kubectl -n demo rollout restart daemonset/" + name +
			"), so that its template names its sites now and its controller leaves the other nodes"
	}

	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{
			name: "bound to a node of a site the namespace's virtual-site does not select",
			pod:  bound("site4-node1", nil),
			want: `spec.nodeName: invalid value "site4-node1": node site4-node1 is on site site4, which is not among the pod's sites ` +
				`(site1, site2, site3, from its namespace's default virtual-site "shared/all-sites" (VirtualKubernetes vk)); ` + fix("site4"),
		},
		{
			name: "bound to a node of a site its own virtual-sites do not select",
			pod:  bound("site3-node2", map[string]string{vk8sv1.AnnotationVirtualSites: "shared/first-two"}),
			want: `spec.nodeName: invalid value "site3-node2": node site3-node2 is on site site3, which is not among the pod's sites ` +
				`(site1, site2, from its virtual-sites "shared/first-two"); ` + fix("site3"),
		},
		{
			name: "a DaemonSet's pod on a node of a site that left its virtual-sites",
			pod:  daemonPod(agent, "site3-node1"),
			want: `spec.affinity.nodeAffinity (the DaemonSet controller's node): invalid value "site3-node1": node site3-node1 is on site site3, ` +
				`which is not among the pod's sites (site1, site2, from its virtual-sites "shared/first-two"); ` + restart("agent"),
		},
		{
			name: "a DaemonSet's pod on a RegionalEdge node",
			pod:  daemonPod(everywhere, "site4-node2"),
			want: `spec.affinity.nodeAffinity (the DaemonSet controller's node): invalid value "site4-node2": node site4-node2 is on site site4, ` +
				`which is RegionalEdge, and DaemonSets run on CustomerEdge sites only (its sites: site1, site2, site3, from its virtual-sites ` +
				`"shared/all-sites, shared/regional"); ` + restart("everywhere"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			denied(t, e.a.admitPod(t.Context(), e.request(admissionv1.Create, tc.pod, nil)), tc.want)
		})
	}

	t.Run("bound or pinned inside its sites, or to a host node", func(t *testing.T) {
		if p := admitPod(e, bound("site2-node1", map[string]string{vk8sv1.AnnotationVirtualSites: "shared/first-two"})); p.Labels[vk8sv1.LabelSite] != "site2" {
			t.Errorf("bound to site2-node1: site %q, want site2", p.Labels[vk8sv1.LabelSite])
		}
		if p := admitPod(e, daemonPod(agent, "site1-node3")); p.Labels[vk8sv1.LabelSite] != "site1" {
			t.Errorf("DaemonSet pod on site1-node3: site %q, want site1", p.Labels[vk8sv1.LabelSite])
		}
		resp := e.a.admitPod(t.Context(), e.request(admissionv1.Create, bound("host-node1", nil), nil))
		if !resp.Allowed || len(resp.Patches) > 0 {
			t.Errorf("bound to a host node: allowed %v, patches %v; want left alone", resp.Allowed, resp.Patches)
		}
	})
	if got := testutil.ToFloat64(e.a.metrics.rejections.WithLabelValues(reasonNodeOutsideSites)); got != 4 {
		t.Errorf("vk8s_webhook_rejections_total{reason=%q} = %v, want 4", reasonNodeOutsideSites, got)
	}
}

// Pod admission reads only the cache: the workload above the pod, the namespace's
// VirtualKubernetes, VirtualSites and Sites, the built-in default flavor that the host
// holds no object of (before the chart's post-install hook), the virtual node of a bound
// pod. A read of the API server is for what the cache misses, which none of these does.
func TestPodAdmissionReadsOnlyTheCache(t *testing.T) {
	e := newEnv(t)
	_, next := fleetWorkload(e, deployment("web", 3, nil))
	for range 3 {
		admitPod(e, next())
	}
	admitPod(e, podFrom(podTemplate("solo"), metav1.ObjectMeta{Namespace: ns, Name: "solo"}))
	bound := podFrom(podTemplate("bound"), metav1.ObjectMeta{Namespace: ns, Name: "bound"})
	bound.Spec.NodeName = "site3-node1"
	admitPod(e, bound)
	if n := testutil.CollectAndCount(e.a.metrics.apiReads); n != 0 {
		var out strings.Builder
		for _, kind := range []string{"WorkloadFlavor", "VirtualSite", "Override", "ReplicaSet", "Deployment", "Node"} {
			fmt.Fprintf(&out, " %s %g", kind, testutil.ToFloat64(e.a.metrics.apiReads.WithLabelValues(kind, "get")))
		}
		t.Errorf("pod admission read the API server (%d series): gets by kind:%s", n, out.String())
	}
	// A flavor that is not built in and not in the cache is still read from the API server
	// (created a moment before the workload that names it), and counted.
	if _, err := e.state.Resolver.Resolve(t.Context(), ns, map[string]string{vk8sv1.AnnotationWorkloadFlavor: "custom"}, federation.Lenient); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.a.metrics.apiReads.WithLabelValues("WorkloadFlavor", "get")); got != 1 {
		t.Errorf("a missing custom flavor: %g API reads, want 1", got)
	}
}

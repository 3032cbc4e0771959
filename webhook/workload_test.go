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
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

func podTemplate(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}},
	}
}

func deployment(name string, replicas int32, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations, UID: "uid-" + "deploy-" + "x"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name),
		},
	}
}

func canary(sites []string, replicas *int32, image string) *vk8sv1.Override {
	o := &vk8sv1.Override{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "canary"},
		Spec:       vk8sv1.OverrideSpec{SiteList: sites, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Replicas: replicas}},
	}
	if image != "" {
		t := podTemplate("web")
		t.Spec.Containers[0].Image = image
		o.Spec.DeploymentSpec.Template = &t
	}
	return o
}

// admit runs the workload handler on obj (old: nil for a create) and returns the stored
// result in a new object of obj's type.
func admit[T client.Object](e *env, obj, old T) (T, admission.Response) {
	e.t.Helper()
	op := admissionv1.Create
	var oldObj client.Object
	if client.Object(old) != nil && !isNil(old) {
		op, oldObj = admissionv1.Update, old
	}
	req := e.request(op, obj, oldObj)
	resp := e.a.admitWorkload(e.t.Context(), req)
	out := obj.DeepCopyObject().(T)
	if resp.Allowed {
		patched(e.t, req, resp, out)
	}
	return out, resp
}

func isNil(o client.Object) bool {
	switch v := o.(type) {
	case *appsv1.Deployment:
		return v == nil
	case *appsv1.StatefulSet:
		return v == nil
	case *appsv1.ReplicaSet:
		return v == nil
	case *appsv1.DaemonSet:
		return v == nil
	case *batchv1.Job:
		return v == nil
	case *batchv1.CronJob:
		return v == nil
	}
	return o == nil
}

// withLastApplied sets kubectl's last-applied-configuration to a manifest with replicas.
func withLastApplied(d *appsv1.Deployment, replicas int32) *appsv1.Deployment {
	d = d.DeepCopy()
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[corev1.LastAppliedConfigAnnotation] = fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":%d}}`, replicas)
	return d
}

func TestWorkloadReplicas(t *testing.T) {
	three := []string{"site1", "site2", "site3"}
	type result struct {
		replicas  int32
		r         string
		placement string
		// sites of the template's affinity
		sites    []string
		warnings []string
	}
	for _, tc := range []struct {
		name  string
		extra []client.Object
		// prepare returns the object written and the one it replaces (nil: create).
		prepare func(e *env) (obj, old *appsv1.Deployment)
		want    result
	}{
		{
			name:    "create: spec.replicas is per site",
			prepare: func(*env) (*appsv1.Deployment, *appsv1.Deployment) { return deployment("web", 3, nil), nil },
			want:    result{replicas: 9, r: "3", placement: "site1=3,site2=3,site3=3", sites: three},
		},
		{
			name: "create: the union of two virtual-sites",
			prepare: func(*env) (*appsv1.Deployment, *appsv1.Deployment) {
				return deployment("web", 3, map[string]string{vk8sv1.AnnotationVirtualSites: "“shared/first-two, eu”"}), nil
			},
			want: result{replicas: 9, r: "3", placement: "site1=3,site2=3,site4=3", sites: []string{"site1", "site2", "site4"}},
		},
		{
			name: "create: an exported object keeps its R",
			prepare: func(*env) (*appsv1.Deployment, *appsv1.Deployment) {
				return deployment("web", 6, map[string]string{vk8sv1.AnnotationReplicasPerSite: "2"}), nil
			},
			want: result{replicas: 6, r: "2", placement: "site1=2,site2=2,site3=2", sites: three},
		},
		{
			name:  "create: an Override's replicas replace R on its sites",
			extra: []client.Object{canary([]string{"site2"}, ptr.To[int32](1), "")},
			prepare: func(*env) (*appsv1.Deployment, *appsv1.Deployment) {
				return deployment("web", 3, map[string]string{vk8sv1.AnnotationOverrides: "canary"}), nil
			},
			want: result{replicas: 7, r: "3", placement: "site1=3,site2=1,site3=3", sites: three},
		},
		{
			name: "update: kubectl edit writes the total",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				old := created(e, deployment("web", 3, nil))
				d := old.DeepCopy()
				d.Spec.Replicas = ptr.To[int32](15)
				return d, old
			},
			want: result{replicas: 15, r: "5", placement: "site1=5,site2=5,site3=5", sites: three},
		},
		{
			name: "update: a total that is not a multiple of the sites is rounded up",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				old := created(e, deployment("web", 3, nil))
				d := old.DeepCopy()
				d.Spec.Replicas = ptr.To[int32](10)
				return d, old
			},
			want: result{replicas: 12, r: "4", placement: "site1=4,site2=4,site3=4", sites: three,
				warnings: []string{"spec.replicas: 10 is not a multiple of the 3 sites: it is rounded up to 12 (4 per site); replicas are per site"}},
		},
		{
			name: "update: the annotation sets R",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				old := created(e, deployment("web", 3, nil))
				d := old.DeepCopy()
				d.Annotations[vk8sv1.AnnotationReplicasPerSite] = "4"
				return d, old
			},
			want: result{replicas: 12, r: "4", placement: "site1=4,site2=4,site3=4", sites: three},
		},
		{
			name: "update: a server-side re-apply of the manifest keeps R",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				return deployment("web", 3, nil), created(e, deployment("web", 3, nil))
			},
			want: result{replicas: 9, r: "3", placement: "site1=3,site2=3,site3=3", sites: three},
		},
		{
			name: "update: a client-side apply of a changed manifest sets R",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				old := created(e, withLastApplied(deployment("web", 3, nil), 3))
				d := withLastApplied(old, 5)
				d.Spec.Replicas = ptr.To[int32](5)
				return d, old
			},
			want: result{replicas: 15, r: "5", placement: "site1=5,site2=5,site3=5", sites: three},
		},
		{
			name: "update: a label changes nothing else",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				old := created(e, deployment("web", 3, nil))
				d := old.DeepCopy()
				d.Labels = map[string]string{"tier": "gold"}
				return d, old
			},
			want: result{replicas: 9, r: "3", placement: "site1=3,site2=3,site3=3", sites: three},
		},
		{
			name: "update: R follows a write through the scale subresource",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				old := created(e, deployment("web", 3, nil))
				old.Spec.Replicas = ptr.To[int32](15) // the scale subresource wrote it
				d := old.DeepCopy()
				d.Labels = map[string]string{"tier": "gold"}
				return d, old
			},
			want: result{replicas: 15, r: "5", placement: "site1=5,site2=5,site3=5", sites: three},
		},
		{
			name: "update: an unchanged template keeps its sites, the plan follows the virtual-site",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				old := created(e, deployment("web", 3, nil))
				restrictSites(&old.Spec.Template.Spec, []string{"site1", "site2"}) // admitted when the virtual-site had two sites
				d := old.DeepCopy()
				d.Labels = map[string]string{"tier": "gold"}
				return d, old
			},
			want: result{replicas: 9, r: "3", placement: "site1=3,site2=3,site3=3", sites: []string{"site1", "site2"}},
		},
		{
			name: "update: a changed template takes the current sites",
			prepare: func(e *env) (*appsv1.Deployment, *appsv1.Deployment) {
				old := created(e, deployment("web", 3, nil))
				restrictSites(&old.Spec.Template.Spec, []string{"site1", "site2"})
				d := old.DeepCopy()
				d.Spec.Template.Spec.Containers[0].Image = "nginx:1.27"
				return d, old
			},
			want: result{replicas: 9, r: "3", placement: "site1=3,site2=3,site3=3", sites: three},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.extra...)
			obj, old := tc.prepare(e)
			got, resp := admit(e, obj, old)
			if !resp.Allowed {
				t.Fatalf("denied: %s", resp.Result.Message)
			}
			if *got.Spec.Replicas != tc.want.replicas || got.Annotations[vk8sv1.AnnotationReplicasPerSite] != tc.want.r ||
				got.Annotations[vk8sv1.AnnotationPlacement] != tc.want.placement {
				t.Errorf("replicas %d, R %q, placement %q; want %d, %q, %q", *got.Spec.Replicas, got.Annotations[vk8sv1.AnnotationReplicasPerSite],
					got.Annotations[vk8sv1.AnnotationPlacement], tc.want.replicas, tc.want.r, tc.want.placement)
			}
			spec := &got.Spec.Template.Spec
			if !slices.Contains(spec.Tolerations, virtualNodeToleration) {
				t.Errorf("tolerations %v lack the virtual node toleration", spec.Tolerations)
			}
			if s := siteRestriction(spec); !slices.Equal(s, tc.want.sites) {
				t.Errorf("template restricted to sites %v, want %v", s, tc.want.sites)
			}
			if !slices.Equal(resp.Warnings, tc.want.warnings) {
				t.Errorf("warnings %q, want %q", resp.Warnings, tc.want.warnings)
			}
			if old != nil && tc.want.sites != nil && slices.Equal(siteRestriction(&old.Spec.Template.Spec), tc.want.sites) &&
				old.Spec.Template.Spec.Containers[0].Image == spec.Containers[0].Image &&
				!apiequality.Semantic.DeepEqual(old.Spec.Template, got.Spec.Template) {
				t.Errorf("the template changed (a rollout) though nothing asked for it:\n old %+v\n new %+v", old.Spec.Template.Spec, *spec)
			}
		})
	}
}

// created admits obj's creation and returns the stored object.
func created[T client.Object](e *env, obj T) T {
	e.t.Helper()
	var zero T
	out, resp := admit(e, obj, zero)
	if !resp.Allowed {
		e.t.Fatalf("create denied: %s", resp.Result.Message)
	}
	return out
}

func TestWorkloadKinds(t *testing.T) {
	t.Run("Job: parallelism and completions are multiplied", func(t *testing.T) {
		e := newEnv(t)
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "batch"},
			Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](2), Completions: ptr.To[int32](4), Template: podTemplate("batch")}}
		got := created(e, j)
		if *got.Spec.Parallelism != 6 || *got.Spec.Completions != 12 || got.Annotations[vk8sv1.AnnotationReplicasPerSite] != "2" ||
			got.Annotations[vk8sv1.AnnotationCompletionsPerSite] != "4" || got.Annotations[vk8sv1.AnnotationPlacement] != "site1=4,site2=4,site3=4" {
			t.Errorf("parallelism %d, completions %d, annotations %v", *got.Spec.Parallelism, *got.Spec.Completions, got.Annotations)
		}
		if !federatedTemplate(&got.Spec.Template.Spec, []string{"site1", "site2", "site3"}) {
			t.Errorf("template not federated: %+v", got.Spec.Template.Spec)
		}
		// Raising parallelism later writes a total; the template, immutable, is left alone.
		upd := got.DeepCopy()
		upd.Spec.Parallelism = ptr.To[int32](9)
		got2, resp := admit(e, upd, got)
		if !resp.Allowed || *got2.Spec.Parallelism != 9 || got2.Annotations[vk8sv1.AnnotationReplicasPerSite] != "3" || *got2.Spec.Completions != 12 {
			t.Errorf("after raising parallelism: %v, %d, %v", resp.Allowed, *got2.Spec.Parallelism, got2.Annotations)
		}
	})
	t.Run("Job: backoffLimit is per site", func(t *testing.T) {
		e := newEnv(t)
		got := created(e, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "retry"},
			Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](2), Template: podTemplate("retry")}})
		if *got.Spec.BackoffLimit != 6 || got.Annotations[vk8sv1.AnnotationBackoffLimitPerSite] != "2" {
			t.Errorf("backoffLimit %d, annotations %v; want 6 (2 per site on 3 sites)", *got.Spec.BackoffLimit, got.Annotations)
		}
		// kubectl edit writes a total: the per-site limit follows, rounded up.
		upd := got.DeepCopy()
		upd.Spec.BackoffLimit = ptr.To[int32](10)
		got2, resp := admit(e, upd, got)
		if !resp.Allowed || *got2.Spec.BackoffLimit != 12 || got2.Annotations[vk8sv1.AnnotationBackoffLimitPerSite] != "4" {
			t.Errorf("after an edit to 10: allowed %v, backoffLimit %d, annotations %v; want 12 (4 per site)", resp.Allowed, *got2.Spec.BackoffLimit, got2.Annotations)
		}
		// The Job status controller failing the Job for one site: its 0 stays.
		fail := got2.DeepCopy()
		fail.Annotations[vk8sv1.AnnotationSiteBackoffExceeded] = "site2"
		fail.Spec.BackoffLimit = ptr.To[int32](0)
		got3, resp := admit(e, fail, got2)
		if !resp.Allowed || *got3.Spec.BackoffLimit != 0 || got3.Annotations[vk8sv1.AnnotationBackoffLimitPerSite] != "4" {
			t.Errorf("failing for site2: allowed %v, backoffLimit %d, annotations %v; want 0, per site still 4", resp.Allowed, *got3.Spec.BackoffLimit, got3.Annotations)
		}
		// A per-index limit is per site already: backoffLimit is left alone.
		idx := created(e, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "indexed"},
			Spec: batchv1.JobSpec{CompletionMode: ptr.To(batchv1.IndexedCompletion), Completions: ptr.To[int32](2), BackoffLimitPerIndex: ptr.To[int32](1),
				BackoffLimit: ptr.To[int32](math.MaxInt32), Template: podTemplate("indexed")}})
		if *idx.Spec.BackoffLimit != math.MaxInt32 || idx.Annotations[vk8sv1.AnnotationBackoffLimitPerSite] != "" {
			t.Errorf("indexed Job with backoffLimitPerIndex: backoffLimit %d, annotations %v; want it unchanged", *idx.Spec.BackoffLimit, idx.Annotations)
		}
		// A per-site annotation that is not a number names itself and the fix.
		_, resp = admit(e, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad",
			Annotations: map[string]string{vk8sv1.AnnotationBackoffLimitPerSite: "many"}}, Spec: batchv1.JobSpec{Template: podTemplate("bad")}}, nil)
		if resp.Allowed || !strings.Contains(resp.Result.Message, vk8sv1.AnnotationBackoffLimitPerSite) || !strings.Contains(resp.Result.Message, `"many"`) {
			t.Errorf("a bad per-site backoffLimit: allowed %v, %v", resp.Allowed, resp.Result)
		}
	})
	t.Run("a CronJob's template without parallelism or completions is 1 completion per site", func(t *testing.T) {
		e := newEnv(t)
		got := created(e, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hello"},
			Spec: batchv1.CronJobSpec{Schedule: "* * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: podTemplate("hello")}}}})
		s := got.Spec.JobTemplate.Spec
		if ptr.Deref(s.Completions, 0) != 3 || ptr.Deref(s.Parallelism, 0) != 3 || got.Annotations[vk8sv1.AnnotationCompletionsPerSite] != "1" {
			t.Errorf("completions %v, parallelism %v, annotations %v; want 3 and 3 (1 per site)", s.Completions, s.Parallelism, got.Annotations)
		}
	})
	t.Run("a work-queue Job keeps completions unset", func(t *testing.T) {
		e := newEnv(t)
		got := created(e, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "queue"},
			Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](2), Template: podTemplate("queue")}})
		if *got.Spec.Parallelism != 6 || got.Spec.Completions != nil || got.Annotations[vk8sv1.AnnotationPlacement] != "site1=2,site2=2,site3=2" {
			t.Errorf("parallelism %d, completions %v, annotations %v", *got.Spec.Parallelism, got.Spec.Completions, got.Annotations)
		}
	})
	t.Run("CronJob: its Jobs carry what their pods need", func(t *testing.T) {
		e := newEnv(t)
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly", Annotations: map[string]string{vk8sv1.AnnotationVirtualSites: "shared/first-two"}},
			Spec: batchv1.CronJobSpec{Schedule: "0 0 * * *", JobTemplate: batchv1.JobTemplateSpec{
				Spec: batchv1.JobSpec{Completions: ptr.To[int32](1), Template: podTemplate("nightly")}}}}
		got := created(e, cj)
		js := got.Spec.JobTemplate
		if *js.Spec.Parallelism != 2 || *js.Spec.Completions != 2 || ptr.Deref(js.Spec.BackoffLimit, -1) != 12 {
			t.Errorf("parallelism %v, completions %v, backoffLimit %v; want 2, 2 and 12 (the default 6 per site)", *js.Spec.Parallelism, *js.Spec.Completions, js.Spec.BackoffLimit)
		}
		want := map[string]string{vk8sv1.AnnotationVirtualSites: "shared/first-two", vk8sv1.AnnotationReplicasPerSite: "1",
			vk8sv1.AnnotationCompletionsPerSite: "1", vk8sv1.AnnotationBackoffLimitPerSite: "6", vk8sv1.AnnotationPlacement: "site1=1,site2=1"}
		if !apiequality.Semantic.DeepEqual(js.Annotations, want) {
			t.Errorf("jobTemplate annotations %v, want %v", js.Annotations, want)
		}
		// The CronJob's Jobs are not admitted again.
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly-1", Annotations: js.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", Controller: ptr.To(true)}}}, Spec: js.Spec}
		_, resp := admit(e, job, nil)
		if !resp.Allowed || len(resp.Patches) != 0 {
			t.Errorf("a CronJob's Job was changed: %+v", resp.Patches)
		}
	})
	t.Run("DaemonSet: customer sites only", func(t *testing.T) {
		e := newEnv(t)
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent", Annotations: map[string]string{vk8sv1.AnnotationVirtualSites: "eu"}},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: podTemplate("agent")}}
		got, resp := admit(e, ds, nil)
		if !resp.Allowed || got.Annotations[vk8sv1.AnnotationPlacement] != "site1" || !slices.Equal(siteRestriction(&got.Spec.Template.Spec), []string{"site1"}) {
			t.Fatalf("%v: placement %q, sites %v", resp.Result, got.Annotations[vk8sv1.AnnotationPlacement], siteRestriction(&got.Spec.Template.Spec))
		}
		if want := []string{"DaemonSets run on CustomerEdge sites only: not on site4"}; !slices.Equal(resp.Warnings, want) {
			t.Errorf("warnings %q, want %q", resp.Warnings, want)
		}
	})
	t.Run("StatefulSet: the placement order is kept, new sites go last", func(t *testing.T) {
		e := newEnv(t)
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db",
			Annotations: map[string]string{vk8sv1.AnnotationVirtualSites: "shared/first-two"}},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Template: podTemplate("db")}}
		old := created(e, sts)
		old.Annotations[vk8sv1.AnnotationPlacement] = "site2=2,site1=2" // recorded in that order earlier
		upd := old.DeepCopy()
		upd.Annotations[vk8sv1.AnnotationVirtualSites] = "shared/all-sites"
		got, resp := admit(e, upd, old)
		if !resp.Allowed || got.Annotations[vk8sv1.AnnotationPlacement] != "site2=2,site1=2,site3=2" || *got.Spec.Replicas != 6 {
			t.Errorf("%v: placement %q, replicas %d", resp.Result, got.Annotations[vk8sv1.AnnotationPlacement], *got.Spec.Replicas)
		}
	})
	t.Run("a Deployment's ReplicaSet is left alone, a bare one is federated", func(t *testing.T) {
		e := newEnv(t)
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-abc"},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](9), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Template: podTemplate("web")}}
		owned := rs.DeepCopy()
		owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Controller: ptr.To(true)}}
		if _, resp := admit(e, owned, nil); !resp.Allowed || len(resp.Patches) != 0 {
			t.Errorf("a Deployment's ReplicaSet was changed: %+v", resp.Patches)
		}
		rs.Spec.Replicas = ptr.To[int32](2)
		if got := created(e, rs); *got.Spec.Replicas != 6 {
			t.Errorf("bare ReplicaSet: replicas %d, want 6", *got.Spec.Replicas)
		}
	})
	t.Run("outside vK8s namespaces nothing changes", func(t *testing.T) {
		e := newEnv(t)
		d := deployment("web", 3, nil)
		d.Namespace = "plain"
		if _, resp := admit(e, d, nil); !resp.Allowed || len(resp.Patches) != 0 {
			t.Errorf("changed a workload outside vK8s namespaces: %+v", resp.Patches)
		}
	})
}

func TestScale(t *testing.T) {
	e := newEnv(t)
	// The refresher's queue, as admission hands it the scales; the first one is kept.
	refreshed := make(chan federation.RefreshItem, 1)
	e.a.refresh = func(item federation.RefreshItem) {
		select {
		case refreshed <- item:
		default:
		}
	}
	d := created(e, deployment("web", 3, nil))
	if err := e.c.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		to        int32
		strict    bool
		want      int32
		warnings  []string
		wantError string
	}{
		{name: "a multiple of the sites", to: 15, want: 15},
		{name: "rounded up", to: 10, want: 12, warnings: []string{"spec.replicas: 10 is not a multiple of the 3 sites: it is rounded up to 12 (4 per site); replicas are per site"}},
		{name: "to zero", to: 0, want: 0},
		{name: "strict", to: 10, strict: true,
			wantError: "spec.replicas: invalid value 10: not a multiple of the number of sites (3): replicas are per site, so the total is a multiple of the site count; write 9 or 12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.a.cfg.StrictReplicas = tc.strict
			scale := func(n int32) *autoscalingv1.Scale {
				return &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}
			}
			req := e.request(admissionv1.Update, scale(tc.to), scale(9))
			req.Kind = metav1.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}
			req.Resource = metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
			req.SubResource = "scale"
			resp := e.a.admitScale(t.Context(), req)
			if tc.wantError != "" {
				denied(t, resp, tc.wantError)
				return
			}
			got := &autoscalingv1.Scale{}
			patched(t, req, resp, got)
			if got.Spec.Replicas != tc.want || !slices.Equal(resp.Warnings, tc.warnings) {
				t.Errorf("replicas %d, warnings %q; want %d, %q", got.Spec.Replicas, resp.Warnings, tc.want, tc.warnings)
			}
		})
	}
	// Each admitted scale (not dry-run) asks for vk8s.io/replicas-per-site to follow.
	select {
	case item := <-refreshed:
		if item.Kind != "Deployment" || item.Name != "web" || item.Total != 15 || item.R != 5 {
			t.Errorf("first refresh %+v, want web to 15 (5 per site)", item)
		}
	case <-time.After(5 * time.Second):
		t.Error("no refresh queued after a scale")
	}
}

func TestRefresherRecordsR(t *testing.T) {
	e := newEnv(t)
	d := created(e, deployment("web", 3, nil))
	d.Spec.Replicas = ptr.To[int32](12) // stored through the scale subresource
	if err := e.c.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := e.state.Refresher.Refresh(t.Context(), federation.RefreshItem{Kind: "Deployment", Namespace: ns, Name: "web", Total: 12, R: 4}); err != nil {
		t.Fatal(err)
	}
	got := &appsv1.Deployment{}
	if err := e.c.Get(t.Context(), client.ObjectKeyFromObject(d), got); err != nil {
		t.Fatal(err)
	}
	if got.Annotations[vk8sv1.AnnotationReplicasPerSite] != "4" {
		t.Errorf("R %q after the refresh, want 4", got.Annotations[vk8sv1.AnnotationReplicasPerSite])
	}
}

func TestSameModuloFederation(t *testing.T) {
	plain := podTemplate("web")
	fed := plain.DeepCopy()
	tolerateVirtualNodes(&fed.Spec)
	restrictSites(&fed.Spec, []string{"site1"})
	userAffinity := plain.DeepCopy()
	userAffinity.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpExists}}}}}}}
	userFed := userAffinity.DeepCopy()
	restrictSites(&userFed.Spec, []string{"site1", "site2"})
	changed := fed.DeepCopy()
	changed.Spec.Containers[0].Image = "x"
	for _, tc := range []struct {
		name string
		a, b *corev1.PodTemplateSpec
		want bool
	}{
		{"plain and federated", &plain, fed, true},
		{"user affinity kept", userAffinity, userFed, true},
		{"user affinity dropped", &plain, userFed, false},
		{"image changed", fed, changed, false},
	} {
		if got := sameModuloFederation(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if s := strings.Join(siteRestriction(&userFed.Spec), ","); s != "site1,site2" {
		t.Errorf("restriction %q", s)
	}
}

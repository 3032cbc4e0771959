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
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// TestRejections checks every rejection's whole message: each names the field, the value
// and the fix.
func TestRejections(t *testing.T) {
	web := func(annotations map[string]string) *appsv1.Deployment { return deployment("web", 3, annotations) }
	otherSelector := canary([]string{"site2"}, nil, "")
	otherSelector.Spec.DeploymentSpec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}
	unsupported := canary([]string{"site2"}, nil, "")
	unsupported.Spec.DeploymentSpec.Paused = ptr.To(true)
	unsupported.Spec.DeploymentSpec.Template = &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Name: "pinned"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "x"}}}}
	for _, tc := range []struct {
		name   string
		strict bool
		extra  []client.Object
		// handle runs the handler under test.
		handle func(e *env) admission.Response
		want   string
	}{
		{
			name:   "malformed annotation",
			handle: createWorkload(web(map[string]string{vk8sv1.AnnotationVirtualSites: "shared/all-sites,,eu"})),
			want:   `metadata.annotations["ves.io/virtual-sites"]: invalid value "shared/all-sites,,eu": entry 2 is empty; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name:   "unknown virtual-site",
			handle: createWorkload(web(map[string]string{vk8sv1.AnnotationVirtualSites: "shared/all-sites, shared/edge"})),
			want:   `metadata.annotations["ves.io/virtual-sites"]: invalid value "shared/all-sites, shared/edge": VirtualSite shared/edge does not exist; create the VirtualSite, or name an existing one (kubectl get virtualsites -A lists them)`,
		},
		{
			name:   "virtual-site in another namespace",
			handle: createWorkload(web(map[string]string{vk8sv1.AnnotationVirtualSites: "team-b/edge"})),
			want:   `metadata.annotations["ves.io/virtual-sites"]: invalid value "team-b/edge": entry 1 "team-b/edge" is in namespace "team-b", but a workload may only reference virtual-sites in its own namespace ("demo") or the shared one ("shared"); reference a VirtualSite in "demo" or "shared", e.g. "shared/edge"`,
		},
		{
			name:   "virtual-sites that select no Site",
			handle: createWorkload(web(map[string]string{vk8sv1.AnnotationVirtualSites: "shared/nowhere"})),
			want:   `metadata.annotations["ves.io/virtual-sites"]: invalid value "shared/nowhere": the virtual-sites select no Site; label Sites so that the VirtualSites select them, or name other virtual-sites (kubectl get sites --show-labels)`,
		},
		{
			name:   "unknown override",
			handle: createWorkload(web(map[string]string{vk8sv1.AnnotationOverrides: "canary, blue"})),
			want:   `metadata.annotations["ves.io/overrides"]: invalid value "canary, blue": Override "canary" does not exist in the workload's namespace; create it, or remove it from the list (kubectl get overrides lists the namespace's Overrides)`,
		},
		{
			name:   "override whose selector differs",
			extra:  []client.Object{otherSelector},
			handle: createWorkload(web(map[string]string{vk8sv1.AnnotationOverrides: "canary"})),
			want:   `metadata.annotations["ves.io/overrides"]: invalid value "canary": Override "canary" does not fit this Deployment: spec.deploymentSpec.selector: Invalid value: "app=api": must equal the workload's selector "app=web"; remove it (it may be left out) or copy the workload's; fix the Override, or remove it from the list`,
		},
		{
			name:   "unknown flavor",
			handle: createWorkload(web(map[string]string{vk8sv1.AnnotationWorkloadFlavor: "ves-io-huge"})),
			want:   `metadata.annotations["ves.io/workload-flavor"]: invalid value "ves-io-huge": WorkloadFlavor "ves-io-huge" does not exist; create it, or name an existing one (kubectl get workloadflavors lists them)`,
		},
		{
			name:   "malformed replicas per site",
			handle: createWorkload(web(map[string]string{vk8sv1.AnnotationReplicasPerSite: "three"})),
			want:   `metadata.annotations["vk8s.io/replicas-per-site"]: invalid value "three": not a whole number of replicas per site; write a number such as "3", or remove it and set spec.replicas`,
		},
		{
			name:   "strict replicas",
			strict: true,
			handle: func(e *env) admission.Response {
				old := created(e, web(nil))
				d := old.DeepCopy()
				d.Spec.Replicas = ptr.To[int32](10)
				return e.a.admitWorkload(e.t.Context(), e.request(admissionv1.Update, d, old))
			},
			want: `spec.replicas: invalid value 10: not a multiple of the number of sites (3): replicas are per site, so the total is a multiple of the site count; write 9 or 12`,
		},
		{
			name: "override that sets unsupported fields",
			handle: func(e *env) admission.Response {
				return e.a.validateOverride(e.t.Context(), e.request(admissionv1.Create, unsupported, nil))
			},
			want: `Override "canary" is invalid: spec.deploymentSpec.paused: Forbidden: an Override honours only replicas, template and strategy (and a selector equal to the workload's); remove this field and set it on the workload, where it applies to every site; ` +
				`spec.deploymentSpec.template.metadata.name: Forbidden: pods take their identity from their workload; remove it from the Override's template`,
		},
		{
			name:  "override that does not fit a workload naming it",
			extra: []client.Object{web(map[string]string{vk8sv1.AnnotationOverrides: "canary"})},
			handle: func(e *env) admission.Response {
				return e.a.validateOverride(e.t.Context(), e.request(admissionv1.Create, otherSelector, nil))
			},
			want: `Override "canary" does not fit Deployment "web", which names it in ves.io/overrides: spec.deploymentSpec.selector: Invalid value: "app=api": must equal the workload's selector "app=web"; remove it (it may be left out) or copy the workload's; fix the Override, or remove it from the workload's list first`,
		},
		{
			name: "second VirtualKubernetes",
			handle: func(e *env) admission.Response {
				vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vk2"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/all-sites"}}
				return e.a.validateVirtualKubernetes(e.t.Context(), e.request(admissionv1.Create, vk, nil))
			},
			want: `metadata.name: invalid value "vk2": namespace demo already has VirtualKubernetes "vk", and a namespace has at most one; change the default virtual-site in "vk"'s spec.virtualSite instead, or use another namespace`,
		},
		{
			name: "VirtualKubernetes on a virtual-site of another namespace",
			handle: func(e *env) admission.Response {
				vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: "plain", Name: "vk"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "demo/eu"}}
				return e.a.validateVirtualKubernetes(e.t.Context(), e.request(admissionv1.Create, vk, nil))
			},
			want: `spec.virtualSite: invalid value "demo/eu": namespace "demo" is neither this namespace ("plain") nor the shared one ("shared"); name a VirtualSite of this namespace or of "shared", e.g. "shared/all-sites"`,
		},
		{
			name: "VirtualKubernetes on an unknown virtual-site",
			handle: func(e *env) admission.Response {
				vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: "plain", Name: "vk"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "edge"}}
				return e.a.validateVirtualKubernetes(e.t.Context(), e.request(admissionv1.Create, vk, nil))
			},
			want: `spec.virtualSite: invalid value "edge": VirtualSite plain/edge does not exist; create it first, or name a VirtualSite of this namespace or of "shared", e.g. "shared/all-sites"`,
		},
		{
			name: "deleting a VirtualKubernetes while federated workloads remain",
			extra: []client.Object{web(nil), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "solo"}},
				&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-abc",
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Controller: ptr.To(true)}}}}},
			handle: func(e *env) admission.Response {
				vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vk"}}
				return e.a.validateVirtualKubernetes(e.t.Context(), e.request(admissionv1.Delete, nil, vk))
			},
			want: `VirtualKubernetes "vk": cannot be deleted while namespace demo has federated workloads: deployment/web, pod/solo; delete them first (kubectl -n demo delete deployment/web pod/solo), or delete the namespace`,
		},
		{
			name:  "HorizontalPodAutoscaler aimed at a federated workload",
			extra: []client.Object{created(newEnv(t), web(nil))},
			handle: func(e *env) admission.Response {
				hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
					Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 10,
						ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}}}
				return e.a.validateAutoscaler(e.t.Context(), e.request(admissionv1.Create, hpa, nil))
			},
			want: `spec.scaleTargetRef: invalid value "Deployment/web": Deployment web is federated by VirtualKubernetes "vk" (3 replicas per site, on site1=3,site2=3,site3=3): ` +
				`its spec.replicas is the total over its sites, and a HorizontalPodAutoscaler would scale every site at once from the metrics of all of them; vk8s does not autoscale per site yet; ` +
				`remove the HorizontalPodAutoscaler, and scale with kubectl scale (the total) or the vk8s.io/replicas-per-site annotation`,
		},
		{
			name: "vK8s annotation in a namespace without VirtualKubernetes",
			handle: func(e *env) admission.Response {
				d := web(map[string]string{vk8sv1.AnnotationVirtualSites: "shared/all-sites"})
				d.Namespace = "plain"
				return e.a.validateOutside(e.t.Context(), e.request(admissionv1.Create, d, nil))
			},
			want: `metadata.annotations["ves.io/virtual-sites"]: invalid value "shared/all-sites": namespace plain has no VirtualKubernetes, so vk8s does not federate its workloads and the annotation would do nothing; ` +
				`enable the namespace with a VirtualKubernetes (e.g. kind: VirtualKubernetes, metadata.namespace: plain, spec.virtualSite: shared/all-sites), or remove the annotation`,
		},
		{
			name: "invalid WorkloadFlavor",
			handle: func(e *env) admission.Response {
				f := &vk8sv1.WorkloadFlavor{ObjectMeta: metav1.ObjectMeta{Name: "crumb"}, Spec: vk8sv1.WorkloadFlavorSpec{CPU: resource.MustParse("2m"), Memory: resource.MustParse("64Mi")}}
				return e.a.validateFlavor(e.t.Context(), e.request(admissionv1.Create, f, nil))
			},
			want: `WorkloadFlavor "crumb" is invalid: spec.cpu: Invalid value: "2m": must be at least 4m: the request, 25% of it, must be at least 1m`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.extra...)
			e.a.cfg.StrictReplicas = tc.strict
			denied(t, tc.handle(e), tc.want)
		})
	}
}

func createWorkload(d *appsv1.Deployment) func(e *env) admission.Response {
	return func(e *env) admission.Response {
		return e.a.admitWorkload(e.t.Context(), e.request(admissionv1.Create, d, nil))
	}
}

func TestAllowedWithWarnings(t *testing.T) {
	web := func(annotations map[string]string) *appsv1.Deployment { return deployment("web", 3, annotations) }
	t.Run("an Override naming an unknown Site is a warning", func(t *testing.T) {
		e := newEnv(t)
		o := canary([]string{"site2", "site9"}, ptr.To[int32](1), "")
		resp := e.a.validateOverride(t.Context(), e.request(admissionv1.Create, o, nil))
		want := []string{`spec.siteList[1]: Site "site9" does not exist; the Override takes effect there once the Site is registered`}
		if !resp.Allowed || !slices.Equal(resp.Warnings, want) {
			t.Errorf("allowed %v, warnings %q; want allowed with %q", resp.Allowed, resp.Warnings, want)
		}
	})
	t.Run("deleting the VirtualKubernetes of a namespace being deleted", func(t *testing.T) {
		e := newEnv(t, web(nil))
		n := &corev1.Namespace{}
		_ = e.c.Get(t.Context(), client.ObjectKey{Name: ns}, n)
		n.Status.Phase = corev1.NamespaceTerminating
		if err := e.c.Status().Update(t.Context(), n); err != nil {
			t.Fatal(err)
		}
		vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vk"}}
		if resp := e.a.validateVirtualKubernetes(t.Context(), e.request(admissionv1.Delete, nil, vk)); !resp.Allowed {
			t.Errorf("denied: %s", resp.Result.Message)
		}
	})
	t.Run("an existing workload whose Override was deleted still admits its writes and pods", func(t *testing.T) {
		e := newEnv(t, canary([]string{"site2"}, nil, "nginx:2.0"))
		old := created(e, deployment("web", 3, map[string]string{vk8sv1.AnnotationOverrides: "canary"}))
		if err := e.c.Delete(t.Context(), canary(nil, nil, "")); err != nil {
			t.Fatal(err)
		}
		d := old.DeepCopy()
		d.Spec.Replicas = ptr.To[int32](6)
		got, resp := admit(e, d, old)
		want := []string{`metadata.annotations["ves.io/overrides"]: invalid value "canary": Override "canary" does not exist in the workload's namespace; create it, or remove it from the list (kubectl get overrides lists the namespace's Overrides) (until then, pods run without it)`}
		if !resp.Allowed || *got.Spec.Replicas != 6 || !slices.Equal(resp.Warnings, want) {
			t.Errorf("allowed %v, replicas %d, warnings %q", resp.Allowed, *got.Spec.Replicas, resp.Warnings)
		}
	})
	t.Run("removing the finalizer of a VirtualKubernetes whose VirtualSite is gone", func(t *testing.T) {
		e := newEnv(t)
		old := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vk", Finalizers: []string{"vk8s.io/site-namespaces"}},
			Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/gone"}}
		vk := old.DeepCopy()
		vk.Finalizers = nil
		if resp := e.a.validateVirtualKubernetes(t.Context(), e.request(admissionv1.Update, vk, old)); !resp.Allowed {
			t.Errorf("denied: %s", resp.Result.Message)
		}
		vk.Spec.VirtualSite = "shared/also-gone"
		if resp := e.a.validateVirtualKubernetes(t.Context(), e.request(admissionv1.Update, vk, old)); resp.Allowed {
			t.Error("a new spec.virtualSite naming a VirtualSite that does not exist was allowed")
		}
	})
	t.Run("a VirtualKubernetes labels its namespace at once", func(t *testing.T) {
		e := newEnv(t)
		vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: "plain", Name: "edge"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/all-sites"}}
		if resp := e.a.validateVirtualKubernetes(t.Context(), e.request(admissionv1.Create, vk, nil)); !resp.Allowed {
			t.Fatalf("denied: %s", resp.Result.Message)
		}
		n := &corev1.Namespace{}
		_ = e.c.Get(t.Context(), client.ObjectKey{Name: "plain"}, n)
		if n.Labels[vk8sv1.LabelVirtualKubernetes] != "edge" {
			t.Errorf("namespace labels %v", n.Labels)
		}
	})
	t.Run("an HPA on something else, an unchanged annotation outside", func(t *testing.T) {
		e := newEnv(t)
		hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "example.com/v1", Kind: "Widget", Name: "x"}}}
		if resp := e.a.validateAutoscaler(t.Context(), e.request(admissionv1.Create, hpa, nil)); !resp.Allowed {
			t.Errorf("denied: %s", resp.Result.Message)
		}
		d := web(map[string]string{vk8sv1.AnnotationOverrides: "x"})
		d.Namespace = "plain"
		upd := d.DeepCopy()
		upd.Labels = map[string]string{"revision": "2"}
		if resp := e.a.validateOutside(t.Context(), e.request(admissionv1.Update, upd, d)); !resp.Allowed {
			t.Errorf("an update that leaves the annotation alone was denied: %s", resp.Result.Message)
		}
	})
}

// A RoleBinding of a vK8s namespace binds ServiceAccounts of vK8s namespaces, which have
// copies on the sites; host users and groups are left out of the copies, with a warning.
func TestRoleBindingSubjects(t *testing.T) {
	e := newEnv(t,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tools", Labels: map[string]string{vk8sv1.LabelVirtualKubernetes: "vk"}}},
		&vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "vk"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/all-sites"}})
	binding := func(namespace string, subjects ...rbacv1.Subject) admission.Response {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "read"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reader"}, Subjects: subjects}
		return e.a.validateRoleBinding(t.Context(), e.request(admissionv1.Create, rb, nil))
	}
	sa := func(ns, name string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
	}
	if resp := binding(ns, sa("", "app"), sa(ns, "web"), sa("tools", "ci"),
		rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:tools"}); !resp.Allowed || len(resp.Warnings) > 0 {
		t.Errorf("ServiceAccounts of vK8s namespaces: allowed %v, %q, warnings %q", resp.Allowed, message(resp), resp.Warnings)
	}
	resp := binding(ns, sa(ns, "app"), sa("kube-system", "default"))
	want := `subjects[1]: invalid value "ServiceAccount kube-system/default": namespace "kube-system" is not a vK8s namespace`
	if resp.Allowed || !strings.Contains(message(resp), want) {
		t.Errorf("a ServiceAccount of kube-system: allowed %v, %q; want denied with %q", resp.Allowed, message(resp), want)
	}
	resp = binding(ns, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"})
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `subjects[0]: User "alice" is a host identity`) {
		t.Errorf("a User: allowed %v, warnings %q; want allowed with a warning", resp.Allowed, resp.Warnings)
	}
	if resp := binding("plain", sa("kube-system", "default")); !resp.Allowed {
		t.Errorf("outside vK8s namespaces: %q", message(resp))
	}
}

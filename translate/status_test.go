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

package translate

import (
	"slices"
	"testing"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestReferences(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want []Ref
	}{
		{name: "nothing", spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, want: []Ref{}},
		{
			name: "volumes, env, envFrom, pull secrets and service account, each once",
			spec: corev1.PodSpec{
				ServiceAccountName: "runner",
				ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "pull"}},
				Volumes: []corev1.Volume{
					{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm1"}}}},
					{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s1", Optional: ptr.To(true)}}},
					{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
					{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
						{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cm2"}}},
						{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "s2"}}},
					}}}},
				},
				InitContainers: []corev1.Container{{Name: "i", EnvFrom: []corev1.EnvFromSource{
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm1"}}},
				}}},
				Containers: []corev1.Container{{Name: "a", Env: []corev1.EnvVar{
					{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s1"}, Key: "k"}}},
					{Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm3"}, Key: "k", Optional: ptr.To(true)}}},
					{Name: "C", Value: "plain"},
				}}},
			},
			want: []Ref{
				{Kind: KindConfigMap, Name: "cm1"}, {Kind: KindConfigMap, Name: "cm2"}, {Kind: KindConfigMap, Name: "cm3", Optional: true},
				{Kind: KindPersistentVolumeClaim, Name: "data"},
				{Kind: KindSecret, Name: "pull", Optional: true}, {Kind: KindSecret, Name: "s1"}, {Kind: KindSecret, Name: "s2"},
				{Kind: KindServiceAccount, Name: "runner"},
			},
		},
		{
			name: "the host token volume and the default service account are not references",
			spec: corev1.PodSpec{
				ServiceAccountName: "default",
				Volumes: []corev1.Volume{{Name: "kube-api-access-x1y2z", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}}},
				}}}},
			},
			want: []Ref{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, References(&tc.spec)); diff != "" {
				t.Errorf("References (-want +got):\n%s", diff)
			}
		})
	}
}

func statusPod(phase corev1.PodPhase, states ...corev1.ContainerState) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{"app": "a"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "img:1"}}},
		Status:     corev1.PodStatus{Phase: phase, QOSClass: corev1.PodQOSBestEffort},
	}
	for _, s := range states {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: "a", State: s, Ready: s.Running != nil})
	}
	return p
}

func TestHostStatus(t *testing.T) {
	host := statusPod(corev1.PodPending)
	host.Status.QOSClass = corev1.PodQOSBurstable
	host.Status.Conditions = []corev1.PodCondition{{Type: vk8sv1.ConditionSiteSynced, Status: corev1.ConditionFalse}}
	site := statusPod(corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	site.Status.PodIP = "10.0.0.7"
	site.Status.ContainerStatuses[0].RestartCount = 3
	site.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	got := HostStatus(host, site)
	want := site.Status.DeepCopy()
	want.QOSClass = corev1.PodQOSBurstable
	if diff := cmp.Diff(*want, got); diff != "" {
		t.Errorf("HostStatus (-want +got):\n%s", diff)
	}
}

func TestTerminatedStatus(t *testing.T) {
	now := metav1.Now()
	for _, tc := range []struct {
		name      string
		last      *corev1.Pod
		wantPhase corev1.PodPhase
		wantCode  int32
	}{
		{"a running container is killed: Failed", statusPod(corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}), corev1.PodFailed, 137},
		{"every container exited 0: Succeeded", statusPod(corev1.PodRunning, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}), corev1.PodSucceeded, 0},
		{"no status yet: Failed", statusPod(corev1.PodPending), corev1.PodFailed, 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := TerminatedStatus(tc.last.Status, tc.last, ReasonSitePodDeleted, "gone", now)
			if got.Phase != tc.wantPhase || got.Reason != ReasonSitePodDeleted || got.Message != "gone" {
				t.Errorf("phase %s reason %q message %q; want %s %q %q", got.Phase, got.Reason, got.Message, tc.wantPhase, ReasonSitePodDeleted, "gone")
			}
			if len(got.ContainerStatuses) != 1 || got.ContainerStatuses[0].State.Terminated == nil ||
				got.ContainerStatuses[0].State.Terminated.ExitCode != tc.wantCode || got.ContainerStatuses[0].Ready {
				t.Errorf("container statuses %+v; want one terminated with exit code %d, not ready", got.ContainerStatuses, tc.wantCode)
			}
		})
	}
}

func TestSiteUpdateAndHostView(t *testing.T) {
	host := statusPod(corev1.PodRunning)
	host.Labels["tier"] = "gold"
	host.Annotations = map[string]string{"note": "x"}
	host.Spec.Containers[0].Image = "img:2"
	site := statusPod(corev1.PodRunning)
	site.Namespace = "t-ns"
	site.Labels = map[string]string{"app": "a", vk8sv1.LabelTenant: "t", vk8sv1.LabelHostNamespace: "ns", vk8sv1.LabelHostPodUID: "u1"}
	site.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access-site", MountPath: "/var/run/secrets"}}

	// Before the update, the site pod differs from the host in what a pod update may change.
	if v := HostView(host, site); cmp.Equal(v.Labels, host.Labels) || v.Spec.Containers[0].Image != "img:1" {
		t.Errorf("HostView before the update: labels %v image %s; want the site's", v.Labels, v.Spec.Containers[0].Image)
	}
	want, changed := SiteUpdate(host, site)
	if !changed {
		t.Fatal("SiteUpdate: no change reported")
	}
	wantLabels := map[string]string{"app": "a", "tier": "gold", vk8sv1.LabelTenant: "t", vk8sv1.LabelHostNamespace: "ns", vk8sv1.LabelHostPodUID: "u1"}
	if diff := cmp.Diff(wantLabels, want.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if want.Spec.Containers[0].Image != "img:2" || want.Annotations["note"] != "x" {
		t.Errorf("image %s annotations %v; want img:2 and the host's", want.Spec.Containers[0].Image, want.Annotations)
	}
	if len(want.Spec.Containers[0].VolumeMounts) != 1 {
		t.Errorf("the site's own mounts were lost: %+v", want.Spec.Containers[0].VolumeMounts)
	}
	// After it, the host view equals the host pod: nothing more to update.
	if _, again := SiteUpdate(host, want); again {
		t.Error("SiteUpdate of the updated pod reports a change")
	}
	v := HostView(host, want)
	if !cmp.Equal(v.Labels, host.Labels) || !cmp.Equal(v.Annotations, host.Annotations) || !cmp.Equal(v.Spec, host.Spec) {
		t.Errorf("HostView after the update differs from the host pod:\n%s", cmp.Diff(host, v))
	}
}

// TestSiteUpdateKeepsSiteChanges: a site pod made by SitePod, then changed by the site
// (its admission, its controllers), then its host pod changed: SiteUpdate writes what the
// host changed and keeps what the site did, and HostView shows a change to virtual-kubelet
// exactly when there is one to write.
func TestSiteUpdateKeepsSiteChanges(t *testing.T) {
	const mirror = "mirror.local/"
	// The site's admission: a sidecar injector's label and annotation, a registry mirror.
	admission := func(p *corev1.Pod) {
		p.Labels["mesh/injected"] = "true"
		p.Annotations["mesh/status"] = "injected"
		for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for i := range cs {
				cs[i].Image = mirror + cs[i].Image
			}
		}
	}
	noRecord := func(p *corev1.Pod) { delete(p.Annotations, vk8sv1.AnnotationLastApplied) }
	for _, tc := range []struct {
		name string
		site func(*corev1.Pod) // what the site did to the pod vk8s created
		host func(*corev1.Pod) // what the host changed since
		// wantLabels and wantAnnotations are the site pod's after the update, without vk8s'
		// own; wantImages its images by container.
		wantLabels, wantAnnotations, wantImages map[string]string
		wantDeadline                            *int64
		// wantChanged: SiteUpdate writes; wantView: HostView differs from the host pod, so
		// virtual-kubelet asks for the update.
		wantChanged, wantView bool
	}{{
		name:       "nothing changed",
		wantLabels: map[string]string{"app": "web", "tier": "gold"}, wantAnnotations: map[string]string{"note": "x"},
		wantImages: map[string]string{"init": "init:1", "app": "nginx:1.25"},
	}, {
		name:            "the site's admission added and mirrored, the host changed nothing: nothing to write",
		site:            admission,
		wantLabels:      map[string]string{"app": "web", "tier": "gold", "mesh/injected": "true"},
		wantAnnotations: map[string]string{"note": "x", "mesh/status": "injected"},
		wantImages:      map[string]string{"init": mirror + "init:1", "app": mirror + "nginx:1.25"},
	}, {
		name:            "the host adds a label and an annotation: they arrive, the site's additions and mirror stay",
		site:            admission,
		host:            func(p *corev1.Pod) { p.Labels["release"] = "r2"; p.Annotations["owner"] = "team" },
		wantLabels:      map[string]string{"app": "web", "tier": "gold", "release": "r2", "mesh/injected": "true"},
		wantAnnotations: map[string]string{"note": "x", "owner": "team", "mesh/status": "injected"},
		wantImages:      map[string]string{"init": mirror + "init:1", "app": mirror + "nginx:1.25"},
		wantChanged:     true, wantView: true,
	}, {
		name:            "the host drops a label and an annotation it had: they go, the site's stay",
		site:            admission,
		host:            func(p *corev1.Pod) { delete(p.Labels, "tier"); delete(p.Annotations, "note") },
		wantLabels:      map[string]string{"app": "web", "mesh/injected": "true"},
		wantAnnotations: map[string]string{"mesh/status": "injected"},
		wantImages:      map[string]string{"init": mirror + "init:1", "app": mirror + "nginx:1.25"},
		wantChanged:     true, wantView: true,
	}, {
		name:            "the host changes one image: that container gets it, the other keeps the mirror's",
		site:            admission,
		host:            func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.27" },
		wantLabels:      map[string]string{"app": "web", "tier": "gold", "mesh/injected": "true"},
		wantAnnotations: map[string]string{"note": "x", "mesh/status": "injected"},
		wantImages:      map[string]string{"init": mirror + "init:1", "app": "nginx:1.27"},
		wantChanged:     true, wantView: true,
	}, {
		name:            "a value the site rewrote stays while the host's does not change",
		site:            func(p *corev1.Pod) { p.Labels["tier"] = "site-tier"; p.Annotations["note"] = "site-note" },
		host:            func(p *corev1.Pod) { p.Labels["release"] = "r2" },
		wantLabels:      map[string]string{"app": "web", "tier": "site-tier", "release": "r2"},
		wantAnnotations: map[string]string{"note": "site-note"},
		wantImages:      map[string]string{"init": "init:1", "app": "nginx:1.25"},
		wantChanged:     true, wantView: true,
	}, {
		name:       "a value the site rewrote gives way when the host's changes",
		site:       func(p *corev1.Pod) { p.Labels["tier"] = "site-tier" },
		host:       func(p *corev1.Pod) { p.Labels["tier"] = "platinum" },
		wantLabels: map[string]string{"app": "web", "tier": "platinum"}, wantAnnotations: map[string]string{"note": "x"},
		wantImages:  map[string]string{"init": "init:1", "app": "nginx:1.25"},
		wantChanged: true, wantView: true,
	}, {
		name:       "a key the site added that the host then sets: the host's value",
		site:       func(p *corev1.Pod) { p.Labels["release"] = "site" },
		host:       func(p *corev1.Pod) { p.Labels["release"] = "r2" },
		wantLabels: map[string]string{"app": "web", "tier": "gold", "release": "r2"}, wantAnnotations: map[string]string{"note": "x"},
		wantImages:  map[string]string{"init": "init:1", "app": "nginx:1.25"},
		wantChanged: true, wantView: true,
	}, {
		name:       "a deadline the site set stays while the host's does not change",
		site:       func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To[int64](600) },
		host:       func(p *corev1.Pod) { p.Labels["release"] = "r2" },
		wantLabels: map[string]string{"app": "web", "tier": "gold", "release": "r2"}, wantAnnotations: map[string]string{"note": "x"},
		wantImages:   map[string]string{"init": "init:1", "app": "nginx:1.25"},
		wantDeadline: ptr.To[int64](600), wantChanged: true, wantView: true,
	}, {
		name:       "the host sets a deadline",
		host:       func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To[int64](300) },
		wantLabels: map[string]string{"app": "web", "tier": "gold"}, wantAnnotations: map[string]string{"note": "x"},
		wantImages:   map[string]string{"init": "init:1", "app": "nginx:1.25"},
		wantDeadline: ptr.To[int64](300), wantChanged: true, wantView: true,
	}, {
		name:            "no record (made before vk8s kept one): the host's values where they differ, the site's own keys stay",
		site:            func(p *corev1.Pod) { admission(p); noRecord(p) },
		wantLabels:      map[string]string{"app": "web", "tier": "gold", "mesh/injected": "true"},
		wantAnnotations: map[string]string{"note": "x", "mesh/status": "injected"},
		wantImages:      map[string]string{"init": "init:1", "app": "nginx:1.25"},
		wantChanged:     true, wantView: true,
	}, {
		name:       "no record and nothing differs: virtual-kubelet asks for the update that writes it",
		site:       func(p *corev1.Pod) { noRecord(p); p.Labels["mesh/injected"] = "true" },
		wantLabels: map[string]string{"app": "web", "tier": "gold", "mesh/injected": "true"}, wantAnnotations: map[string]string{"note": "x"},
		wantImages:  map[string]string{"init": "init:1", "app": "nginx:1.25"},
		wantChanged: true, wantView: true,
	}, {
		name:            "a record that does not parse is as none",
		site:            func(p *corev1.Pod) { admission(p); p.Annotations[vk8sv1.AnnotationLastApplied] = "{" },
		wantLabels:      map[string]string{"app": "web", "tier": "gold", "mesh/injected": "true"},
		wantAnnotations: map[string]string{"note": "x", "mesh/status": "injected"},
		wantImages:      map[string]string{"init": "init:1", "app": "nginx:1.25"},
		wantChanged:     true, wantView: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			host := statusPod(corev1.PodRunning)
			host.Labels = map[string]string{"app": "web", "tier": "gold"}
			host.Annotations = map[string]string{"note": "x"}
			host.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "init:1"}}
			host.Spec.Containers = []corev1.Container{{Name: "app", Image: "nginx:1.25"}}
			site, err := SitePod(host, Target{Tenant: "t", Site: "site1"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.site != nil {
				tc.site(site)
			}
			if tc.host != nil {
				tc.host(host)
			}
			orig := site.DeepCopy()
			if got := !vkPodsEqual(HostView(host, site), host); got != tc.wantView {
				t.Errorf("HostView differs from the host pod: %v, want %v:\n%s", got, tc.wantView, cmp.Diff(host, HostView(host, site)))
			}
			want, changed := SiteUpdate(host, site)
			if !cmp.Equal(site, orig) {
				t.Error("SiteUpdate changed its input")
			}
			if changed != tc.wantChanged {
				t.Errorf("SiteUpdate changed = %v, want %v", changed, tc.wantChanged)
			}
			if diff := cmp.Diff(tc.wantLabels, HostLabels(want.Labels)); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if want.Labels[vk8sv1.LabelTenant] != "t" || want.Labels[vk8sv1.LabelHostPodUID] != "u1" || want.Labels[vk8sv1.LabelHostSite] != "site1" {
				t.Errorf("vk8s' labels lost: %v", want.Labels)
			}
			if diff := cmp.Diff(tc.wantAnnotations, siteAnnotations(want.Annotations)); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantImages, images(&want.Spec)); diff != "" {
				t.Errorf("images (-want +got):\n%s", diff)
			}
			if !ptrEqual(want.Spec.ActiveDeadlineSeconds, tc.wantDeadline) {
				t.Errorf("activeDeadlineSeconds %v, want %v", want.Spec.ActiveDeadlineSeconds, tc.wantDeadline)
			}
			// Written, the update is the host pod as far as virtual-kubelet and the next
			// update can tell.
			if _, again := SiteUpdate(host, want); again {
				t.Errorf("SiteUpdate of the updated pod reports a change:\n%s", want.Annotations[vk8sv1.AnnotationLastApplied])
			}
			if v := HostView(host, want); !vkPodsEqual(v, host) {
				t.Errorf("HostView after the update differs from the host pod:\n%s", cmp.Diff(host, v))
			}
		})
	}
}

// vkPodsEqual is virtual-kubelet's comparison of a pod with the provider's (podsEqual in
// its node package): whether it calls UpdatePod.
func vkPodsEqual(a, b *corev1.Pod) bool {
	return cmp.Equal(a.Spec.Containers, b.Spec.Containers) && cmp.Equal(a.Spec.InitContainers, b.Spec.InitContainers) &&
		cmp.Equal(a.Spec.EphemeralContainers, b.Spec.EphemeralContainers) &&
		cmp.Equal(a.Spec.ActiveDeadlineSeconds, b.Spec.ActiveDeadlineSeconds) && cmp.Equal(a.Spec.Tolerations, b.Spec.Tolerations) &&
		cmp.Equal(a.Labels, b.Labels) && cmp.Equal(a.Annotations, b.Annotations)
}

// The host says how the host placed a pod: PodScheduled comes from the host pod, never
// from the site, so a pod bound by hand keeps looking bound by hand (ReachesSite).
func TestHostStatusKeepsHostScheduling(t *testing.T) {
	site := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue},
	}}}
	byHand := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "site1-node1"}}
	st := HostStatus(byHand, site)
	if slices.ContainsFunc(st.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodScheduled }) {
		t.Errorf("a pod bound by hand got the site's PodScheduled: %+v", st.Conditions)
	}
	byHand.Status = st
	if ok, why := ReachesSite(byHand, false); !ok {
		t.Errorf("a running pod bound by hand no longer reaches its site: %s", why)
	}
	scheduled := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "host"}}}}
	st = HostStatus(scheduled, site)
	if len(st.Conditions) != 3 || st.Conditions[0].Type != corev1.PodScheduled || st.Conditions[0].Reason != "host" {
		t.Errorf("the host scheduler's PodScheduled is not kept: %+v", st.Conditions)
	}
}

// A pod its site cannot place says why on the host, and users are told once per reason.
func TestSiteScheduledComesFromTheSite(t *testing.T) {
	host := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "host"},
	}}}
	unschedulable := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/3 nodes are available: 3 Too many pods."}
	site := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{unschedulable}}}
	st := HostStatus(host, site)
	want := []corev1.PodCondition{host.Status.Conditions[0], unschedulable}
	want[1].Type = vk8sv1.ConditionSiteScheduled
	if diff := cmp.Diff(want, st.Conditions); diff != "" {
		t.Errorf("host conditions (-want +got):\n%s", diff)
	}
	c, ok := SiteUnschedulable(host.Status, st)
	if !ok || c.Message != unschedulable.Message {
		t.Errorf("a newly unschedulable site pod is not reported: %+v %v", c, ok)
	}
	if _, ok := SiteUnschedulable(st, st); ok {
		t.Error("the same reason is reported again")
	}
	again := *st.DeepCopy()
	again.Conditions[1].Message = "0/3 nodes are available: 3 Insufficient cpu."
	if _, ok := SiteUnschedulable(st, again); !ok {
		t.Error("a new reason is not reported")
	}
	site.Status.Conditions[0].Status, site.Status.Phase = corev1.ConditionTrue, corev1.PodRunning
	if _, ok := SiteUnschedulable(st, HostStatus(host, site)); ok {
		t.Error("a scheduled site pod is reported unschedulable")
	}
}

// TestHostSiteLabelIsVK8s: the site pod's vk8s.io/host-site names the Site it was made
// for whatever the host pod's labels say, label sync from the host never changes or
// removes it, and the host's view of the site pod does not show it.
func TestHostSiteLabelIsVK8s(t *testing.T) {
	host := hostPod()
	host.Labels[vk8sv1.LabelHostSite] = "forged"
	site, err := SitePod(host, Target{Tenant: "acme", Site: "site1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := site.Labels[vk8sv1.LabelHostSite]; got != "site1" {
		t.Fatalf("site pod's %s = %q, want site1", vk8sv1.LabelHostSite, got)
	}
	for _, labels := range []map[string]string{
		{"app": "web"},
		{"app": "web", vk8sv1.LabelHostSite: "site2"},
		{},
	} {
		now := host.DeepCopy()
		now.Labels = labels
		want, _ := SiteUpdate(now, site)
		if got := want.Labels[vk8sv1.LabelHostSite]; got != "site1" {
			t.Errorf("after a host update to labels %v: %s = %q, want site1", labels, vk8sv1.LabelHostSite, got)
		}
		if v, ok := HostView(now, want).Labels[vk8sv1.LabelHostSite]; ok {
			t.Errorf("after a host update to labels %v: the host view shows %s=%s", labels, vk8sv1.LabelHostSite, v)
		}
		site = want
	}
	if _, ok := HostLabels(site.Labels)[vk8sv1.LabelHostSite]; ok {
		t.Errorf("HostLabels keeps %s: %v", vk8sv1.LabelHostSite, HostLabels(site.Labels))
	}
}

// TestTraceParentStaysOnTheHost: the admission's trace context is not copied to the site
// pod, and its absence there is no difference for virtual-kubelet to write.
func TestTraceParentStaysOnTheHost(t *testing.T) {
	host := hostPod()
	traceparent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	host.Annotations[vk8sv1.AnnotationTraceParent] = traceparent
	site, err := SitePod(host, Target{Tenant: "acme", Site: "site1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := site.Annotations[vk8sv1.AnnotationTraceParent]; ok || site.Annotations["note"] != "x" {
		t.Errorf("site pod annotations %v, want the host's without %s", site.Annotations, vk8sv1.AnnotationTraceParent)
	}
	if _, changed := SiteUpdate(host, site); changed {
		t.Error("SiteUpdate wants to write the site pod SitePod made")
	}
	if v := HostView(host, site); !cmp.Equal(v.Annotations, host.Annotations) {
		t.Errorf("HostView annotations differ from the host's:\n%s", cmp.Diff(host.Annotations, v.Annotations))
	}
}

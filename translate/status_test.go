package translate

import (
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

package translate

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestReachesSite(t *testing.T) {
	everything := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	byKey := []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}}
	daemon := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "kube-proxy", Controller: ptr.To(true)}}
	scheduled := corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}}
	for _, tc := range []struct {
		name    string
		managed bool
		owners  []metav1.OwnerReference
		tols    []corev1.Toleration
		status  corev1.PodStatus
		want    bool
		why     string
	}{
		{name: "a vK8s namespace's pod", managed: true, owners: daemon, tols: everything, status: scheduled, want: true},
		{name: "tolerates vk8s' taint by its key", tols: byKey, status: scheduled, want: true},
		{name: "a DaemonSet's pod that tolerates it by its key", owners: daemon, tols: byKey, status: scheduled, want: true},
		{name: "bound by hand (nodeName), no toleration", want: true},
		{name: "a host-wide DaemonSet tolerating everything", owners: daemon, tols: everything, status: scheduled, want: false, why: "DaemonSet kube-proxy"},
		{name: "a DaemonSet's pod not yet marked scheduled", owners: daemon, tols: everything, want: false, why: "host-wide DaemonSets never run on sites"},
		{name: "scheduled there because it tolerates everything", tols: everything, status: scheduled, want: false, why: "only because it tolerates every taint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "p", OwnerReferences: tc.owners},
				Spec: corev1.PodSpec{NodeName: "site1-node1", Tolerations: tc.tols}, Status: tc.status}
			got, why := ReachesSite(pod, tc.managed)
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("ReachesSite = %v, %q; want %v, containing %q", got, why, tc.want, tc.why)
			}
			if !got && !strings.Contains(why, vk8sv1.TaintKey) {
				t.Errorf("the message %q names no fix", why)
			}
		})
	}
}

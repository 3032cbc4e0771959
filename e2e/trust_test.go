package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/translate"
)

const plainNS = "plain"

// TestWhatReachesASite: a DaemonSet of a namespace vk8s does not manage, shaped as
// kube-proxy or a CNI agent are (it tolerates every taint, host network, a privileged
// container), gets a pod on each of the 9 virtual nodes from the host's DaemonSet
// controller, and none of them reaches a site: no site gets the namespace or a pod, and
// each host pod says why. A pod bound to a virtual node by hand (spec.nodeName) in the
// same namespace runs on its site.
func TestWhatReachesASite(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	hostNamespace(t, c, plainNS)
	siteNS := translate.SiteNamespace(provider.DefaultTenant, plainNS)

	labels := map[string]string{"app": "node-agent"}
	mustCreate(t, c, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: plainNS, Name: "node-agent"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				HostNetwork: true, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{Name: "agent", Image: "registry.k8s.io/kube-proxy:v1.35.4",
					SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}},
			}}}})
	var pods corev1.PodList
	waitFor(t, "9 pods of DaemonSet node-agent, each saying why it is not on its site", func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &pods, client.InNamespace(plainNS), client.MatchingLabels(labels)); err != nil {
			return false, err
		}
		n := 0
		for i := range pods.Items {
			if cond := podCondition(&pods.Items[i], vk8sv1.ConditionSiteSynced); cond != nil && cond.Status == corev1.ConditionFalse &&
				cond.Reason == translate.ReasonNotForSites && strings.Contains(cond.Message, "DaemonSet node-agent") {
				n++
			}
		}
		return n == 9, nil
	})
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodPending {
			t.Errorf("host pod %s on %s is %s, want Pending", p.Name, p.Spec.NodeName, p.Status.Phase)
		}
	}
	waitFor(t, "a Warning Event NotForSites on a pod of node-agent", func(ctx context.Context) (bool, error) {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace(plainNS)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
			return e.Type == corev1.EventTypeWarning && e.Reason == translate.ReasonNotForSites && strings.HasPrefix(e.InvolvedObject.Name, "node-agent-")
		}), nil
	})

	// A pod bound by hand runs, in the same namespace.
	byHand := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: plainNS, Name: "by-hand"},
		Spec: corev1.PodSpec{NodeName: "site2-node1", TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
	mustCreate(t, c, byHand)
	waitPod(t, c, client.ObjectKeyFromObject(byHand), "pod by-hand Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	// What each site's own API server holds: only by-hand, on site2.
	for _, site := range []string{"site1", "site2", "site3"} {
		var list corev1.PodList
		if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace(siteNS)); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		want := []string(nil)
		if site == "site2" {
			want = []string{"by-hand"}
		}
		if !slices.Equal(names, want) {
			t.Errorf("pods in %s on %s: %v, want %v", siteNS, site, names, want)
		}
		if site == "site2" {
			continue
		}
		err := siteClient(t, site).Get(t.Context(), client.ObjectKey{Name: siteNS}, &corev1.Namespace{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s on %s: %v, want none", siteNS, site, err)
		}
	}
	// Still none a while later: the pods are not retried onto the sites.
	time.Sleep(3 * time.Second)
	for _, site := range []string{"site1", "site3"} {
		var list corev1.PodList
		if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace(siteNS)); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 0 {
			t.Errorf("%d pods in %s on %s, want none", len(list.Items), siteNS, site)
		}
	}
	if err := c.Delete(t.Context(), &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: plainNS, Name: "node-agent"}}); err != nil {
		t.Error(fmt.Errorf("delete the DaemonSet: %w", err))
	}
}

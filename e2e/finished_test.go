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

package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/translate"
)

const finishedNS = "finished-e2e"

// finishedWatch is how long the test watches finished pods after their site copies are
// deleted: three of the provider's sweeps.
const finishedWatch = 3 * providerSweep

// TestFinishedPodsStayFinished (issue 13, item 10): a pod that finished on its site keeps
// its final phase when its site copy is deleted on the site, behind vk8s' back, and no new
// site pod is made for it: a bare pod with restartPolicy OnFailure that succeeded, the
// pod of a Job with restartPolicy OnFailure that succeeded, and the pod of a Job with
// restartPolicy Never that failed (exit code 3). A running pod whose site copy is deleted
// alongside is created again, which shows the provider saw the deletions. The same holds
// for a copy deleted while the provider is down, once it is back.
func TestFinishedPodsStayFinished(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	hostNamespace(t, c, finishedNS)
	siteNamespace := translate.SiteNamespace(provider.DefaultTenant, finishedNS)

	pod := func(name, node string, policy corev1.RestartPolicy, annotations map[string]string) *corev1.Pod {
		p := testPod(name, node)
		p.Namespace, p.Annotations, p.Spec.RestartPolicy = finishedNS, annotations, policy
		return p
	}
	exitAfter := map[string]string{vk8sv1.AnnotationLabExitAfter: "1s"}
	// A Job's pods end after kwokconfig.JobPodRunTime, with vk8s.io/lab-exit-code's code.
	job := func(name, node string, policy corev1.RestartPolicy, annotations map[string]string) *batchv1.Job {
		p := testPod(name, node)
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: finishedNS, Name: name},
			Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: p.Labels, Annotations: annotations}, Spec: func() corev1.PodSpec {
					s := p.Spec
					s.RestartPolicy = policy
					return s
				}()}}}
	}
	mustCreate(t, c, pod("once", "site1-node1", corev1.RestartPolicyOnFailure, exitAfter))
	mustCreate(t, c, job("done", "site2-node1", corev1.RestartPolicyOnFailure, nil))
	mustCreate(t, c, job("broken", "site3-node1", corev1.RestartPolicyNever, map[string]string{vk8sv1.AnnotationLabExitCode: "3"}))
	mustCreate(t, c, pod("later", "site1-node2", corev1.RestartPolicyOnFailure, exitAfter))
	mustCreate(t, c, pod("control", "site2-node2", corev1.RestartPolicyAlways, nil))

	// hostPods returns the host pods of the namespace by the name of their pod or Job.
	hostPods := func(ctx context.Context) (map[string][]corev1.Pod, error) {
		var list corev1.PodList
		if err := c.List(ctx, &list, client.InNamespace(finishedNS)); err != nil {
			return nil, err
		}
		out := map[string][]corev1.Pod{}
		for _, p := range list.Items {
			key := p.Name
			if j := p.Labels[batchv1.JobNameLabel]; j != "" {
				key = j
			}
			out[key] = append(out[key], p)
		}
		return out, nil
	}
	want := map[string]corev1.PodPhase{"once": corev1.PodSucceeded, "done": corev1.PodSucceeded, "broken": corev1.PodFailed,
		"later": corev1.PodSucceeded, "control": corev1.PodRunning}
	var finished map[string]corev1.Pod
	waitForLong(t, 2*time.Minute, "the pods to finish (control: to run)", func(ctx context.Context) (bool, error) {
		pods, err := hostPods(ctx)
		if err != nil {
			return false, err
		}
		finished = map[string]corev1.Pod{}
		for name, phase := range want {
			if len(pods[name]) != 1 || pods[name][0].Status.Phase != phase {
				return false, nil
			}
			finished[name] = pods[name][0]
		}
		return true, nil
	})
	if code := exitCode(finished["broken"]); code != 3 {
		t.Errorf("host pod of Job broken: exit code %d, want 3", code)
	}
	// Every pod has its copy on its site, in the same phase.
	copies := finishedSitePods(t, siteNamespace)
	for name, p := range finished {
		sp, ok := copies[p.Name]
		if !ok || sp.pod.Status.Phase != p.Status.Phase {
			t.Fatalf("site copy of %s: present %v, phase %s; want %s", p.Name, ok, sp.pod.Status.Phase, want[name])
		}
	}

	deleteCopy := func(name string) {
		t.Helper()
		p := finished[name]
		site := copies[p.Name].site
		err := clientset(t, site).CoreV1().Pods(siteNamespace).Delete(t.Context(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil {
			t.Fatalf("delete the site copy of %s on %s: %v", p.Name, site, err)
		}
	}
	// stays checks for finishedWatch that the finished pods keep their phase and UID, that
	// each Job has its one pod, and that no site runs a copy of the pods in gone.
	stays := func(gone ...string) {
		t.Helper()
		deadline := time.Now().Add(finishedWatch)
		for time.Now().Before(deadline) {
			pods, err := hostPods(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for name, before := range finished {
				if name == "control" {
					continue
				}
				if len(pods[name]) != 1 || pods[name][0].UID != before.UID || pods[name][0].Status.Phase != before.Status.Phase {
					t.Fatalf("%s: host pods %s; want only %s, %s", name, describePhases(pods[name]), before.Name, before.Status.Phase)
				}
			}
			copies := finishedSitePods(t, siteNamespace)
			for _, name := range gone {
				if sp, ok := copies[finished[name].Name]; ok {
					t.Fatalf("%s: its site copy is back on %s (UID %s, phase %s); want none", name, sp.site, sp.pod.UID, sp.pod.Status.Phase)
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	control := copies[finished["control"].Name].pod.UID
	for _, name := range []string{"once", "done", "broken", "control"} {
		deleteCopy(name)
	}
	waitFor(t, "control's site copy created again", func(context.Context) (bool, error) {
		sp, ok := finishedSitePods(t, siteNamespace)[finished["control"].Name]
		return ok && sp.pod.UID != control, nil
	})
	stays("once", "done", "broken")

	t.Run("a copy deleted on its site the moment it finishes", func(t *testing.T) {
		// The site's deletion may reach the provider before the host has the final phase,
		// which the provider reports asynchronously: the finished copy's own status must
		// count, not the host pod's.
		w, err := clientset(t, "site3").CoreV1().Pods(siteNamespace).Watch(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=quick"})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		quick := pod("quick", "site3-node3", corev1.RestartPolicyOnFailure, exitAfter)
		mustCreate(t, c, quick)
		copies := map[types.UID]bool{}
		timeout := time.After(time.Minute)
	watch:
		for {
			select {
			case ev := <-w.ResultChan():
				sp, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				copies[sp.UID] = true
				if ev.Type != watch.Deleted && sp.DeletionTimestamp == nil && sp.Status.Phase == corev1.PodSucceeded {
					err := clientset(t, "site3").CoreV1().Pods(siteNamespace).Delete(t.Context(), sp.Name, metav1.DeleteOptions{
						GracePeriodSeconds: ptr.To[int64](0), Preconditions: metav1.NewUIDPreconditions(string(sp.UID))})
					if err != nil {
						t.Fatal(err)
					}
					break watch
				}
			case <-timeout:
				t.Fatal("site pod quick did not finish within a minute")
			}
		}
		p := waitPod(t, c, client.ObjectKeyFromObject(quick), "host pod quick Succeeded", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodSucceeded
		})
		finished["quick"] = *p
		// Copies made after the first one was deleted show up in the watch.
		deadline := time.After(finishedWatch)
	again:
		for {
			select {
			case ev := <-w.ResultChan():
				if sp, ok := ev.Object.(*corev1.Pod); ok {
					copies[sp.UID] = true
				}
			case <-deadline:
				break again
			}
		}
		if len(copies) != 1 {
			t.Errorf("host pod quick had %d site copies, want 1: it ran again after it finished", len(copies))
		}
		stays("once", "done", "broken", "quick")
	})

	t.Run("after a provider restart", func(t *testing.T) {
		stopProvider()
		deleteCopy("later")
		waitFor(t, "later's site copy gone", func(context.Context) (bool, error) {
			_, ok := finishedSitePods(t, siteNamespace)[finished["later"].Name]
			return !ok, nil
		})
		startProvider(t)
		// A new pod running shows the provider is back and working.
		mustCreate(t, c, pod("after", "site3-node2", corev1.RestartPolicyAlways, nil))
		waitFor(t, "pod after Running on site3", func(context.Context) (bool, error) {
			sp, ok := finishedSitePods(t, siteNamespace)["after"]
			return ok && sp.pod.Status.Phase == corev1.PodRunning, nil
		})
		stays("once", "done", "broken", "quick", "later")
	})
}

// sitePod is a pod on a site.
type sitePod struct {
	site string
	pod  corev1.Pod
}

// finishedSitePods lists the pods of a site namespace on every site, by name.
func finishedSitePods(t *testing.T, namespace string) map[string]sitePod {
	t.Helper()
	out := map[string]sitePod{}
	for i := 1; i <= fleetSites; i++ {
		site := fmt.Sprintf("site%d", i)
		var list corev1.PodList
		if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace(namespace)); err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			out[p.Name] = sitePod{site: site, pod: p}
		}
	}
	return out
}

// exitCode is the exit code of a pod's first container that terminated, or -1.
func exitCode(p corev1.Pod) int32 {
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Terminated != nil {
			return s.State.Terminated.ExitCode
		}
	}
	return -1
}

// describePhases says which pods there are, with their phases and UIDs.
func describePhases(pods []corev1.Pod) string {
	byName := map[string]string{}
	for _, p := range pods {
		byName[p.Name] = fmt.Sprintf("%s (UID %s)", p.Status.Phase, p.UID)
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		fmt.Fprintf(&b, " %s=%s", name, byName[name])
	}
	if b.Len() == 0 {
		return " none"
	}
	return b.String()
}

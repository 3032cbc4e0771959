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
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

const workloadsNS = "workloads"

// TestJobsCronJobsAndDaemonSets runs, in a vK8s namespace on the lab's 3 sites, a Job of 2
// completions per site, a CronJob, and a DaemonSet, and reads each site's share from the
// site's own API server. The lab's sites end a Job's pods as a real site's containers end
// (lab/kwokconfig, the vk8s-lab-job-complete Stage); the host's own job and cronjob
// controllers count the completions the provider reports.
func TestJobsCronJobsAndDaemonSets(t *testing.T) {
	c, siteNS := federatedNamespace(t, workloadsNS)
	template := func(app string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{
				RestartPolicy:                 corev1.RestartPolicyNever,
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers:                    []corev1.Container{{Name: "work", Image: "busybox:1.36", Command: []string{"sh", "-c", "echo done"}}},
			},
		}
	}
	// succeededOnSites counts, on each site, the succeeded pods of host Job job.
	succeededOnSites := func(ctx context.Context, job string) (map[string]int, error) {
		out := map[string]int{}
		for _, site := range []string{"site1", "site2", "site3"} {
			var list corev1.PodList
			if err := siteClient(t, site).List(ctx, &list, client.InNamespace(siteNS), client.MatchingLabels{batchv1.JobNameLabel: job}); err != nil {
				return nil, err
			}
			for _, p := range list.Items {
				if p.Status.Phase == corev1.PodSucceeded {
					out[site]++
				}
			}
		}
		return out, nil
	}

	t.Run("a Job completes, exactly 2 completions on each site", func(t *testing.T) {
		tmpl := template("batch")
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: workloadsNS, Name: "batch"},
			Spec: batchv1.JobSpec{Completions: ptr.To[int32](2), Parallelism: ptr.To[int32](1), Template: tmpl}}
		mustCreate(t, c, job)
		if *job.Spec.Completions != 6 || *job.Spec.Parallelism != 3 {
			t.Errorf("host Job: completions %d, parallelism %d; want 6 and 3 (per site times the 3 sites)", *job.Spec.Completions, *job.Spec.Parallelism)
		}
		waitForLong(t, 3*time.Minute, "Job batch Complete", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKeyFromObject(job), job)
			return err == nil && jobComplete(job), err
		})
		if job.Status.Succeeded != 6 {
			t.Errorf("host Job succeeded %d, want 6", job.Status.Succeeded)
		}
		got, err := succeededOnSites(t.Context(), "batch")
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"site1": 2, "site2": 2, "site3": 2}; !maps.Equal(got, want) {
			t.Errorf("succeeded pods of batch per site %v, want %v", got, want)
		}
	})

	t.Run("a site that fails more than its backoffLimit fails the Job, naming the site", func(t *testing.T) {
		// An Override gives site2's pods a template whose container exits 1 (on the lab's
		// sites, vk8s.io/lab-exit-code; on a real site, a bad image or configuration).
		bad := template("flaky")
		bad.Annotations = map[string]string{vk8sv1.AnnotationLabExitCode: "1"}
		mustCreate(t, c, &vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: workloadsNS, Name: "fail-site2"},
			Spec: vk8sv1.OverrideSpec{SiteList: []string{"site2"}, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Template: &bad}}})
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: workloadsNS, Name: "flaky",
			Annotations: map[string]string{vk8sv1.AnnotationOverrides: "fail-site2"}},
			Spec: batchv1.JobSpec{Completions: ptr.To[int32](1), BackoffLimit: ptr.To[int32](1), Template: template("flaky")}}
		mustCreate(t, c, job)
		if *job.Spec.BackoffLimit != 3 || job.Annotations[vk8sv1.AnnotationBackoffLimitPerSite] != "1" {
			t.Errorf("host Job: backoffLimit %d, annotations %v; want 3 (1 per site)", *job.Spec.BackoffLimit, job.Annotations)
		}
		// site2's second failure passes its limit of 1, while the sites together (2 of 3)
		// are within the host's sum: the Job fails for site2 (the host's job controller
		// alone would wait for a 4th failure, 70 s of its backoff later).
		waitForLong(t, 3*time.Minute, "Job flaky Failed", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKeyFromObject(job), job)
			return err == nil && jobCondition(job, batchv1.JobFailed) != nil, err
		})
		if cond := jobCondition(job, batchv1.JobFailed); cond.Reason != batchv1.JobReasonBackoffLimitExceeded {
			t.Errorf("Failed condition %+v, want reason %s", cond, batchv1.JobReasonBackoffLimitExceeded)
		}
		if job.Status.Failed != 2 || job.Annotations[vk8sv1.AnnotationSiteBackoffExceeded] != "site2" {
			t.Errorf("host Job failed %d, %s=%q; want 2 and site2", job.Status.Failed,
				vk8sv1.AnnotationSiteBackoffExceeded, job.Annotations[vk8sv1.AnnotationSiteBackoffExceeded])
		}
		waitFor(t, "the per-site counts of Job flaky", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKeyFromObject(job), job)
			return err == nil && job.Annotations[vk8sv1.AnnotationSiteSucceeded] == "site1=1/1,site2=0/1,site3=1/1" &&
				job.Annotations[vk8sv1.AnnotationSiteFailed] == "site1=0/1,site2=2/1,site3=0/1", err
		})
		// Each site's own API server: site2 ran two pods, both failed; the others one each.
		for site, want := range map[string]map[corev1.PodPhase]int{
			"site1": {corev1.PodSucceeded: 1}, "site2": {corev1.PodFailed: 2}, "site3": {corev1.PodSucceeded: 1},
		} {
			var list corev1.PodList
			if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace(siteNS), client.MatchingLabels{batchv1.JobNameLabel: "flaky"}); err != nil {
				t.Fatal(err)
			}
			got := map[corev1.PodPhase]int{}
			for _, p := range list.Items {
				got[p.Status.Phase]++
			}
			if !maps.Equal(got, want) {
				t.Errorf("pods of flaky on %s by phase %v, want %v", site, got, want)
			}
		}
		waitFor(t, "Event "+federation.ReasonSiteBackoffLimitExceeded+" on Job flaky naming site2", func(ctx context.Context) (bool, error) {
			var list eventsv1.EventList
			if err := c.List(ctx, &list, client.InNamespace(workloadsNS)); err != nil {
				return false, err
			}
			return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
				return e.Regarding.Kind == "Job" && e.Regarding.Name == "flaky" && e.Type == corev1.EventTypeWarning &&
					e.Reason == federation.ReasonSiteBackoffLimitExceeded && strings.Contains(e.Note, "Site site2 failed 2 times")
			}), nil
		})
	})

	t.Run("a finished Job with ttlSecondsAfterFinished goes, and its pods from every site", func(t *testing.T) {
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: workloadsNS, Name: "short-lived"},
			Spec: batchv1.JobSpec{Completions: ptr.To[int32](1), TTLSecondsAfterFinished: ptr.To[int32](5), Template: template("short-lived")}}
		mustCreate(t, c, job)
		sawComplete := false
		waitForLong(t, 3*time.Minute, "Job short-lived Complete, then deleted by the host's TTL controller", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKeyFromObject(job), job)
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			sawComplete = sawComplete || (err == nil && jobComplete(job))
			return false, err
		})
		if !sawComplete {
			t.Error("the Job was deleted before it was seen Complete (its TTL counts from the end)")
		}
		waitFor(t, "the pods of short-lived gone from every site", func(ctx context.Context) (bool, error) {
			for _, site := range []string{"site1", "site2", "site3"} {
				var list corev1.PodList
				if err := siteClient(t, site).List(ctx, &list, client.InNamespace(siteNS), client.MatchingLabels{batchv1.JobNameLabel: "short-lived"}); err != nil || len(list.Items) > 0 {
					return false, err
				}
			}
			return true, nil
		})
	})

	t.Run("a CronJob's schedule runs on every site", func(t *testing.T) {
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: workloadsNS, Name: "tick"},
			Spec: batchv1.CronJobSpec{
				Schedule: "* * * * *", ConcurrencyPolicy: batchv1.ForbidConcurrent,
				JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Completions: ptr.To[int32](1), Template: template("tick")}},
			}}
		mustCreate(t, c, cj)
		var done *batchv1.Job
		// The first schedule comes within a minute.
		waitForLong(t, 3*time.Minute, "a Job of CronJob tick Complete", func(ctx context.Context) (bool, error) {
			var jobs batchv1.JobList
			if err := c.List(ctx, &jobs, client.InNamespace(workloadsNS)); err != nil {
				return false, err
			}
			for i := range jobs.Items {
				j := &jobs.Items[i]
				if ref := metav1.GetControllerOfNoCopy(j); ref != nil && ref.Name == "tick" && jobComplete(j) {
					done = j
					return true, nil
				}
			}
			return false, nil
		})
		if *done.Spec.Completions != 3 {
			t.Errorf("the CronJob's Job has completions %d, want 3 (1 per site)", *done.Spec.Completions)
		}
		got, err := succeededOnSites(t.Context(), done.Name)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"site1": 1, "site2": 1, "site3": 1}; !maps.Equal(got, want) {
			t.Errorf("succeeded pods of %s per site %v, want %v", done.Name, got, want)
		}
		if err := c.Delete(t.Context(), cj); err != nil {
			t.Error(err)
		}
	})

	t.Run("a DaemonSet runs one pod per virtual node", func(t *testing.T) {
		tmpl := template("agent")
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
		tmpl.Spec.Containers[0] = corev1.Container{Name: "agent", Image: "nginx:1.25"}
		mustCreate(t, c, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: workloadsNS, Name: "agent"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: tmpl}})
		var pods corev1.PodList
		waitFor(t, "9 pods of DaemonSet agent Running, one per virtual node", func(ctx context.Context) (bool, error) {
			if err := c.List(ctx, &pods, client.InNamespace(workloadsNS), client.MatchingLabels{"app": "agent"}); err != nil {
				return false, err
			}
			nodes := map[string]bool{}
			for i := range pods.Items {
				if webhookRunningReady(&pods.Items[i]) {
					nodes[pods.Items[i].Spec.NodeName] = true
				}
			}
			return len(pods.Items) == 9 && len(nodes) == 9, nil
		})
		perSite := map[string]int{}
		for _, site := range []string{"site1", "site2", "site3"} {
			var list corev1.PodList
			if err := siteClient(t, site).List(t.Context(), &list, client.InNamespace(siteNS), client.MatchingLabels{"app": "agent"}); err != nil {
				t.Fatal(err)
			}
			perSite[site] = len(list.Items)
		}
		if want := map[string]int{"site1": 3, "site2": 3, "site3": 3}; !maps.Equal(perSite, want) {
			t.Errorf("DaemonSet pods on each site's API server %v, want %v", perSite, want)
		}
		for _, p := range pods.Items {
			if p.Labels[vk8sv1.LabelSite] == "" {
				t.Errorf("pod %s has no %s", p.Name, vk8sv1.LabelSite)
			}
		}
	})
}

// jobCondition returns the Job's condition of type typ when it is True, or nil.
func jobCondition(j *batchv1.Job, typ batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// jobComplete says whether the Job's Complete condition is True.
func jobComplete(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitForLong polls cond every second for up to timeout.
func waitForLong(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), time.Second, timeout, true, cond); err != nil {
		t.Fatalf("waiting %s for %s: %v", timeout, what, err)
	}
}

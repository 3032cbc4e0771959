package e2e

import (
	"context"
	"maps"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/translate"
)

const workloadsNS = "workloads"

// TestJobsCronJobsAndDaemonSets runs, in a vK8s namespace on the lab's 3 sites, a Job of 2
// completions per site, a CronJob, and a DaemonSet, and reads each site's share from the
// site's own API server. The lab's sites end a Job's pods as a real site's containers end
// (lab/kwokconfig, the vk8s-lab-job-complete Stage); the host's own job and cronjob
// controllers count the completions the provider reports.
func TestJobsCronJobsAndDaemonSets(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	wh := webhookStart(t)
	webhookCleanup(t, c, wh, workloadsNS)
	vk8sNamespace(t, c, workloadsNS)
	siteNS := translate.SiteNamespace(provider.DefaultTenant, workloadsNS)
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

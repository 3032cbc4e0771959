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

package federation

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/placement"
)

// ReasonSiteBackoffLimitExceeded is the reason of the Event on a Job that vk8s fails
// because one site's failures passed its per-site backoffLimit.
const ReasonSiteBackoffLimitExceeded = "SiteBackoffLimitExceeded"

// jobStatus is the Job status controller: it writes each site's share of a federated Job
// on the host Job (vk8s.io/site-succeeded, vk8s.io/site-failed) and fails the Job when
// one site's failures pass vk8s.io/backoff-limit-per-site. The host's job controller
// counts failures over all sites, against spec.backoffLimit, which admission makes the
// sum of the per-site limits; it cannot tell sites apart. So vk8s names the site in
// vk8s.io/site-backoff-exceeded and sets spec.backoffLimit to 0 in the same write, and the
// job controller fails the Job as its own rules say (reason BackoffLimitExceeded,
// its running pods deleted).
type jobStatus struct {
	s      *State
	reader client.Reader
	writer client.Client
}

// setupJobStatus adds the Job status controller to mgr: it watches the Jobs admission
// federated and their pods.
func setupJobStatus(mgr ctrl.Manager, s *State) error {
	j := &jobStatus{s: s, reader: mgr.GetClient(), writer: mgr.GetClient()}
	return builder.ControllerManagedBy(mgr).
		Named(s.Name+"-job-status").
		For(&batchv1.Job{}, builder.WithPredicates(predicate.NewPredicateFuncs(federatedJob))).
		Owns(&corev1.Pod{}).
		Complete(j)
}

// federatedJob says whether admission federated the Job (or the CronJob that made it).
func federatedJob(obj client.Object) bool {
	return obj.GetAnnotations()[vk8sv1.AnnotationReplicasPerSite] != ""
}

// Reconcile writes the Job's per-site counts and fails it when a site passed its limit.
func (j *jobStatus) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	job := &batchv1.Job{}
	if err := j.reader.Get(ctx, req.NamespacedName, job); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !federatedJob(job) || job.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	var pods corev1.PodList
	if err := j.reader.List(ctx, &pods, client.InNamespace(job.Namespace), client.MatchingFields{IndexPodOwner: string(job.UID)}); err != nil {
		return reconcile.Result{}, fmt.Errorf("list the pods of Job %s: %w", req.NamespacedName, err)
	}
	shares := countJobShares(job, pods.Items)
	patched := job.DeepCopy()
	patched.Annotations[vk8sv1.AnnotationSiteSucceeded] = shares.Succeeded()
	patched.Annotations[vk8sv1.AnnotationSiteFailed] = shares.Failed()
	var exceeded *siteShare
	if !jobFinished(job) && job.Annotations[vk8sv1.AnnotationSiteBackoffExceeded] == "" {
		exceeded = shares.Exceeded()
	}
	if exceeded != nil {
		patched.Annotations[vk8sv1.AnnotationSiteBackoffExceeded] = exceeded.Site
		patched.Spec.BackoffLimit = ptr.To[int32](0)
	}
	if patched.Annotations[vk8sv1.AnnotationSiteSucceeded] == job.Annotations[vk8sv1.AnnotationSiteSucceeded] &&
		patched.Annotations[vk8sv1.AnnotationSiteFailed] == job.Annotations[vk8sv1.AnnotationSiteFailed] && exceeded == nil {
		return reconcile.Result{}, nil
	}
	if err := j.writer.Patch(ctx, patched, client.MergeFrom(job)); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if s := exceeded; s != nil {
		ctrl.LoggerFrom(ctx).Info("Failing a Job: a site passed its backoffLimit", "site", s.Site, "failures", s.Failed, "backoffLimitPerSite", shares.BackoffLimit)
		j.s.event(job, nil, corev1.EventTypeWarning, ReasonSiteBackoffLimitExceeded, "FailJob",
			"Site %s failed %d times, more than the Job's backoffLimit of %d per site: the Job fails (spec.backoffLimit set to 0). "+
				"Look at the Job's failed pods on %s (label %s=%s)", s.Site, s.Failed, shares.BackoffLimit, s.Site, vk8sv1.LabelSite, s.Site)
	}
	return reconcile.Result{}, nil
}

// jobFinished says whether the Job is Complete or Failed (or on its way to either).
func jobFinished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobFailed, batchv1.JobFailureTarget, batchv1.JobSuccessCriteriaMet:
			if c.Status == corev1.ConditionTrue {
				return true
			}
		}
	}
	return false
}

// siteShare is one site's share of a federated Job, as its host pods show it.
type siteShare struct {
	Site string
	// Succeeded counts the site's succeeded pods; Failed its failed pods and, for a Job
	// whose pods restart on failure, the container restarts of its running pods, as the
	// host's job controller counts failures.
	Succeeded, Failed int32
}

// jobShares is a federated Job's shares, site by site in placement order.
type jobShares struct {
	Sites []siteShare
	// OnFailure: the Job's pods restart on failure, and their restarts count.
	OnFailure bool
	// Completions is the per-site completions, nil for a work-queue Job;
	// BackoffLimit the per-site backoffLimit, -1 when the Job has none.
	Completions  *int32
	BackoffLimit int32
}

// countJobShares counts the Job's pods site by site: the sites of its placement, then any
// other site one of its pods is on.
func countJobShares(job *batchv1.Job, pods []corev1.Pod) jobShares {
	out := jobShares{BackoffLimit: -1}
	if v, err := strconv.ParseInt(job.Annotations[vk8sv1.AnnotationCompletionsPerSite], 10, 32); err == nil {
		out.Completions = ptr.To(int32(v))
	}
	if v, err := strconv.ParseInt(job.Annotations[vk8sv1.AnnotationBackoffLimitPerSite], 10, 32); err == nil {
		out.BackoffLimit = int32(v)
	}
	if l, err := placement.ParseLayout(job.Annotations[vk8sv1.AnnotationPlacement]); err == nil {
		for _, site := range l.Sites {
			out.Sites = append(out.Sites, siteShare{Site: site})
		}
	}
	out.OnFailure = job.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
	for i := range pods {
		p := &pods[i]
		site := p.Labels[vk8sv1.LabelSite]
		if site == "" {
			continue
		}
		k := out.index(site)
		if k < 0 {
			out.Sites = append(out.Sites, siteShare{Site: site})
			k = len(out.Sites) - 1
		}
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			out.Sites[k].Succeeded++
		case corev1.PodFailed:
			out.Sites[k].Failed++
		case corev1.PodRunning, corev1.PodPending:
			if out.OnFailure {
				for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
					out.Sites[k].Failed += st.RestartCount
				}
			}
		}
	}
	return out
}

func (j jobShares) index(site string) int {
	for i := range j.Sites {
		if j.Sites[i].Site == site {
			return i
		}
	}
	return -1
}

// Succeeded is vk8s.io/site-succeeded: "site1=2/2,site2=1/2", or "site1=2,site2=1"
// for a work-queue Job.
func (j jobShares) Succeeded() string {
	return j.format(func(s siteShare) string {
		if j.Completions == nil {
			return strconv.Itoa(int(s.Succeeded))
		}
		return fmt.Sprintf("%d/%d", s.Succeeded, *j.Completions)
	})
}

// Failed is vk8s.io/site-failed: "site1=0/6,site2=7/6", or bare counts for a Job
// without a per-site backoffLimit.
func (j jobShares) Failed() string {
	return j.format(func(s siteShare) string {
		if j.BackoffLimit < 0 {
			return strconv.Itoa(int(s.Failed))
		}
		return fmt.Sprintf("%d/%d", s.Failed, j.BackoffLimit)
	})
}

// Exceeded returns the first site whose failures passed the per-site backoffLimit, or nil,
// by the host's job controller's rules: more failures than the limit, or as many
// restarts as a limit above 0 when pods restart on failure.
func (j jobShares) Exceeded() *siteShare {
	if j.BackoffLimit < 0 {
		return nil
	}
	for i, s := range j.Sites {
		if s.Failed > j.BackoffLimit || (j.OnFailure && j.BackoffLimit > 0 && s.Failed >= j.BackoffLimit) {
			return &j.Sites[i]
		}
	}
	return nil
}

func (j jobShares) format(value func(siteShare) string) string {
	parts := make([]string, 0, len(j.Sites))
	for _, s := range j.Sites {
		parts = append(parts, s.Site+"="+value(s))
	}
	return strings.Join(parts, ",")
}

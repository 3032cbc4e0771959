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

package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/workqueue"
)

func TestPermanentRejection(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	podKind := schema.GroupKind{Kind: "Pod"}
	// What a site's API server (Kubernetes 1.35) answers when a ValidatingAdmissionPolicy
	// denies a pod (the message is the policy's): with no reason or reason Invalid, a 422
	// whose message still says "is forbidden"; with reason Forbidden, a 403.
	const denied = `ValidatingAdmissionPolicy 'deny' with binding 'deny' denied request: no pods labelled deny`
	vapForbidden := apierrors.NewForbidden(pods, "web", errors.New(denied))
	vapInvalid := &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
		Message: `pods "web" is forbidden: ` + denied,
	}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"422 invalid spec", apierrors.NewInvalid(podKind, "web", field.ErrorList{field.Required(field.NewPath("spec", "containers"), "")}), true},
		{"422 from a policy with reason Invalid or none", vapInvalid, true},
		{"422 wrapped", fmt.Errorf("create pod on site1: %w", vapInvalid), true},
		{"400 bad request", apierrors.NewBadRequest("cannot decode"), true},
		{"413 too large", apierrors.NewRequestEntityTooLargeError("limit is 3145728"), true},
		{"403 from a policy with reason Forbidden", vapForbidden, false},
		{"403 wrapped", fmt.Errorf("create pod on site1: %w", vapForbidden), false},
		{"403 exceeded quota", apierrors.NewForbidden(pods, "web", errors.New("exceeded quota: no-pods, requested: pods=1, used: pods=1, limited: pods=1")), false},
		{"401 unauthorized", apierrors.NewUnauthorized("token expired"), false},
		{"409 conflict", apierrors.NewConflict(pods, "web", errors.New("changed")), false},
		{"429 too many requests", apierrors.NewTooManyRequests("slow down", 1), false},
		{"500 internal", apierrors.NewInternalError(errors.New("etcd")), false},
		{"503 unavailable", apierrors.NewServiceUnavailable("starting"), false},
		{"504 timeout", apierrors.NewTimeoutError("webhook", 10), false},
		{"webhook unreachable", apierrors.NewInternalError(errors.New(`failed calling webhook "x": connection refused`)), false},
		{"bare 422 status", &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity}}, true},
		{"deadline", context.DeadlineExceeded, false},
		{"403 namespace terminating", &apierrors.StatusError{ErrStatus: metav1.Status{Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden,
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := permanentRejection(tc.err); got != tc.want {
				t.Errorf("permanentRejection(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestPodSecurityViolation(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	// What a site (Kubernetes 1.35) answers for a privileged pod in a baseline namespace.
	psa := apierrors.NewForbidden(pods, "priv", errors.New(`violates PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true)`))
	for _, tc := range []struct {
		name  string
		err   error
		level string
		ok    bool
	}{
		{"403 from Pod Security Admission", psa, "baseline", true},
		{"the same, wrapped", fmt.Errorf("create pod on site2: %w", psa), "baseline", true},
		{"403 exceeded quota", apierrors.NewForbidden(pods, "web", errors.New("exceeded quota: q")), "", false},
		{"422 quoting Pod Security", &apierrors.StatusError{ErrStatus: metav1.Status{Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
			Message: `violates PodSecurity "baseline:latest"`}}, "", false},
		{"not an API error", errors.New(`violates PodSecurity "baseline:latest"`), "", false},
	} {
		level, ok := podSecurityViolation(tc.err)
		if level != tc.level || ok != tc.ok {
			t.Errorf("%s: podSecurityViolation = %q, %v; want %q, %v", tc.name, level, ok, tc.level, tc.ok)
		}
	}
}

// A site cluster's work items run at once, up to the workers, each in its own goroutine;
// dispatch returns once the queue is shut down and every item taken is done.
func TestDispatchRunsUpToWorkersAtOnce(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[int]())
	const workers, items = 4, 10
	var (
		mu            sync.Mutex
		running, most int
	)
	release := make(chan struct{})
	started := make(chan int, items)
	done := make(chan struct{})
	go func() {
		defer close(done)
		dispatch(q, workers, func(it int) {
			defer q.Done(it)
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			started <- it
			<-release
			mu.Lock()
			running--
			mu.Unlock()
		})
	}()
	for i := range items {
		q.Add(i)
	}
	wait := func(what string) {
		t.Helper()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not start", what)
		}
	}
	for i := range workers {
		wait(fmt.Sprintf("item %d of the first %d", i+1, workers))
	}
	select {
	case it := <-started:
		t.Fatalf("item %d started while %d ran", it, workers)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	for i := workers; i < items; i++ {
		wait(fmt.Sprintf("item %d", i+1))
	}
	q.ShutDown()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("dispatch did not return after the queue shut down")
	}
	if most != workers {
		t.Errorf("at most %d items ran at once, want %d", most, workers)
	}
}

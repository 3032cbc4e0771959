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
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/workqueue"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
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

// orphanPod is a site pod of tenant t whose host pod demo/name does not exist, made age
// ago for Site site ("": by a vk8s before vk8s.io/host-site) on node node1.
func orphanPod(name, site string, age time.Duration) *corev1.Pod {
	labels := map[string]string{vk8sv1.LabelTenant: "t", vk8sv1.LabelHostNamespace: "demo", vk8sv1.LabelHostPodUID: "uid-" + name}
	if site != "" {
		labels[vk8sv1.LabelHostSite] = site
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "t-demo", Name: name, UID: types.UID("site-" + name), Labels: labels,
			CreationTimestamp: metav1.NewTime(time.Now().Add(-age))},
		Spec: corev1.PodSpec{NodeName: "node1"},
	}
}

// TestTakeForOrphan: with sharding, a site pod whose host pod the host cache lacks is taken
// for an orphan at once by the replica that owns the Site it was made for, never by
// another; one that does not say its Site, or whose Site is gone, by a replica whose Site
// runs its node once it is orphanAge old.
func TestTakeForOrphan(t *testing.T) {
	owns := func(site string) bool { return site == "mine" }
	exists := func(site string) bool { return site != "gone" }
	for _, tc := range []struct {
		name    string
		site    string
		age     time.Duration
		selects bool
		want    bool
	}{
		{"label of an owned Site, just made", "mine", time.Second, false, true},
		{"label of an owned Site, old", "mine", time.Hour, true, true},
		{"label of another replica's Site, old, its node selected here too", "theirs", time.Hour, true, false},
		{"label of another replica's Site, just made", "theirs", 0, true, false},
		{"label of a Site that is gone, old, node selected", "gone", time.Hour, true, true},
		{"label of a Site that is gone, just made", "gone", time.Second, true, false},
		{"label of a Site that is gone, node not selected", "gone", time.Hour, false, false},
		{"no label, old, node selected", "", time.Hour, true, true},
		{"no label, just made, node selected", "", time.Second, true, false},
		{"no label, old, node not selected", "", time.Hour, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := orphanPod("web", tc.site, tc.age)
			selects := func(node string) bool { return tc.selects && node == "node1" }
			if got := takeForOrphan(sp, siteOwner(sp, owns, exists), selects, time.Now()); got != tc.want {
				t.Errorf("takeForOrphan = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestOrphansOfSharedSites: the sweep, the site pod events and DeletePod (virtual-kubelet's
// dangling pods at start) act on a site pod whose host pod is gone only when this replica
// owns the Site it was made for, at once; without sharding, on every one.
func TestOrphansOfSharedSites(t *testing.T) {
	pods := []*corev1.Pod{
		orphanPod("mine-new", "mine", time.Second),
		orphanPod("theirs-old", "theirs", time.Hour),
		orphanPod("unlabelled-new", "", time.Second),
		// Old and unlabelled, but no Site of this replica runs node1 (the registry has no
		// connection): another replica's, maybe.
		orphanPod("unlabelled-old", "", time.Hour),
	}
	for _, tc := range []struct {
		name string
		owns func(string) bool
		// taken are deleted as orphans; queued go to the queue, where syncPod decides.
		taken, queued []string
	}{
		{"sharded", func(site string) bool { return site == "mine" },
			[]string{"mine-new"}, []string{"mine-new", "unlabelled-new", "unlabelled-old"}},
		{"not sharded", nil,
			[]string{"mine-new", "theirs-old", "unlabelled-new", "unlabelled-old"}, []string{"mine-new", "theirs-old", "unlabelled-new", "unlabelled-old"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPods(t, prometheus.NewRegistry(), tracetest.NewSpanRecorder(), nil, nil)
			reg, err := sitereg.New(sitereg.Config{MetricsRegisterer: prometheus.NewRegistry(), Owns: tc.owns})
			if err != nil {
				t.Fatal(err)
			}
			p.cfg.Registry = reg
			site := fake.NewClientset()
			c, err := newCluster(&sitereg.Conn{Site: "mine", Key: "k", Server: "https://site.example", Client: site}, "t", logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			for _, sp := range pods {
				if err := c.pods.GetIndexer().Add(sp); err != nil {
					t.Fatal(err)
				}
			}
			p.clusters[c.key] = c

			p.sweep(t.Context(), c)
			if got := deletedOn(site); !slices.Equal(got, tc.taken) {
				t.Errorf("the sweep deleted %v, want %v", got, tc.taken)
			}
			// Their events queue them, and so does virtual-kubelet's DeletePod of their
			// host form (its dangling pods at start); syncPod deletes what the sweep did.
			for _, sp := range pods {
				p.sitePodChanged(c, sp)
			}
			if got := syncQueued(t, p, c); !slices.Equal(got, tc.queued) {
				t.Errorf("site pod events queued %v, want %v", got, tc.queued)
			}
			if got := deletedOn(site); !slices.Equal(got, tc.taken) {
				t.Errorf("syncPod deleted %v, want %v", got, tc.taken)
			}
			for _, sp := range pods {
				if err := p.DeletePod(t.Context(), orphanView(sp)); err != nil {
					t.Errorf("DeletePod(%s): %v", sp.Name, err)
				}
			}
			if got := syncQueued(t, p, c); !slices.Equal(got, tc.queued) {
				t.Errorf("DeletePod queued %v, want %v", got, tc.queued)
			}
			if got := deletedOn(site); !slices.Equal(got, tc.taken) {
				t.Errorf("syncPod deleted %v, want %v", got, tc.taken)
			}
		})
	}
}

// deletedOn returns the names of the pods deleted through a fake site client since the
// last call, sorted.
func deletedOn(site *fake.Clientset) []string {
	var out []string
	for _, a := range site.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && a.GetResource().Resource == "pods" {
			out = append(out, d.GetName())
		}
	}
	site.ClearActions()
	slices.Sort(out)
	return out
}

// syncQueued takes every pod item off a cluster's queue, syncs it, and returns their
// names, sorted.
func syncQueued(t *testing.T, p *Pods, c *cluster) []string {
	t.Helper()
	var out []string
	for c.queue.Len() > 0 {
		it, _ := c.queue.Get()
		if it.Kind == "" {
			out = append(out, it.Name)
			if err := p.syncPod(t.Context(), c, it); err != nil {
				t.Errorf("syncPod(%s): %v", it.Name, err)
			}
		}
		c.queue.Done(it)
		c.queue.Forget(it)
	}
	slices.Sort(out)
	return out
}

// TestOwnedByTheSitePodsSite: with sharding, a host pod on a virtual node is its Site
// owner's whatever its site pod says; one whose virtual node is gone (or the host form of
// a site pod, which names the site's node) is the owner's of the Site its site pod was
// made for, and everyone's when that is unknown.
func TestOwnedByTheSitePodsSite(t *testing.T) {
	p := testPods(t, prometheus.NewRegistry(), tracetest.NewSpanRecorder(),
		[]*corev1.Node{virtualNode("mine-node1", "mine"), virtualNode("theirs-node1", "theirs")}, nil)
	reg, err := sitereg.New(sitereg.Config{MetricsRegisterer: prometheus.NewRegistry(), Owns: func(site string) bool { return site == "mine" }})
	if err != nil {
		t.Fatal(err)
	}
	p.cfg.Registry = reg
	made := func(site, uid string) *corev1.Pod {
		sp := orphanPod("web", site, time.Hour)
		sp.Labels[vk8sv1.LabelHostPodUID] = uid
		return sp
	}
	for _, tc := range []struct {
		name string
		node string
		sp   *corev1.Pod
		want bool
	}{
		{"on a virtual node of an owned Site", "mine-node1", made("theirs", "uid-web"), true},
		{"on a virtual node of another replica's Site", "theirs-node1", made("mine", "uid-web"), false},
		{"virtual node gone, made for an owned Site", "gone-node1", made("mine", "uid-web"), true},
		{"virtual node gone, made for another replica's Site", "gone-node1", made("theirs", "uid-web"), false},
		{"virtual node gone, made by an older vk8s", "gone-node1", made("", "uid-web"), true},
		{"virtual node gone, a site pod of an earlier pod of that name", "gone-node1", made("theirs", "uid-earlier"), true},
		{"virtual node gone, no site pod", "gone-node1", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := podOn("web", tc.node, corev1.PodRunning)
			if got := p.owned(t.Context(), host, tc.sp); got != tc.want {
				t.Errorf("owned = %v, want %v", got, tc.want)
			}
		})
	}
}

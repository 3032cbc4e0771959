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
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/provider"
)

// TestProviderDisconnection freezes site3's API server (SIGSTOP: a partition, not a crash)
// and checks SPEC's disconnection rules: the virtual nodes stay Ready with
// SiteConnected=False and a NoSchedule taint; the pods keep their phase, gain a stale
// condition and, after the grace period, Ready=False with reason SiteUnreachable; nothing
// is evicted. Back, both sides are reconciled: a pod deleted in the host meanwhile goes
// from the site, one created meanwhile runs, and statuses are fresh again.
func TestProviderDisconnection(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	ctx := t.Context()
	const ns = "disconnect-e2e"
	siteNamespace := translate.SiteNamespace(provider.DefaultTenant, ns)
	hostNamespace(t, host, ns)
	waitAllVirtualNodes(t, host)
	pod := func(name, node string) *corev1.Pod {
		p := testPod(name, node)
		p.Namespace = ns
		return p
	}
	key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
	mustCreate(t, host, pod("steady", "site3-node1"))
	mustCreate(t, host, pod("doomed", "site3-node2"))
	steady := pollPod(t, host, key("steady"), "Running and Ready", time.Minute, func(p *corev1.Pod) bool {
		c := podCondition(p, corev1.PodReady)
		return p.Status.Phase == corev1.PodRunning && c != nil && c.Status == corev1.ConditionTrue
	})
	pollPod(t, host, key("doomed"), "Running", time.Minute, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	siteSteady := &corev1.Pod{}
	if err := siteClient(t, "site3").Get(ctx, client.ObjectKey{Namespace: siteNamespace, Name: "steady"}, siteSteady); err != nil {
		t.Fatal(err)
	}

	st, err := fleet.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	apiserver := findComponent(st, "site3", "kube-apiserver")
	if apiserver == nil {
		t.Fatal("no kube-apiserver for site3")
	}
	frozen := time.Now()
	if err := syscall.Kill(apiserver.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if resumed {
			return
		}
		resumed = true
		_ = syscall.Kill(apiserver.PID, syscall.SIGCONT)
		// Components that gave up on the frozen API server (leader election) start again.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// The thawed API server catches up first; on a loaded machine (the unit tests of
		// other packages run beside this one) the restarted components may give up on it
		// again, so lab up is tried again, as an operator would.
		var err error
		for attempt := range 3 {
			if attempt > 0 {
				t.Logf("lab up after resuming site3, attempt %d: %v", attempt, err)
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Second):
				}
			}
			if err = fleet.Up(ctx); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("lab up after resuming site3: %v", err)
			// Why site3's components exited: the end of their logs.
			if st, serr := fleet.Status(context.Background()); serr == nil {
				for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kwok-controller"} {
					if comp := findComponent(st, "site3", name); comp != nil {
						raw, _ := os.ReadFile(comp.Log)
						lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
						t.Logf("site3 %s log, last lines:\n%s", name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
					}
				}
			}
		}
	}
	t.Cleanup(resume)

	waitNode(t, host, "site3-node1", "SiteConnected=False, the unreachable taint, still Ready", func(n *corev1.Node) bool {
		c := nodeCondition(n, vk8sv1.ConditionSiteConnected)
		r := nodeCondition(n, corev1.NodeReady)
		return c != nil && c.Status == corev1.ConditionFalse && r != nil && r.Status == corev1.ConditionTrue && hasTaint(n, vk8sv1.TaintSiteUnreachable)
	})
	stale := pollPod(t, host, key("steady"), "stale, then not Ready with reason SiteUnreachable, still Running", 2*time.Minute, func(p *corev1.Pod) bool {
		stale := podCondition(p, vk8sv1.ConditionStatusStale)
		ready := podCondition(p, corev1.PodReady)
		return p.Status.Phase == corev1.PodRunning && stale != nil && stale.Status == corev1.ConditionTrue &&
			ready != nil && ready.Status == corev1.ConditionFalse && ready.Reason == translate.ReasonSiteUnreachable
	})
	// The grace period counts from the last successful contact, before the freeze, not
	// from when the provider noticed (a heartbeat later).
	notReady := time.Since(frozen)
	msg := podCondition(stale, vk8sv1.ConditionStatusStale).Message
	m := regexp.MustCompile(`does not answer since (\S+);`).FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("stale condition %q names no time", msg)
	}
	since, err := time.Parse(time.RFC3339, m[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("last contact %s before the freeze; Ready=False seen %s after it", frozen.Sub(since).Round(time.Second), notReady.Round(time.Second))
	if since.After(frozen) {
		t.Errorf("the grace period counts from %s, after site3 froze at %s: want its last contact", since, frozen.UTC().Format(time.RFC3339))
	}
	// While site3 is away: one pod deleted in the host, one created.
	if err := host.Delete(ctx, pod("doomed", "")); err != nil {
		t.Fatal(err)
	}
	pollPod(t, host, key("doomed"), "gone from the host", time.Minute, func(*corev1.Pod) bool { return false }, allowGone)
	mustCreate(t, host, pod("newcomer", "site3-node3"))

	resume()
	waitNode(t, host, "site3-node1", "SiteConnected=True and no unreachable taint", func(n *corev1.Node) bool {
		c := nodeCondition(n, vk8sv1.ConditionSiteConnected)
		return c != nil && c.Status == corev1.ConditionTrue && !hasTaint(n, vk8sv1.TaintSiteUnreachable)
	})
	pollPod(t, host, key("steady"), "fresh: Ready again, no stale condition", 2*time.Minute, func(p *corev1.Pod) bool {
		ready := podCondition(p, corev1.PodReady)
		return podCondition(p, vk8sv1.ConditionStatusStale) == nil && ready != nil && ready.Status == corev1.ConditionTrue
	})
	pollPod(t, host, key("newcomer"), "Running", 2*time.Minute, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	site3 := siteClient(t, "site3")
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := site3.Get(ctx, client.ObjectKey{Namespace: siteNamespace, Name: "doomed"}, &corev1.Pod{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Errorf("the site pod of a host pod deleted while site3 was away is still there: %v", err)
	}
	// Nothing was evicted or replaced.
	now := &corev1.Pod{}
	if err := host.Get(ctx, key("steady"), now); err != nil || now.UID != steady.UID {
		t.Errorf("host pod steady: %v, UID %s; want the same pod (UID %s)", err, now.UID, steady.UID)
	}
	if err := site3.Get(ctx, client.ObjectKey{Namespace: siteNamespace, Name: "steady"}, now); err != nil || now.UID != siteSteady.UID {
		t.Errorf("site pod steady: %v, UID %s; want the same pod (UID %s)", err, now.UID, siteSteady.UID)
	}
}

// allowGone makes pollPod succeed when the pod does not exist.
const allowGone = true

// pollPod waits up to timeout for ok to hold for the pod (or, with gone set, for the pod
// to be gone).
func pollPod(t *testing.T, c client.Client, key client.ObjectKey, what string, timeout time.Duration, ok func(*corev1.Pod) bool, gone ...bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := c.Get(ctx, key, p); err != nil {
			if apierrors.IsNotFound(err) {
				return len(gone) > 0 && gone[0], nil
			}
			return false, nil
		}
		last = p
		return ok(p), nil
	})
	if err != nil {
		if last != nil {
			t.Fatalf("pod %s: waiting for %s: %v; last phase %s, conditions %+v", key, what, err, last.Status.Phase, last.Status.Conditions)
		}
		t.Fatalf("pod %s: waiting for %s: %v", key, what, err)
	}
	return last
}

func waitNode(t *testing.T, c client.Client, name, what string, ok func(*corev1.Node) bool) {
	t.Helper()
	var last *corev1.Node
	if err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		n := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
			return false, nil
		}
		last = n
		return ok(n), nil
	}); err != nil {
		if last != nil {
			t.Fatalf("node %s: waiting for %s: %v; conditions %+v, taints %+v", name, what, err, last.Status.Conditions, last.Spec.Taints)
		}
		t.Fatalf("node %s: waiting for %s: %v", name, what, err)
	}
}

func nodeCondition(n *corev1.Node, typ corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func hasTaint(n *corev1.Node, key string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key })
}

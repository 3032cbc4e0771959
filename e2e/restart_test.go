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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/election"
	"github.com/vk8s-io/vk8s/provider"
)

// restartDowntime is how long the provider stays down: longer than the host's node
// grace period (40 s), as the failure mode this test guards against needs.
const restartDowntime = 90 * time.Second

// TestProviderRestart kills the provider (SIGKILL) while 50 pods are being created on the
// sites, keeps it down, starts it again, and checks that every site has exactly its pods,
// those created before the kill with their original UIDs, and that nothing was deleted.
func TestProviderRestart(t *testing.T) {
	skipShort(t)
	if testing.Short() {
		return
	}
	startProvider(t) // the virtual nodes exist before the subprocess takes over
	host := hostClient(t)
	waitAllVirtualNodes(t, host)
	stopProvider()
	t.Cleanup(func() { startProvider(t) })

	bin := buildVk8s(t)
	const ns = "restart-e2e"
	siteNamespace := translate.SiteNamespace(provider.DefaultTenant, ns)
	hostNamespace(t, host, ns)

	// Every deletion of a site pod in the namespace is an error from here on.
	deleted := watchSiteDeletions(t, siteNamespace)

	first := runProviderProcess(t, bin, "first")
	const pods = 50
	want := map[string]string{} // pod -> site
	create := func(from, to int) { createPodsOnSites(t, host, ns, from, to, want) }
	// Kill the provider while it is creating: half the host pods exist, some of them on
	// their sites already; the other half is created while it is down.
	create(0, pods/2)
	waitFor(t, "the first site pod", func(ctx context.Context) (bool, error) {
		return len(sitePodUIDs(t, siteNamespace)) > 0, nil
	})
	first.kill(t)
	create(pods/2, pods)
	before := sitePodUIDs(t, siteNamespace)
	t.Logf("provider killed with %d of %d site pods created; down for %s", len(before), pods, restartDowntime)
	time.Sleep(restartDowntime)

	runProviderProcess(t, bin, "second")
	waitPodsIntact(t, host, ns, siteNamespace, want, before, deleted)
}

// waitPodsIntact waits until every host pod of ns is Running, and checks that every site
// has exactly its pods (want: pod -> site), each carrying its host pod's UID, that those in
// before kept their UIDs, and that deleted reported no deletion.
func waitPodsIntact(t *testing.T, host client.Client, ns, siteNamespace string, want map[string]string, before map[string]sitePodID, deleted <-chan string) {
	t.Helper()
	pods := len(want)
	waitFor(t, fmt.Sprintf("all %d host pods Running", pods), func(ctx context.Context) (bool, error) {
		list := &corev1.PodList{}
		if err := host.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		running := 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == pods, nil
	})
	hostUIDs := map[string]types.UID{}
	list := &corev1.PodList{}
	if err := host.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		hostUIDs[p.Name] = p.UID
	}
	after := sitePodUIDs(t, siteNamespace)
	if len(after) != pods {
		t.Errorf("%d site pods, want %d", len(after), pods)
	}
	for name, sp := range after {
		if sp.site != want[name] {
			t.Errorf("pod %s on %s, want %s", name, sp.site, want[name])
		}
		if sp.hostUID != string(hostUIDs[name]) {
			t.Errorf("site pod %s carries host UID %s, want %s", name, sp.hostUID, hostUIDs[name])
		}
		if b, ok := before[name]; ok && b.uid != sp.uid {
			t.Errorf("site pod %s was replaced (UID %s, then %s)", name, b.uid, sp.uid)
		}
	}
	select {
	case ev := <-deleted:
		t.Errorf("a site pod was deleted: %s", ev)
	default:
	}
}

// buildVk8s builds the vk8s binary for tests that run it as a process.
func buildVk8s(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vk8s")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/vk8s-io/vk8s/cmd/vk8s")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build vk8s: %v\n%s", err, out)
	}
	return bin
}

type providerProcess struct {
	cmd *exec.Cmd
	log string
}

// runProviderProcess runs `vk8s provider` against the fleet's host, with flags extra
// besides its own, until the test ends or kill is called.
func runProviderProcess(t *testing.T, bin, name string, extra ...string) *providerProcess {
	t.Helper()
	kc := fleet.ComponentKubeconfig("provider")
	logPath := filepath.Join(t.TempDir(), name+".log")
	watchLogForbidden(t, logPath)
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"provider", "--kubeconfig", kc, "--node-address", "127.0.0.1",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, extra...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &providerProcess{cmd: cmd, log: logPath}
	t.Cleanup(func() {
		p.kill(t)
		_ = logFile.Close()
		if t.Failed() {
			raw, _ := os.ReadFile(logPath)
			lines := strings.Split(string(raw), "\n")
			t.Logf("provider %s log (last lines):\n%s", name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	return p
}

func (p *providerProcess) kill(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

type sitePodID struct {
	site, uid, hostUID string
	// hostSite is the Site it was made for (vk8s.io/host-site).
	hostSite string
}

// sitePodUIDs lists the pods of a site namespace on every site, by name.
func sitePodUIDs(t *testing.T, siteNamespace string) map[string]sitePodID {
	t.Helper()
	out := map[string]sitePodID{}
	for i := 1; i <= fleetSites; i++ {
		site := fmt.Sprintf("site%d", i)
		list := &corev1.PodList{}
		if err := siteClient(t, site).List(t.Context(), list, client.InNamespace(siteNamespace)); err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			if prev, dup := out[p.Name]; dup {
				t.Errorf("pod %s is on %s and on %s", p.Name, prev.site, site)
			}
			out[p.Name] = sitePodID{site: site, uid: string(p.UID), hostUID: p.Labels[vk8sv1.LabelHostPodUID], hostSite: p.Labels[vk8sv1.LabelHostSite]}
		}
	}
	return out
}

// watchSiteDeletions reports every pod deletion in a namespace of the sites until the test
// ends.
func watchSiteDeletions(t *testing.T, namespace string) <-chan string {
	t.Helper()
	out := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for i := 1; i <= fleetSites; i++ {
		site := fmt.Sprintf("site%d", i)
		w, err := clientset(t, site).CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				if ev.Type != watch.Deleted && !isTerminating(ev.Object) {
					continue
				}
				p, _ := ev.Object.(*corev1.Pod)
				if p != nil {
					select {
					case out <- fmt.Sprintf("%s %s/%s (%s)", site, p.Namespace, p.Name, ev.Type):
					default:
					}
				}
			}
		}()
	}
	return out
}

func isTerminating(obj any) bool {
	p, ok := obj.(*corev1.Pod)
	return ok && p.DeletionTimestamp != nil
}

// TestProviderFailover runs two provider processes with leader election, kills the leader
// (SIGKILL: the Lease is not released) while 50 pods are being created on the sites, and
// checks that the standby takes over within 15 s and that every site then has exactly its
// pods: none lost, none duplicated, none deleted or replaced.
func TestProviderFailover(t *testing.T) {
	skipShort(t)
	startProvider(t) // the virtual nodes exist before the processes take over
	host := hostClient(t)
	waitAllVirtualNodes(t, host)
	stopProvider()
	t.Cleanup(func() { startProvider(t) })

	bin := buildVk8s(t)
	const ns = "failover-e2e"
	siteNamespace := translate.SiteNamespace(provider.DefaultTenant, ns)
	hostNamespace(t, host, ns)
	deleted := watchSiteDeletions(t, siteNamespace)

	holder := leaseHolder(host)
	// A Lease left by an earlier test's process is taken over or expires first.
	leader := runProviderProcess(t, bin, "leader")
	first := waitLeading(t, host, leader)
	runProviderProcess(t, bin, "standby")

	const pods = 50
	want := map[string]string{}
	createPodsOnSites(t, host, ns, 0, pods/2, want)
	waitFor(t, "the first site pod", func(ctx context.Context) (bool, error) {
		return len(sitePodUIDs(t, siteNamespace)) > 0, nil
	})
	leader.kill(t)
	killed := time.Now()
	createPodsOnSites(t, host, ns, pods/2, pods, want)
	before := sitePodUIDs(t, siteNamespace)
	var takeover time.Duration
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		h := holder(ctx)
		if h != "" && h != first {
			takeover = time.Since(killed)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the standby did not take the Lease over: %v", err)
	}
	t.Logf("leader killed with %d of %d site pods created; the standby held the Lease %s later", len(before), pods, takeover.Round(100*time.Millisecond))
	// The election's bound, not a speed goal: the standby sees the dead leader's last
	// renewal up to a retry period late (client-go's jitter makes it 1.2 of one), counts
	// the lease duration from then, and looks again a retry period later; a loaded API
	// server's answers get 2 s. Beyond it the standby waited for something else.
	bound := provider.DefaultLeaseDuration + 2*provider.DefaultRetryPeriod*12/10 + 2*time.Second
	if takeover > bound {
		t.Errorf("takeover took %s, want at most %s (lease duration %s, retry period %s)", takeover, bound, provider.DefaultLeaseDuration, provider.DefaultRetryPeriod)
	}
	waitPodsIntact(t, host, ns, siteNamespace, want, before, deleted)
	t.Logf("all %d pods Running and intact %s after the kill", pods, time.Since(killed).Round(100*time.Millisecond))
}

// TestStaleLeaseTakenOver: a provider started after every replica was down for longer than
// the Lease's duration takes the Lease over at once (package election) instead of waiting
// a whole duration from its first look, as client-go's elector does; a Lease its holder
// renews is never taken.
func TestStaleLeaseTakenOver(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	waitAllVirtualNodes(t, host)
	stopProvider()
	t.Cleanup(func() { startProvider(t) })

	cfg, err := fleet.RESTConfig("host")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildVk8s(t)
	holder := leaseHolder(host)
	old := runProviderProcess(t, bin, "old")
	first := waitLeading(t, host, old)
	took, err := election.TakeOverStale(t.Context(), cfg, providerLease.Namespace, providerLease.Name, provider.DefaultLeaseDuration)
	if err != nil || took {
		t.Fatalf("TakeOverStale of a Lease its holder renews = %v, %v; want false, nil", took, err)
	}
	if h := holder(t.Context()); h != first {
		t.Fatalf("the renewed Lease's holder changed from %q to %q", first, h)
	}

	old.kill(t)
	// The outage: longer than the Lease's duration and the clocks' precision.
	time.Sleep(provider.DefaultLeaseDuration + 4*time.Second)
	started := time.Now()
	fresh := runProviderProcess(t, bin, "new")
	var second string
	waitFor(t, "the new provider to lead", func(ctx context.Context) (bool, error) {
		second = holder(ctx)
		return second != "" && second != first, nil
	})
	t.Logf("the new provider held the Lease %s after it started", time.Since(started).Round(100*time.Millisecond))
	if log := readFile(t, fresh.log); !strings.Contains(log, "Took over a leader election Lease") {
		t.Errorf("the new provider did not take the stale Lease over; it waited it out:\n%s", log)
	}
}

// providerLease is the provider's leader election Lease in the lab.
var providerLease = client.ObjectKey{Namespace: "vk8s-system", Name: "vk8s-provider"}

// leaseHolder returns a function that reads the holder of providerLease ("" when none).
func leaseHolder(host client.Client) func(ctx context.Context) string {
	return func(ctx context.Context) string {
		l := &coordinationv1.Lease{}
		if err := host.Get(ctx, providerLease, l); err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
}

// waitLeading waits until provider process p holds providerLease and returns the holder.
func waitLeading(t *testing.T, host client.Client, p *providerProcess) string {
	t.Helper()
	holder := leaseHolder(host)
	var h string
	waitFor(t, "the provider to lead", func(ctx context.Context) (bool, error) {
		h = holder(ctx)
		return h != "" && strings.Contains(strings.ToLower(readFile(t, p.log)), "successfully acquired lease"), nil
	})
	return h
}

// createPodsOnSites creates host pods p<from>..p<to-1> in ns at once, spread over the
// sites' nodes, and records each one's site in want. They tolerate NotReady nodes for ever,
// as admission makes the pods of vK8s namespaces do.
func createPodsOnSites(t *testing.T, host client.Client, ns string, from, to int, want map[string]string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		site, node := i%fleetSites+1, i/fleetSites%fleetNodes+1
		name := fmt.Sprintf("p%02d", i)
		want[name] = fmt.Sprintf("site%d", site)
		p := testPod(name, fmt.Sprintf("site%d-node%d", site, node))
		p.Namespace = ns
		for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
		}
		wg.Go(func() {
			if err := host.Create(context.Background(), p); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create host pod: %v", err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	raw, _ := os.ReadFile(path)
	return string(raw)
}

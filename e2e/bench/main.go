// Command bench measures the provider on a lab of its own and prints the figures:
//
//   - pod start latency: N pods created through the host, from the create call to the host
//     showing them Running, next to the same N pods created directly on the sites in the
//     same run (the baseline), as p50/p99 and their ratio;
//   - admission: pod CREATE (dry run) through the API server in a namespace the webhook
//     does not serve next to a vK8s namespace, one at a time and 20 at once, and the seed
//     scenario from the create call to 9/9 pods Running;
//   - the provider process's memory (RSS) and CPU with 3, 30 and 300 sites, the extra sites
//     being node-selected slices of the lab's site clusters (Site.spec.nodeSelector), so
//     that the machine can hold them.
//
// It is a program and not a timed test: the machine is shared and noisy, so it reports
// figures and ratios against a baseline taken in the same run, and asserts nothing.
//
//	go run ./e2e/bench --vk8s bin/vk8s     (make bench)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/e2e/lab"
	"github.com/vk8s-io/vk8s/provider"
)

// The bench lab: 3 sites of 3 nodes, as the demo's.
const (
	labSites = 3
	labNodes = 3
)

func main() {
	// The lab runs this program as its kubelet relay.
	lab.Init()
	var (
		vk8s   = flag.String("vk8s", "bin/vk8s", "the vk8s binary whose provider is measured")
		pods   = flag.Int("pods", 100, "pods per latency run")
		sites  = flag.String("sites", "3,30,300", "site counts at which the provider's footprint is measured")
		window = flag.Duration("window", 30*time.Second, "how long CPU is measured at each site count")
		keep   = flag.Bool("keep", false, "leave the lab up afterwards")
		admits = flag.Int("admissions", 200, "dry-run pod creates per admission run")
	)
	flag.Parse()
	if err := run(*vk8s, *pods, *admits, *sites, *window, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(vk8s string, pods, admissions int, sitesFlag string, window time.Duration, keep bool) error {
	var counts []int
	for _, s := range strings.Split(sitesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < labSites {
			return fmt.Errorf("--sites %q: want counts of at least %d", sitesFlag, labSites)
		}
		counts = append(counts, n)
	}
	bin, err := filepath.Abs(vk8s)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "vk8s-bench-")
	if err != nil {
		return err
	}
	l, err := lab.New(lab.Config{
		Name: "bench", Sites: labSites, Nodes: labNodes, Dir: filepath.Join(dir, "lab"), Tools: lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")},
		Log: os.Stderr, Vk8sBinary: bin,
	})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if !keep {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := l.Down(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "bench: lab down:", err)
			}
			_ = os.RemoveAll(dir)
		}()
	}
	upCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := l.Up(upCtx); err != nil {
		return err
	}
	host, err := clientset(l, "host")
	if err != nil {
		return err
	}
	names, err := l.Sites()
	if err != nil {
		return err
	}

	// Warm up: the first pod of a site cluster waits for the provider's caches of it.
	if _, err := latency(ctx, host, "bench-warmup", len(names)*labNodes, false, func(i int) string {
		return names[i%len(names)] + "-" + lab.NodeName(i/len(names)%labNodes+1)
	}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	fmt.Printf("pod start latency, %d pods (create call -> Running observed)\n", pods)
	viaHost, err := latency(ctx, host, "bench-host", pods, false, func(i int) string {
		return names[i%len(names)] + "-" + lab.NodeName(i/len(names)%labNodes+1)
	})
	if err != nil {
		return fmt.Errorf("through the host: %w", err)
	}
	direct, err := directLatency(ctx, l, names, pods)
	if err != nil {
		return fmt.Errorf("directly on the sites: %w", err)
	}
	fmt.Printf("  %-22s p50 %8s  p99 %8s\n", "directly on the sites", round(pct(direct, 50)), round(pct(direct, 99)))
	fmt.Printf("  %-22s p50 %8s  p99 %8s\n", "through the host", round(pct(viaHost, 50)), round(pct(viaHost, 99)))
	fmt.Printf("  %-22s p50 %7.2fx  p99 %7.2fx\n", "ratio host/direct",
		ratio(pct(viaHost, 50), pct(direct, 50)), ratio(pct(viaHost, 99), pct(direct, 99)))

	if err := admission(ctx, l, host, admissions, 20); err != nil {
		return fmt.Errorf("admission: %w", err)
	}

	fmt.Printf("\nprovider footprint (idle, %s CPU window)\n", window)
	fmt.Printf("  %6s %14s %10s %10s\n", "sites", "virtual nodes", "RSS MiB", "CPU %")
	for _, n := range counts {
		vnodes, err := scaleSites(ctx, l, host, n)
		if err != nil {
			return fmt.Errorf("%d sites: %w", n, err)
		}
		rss, cpu, err := footprint(ctx, l, window)
		if err != nil {
			return err
		}
		fmt.Printf("  %6d %14d %10.1f %10.1f\n", n, vnodes, rss, cpu)
	}
	return nil
}

func clientset(l *lab.Lab, cluster string) (*kubernetes.Clientset, error) {
	cfg, err := l.RESTConfig(cluster)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	return kubernetes.NewForConfig(cfg)
}

// latency creates n pods in namespace ns of cs, pod i bound to node(i) (pin: through a
// required node affinity on its hostname, as vk8s makes site pods), all at once, and
// returns for each the time from its create call to the first watch event showing it
// Running.
func latency(ctx context.Context, cs kubernetes.Interface, ns string, n int, pin bool, node func(int) string) ([]time.Duration, error) {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	w, err := podWatch(ctx, cs, ns, "")
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	started := map[string]time.Time{}
	running := map[string]time.Duration{}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		name := fmt.Sprintf("p%03d", i)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Tolerations:                   []corev1.Toleration{{Key: provider.TaintKey, Operator: corev1.TolerationOpExists}},
				Containers:                    []corev1.Container{{Name: "app", Image: "nginx"}},
			},
		}
		if pin {
			// As vk8s pins site pods: the site's scheduler still checks fit.
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node(i)}}},
				}}},
			}}
		} else {
			p.Spec.NodeName = node(i)
		}
		wg.Go(func() {
			mu.Lock()
			started[name] = time.Now()
			mu.Unlock()
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	timeout := time.After(5 * time.Minute)
	for len(running) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, errors.New("watch ended")
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning {
				continue
			}
			if _, seen := running[p.Name]; !seen {
				mu.Lock()
				running[p.Name] = time.Since(started[p.Name])
				mu.Unlock()
			}
		case <-timeout:
			return nil, fmt.Errorf("%d of %d pods Running after 5m", len(running), n)
		}
	}
	out := make([]time.Duration, 0, n)
	for _, d := range running {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

// podWatch watches the pods of ns (matching selector) from now on, again after the API
// server ends a watch (client-go's RetryWatcher), so a run is not lost to a watch timeout.
func podWatch(ctx context.Context, cs kubernetes.Interface, ns, selector string) (watch.Interface, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector, Limit: 1})
	if err != nil {
		return nil, err
	}
	return watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return cs.CoreV1().Pods(ns).Watch(ctx, o)
		},
	})
}

// directLatency is latency on the sites themselves: the same number of pods, spread over
// the sites' nodes as the host's are over the virtual nodes.
func directLatency(ctx context.Context, l *lab.Lab, sites []string, n int) ([]time.Duration, error) {
	var (
		mu  sync.Mutex
		all []time.Duration
		wg  sync.WaitGroup
	)
	errs := make(chan error, len(sites))
	for i, site := range sites {
		cs, err := clientset(l, site)
		if err != nil {
			return nil, err
		}
		share := n / len(sites)
		if i < n%len(sites) {
			share++
		}
		wg.Go(func() {
			d, err := latency(ctx, cs, "bench-direct", share, true, func(j int) string { return lab.NodeName(j%labNodes + 1) })
			if err != nil {
				errs <- fmt.Errorf("%s: %w", site, err)
				return
			}
			mu.Lock()
			all = append(all, d...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	slices.Sort(all)
	return all, nil
}

// scaleSites makes the host hold n Sites, the ones beyond the lab's being node-selected
// slices of its site clusters, one real node each, and waits until every virtual node is
// Ready. It returns the number of virtual nodes.
func scaleSites(ctx context.Context, l *lab.Lab, host kubernetes.Interface, n int) (int, error) {
	c, err := l.Client("host")
	if err != nil {
		return 0, err
	}
	base, err := l.Sites()
	if err != nil {
		return 0, err
	}
	for i := len(base) + 1; i <= n; i++ {
		from := &vk8sv1.Site{}
		if err := c.Get(ctx, client.ObjectKey{Name: base[(i-1)%len(base)]}, from); err != nil {
			return 0, err
		}
		node := lab.NodeName((i-1)/len(base)%labNodes + 1)
		s := &vk8sv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("slice%d", i), Labels: map[string]string{"vk8s.io/bench": "slice"}},
			Spec: vk8sv1.SiteSpec{
				KubeconfigSecretRef: from.Spec.KubeconfigSecretRef,
				NodeSelector:        map[string]string{corev1.LabelHostname: node},
			},
		}
		if err := c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, err
		}
	}
	want := 0
	err = wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := host.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: provider.LabelType + "=" + provider.TypeVirtualKubelet})
		if err != nil {
			return false, nil
		}
		ready := 0
		for i := range list.Items {
			for _, cond := range list.Items[i].Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		want = len(base)*labNodes + (n - len(base))
		return ready >= want, nil
	})
	if err != nil {
		return 0, fmt.Errorf("waiting for %d Ready virtual nodes: %w", want, err)
	}
	return want, nil
}

// footprint lets the provider settle, then reads its RSS and its CPU use over window.
func footprint(ctx context.Context, l *lab.Lab, window time.Duration) (rssMiB, cpuPercent float64, err error) {
	pid, err := providerPID(ctx, l)
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(10 * time.Second)
	t0, err := cpuTicks(pid)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	time.Sleep(window)
	t1, err := cpuTicks(pid)
	if err != nil {
		return 0, 0, err
	}
	elapsed := time.Since(start).Seconds()
	rss, err := rssKiB(pid)
	if err != nil {
		return 0, 0, err
	}
	// Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
	return float64(rss) / 1024, float64(t1-t0) / 100 / elapsed * 100, nil
}

func providerPID(ctx context.Context, l *lab.Lab) (int, error) {
	st, err := l.Status(ctx)
	if err != nil {
		return 0, err
	}
	for _, c := range st {
		for _, p := range c.Components {
			if p.Name == "vk8s-provider" && p.Running {
				return p.PID, nil
			}
		}
	}
	return 0, errors.New("the lab's provider is not running")
}

func cpuTicks(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	f := strings.Fields(string(raw)[strings.LastIndexByte(string(raw), ')')+2:])
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, errors.Join(err1, err2)
}

func rssKiB(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

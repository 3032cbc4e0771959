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

// Command bench measures the provider on a lab of its own and prints the figures:
//
//   - pod start latency: N pods created through the host, from the create call to the host
//     showing them Running, next to the same N pods created directly on the sites in the
//     same run (the baseline), as p50/p99 and their ratio;
//   - one site whose writes hang: the pod start latency on the other sites while a site-side
//     webhook that never answers holds the second site's pod creates (--stuck pods wait
//     for it), against runs with every site healthy alternating with it
//     (--hanging-rounds), as a ratio;
//   - on request (--outage 10m), a provider outage: the provider killed with --outage-pods
//     pods on the sites, started again after the outage, and what it cost (pods evicted,
//     deleted or restarted, seconds until every pod is Ready again);
//   - admission: pod CREATE (dry run) through the API server in a namespace the webhook
//     does not serve next to a vK8s namespace, one at a time and 20 at once, and the seed
//     scenario from the create call to 9/9 pods Running;
//   - the provider's footprint with 3, 30 and 300 sites (and, on request, 1,000 sites of 3
//     nodes: --sites 3,30,300,1000x3), the extra sites being node-selected slices of the
//     lab's site clusters (Site.spec.nodeSelector), so that the machine can hold them: the
//     virtual nodes Ready and the time until they were, the provider's memory (RSS), CPU,
//     goroutines and requests to the host over an idle window, the age of the stalest
//     virtual node Lease and of the least recently probed Site's heartbeat, and the host
//     API server's and etcd's memory.
//
// It is a program and not a timed test: the machine is shared and noisy, so it reports
// figures and ratios against a baseline taken in the same run, and asserts nothing.
//
//	go run ./e2e/bench --vk8s bin/vk8s     (make bench)
//
// --pods 0 and --admissions 0 skip those parts; --name names the lab, so that two benches
// (or a bench and other labs) can run on one machine.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	"github.com/vk8s-io/vk8s/lab"
)

// The bench lab: 3 sites of 3 nodes, as the demo's.
const (
	labSites = 3
	labNodes = 3
)

// options are the bench's flags.
type options struct {
	name, vk8s, sites, results string
	pods, admissions           int
	window, readyTimeout       time.Duration
	keep, hostScheduler        bool
	scalePods, scalePodSites   int
	mirrorObjects              int
	mirrorAt                   []int
	stuck, hangingRounds       int
	down                       time.Duration
	outagePods                 int
	many                       manyPodsConfig
	metricsResolution          time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.vk8s, "vk8s", "bin/vk8s", "the vk8s binary whose provider is measured")
	flag.IntVar(&o.pods, "pods", 100, "pods per latency run (0: no pod start runs)")
	flag.IntVar(&o.scalePods, "scale-pods", 0, "pods of a second pod start run, over --scale-pod-sites Sites (the issue's: 1000 over 30; 0: no such run)")
	flag.IntVar(&o.scalePodSites, "scale-pod-sites", 30, "Sites of the second pod start run: the lab's and node-selected slices of its clusters; --sites must not go below")
	flag.BoolVar(&o.hostScheduler, "host-scheduler", false, "let the host's scheduler bind the pods created through the host (a required node affinity on the virtual node's hostname) instead of creating them with spec.nodeName")
	flag.StringVar(&o.sites, "sites", "3,30,300", "site counts at which the provider's footprint is measured; NxK: N sites, the slices K nodes each (1000x3); empty: none")
	flag.DurationVar(&o.window, "window", 30*time.Second, "how long CPU is measured at each site count")
	flag.BoolVar(&o.keep, "keep", false, "leave the lab up afterwards")
	flag.IntVar(&o.admissions, "admissions", 1000, "dry-run pod creates per admission run, off and on each (0: no admission run); at 1,000 the p99 is the tenth slowest")
	flag.StringVar(&o.name, "name", "bench", "name of the bench's lab (its clusters are <name>-host, <name>-site1, ...)")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 15*time.Minute, "how long to wait at each site count for every virtual node to be Ready")
	flag.IntVar(&o.mirrorObjects, "mirror-objects", 100, "ConfigMaps per mirror-lag run (0: none)")
	mSites := flag.String("mirror-sites", "3,30", "site counts, among --sites, at which the mirror lag is measured")
	flag.IntVar(&o.stuck, "stuck", 30, "pods left stuck on the second site while its writes hang, in the hanging-site run (0: no such run)")
	flag.IntVar(&o.hangingRounds, "hanging-rounds", 3, "rounds of the hanging-site run, each a healthy run then a hanging one")
	flag.DurationVar(&o.metricsResolution, "metrics-resolution", time.Minute, "the lab's metrics-server scrape interval (at least 10s): it scrapes every virtual node, and at 3,000 of them every 15 s took more CPU than the provider")
	flag.DurationVar(&o.down, "outage", 0, "how long the provider is killed in the outage run (0: no such run; the issue's figure is 10m)")
	flag.IntVar(&o.outagePods, "outage-pods", 300, "pods running on the sites during the outage run")
	flag.IntVar(&o.many.pods, "many-pods", 0, "pods of the pods-at-scale run, last (the issue's: 30000 over 300 sites; 0: no such run)")
	flag.IntVar(&o.many.sites, "many-pod-sites", 300, "Sites of the pods-at-scale run: the lab's and node-selected slices of one node")
	flag.IntVar(&o.many.createRate, "many-pods-rate", 100, "pods created a second in the pods-at-scale run")
	flag.IntVar(&o.many.churnRate, "churn", 100, "pods replaced a second (one deleted, one created) after the pods-at-scale run's pods run (0: no churn)")
	flag.DurationVar(&o.many.churnFor, "churn-for", time.Minute, "how long the churn lasts")
	flag.StringVar(&o.results, "results", "docs/bench", "directory the run's figures are written to as <date>-<commit>.json (empty: not written)")
	flag.Parse()
	for _, f := range strings.Split(*mSites, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			o.mirrorAt = append(o.mirrorAt, n)
		}
	}
	res := newResults()
	printLoad("at the start", res.LoadStart)
	err := run(o, res)
	if o.results != "" {
		path, werr := res.write(o.results)
		if werr != nil {
			fmt.Fprintln(os.Stderr, "bench: write the results:", werr)
		} else {
			printLoad("at the end", res.LoadEnd)
			fmt.Printf("results: %s\n", path)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options, res *results) error {
	sizes, err := parseSizes(o.sites)
	if err != nil {
		return err
	}
	if o.many.pods > 0 && (o.many.sites < labSites || (len(sizes) > 0 && sizes[len(sizes)-1].sites > o.many.sites)) {
		return fmt.Errorf("--many-pod-sites %d: want at least %d and at least the last of --sites %q (the pods-at-scale run comes last, and slices are not removed)", o.many.sites, labSites, o.sites)
	}
	if o.scalePods > 0 && (o.scalePodSites < labSites || (len(sizes) > 0 && sizes[0].sites < o.scalePodSites)) {
		return fmt.Errorf("--scale-pod-sites %d: want at least %d and at most the first of --sites %q (the slices stay for the footprint)", o.scalePodSites, labSites, o.sites)
	}
	bin, err := filepath.Abs(o.vk8s)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "vk8s-bench-")
	if err != nil {
		return err
	}
	l, err := lab.New(lab.Config{
		Name: o.name, Sites: labSites, Nodes: labNodes, NodePods: nodePods(o), Dir: filepath.Join(dir, "lab"), Tools: lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")},
		Log: os.Stderr, Vk8sBinary: bin, MetricsResolution: o.metricsResolution,
	})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if !o.keep {
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

	if o.pods > 0 {
		if err := podLatency(ctx, l, host, names, o.pods, o.hostScheduler, res); err != nil {
			return err
		}
	}
	if o.down > 0 {
		if err := outage(ctx, l, host, names, o.outagePods, o.down, res); err != nil {
			return fmt.Errorf("outage: %w", err)
		}
	}
	if o.pods > 0 && o.stuck > 0 {
		if err := hangingSite(ctx, l, host, names, o.pods, o.stuck, o.hangingRounds, res); err != nil {
			return fmt.Errorf("hanging site: %w", err)
		}
	}
	if o.admissions > 0 {
		if err := admission(ctx, l, host, o.admissions, 20, res); err != nil {
			return fmt.Errorf("admission: %w", err)
		}
	}
	if len(sizes) == 0 && o.scalePods == 0 && o.many.pods == 0 {
		return nil
	}
	vnodes, err := watchVirtualNodes(ctx, host)
	if err != nil {
		return err
	}
	if o.scalePods > 0 {
		if err := podLatencyAtScale(ctx, l, host, names, vnodes, o.scalePods, o.scalePodSites, o.hostScheduler, o.readyTimeout, res); err != nil {
			return fmt.Errorf("pod start at %d sites: %w", o.scalePodSites, err)
		}
	}
	fmt.Printf("\nprovider footprint (idle, %s window; NxK: the slices have K nodes)\n", o.window)
	fmt.Printf("  %8s %7s %7s %9s %8s %6s %7s %8s %8s %9s %9s %8s %8s\n", "sites", "vnodes", "Ready", "to Ready", "RSS MiB", "CPU %",
		"gorout.", "host r/s", "min Rdy", "old lease", "old Site", "apisrv", "etcd")
	for _, sz := range sizes {
		took, ok, err := scaleSites(ctx, l, vnodes, sz, o.readyTimeout)
		if err != nil {
			return fmt.Errorf("%s sites: %w", sz, err)
		}
		_, ready := vnodes.counts()
		toReady, toReadySeconds := round(took).String(), took.Seconds()
		if !ok {
			toReady, toReadySeconds = "> "+o.readyTimeout.String(), -1
		}
		u, err := footprint(ctx, l, host, vnodes, o.window)
		if err != nil {
			return err
		}
		fmt.Printf("  %8s %7d %7d %9s %8.1f %6.1f %7d %8.1f %8d %9s %9s %8.1f %8.1f\n", sz, sz.virtualNodes(), ready, toReady,
			u.providerRSS, u.cpu, u.goroutines, u.hostRequests, u.minReady, u.leaseAge.Round(time.Second),
			u.heartbeatAge.Round(time.Second), u.apiserverRSS, u.etcdRSS)
		fmt.Printf("  %8s host requests/s by method: %s\n", "", methods(u.byMethod))
		res.Footprint = append(res.Footprint, footprintResult{Sites: sz.String(), VirtualNodes: sz.virtualNodes(), Ready: ready,
			ToReady: toReadySeconds, RSSMiB: u.providerRSS, CPUPercent: u.cpu, Goroutines: u.goroutines, HostRequests: u.hostRequests,
			OldestLease: u.leaseAge.Seconds(), OldestSite: u.heartbeatAge.Seconds()})
		if o.mirrorObjects > 0 && slices.Contains(o.mirrorAt, sz.sites) {
			if err := mirrorLag(ctx, l, host, sz.sites, o.mirrorObjects, res); err != nil {
				return fmt.Errorf("mirror lag at %s: %w", sz, err)
			}
		}
	}
	if o.many.pods > 0 {
		o.many.readyTimeout = o.readyTimeout
		if err := manyPods(ctx, l, host, names, vnodes, o.many, res); err != nil {
			return fmt.Errorf("pods at scale: %w", err)
		}
	}
	return nil
}

// podLatency prints the pod start latency through the host and directly on the sites, and
// where the time through the host goes (podStart), after a warm-up.
func podLatency(ctx context.Context, l *lab.Lab, host kubernetes.Interface, names []string, pods int, hostScheduler bool, res *results) error {
	// Warm up: the first pod of a site cluster waits for the provider's caches of it.
	if _, err := latency(ctx, host, "bench-warmup", len(names)*labNodes, false, func(i int) string {
		return names[i%len(names)] + "-" + lab.NodeName(i/len(names)%labNodes+1)
	}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	var vnodes [][]string
	for _, name := range names {
		var nodes []string
		for j := 1; j <= labNodes; j++ {
			nodes = append(nodes, name+"-"+lab.NodeName(j))
		}
		vnodes = append(vnodes, nodes)
	}
	r, err := podStart(ctx, l, host, names, vnodes, pods, hostScheduler, "")
	if err != nil {
		return err
	}
	res.PodStart = r
	return nil
}

// podLatencyAtScale is podLatency with the pods spread over sites Sites (the lab's and
// node-selected slices of its clusters, made by scaleSites), and directly over the lab's
// site clusters.
func podLatencyAtScale(ctx context.Context, l *lab.Lab, host kubernetes.Interface, names []string, vw *vnodeWatch, pods, sites int,
	hostScheduler bool, readyTimeout time.Duration, res *results) error {
	took, ok, err := scaleSites(ctx, l, vw, size{sites: sites, nodes: 1}, readyTimeout)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%d sites: not every virtual node Ready after %s", sites, round(took))
	}
	r, err := podStart(ctx, l, host, names, siteVirtualNodes(names, sites), pods, hostScheduler, "-"+strconv.Itoa(sites))
	if err != nil {
		return err
	}
	r.Sites = sites
	res.PodStartAtScale = r
	return nil
}

// nodePods is the pods a site node of the bench's lab allows: a kubelet's default 110,
// unless a run puts more on one node. The runs through the host put each Site's pods on
// its nodes in turn, and a slice of --scale-pod-sites is one node that other slices share,
// so the bench does not count: a node may hold every pod of the larger run, and the
// site's own pod limit is not what the bench measures (a site at its limit leaves pods
// Pending, and the run never ends).
func nodePods(o options) int {
	return max(110, 110+max(o.pods, o.scalePods, o.many.pods))
}

// podStart creates n pods through the host, pod i on a virtual node of site i mod
// len(vnodes) (vnodes: each site's virtual nodes, taken in turn), and then n pods directly
// on the lab's site clusters, and prints their start latency and where the time through
// the host goes: the stages the bench's watches of the host and the sites show, and those
// of the provider's vk8s_provider_pod_start_stage_seconds (scraped before and after).
// suffix names the run's namespaces (bench-host<suffix>, bench-direct<suffix>).
func podStart(ctx context.Context, l *lab.Lab, host kubernetes.Interface, names []string, vnodes [][]string, pods int,
	hostScheduler bool, suffix string) (*podStartResult, error) {
	how := "created with spec.nodeName"
	if hostScheduler {
		how = "bound by the host's scheduler"
	}
	fmt.Printf("\npod start latency, %d pods over %d sites (create call -> Running observed; through the host: %s)\n", pods, len(vnodes), how)
	var sites []kubernetes.Interface
	for _, name := range names {
		cs, err := clientset(l, name)
		if err != nil {
			return nil, err
		}
		sites = append(sites, cs)
	}
	metricsURL, err := l.ProviderMetricsURL()
	if err != nil {
		return nil, err
	}
	before, err := scrape(ctx, metricsURL)
	if err != nil {
		return nil, err
	}
	ns := "bench-host" + suffix
	sw, err := watchSitePods(ctx, sites, ns)
	if err != nil {
		return nil, err
	}
	times, err := timedStarts(ctx, host, ns, pods, hostScheduler, func(i int) string {
		nodes := vnodes[i%len(vnodes)]
		return nodes[i/len(vnodes)%len(nodes)]
	})
	if err != nil {
		sw.Stop()
		return nil, fmt.Errorf("through the host: %w", err)
	}
	sw.fill(times)
	sw.Stop()
	after, err := scrape(ctx, metricsURL)
	if err != nil {
		return nil, err
	}
	viaHost := startDurations(times)
	direct, err := directLatency(ctx, l, names, pods, "bench-direct"+suffix)
	if err != nil {
		return nil, fmt.Errorf("directly on the sites: %w", err)
	}
	fmt.Printf("  %-22s p50 %8s  p99 %8s\n", "directly on the sites", round(pct(direct, 50)), round(pct(direct, 99)))
	fmt.Printf("  %-22s p50 %8s  p99 %8s\n", "through the host", round(pct(viaHost, 50)), round(pct(viaHost, 99)))
	fmt.Printf("  %-22s p50 %7.2fx  p99 %7.2fx\n", "ratio host/direct",
		ratio(pct(viaHost, 50), pct(direct, 50)), ratio(pct(viaHost, 99), pct(direct, 99)))
	fmt.Printf("  %-22s p50 %+7dms  p99 %7.2fx   (goal: p50 at most +250ms, p99 at most 1.20x)\n", "host - direct",
		(pct(viaHost, 50) - pct(direct, 50)).Milliseconds(), ratio(pct(viaHost, 99), pct(direct, 99)))
	stages := append(benchStages(times), providerStages(before, after)...)
	printStages("where the time through the host goes, by the bench's watches of the host and the sites:", stages[:5])
	printStages("and by the provider (vk8s_provider_pod_start_stage_seconds, from its informer's event):", stages[5:])
	conflicts := counter(after, "vk8s_provider_pod_status_conflicts_total") - counter(before, "vk8s_provider_pod_status_conflicts_total")
	fmt.Printf("  host status writes refused as stale (vk8s_provider_pod_status_conflicts_total): %.0f\n", conflicts)
	writes := map[string]int{}
	for _, result := range []string{"written", "unchanged", "failed"} {
		match := map[string]string{"result": result}
		writes[result] = int(counterWhere(after, "vk8s_provider_pod_status_writes_total", match) -
			counterWhere(before, "vk8s_provider_pod_status_writes_total", match))
	}
	fmt.Printf("  host status writes (vk8s_provider_pod_status_writes_total): %d written (%.2f a pod), %d unchanged and not sent, %d failed\n",
		writes["written"], float64(writes["written"])/float64(pods), writes["unchanged"], writes["failed"])
	// Everything the provider asked the host meanwhile (status writes, Events, heartbeats),
	// a pod: the host's API server is on the path of every stage through the host.
	perPod := map[string]float64{}
	if addr, err := hostAddress(l); err == nil {
		b, a := hostRequests(before, addr), hostRequests(after, addr)
		for method, n := range a {
			perPod[method] = (n - b[method]) / float64(pods)
		}
	}
	fmt.Printf("  the provider's requests to the host a pod meanwhile (rest_client_requests_total): %s\n", methods(perPod))
	return &podStartResult{Pods: pods, Sites: len(vnodes), HostScheduler: hostScheduler, Direct: distOf(direct), ViaHost: distOf(viaHost),
		Ratio: ratiosOf(viaHost, direct), Stages: stages, StatusConflicts: int(conflicts), StatusWrites: writes,
		HostRequestsPerPod: perPod}, nil
}

// methods formats requests per second by method, the busiest first.
func methods(rates map[string]float64) string {
	keys := slices.Collect(maps.Keys(rates))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(rates[b], rates[a]) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, rates[k]))
	}
	return strings.Join(parts, ", ")
}

func clientset(l *lab.Lab, cluster string) (*kubernetes.Clientset, error) {
	cfg, err := l.RESTConfig(cluster)
	if err != nil {
		return nil, err
	}
	// The bench's own clients must not be what a run waits for: 1,000 pods created at once
	// through the host go through one of them, and directly over three.
	cfg.QPS, cfg.Burst = 2000, 4000
	return kubernetes.NewForConfig(cfg)
}

// latency creates n pods in namespace ns of cs, pod i bound to node(i) (pin: through a
// required node affinity on its hostname, as vk8s makes site pods, so that the cluster's
// scheduler binds it), all at once, and returns for each the time from its create call to
// the first watch event showing it Running.
func latency(ctx context.Context, cs kubernetes.Interface, ns string, n int, pin bool, node func(int) string) ([]time.Duration, error) {
	times, err := timedStarts(ctx, cs, ns, n, pin, node)
	if err != nil {
		return nil, err
	}
	return startDurations(times), nil
}

// startDurations are the pods' times from create call to Running seen, sorted.
func startDurations(times map[string]*podTimes) []time.Duration {
	out := make([]time.Duration, 0, len(times))
	for _, t := range times {
		out = append(out, t.running.Sub(t.create))
	}
	slices.Sort(out)
	return out
}

// timedStarts is latency with every moment the bench saw of each pod's start, by pod name.
func timedStarts(ctx context.Context, cs kubernetes.Interface, ns string, n int, pin bool, node func(int) string) (map[string]*podTimes, error) {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	w, err := podWatch(ctx, cs, ns, "")
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	times := map[string]*podTimes{}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		name := fmt.Sprintf("p%03d", i)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Tolerations:                   []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}},
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
		t := &podTimes{}
		times[name] = t
		wg.Go(func() {
			mu.Lock()
			t.create = time.Now()
			mu.Unlock()
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		})
	}
	running := 0
	timeout := time.After(5 * time.Minute)
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// Events are read while the creates go on, so each is timed as it arrives.
	for running < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, errors.New("watch ended")
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted {
				continue
			}
			now := time.Now()
			mu.Lock()
			t := times[p.Name]
			if t != nil && t.bound.IsZero() && p.Spec.NodeName != "" {
				t.bound = now
			}
			if t != nil && t.running.IsZero() && p.Status.Phase == corev1.PodRunning {
				t.running = now
				running++
			}
			mu.Unlock()
		case <-done:
			done = nil
			close(errs)
			for err := range errs {
				return nil, err
			}
		case <-timeout:
			return nil, fmt.Errorf("%d of %d pods Running after 5m", running, n)
		}
	}
	wg.Wait()
	if done != nil {
		close(errs)
		for err := range errs {
			return nil, err
		}
	}
	return times, nil
}

// podWatch watches the pods of ns (matching selector) from now on, again after the API
// server ends a watch (client-go's RetryWatcher), so a run is not lost to a watch timeout.
// It returns once the API server has answered the first watch call: a RetryWatcher
// connects in the background, and events of a watch that connects late arrive late (they
// are replayed from the resource version), which would time pods by the watch's start.
func podWatch(ctx context.Context, cs kubernetes.Interface, ns, selector string) (watch.Interface, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector, Limit: 1})
	if err != nil {
		return nil, err
	}
	established := make(chan struct{})
	var once sync.Once
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			w, err := cs.CoreV1().Pods(ns).Watch(ctx, o)
			if err == nil {
				once.Do(func() { close(established) })
			}
			return w, err
		},
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-established:
		return w, nil
	case <-time.After(time.Minute):
		w.Stop()
		return nil, fmt.Errorf("the watch of pods in %s did not connect within a minute", ns)
	case <-ctx.Done():
		w.Stop()
		return nil, ctx.Err()
	}
}

// directLatency is latency on the sites themselves: the same number of pods, spread over
// the sites' nodes as the host's are over the virtual nodes.
func directLatency(ctx context.Context, l *lab.Lab, sites []string, n int, ns string) ([]time.Duration, error) {
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
			d, err := latency(ctx, cs, ns, share, true, func(j int) string { return lab.NodeName(j%labNodes + 1) })
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

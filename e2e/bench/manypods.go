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

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
)

// manyPodsConfig is the pods-at-scale run (issue 16, item 4): pods pods over sites Sites,
// created createRate a second, then churnRate of them replaced a second for churnFor.
type manyPodsConfig struct {
	pods, sites           int
	createRate, churnRate int
	churnFor              time.Duration
	readyTimeout          time.Duration
}

// manyPods measures what the provider holds per pod and how far the host's pod status
// lags while pods churn. Memory: the provider's live heap (go_memstats_next_gc_bytes / 2,
// the heap the last collection left, with GOGC 100) and RSS before the pods and once they
// all run; the baseline is the same pods in the same caches (cachesOf). What the provider
// holds beyond that, divided by the pods, is its own cost per pod. Churn: every second,
// churnRate pods are deleted and as many created; each new pod's create -> Running seen
// by the bench's watch, and the provider's vk8s_provider_status_sync_lag_seconds over
// the churn.
func manyPods(ctx context.Context, l *lab.Lab, host kubernetes.Interface, names []string, vw *vnodeWatch, cfg manyPodsConfig, res *results) error {
	took, ok, err := scaleSites(ctx, l, vw, size{sites: cfg.sites, nodes: 1}, cfg.readyTimeout)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%d sites: not every virtual node Ready after %s", cfg.sites, round(took))
	}
	vnodes := siteVirtualNodes(names, cfg.sites)
	fmt.Printf("\npods at scale: %d pods over %d sites, created %d a second, then %d a second replaced for %s\n",
		cfg.pods, cfg.sites, cfg.createRate, cfg.churnRate, cfg.churnFor)
	pids, err := labPIDs(ctx, l)
	if err != nil {
		return err
	}
	pid := pids["vk8s-provider"]
	metricsURL, err := l.ProviderMetricsURL()
	if err != nil {
		return err
	}
	var sites []kubernetes.Interface
	for _, name := range names {
		cs, err := clientset(l, name)
		if err != nil {
			return err
		}
		sites = append(sites, cs)
	}

	rss0, heap0, err := providerMemory(ctx, pid, metricsURL)
	if err != nil {
		return err
	}

	const ns = "bench-many"
	if _, err := host.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	w, err := podWatch(ctx, host, ns, "")
	if err != nil {
		return err
	}
	defer w.Stop()
	run := newRunningWatch(w)
	node := func(i int) string {
		nodes := vnodes[i%len(vnodes)]
		return nodes[i/len(vnodes)%len(nodes)]
	}
	start := time.Now()
	limiter := rate.NewLimiter(rate.Limit(cfg.createRate), 1)
	if err := createPods(ctx, host, ns, limiter, 0, cfg.pods, node, run); err != nil {
		return err
	}
	created := time.Since(start)
	if err := run.waitRunning(ctx, cfg.pods, cfg.readyTimeout); err != nil {
		return err
	}
	allRunning := time.Since(start)
	fmt.Printf("  created in %s (%.0f/s), all Running after %s\n", round(created), float64(cfg.pods)/created.Seconds(), round(allRunning))

	// The caches settle, and the provider collects at least once.
	time.Sleep(30 * time.Second)
	rss1, heap1, err := providerMemory(ctx, pid, metricsURL)
	if err != nil {
		return err
	}
	cached, err := cachesOf(ctx, host, sites, cfg.pods)
	if err != nil {
		return err
	}
	perPod := (float64(heap1-heap0) - float64(cached)) / float64(cfg.pods)
	fmt.Printf("  provider RSS %.1f -> %.1f MiB, live heap %.1f -> %.1f MiB; the same pods in the same caches: %.1f MiB here\n",
		mib(rss0), mib(rss1), mib(heap0), mib(heap1), mib(cached))
	fmt.Printf("  provider per pod: %.1f KiB live heap, of which beyond the caches' objects %.1f KiB (goal at most 8 KiB); RSS %.1f KiB\n",
		float64(heap1-heap0)/float64(cfg.pods)/1024, perPod/1024, float64(rss1-rss0)/float64(cfg.pods)/1024)

	out := &manyPodsResult{Pods: cfg.pods, Sites: cfg.sites, CreateSeconds: created.Seconds(), AllRunningSeconds: allRunning.Seconds(),
		RSSBeforeMiB: mib(rss0), RSSAfterMiB: mib(rss1), HeapBeforeMiB: mib(heap0), HeapAfterMiB: mib(heap1), CachesMiB: mib(cached),
		KiBPerPod: perPod / 1024}
	res.ManyPods = out
	if cfg.churnRate <= 0 || cfg.churnFor <= 0 {
		return nil
	}

	before, err := scrape(ctx, metricsURL)
	if err != nil {
		return err
	}
	churned, err := churn(ctx, host, ns, cfg, node, run)
	if err != nil {
		return err
	}
	after, err := scrape(ctx, metricsURL)
	if err != nil {
		return err
	}
	lag := histograms(after, "vk8s_provider_status_sync_lag_seconds", "")[""].minus(histograms(before, "vk8s_provider_status_sync_lag_seconds", "")[""])
	starts := run.startsOf(churned)
	fmt.Printf("  churn: %d pods replaced in %s; their create -> Running seen p50 %s p99 %s; status sync lag (vk8s_provider_status_sync_lag_seconds) "+
		"p50 %.3fs p99 %.3fs over %d writes (goal: p99 at most 2 s)\n", len(churned), cfg.churnFor, round(pct(starts, 50)), round(pct(starts, 99)),
		lag.quantile(0.5), lag.quantile(0.99), int(lag.count))
	out.ChurnPerSecond, out.ChurnSeconds, out.ChurnStarts = cfg.churnRate, cfg.churnFor.Seconds(), distOf(starts)
	out.StatusLagP50, out.StatusLagP99, out.StatusWrites = lag.quantile(0.5), lag.quantile(0.99), int(lag.count)
	return nil
}

// siteVirtualNodes are the virtual nodes of each of sites Sites: the lab's (all their
// nodes), then the slices of one node that scaleSites makes (sliceSelector's).
func siteVirtualNodes(names []string, sites int) [][]string {
	var out [][]string
	for i := 1; i <= sites; i++ {
		if i <= len(names) {
			var nodes []string
			for j := 1; j <= labNodes; j++ {
				nodes = append(nodes, names[i-1]+"-"+lab.NodeName(j))
			}
			out = append(out, nodes)
			continue
		}
		out = append(out, []string{fmt.Sprintf("slice%d-%s", i, lab.NodeName((i-1)/len(names)%labNodes+1))})
	}
	return out
}

// createPods creates pods from..to-1 of ns (named m<i>), at the limiter's pace, up to 20
// calls at once, and tells run when each was created.
func createPods(ctx context.Context, cs kubernetes.Interface, ns string, limiter *rate.Limiter, from, to int, node func(int) string, run *runningWatch) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	slots := make(chan struct{}, 20)
	for i := from; i < to; i++ {
		if err := limiter.Wait(ctx); err != nil {
			return err
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := createPod(ctx, cs, ns, fmt.Sprintf("m%05d", i), node(i), run); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// createPod creates pod ns/name bound to virtual node node, as timedStarts does.
func createPod(ctx context.Context, cs kubernetes.Interface, ns, name, node string, run *runningWatch) error {
	p := benchPod(name)
	p.Namespace = ns
	p.Spec.NodeName = node
	p.Spec.Tolerations = []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}}
	run.created(name)
	_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	return err
}

// churn replaces cfg.churnRate pods a second for cfg.churnFor: the oldest deleted, a new
// one created on the same virtual node. It returns the new pods' names.
func churn(ctx context.Context, cs kubernetes.Interface, ns string, cfg manyPodsConfig, node func(int) string, run *runningWatch) ([]string, error) {
	limiter := rate.NewLimiter(rate.Limit(cfg.churnRate), 1)
	deadline := time.Now().Add(cfg.churnFor)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		churned []string
	)
	slots := make(chan struct{}, 20)
	for i := 0; time.Now().Before(deadline); i++ {
		if err := limiter.Wait(ctx); err != nil {
			return nil, err
		}
		old, fresh := fmt.Sprintf("m%05d", i%cfg.pods), cfg.pods+i
		name := fmt.Sprintf("m%05d", fresh)
		churned = append(churned, name)
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			err := cs.CoreV1().Pods(ns).Delete(ctx, old, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			if apierrors.IsNotFound(err) {
				err = nil
			}
			if err == nil {
				err = createPod(ctx, cs, ns, name, node(fresh), run)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return churned, run.waitAll(ctx, churned, cfg.readyTimeout)
}

// runningWatch times pods from their create call to the first watch event showing them
// Running.
type runningWatch struct {
	mu      sync.Mutex
	create  map[string]time.Time
	running map[string]time.Time
	changed chan struct{}
}

func newRunningWatch(w watch.Interface) *runningWatch {
	r := &runningWatch{create: map[string]time.Time{}, running: map[string]time.Time{}, changed: make(chan struct{}, 1)}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning {
				continue
			}
			now := time.Now()
			r.mu.Lock()
			if _, seen := r.running[p.Name]; !seen {
				r.running[p.Name] = now
			}
			r.mu.Unlock()
			select {
			case r.changed <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

func (r *runningWatch) created(name string) {
	r.mu.Lock()
	r.create[name] = time.Now()
	r.mu.Unlock()
}

// waitRunning waits until n pods have been seen Running.
func (r *runningWatch) waitRunning(ctx context.Context, n int, timeout time.Duration) error {
	return r.wait(ctx, timeout, func() (bool, string) {
		got := len(r.running)
		return got >= n, fmt.Sprintf("%d of %d pods Running", got, n)
	})
}

// waitAll waits until every pod of names has been seen Running.
func (r *runningWatch) waitAll(ctx context.Context, names []string, timeout time.Duration) error {
	return r.wait(ctx, timeout, func() (bool, string) {
		missing := 0
		for _, n := range names {
			if _, ok := r.running[n]; !ok {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d pods not Running", missing, len(names))
	})
}

func (r *runningWatch) wait(ctx context.Context, timeout time.Duration, done func() (bool, string)) error {
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		ok, state := done()
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-r.changed:
		case <-time.After(time.Second):
		case <-deadline:
			return fmt.Errorf("after %s: %s", timeout, state)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// startsOf are the create -> Running times of names, sorted.
func (r *runningWatch) startsOf(names []string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for _, n := range names {
		if c, ok := r.create[n]; ok {
			if run, ok := r.running[n]; ok {
				out = append(out, run.Sub(c))
			}
		}
	}
	slices.Sort(out)
	return out
}

// cachesOf is what n pods take in the caches the provider keeps of them, measured in this
// process: caches like the provider's are filled from the API servers, and the heap they
// hold after a collection is shared out over the pods they hold (the host's bound pods
// and the sites' pods of the tenant, so other runs' pods too), each pod being in a host
// cache and a site cache.
func cachesOf(ctx context.Context, host kubernetes.Interface, sites []kubernetes.Interface, n int) (int64, error) {
	before := liveHeap()
	b := newCacheBaseline(host, sites)
	defer b.stop()
	if err := b.start(ctx); err != nil {
		return 0, err
	}
	held := max(0, liveHeap()-before)
	objects := 0
	for _, p := range b.pods {
		objects += len(p.GetStore().ListKeys())
	}
	if objects < 2*n {
		return 0, fmt.Errorf("the caches hold %d pods, fewer than the run's %d twice", objects, n)
	}
	return held * int64(2*n) / int64(objects), nil
}

// cacheBaseline holds in this process the caches of pods the provider holds: the host's
// pods bound to a node and each site cluster's pods of the tenant, managedFields dropped.
type cacheBaseline struct {
	factories []informers.SharedInformerFactory
	pods      []cache.SharedIndexInformer
	cancel    context.CancelFunc
}

func newCacheBaseline(host kubernetes.Interface, sites []kubernetes.Interface) *cacheBaseline {
	b := &cacheBaseline{}
	strip := informers.WithTransform(crcache.TransformStripManagedFields())
	add := func(f informers.SharedInformerFactory) {
		b.factories = append(b.factories, f)
		b.pods = append(b.pods, f.Core().V1().Pods().Informer())
	}
	add(informers.NewSharedInformerFactoryWithOptions(host, 0, strip, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	})))
	for _, s := range sites {
		add(informers.NewSharedInformerFactoryWithOptions(s, 0, strip, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = vk8sv1.LabelTenant
		})))
	}
	return b
}

func (b *cacheBaseline) start(ctx context.Context) error {
	ctx, b.cancel = context.WithCancel(ctx)
	for _, f := range b.factories {
		f.Start(ctx.Done())
	}
	for _, p := range b.pods {
		if !cache.WaitForCacheSync(ctx.Done(), p.HasSynced) {
			return errors.New("the bench's pod caches did not fill")
		}
	}
	return nil
}

func (b *cacheBaseline) stop() {
	if b.cancel != nil {
		b.cancel()
	}
	for _, f := range b.factories {
		f.Shutdown()
	}
}

// liveHeap is this process's heap after a collection, in bytes.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// providerMemory is the provider's RSS and its live heap, in bytes. The heap is read right
// after a collection the bench asks for through the provider's /debug/pprof/heap?gc=1 (the
// lab runs it with --profiling): go_memstats_heap_alloc_bytes then holds what is live, not
// what a metrics-server scrape or a burst of work left to collect. A provider without
// profiling gives the heap its last collection left (go_memstats_next_gc_bytes / 2 with
// GOGC 100), which counts such garbage when the collection ran during it.
func providerMemory(ctx context.Context, pid int, metricsURL string) (rss, heap int64, err error) {
	kib, err := rssKiB(pid)
	if err != nil {
		return 0, 0, err
	}
	collected := collect(ctx, metricsURL) == nil
	m, err := scrape(ctx, metricsURL)
	if err != nil {
		return 0, 0, err
	}
	name, div := "go_memstats_heap_alloc_bytes", 1.0
	if !collected {
		name, div = "go_memstats_next_gc_bytes", 2
	}
	f := m[name]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, 0, fmt.Errorf("the provider's metrics have no %s", name)
	}
	return kib * 1024, int64(f.GetMetric()[0].GetGauge().GetValue() / div), nil
}

// collect makes the process that serves metricsURL run a garbage collection, through
// net/http/pprof's heap profile beside its metrics.
func collect(ctx context.Context, metricsURL string) error {
	u, err := url.Parse(metricsURL)
	if err != nil {
		return err
	}
	u.Path, u.RawQuery = "/debug/pprof/heap", "gc=1"
	return get(ctx, u.String(), 30*time.Second, func(body io.Reader) error {
		_, err := io.Copy(io.Discard, body)
		return err
	})
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

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
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
)

// size is one footprint measurement: sites Sites, those beyond the lab's own being
// node-selected slices of its site clusters with nodes real nodes each.
type size struct {
	sites int
	nodes int
}

func (s size) String() string {
	if s.nodes == 1 {
		return strconv.Itoa(s.sites)
	}
	return fmt.Sprintf("%dx%d", s.sites, s.nodes)
}

// virtualNodes is the number of virtual nodes the host shows at s: every node of the
// lab's sites, and the nodes of each slice.
func (s size) virtualNodes() int { return labSites*labNodes + (s.sites-labSites)*s.nodes }

// parseSizes reads --sites: comma-separated site counts, each optionally "xK" for slices
// of K nodes ("3,30,300,1000x3"), in increasing order.
func parseSizes(flag string) ([]size, error) {
	var out []size
	bad := func(item string) error {
		return fmt.Errorf("--sites %q: item %q: want a count of at least %d, optionally xK with 1 <= K <= %d nodes per slice, counts increasing",
			flag, item, labSites, labNodes)
	}
	if strings.TrimSpace(flag) == "" {
		return nil, nil
	}
	for _, item := range strings.Split(flag, ",") {
		item = strings.TrimSpace(item)
		count, nodes, hasNodes := strings.Cut(item, "x")
		s := size{nodes: 1}
		var err error
		if s.sites, err = strconv.Atoi(count); err != nil || s.sites < labSites {
			return nil, bad(item)
		}
		if hasNodes {
			if s.nodes, err = strconv.Atoi(nodes); err != nil || s.nodes < 1 || s.nodes > labNodes {
				return nil, bad(item)
			}
		}
		if len(out) > 0 && s.sites < out[len(out)-1].sites {
			return nil, bad(item)
		}
		out = append(out, s)
	}
	return out, nil
}

// groupLabel is the label of the site nodes that puts them in groups of n, which slices
// of n nodes select.
func groupLabel(n int) string { return fmt.Sprintf("bench.vk8s.io/group-of-%d", n) }

// groupSiteNodes labels the nodes of every site cluster of the lab into groups of n
// (groupLabel: "1", "2", ...); nodes left over are in none.
func groupSiteNodes(ctx context.Context, l *lab.Lab, sites []string, n int) error {
	for _, site := range sites {
		cs, err := clientset(l, site)
		if err != nil {
			return err
		}
		for j := 1; j <= labNodes/n*n; j++ {
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, groupLabel(n), strconv.Itoa((j-1)/n+1))
			if _, err := cs.CoreV1().Nodes().Patch(ctx, lab.NodeName(j), types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return fmt.Errorf("label node %s of %s: %w", lab.NodeName(j), site, err)
			}
		}
	}
	return nil
}

// sliceSelector is the node selector of slice i (1-based over all Sites, beyond the lab's
// own) of n nodes: one real node by hostname, or one group of groupSiteNodes.
func sliceSelector(i, sites, n int) map[string]string {
	k := (i - 1) / sites // the how-manieth slice of its cluster
	if n == 1 {
		return map[string]string{corev1.LabelHostname: lab.NodeName(k%labNodes + 1)}
	}
	return map[string]string{groupLabel(n): strconv.Itoa(k%(labNodes/n) + 1)}
}

// vnodeWatch keeps the host's virtual nodes in a cache for the whole run, so that waiting
// for thousands of them to turn Ready does not list them all every second.
type vnodeWatch struct {
	nodes func() []*corev1.Node
}

func watchVirtualNodes(ctx context.Context, host kubernetes.Interface) (*vnodeWatch, error) {
	f := informers.NewSharedInformerFactoryWithOptions(host, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = vk8sv1.LabelType + "=" + vk8sv1.TypeVirtualKubelet
	}))
	inf := f.Core().V1().Nodes()
	lister := inf.Lister()
	_ = inf.Informer()
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("cache of %v did not fill", typ)
		}
	}
	return &vnodeWatch{nodes: func() []*corev1.Node {
		list, _ := lister.List(labels.Everything())
		return list
	}}, nil
}

// counts returns how many virtual nodes there are and how many of them are Ready.
func (w *vnodeWatch) counts() (total, ready int) {
	for _, n := range w.nodes() {
		total++
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return total, ready
}

// scaleSites makes the host hold s.sites Sites, the ones beyond the lab's being
// node-selected slices of its site clusters with s.nodes nodes each (an existing slice
// with another selector is changed), and waits until exactly s.virtualNodes() virtual
// nodes are there and Ready, or timeout passes. It returns how long that took, and
// whether it happened.
func scaleSites(ctx context.Context, l *lab.Lab, vnodes *vnodeWatch, s size, timeout time.Duration) (time.Duration, bool, error) {
	c, err := l.Client("host")
	if err != nil {
		return 0, false, err
	}
	base, err := l.Sites()
	if err != nil {
		return 0, false, err
	}
	if s.nodes > 1 {
		if err := groupSiteNodes(ctx, l, base, s.nodes); err != nil {
			return 0, false, err
		}
	}
	refs := map[string]vk8sv1.SecretKeyReference{}
	for _, name := range base {
		from := &vk8sv1.Site{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, from); err != nil {
			return 0, false, err
		}
		refs[name] = from.Spec.KubeconfigSecretRef
	}
	// Ten at a time: an operator applying a thousand Sites does not wait for each.
	start := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	slots := make(chan struct{}, 10)
	for i := len(base) + 1; i <= s.sites; i++ {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := ensureSlice(ctx, c, i, refs[base[(i-1)%len(base)]], sliceSelector(i, len(base), s.nodes)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, false, err
	}
	want := s.virtualNodes()
	err = wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(context.Context) (bool, error) {
		total, ready := vnodes.counts()
		return total == want && ready == want, nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return time.Since(start), false, nil
	}
	return time.Since(start), err == nil, err
}

// ensureSlice makes Site slice<i> with the kubeconfig of ref and the node selector sel, or
// changes the selector of the one there.
func ensureSlice(ctx context.Context, c client.Client, i int, ref vk8sv1.SecretKeyReference, sel map[string]string) error {
	slice := &vk8sv1.Site{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("slice%d", i), Labels: map[string]string{"vk8s.io/bench": "slice"}},
		Spec:       vk8sv1.SiteSpec{KubeconfigSecretRef: ref, NodeSelector: sel},
	}
	err := c.Create(ctx, slice)
	if apierrors.IsAlreadyExists(err) {
		err = c.Get(ctx, client.ObjectKeyFromObject(slice), slice)
		if err == nil && !maps.Equal(slice.Spec.NodeSelector, sel) {
			// A patch: the registry writes the status meanwhile.
			patch := client.MergeFrom(slice.DeepCopy())
			slice.Spec.NodeSelector = sel
			err = c.Patch(ctx, slice, patch)
		}
	}
	if err != nil {
		return fmt.Errorf("site slice%d: %w", i, err)
	}
	return nil
}

// usage is what footprint measures at one size.
type usage struct {
	// providerRSS, apiserverRSS and etcdRSS are in MiB (zero: not found).
	providerRSS, apiserverRSS, etcdRSS float64
	// cpu is the provider's CPU over the window, in % of one core.
	cpu float64
	// goroutines is the provider's go_goroutines at the end of the window.
	goroutines int
	// hostRequests is the provider's requests per second to the host API server over the
	// window, in total and by method.
	hostRequests float64
	byMethod     map[string]float64
	// minReady is the fewest virtual nodes Ready at any second of the window.
	minReady int
	// leaseAge is the age of the least recently renewed virtual node Lease at the end.
	leaseAge time.Duration
	// heartbeatAge is the age of the oldest Site status.lastHeartbeatTime at the end.
	heartbeatAge time.Duration
}

// footprint lets the provider settle, then measures it over window.
func footprint(ctx context.Context, l *lab.Lab, host kubernetes.Interface, vnodes *vnodeWatch, window time.Duration) (usage, error) {
	var u usage
	pids, err := labPIDs(ctx, l)
	if err != nil {
		return u, err
	}
	pid := pids["vk8s-provider"]
	metricsURL, err := l.ProviderMetricsURL()
	if err != nil {
		return u, err
	}
	hostAddr, err := hostAddress(l)
	if err != nil {
		return u, err
	}
	time.Sleep(10 * time.Second)
	t0, err := cpuTicks(pid)
	if err != nil {
		return u, err
	}
	m0, err := scrape(ctx, metricsURL)
	if err != nil {
		return u, err
	}
	start := time.Now()
	_, u.minReady = vnodes.counts()
	for time.Since(start) < window {
		time.Sleep(time.Second)
		_, ready := vnodes.counts()
		u.minReady = min(u.minReady, ready)
	}
	t1, err := cpuTicks(pid)
	if err != nil {
		return u, err
	}
	m1, err := scrape(ctx, metricsURL)
	if err != nil {
		return u, err
	}
	elapsed := time.Since(start).Seconds()
	// Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
	u.cpu = float64(t1-t0) / 100 / elapsed * 100
	if u.goroutines, err = goroutines(m1); err != nil {
		return u, err
	}
	u.byMethod = map[string]float64{}
	before, after := hostRequests(m0, hostAddr), hostRequests(m1, hostAddr)
	for method, n := range after {
		rate := (n - before[method]) / elapsed
		u.byMethod[method] = rate
		u.hostRequests += rate
	}
	for name, p := range map[string]*float64{"vk8s-provider": &u.providerRSS, "kube-apiserver": &u.apiserverRSS, "etcd": &u.etcdRSS} {
		if pid, ok := pids[name]; ok {
			if kib, err := rssKiB(pid); err == nil {
				*p = float64(kib) / 1024
			}
		}
	}
	if u.leaseAge, err = oldestLease(ctx, host, vnodes); err != nil {
		return u, err
	}
	u.heartbeatAge, err = oldestHeartbeat(ctx, l)
	return u, err
}

// oldestHeartbeat is how long ago the Site the registry probed least recently was probed,
// as its status says (a Site never probed counts from its creation).
func oldestHeartbeat(ctx context.Context, l *lab.Lab) (time.Duration, error) {
	c, err := l.Client("host")
	if err != nil {
		return 0, err
	}
	var sites vk8sv1.SiteList
	if err := c.List(ctx, &sites); err != nil {
		return 0, err
	}
	now := time.Now()
	var oldest time.Duration
	for _, s := range sites.Items {
		t := s.CreationTimestamp.Time
		if hb := s.Status.LastHeartbeatTime; hb != nil {
			t = hb.Time
		}
		oldest = max(oldest, now.Sub(t))
	}
	return oldest, nil
}

// labPIDs returns the pids of the host's processes (kube-apiserver, etcd, vk8s-provider,
// ...) by component name.
func labPIDs(ctx context.Context, l *lab.Lab) (map[string]int, error) {
	st, err := l.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, c := range st {
		if c.Name != "host" {
			continue
		}
		for _, p := range c.Components {
			if p.Running {
				out[p.Name] = p.PID
			}
		}
	}
	if out["vk8s-provider"] == 0 {
		return nil, errors.New("the lab's provider is not running")
	}
	return out, nil
}

// scrape reads the metrics a Prometheus endpoint serves.
func scrape(ctx context.Context, u string) (map[string]*dto.MetricFamily, error) {
	var m map[string]*dto.MetricFamily
	err := get(ctx, u, 10*time.Second, func(body io.Reader) error {
		p := expfmt.NewTextParser(model.UTF8Validation)
		var err error
		m, err = p.TextToMetricFamilies(body)
		return err
	})
	return m, err
}

// get GETs u within timeout and hands the body of a 200 answer to read.
func get(ctx context.Context, u string, timeout time.Duration, read func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return read(resp.Body)
}

// counter is the sum of the series of counter name (0 when there is none).
func counter(m map[string]*dto.MetricFamily, name string) float64 {
	var sum float64
	for _, s := range m[name].GetMetric() {
		sum += s.GetCounter().GetValue()
	}
	return sum
}

func goroutines(m map[string]*dto.MetricFamily) (int, error) {
	f := m["go_goroutines"]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, errors.New("the provider's metrics have no go_goroutines")
	}
	return int(f.GetMetric()[0].GetGauge().GetValue()), nil
}

// hostRequests sums client-go's rest_client_requests_total of the requests to host by
// method.
func hostRequests(m map[string]*dto.MetricFamily, host string) map[string]float64 {
	out := map[string]float64{}
	f := m["rest_client_requests_total"]
	if f == nil {
		return out
	}
	for _, s := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range s.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["host"] == host {
			out[labels["method"]] += s.GetCounter().GetValue()
		}
	}
	return out
}

// hostAddress is the host:port of the lab host's API server, as client-go's
// rest_client_requests_total names it (hostRequests).
func hostAddress(l *lab.Lab) (string, error) {
	cfg, err := l.RESTConfig("host")
	if err != nil {
		return "", err
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}

// oldestLease is how long ago the least recently renewed Lease of a virtual node was
// renewed.
func oldestLease(ctx context.Context, host kubernetes.Interface, vnodes *vnodeWatch) (time.Duration, error) {
	names := map[string]bool{}
	for _, n := range vnodes.nodes() {
		names[n.Name] = true
	}
	leases, err := host.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	now := time.Now()
	var oldest time.Duration
	for _, le := range leases.Items {
		if names[le.Name] && le.Spec.RenewTime != nil {
			oldest = max(oldest, now.Sub(le.Spec.RenewTime.Time))
		}
	}
	return oldest, nil
}

// statFields returns the fields of /proc/<pid>/stat after the command name, the first
// being the state (field 3).
func statFields(pid int) ([]string, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name may hold spaces: the fields after it start after the last ')'.
	return strings.Fields(string(raw)[strings.LastIndexByte(string(raw), ')')+2:]), nil
}

func cpuTicks(pid int) (int64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, errors.Join(err1, err2)
}

// processStart returns when process pid started: its start time in clock ticks since boot
// (/proc/<pid>/stat, field 22; Linux's USER_HZ is 100) against the time since boot
// (/proc/uptime), both to 10 ms.
func processStart(pid int) (time.Time, error) {
	now := time.Now()
	f, err := statFields(pid)
	if err != nil {
		return time.Time{}, err
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}, err
	}
	secs, err := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	if err != nil {
		return time.Time{}, err
	}
	return now.Add(-time.Duration(secs*float64(time.Second)) + time.Duration(ticks)*10*time.Millisecond), nil
}

func rssKiB(pid int) (int64, error) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
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

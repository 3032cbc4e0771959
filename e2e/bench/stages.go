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
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
)

// podTimes are the moments the bench saw of one pod's start, by its own clock (watch
// events as they arrive: millisecond resolution, where the API objects' timestamps have
// whole seconds).
type podTimes struct {
	// create is when the create call was made; bound when a host watch event first showed
	// the pod bound to a node (spec.nodeName); running when one first showed it Running.
	create, bound, running time.Time
	// siteAdded and siteRunning are when a site watch event first showed the site pod, and
	// showed it Running.
	siteAdded, siteRunning time.Time
}

// siteWatch follows the site pods of one host namespace on every site (label
// vk8s.io/host-namespace), recording when each was first seen and first seen Running.
type siteWatch struct {
	mu      sync.Mutex
	added   map[string]time.Time
	running map[string]time.Time
	stop    []func()
}

func watchSitePods(ctx context.Context, sites []kubernetes.Interface, hostNamespace string) (*siteWatch, error) {
	sw := &siteWatch{added: map[string]time.Time{}, running: map[string]time.Time{}}
	for _, cs := range sites {
		w, err := podWatch(ctx, cs, "", vk8sv1.LabelHostNamespace+"="+hostNamespace)
		if err != nil {
			sw.Stop()
			return nil, err
		}
		sw.stop = append(sw.stop, w.Stop)
		go func() {
			for ev := range w.ResultChan() {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok || ev.Type == watch.Deleted {
					continue
				}
				now := time.Now()
				sw.mu.Lock()
				if _, seen := sw.added[p.Name]; !seen {
					sw.added[p.Name] = now
				}
				if _, seen := sw.running[p.Name]; !seen && p.Status.Phase == corev1.PodRunning {
					sw.running[p.Name] = now
				}
				sw.mu.Unlock()
			}
		}()
	}
	return sw, nil
}

// Stop ends the watches.
func (sw *siteWatch) Stop() {
	for _, s := range sw.stop {
		s()
	}
}

// fill copies what the site watches saw into times, waiting up to 5 s for events of pods
// the host already shows Running (watches of different clusters arrive in any order).
func (sw *siteWatch) fill(times map[string]*podTimes) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		sw.mu.Lock()
		missing := 0
		for name, t := range times {
			t.siteAdded, t.siteRunning = sw.added[name], sw.running[name]
			if t.siteRunning.IsZero() {
				missing++
			}
		}
		sw.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stage is one stage's figures: how many pods it was measured for, and its percentiles.
type stage struct {
	Name   string  `json:"name"`
	Source string  `json:"source"` // "bench" (its watch events) or "provider" (its histogram)
	Count  int     `json:"count"`
	P50    float64 `json:"p50Seconds"`
	P99    float64 `json:"p99Seconds"`
	Mean   float64 `json:"meanSeconds"`
}

// benchStages splits the pods' start by the bench's watch events: create call -> bound on
// the host -> site pod seen -> Running on the site -> Running seen on the host.
func benchStages(times map[string]*podTimes) []stage {
	spans := []struct {
		name     string
		from, to func(*podTimes) time.Time
	}{
		{"create -> bound (host scheduler)", func(t *podTimes) time.Time { return t.create }, func(t *podTimes) time.Time { return t.bound }},
		{"bound -> site pod seen", func(t *podTimes) time.Time { return t.bound }, func(t *podTimes) time.Time { return t.siteAdded }},
		{"site pod seen -> Running on site", func(t *podTimes) time.Time { return t.siteAdded }, func(t *podTimes) time.Time { return t.siteRunning }},
		{"Running on site -> seen on host", func(t *podTimes) time.Time { return t.siteRunning }, func(t *podTimes) time.Time { return t.running }},
		{"total (create -> seen Running)", func(t *podTimes) time.Time { return t.create }, func(t *podTimes) time.Time { return t.running }},
	}
	var out []stage
	for _, s := range spans {
		var d []time.Duration
		for _, t := range times {
			from, to := s.from(t), s.to(t)
			if from.IsZero() || to.IsZero() {
				continue
			}
			d = append(d, max(to.Sub(from), 0))
		}
		slices.Sort(d)
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		st := stage{Name: s.name, Source: "bench", Count: len(d), P50: pct(d, 50).Seconds(), P99: pct(d, 99).Seconds()}
		if len(d) > 0 {
			st.Mean = (sum / time.Duration(len(d))).Seconds()
		}
		out = append(out, st)
	}
	return out
}

// providerStages is vk8s_provider_pod_start_stage_seconds between two scrapes of the
// provider's metrics, per stage: the count, the mean, and p50/p99 interpolated within the
// buckets as Prometheus' histogram_quantile does; and last the host's time for the status
// writes (vk8s_provider_pod_status_write_seconds).
func providerStages(before, after map[string]*dto.MetricFamily) []stage {
	b, a := histograms(before, "vk8s_provider_pod_start_stage_seconds", "stage"), histograms(after, "vk8s_provider_pod_start_stage_seconds", "stage")
	var out []stage
	for _, name := range provider.PodStartStages() {
		h1, ok := a[name]
		if !ok {
			continue
		}
		d := h1.minus(b[name])
		if d.count == 0 {
			continue
		}
		out = append(out, stage{Name: name, Source: "provider", Count: int(d.count),
			P50: d.quantile(0.50), P99: d.quantile(0.99), Mean: d.sum / float64(d.count)})
	}
	// The host's own time for the status writes (every status, not only Running): what
	// host_status spends beyond it waited in virtual-kubelet's queue.
	const writes = "vk8s_provider_pod_status_write_seconds"
	if s := stageOf("status write call (any status)", "provider", histograms(after, writes, "")[""], histograms(before, writes, "")[""]); s != nil {
		out = append(out, *s)
	}
	return out
}

// hist is a Prometheus histogram: cumulative counts by upper bound.
type hist struct {
	bounds []float64
	counts []float64
	count  uint64
	sum    float64
}

// histograms returns the histograms of family name by the value of label.
func histograms(m map[string]*dto.MetricFamily, name, label string) map[string]hist {
	out := map[string]hist{}
	f := m[name]
	if f == nil {
		return out
	}
	for _, s := range f.GetMetric() {
		key := ""
		for _, lp := range s.GetLabel() {
			if lp.GetName() == label {
				key = lp.GetValue()
			}
		}
		h := hist{count: s.GetHistogram().GetSampleCount(), sum: s.GetHistogram().GetSampleSum()}
		for _, bk := range s.GetHistogram().GetBucket() {
			h.bounds = append(h.bounds, bk.GetUpperBound())
			h.counts = append(h.counts, float64(bk.GetCumulativeCount()))
		}
		out[key] = h
	}
	return out
}

// minus is h less an earlier scrape of it (zero when there was none).
func (h hist) minus(earlier hist) hist {
	out := hist{bounds: h.bounds, counts: slices.Clone(h.counts), count: h.count - earlier.count, sum: h.sum - earlier.sum}
	if len(earlier.counts) == len(h.counts) {
		for i := range out.counts {
			out.counts[i] -= earlier.counts[i]
		}
	}
	return out
}

// quantile is the q-quantile, interpolated linearly within its bucket; past the last
// bucket, that bucket's bound.
func (h hist) quantile(q float64) float64 {
	if h.count == 0 || len(h.bounds) == 0 {
		return math.NaN()
	}
	rank := q * float64(h.count)
	i := sort.Search(len(h.counts), func(i int) bool { return h.counts[i] >= rank })
	if i == len(h.counts) {
		return h.bounds[len(h.bounds)-1]
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = h.bounds[i-1], h.counts[i-1]
	}
	in := h.counts[i] - below
	if in <= 0 {
		return h.bounds[i]
	}
	return lower + (h.bounds[i]-lower)*(rank-below)/in
}

// printStages prints stages as a table.
func printStages(title string, stages []stage) {
	if len(stages) == 0 {
		return
	}
	fmt.Printf("  %s\n", title)
	for _, s := range stages {
		fmt.Printf("    %-36s n %4d  p50 %8s  p99 %8s  mean %8s\n", s.Name, s.Count, seconds(s.P50), seconds(s.P99), seconds(s.Mean))
	}
}

// seconds formats a figure in seconds as a duration rounded to the millisecond, or to a
// tenth of one under 10 ms.
func seconds(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	d := time.Duration(s * float64(time.Second))
	if d < 10*time.Millisecond {
		return d.Round(100 * time.Microsecond).String()
	}
	return round(d).String()
}

// histogramWhere sums the series of histogram family name whose labels include match.
func histogramWhere(m map[string]*dto.MetricFamily, name string, match map[string]string) hist {
	var out hist
	f := m[name]
	if f == nil {
		return out
	}
series:
	for _, s := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range s.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, v := range match {
			if labels[k] != v {
				continue series
			}
		}
		h := s.GetHistogram()
		out.count += h.GetSampleCount()
		out.sum += h.GetSampleSum()
		for i, bk := range h.GetBucket() {
			if len(out.bounds) < len(h.GetBucket()) {
				out.bounds = append(out.bounds, bk.GetUpperBound())
				out.counts = append(out.counts, 0)
			}
			out.counts[i] += float64(bk.GetCumulativeCount())
		}
	}
	return out
}

// counterWhere sums the series of counter family name whose labels include match.
func counterWhere(m map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	var out float64
	f := m[name]
	if f == nil {
		return out
	}
series:
	for _, s := range f.GetMetric() {
		for _, lp := range s.GetLabel() {
			if v, ok := match[lp.GetName()]; ok && v != lp.GetValue() {
				continue series
			}
		}
		out += s.GetCounter().GetValue()
	}
	return out
}

// stageOf is the stage named name of histogram h less its earlier scrape; nil when nothing
// was observed in between.
func stageOf(name, source string, h, earlier hist) *stage {
	d := h.minus(earlier)
	if d.count == 0 {
		return nil
	}
	return &stage{Name: name, Source: source, Count: int(d.count), P50: d.quantile(0.5), P99: d.quantile(0.99), Mean: d.sum / float64(d.count)}
}

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

package kubeletapi

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

// HostPodFunc maps a pod of a site to the host pod it runs for (Resolver.HostPod).
type HostPodFunc func(site, namespace, name string) (HostPod, bool)

// HostSummary returns the stats summary of virtual node node from the summaries of the
// site nodes it stands for (one in PerNode mode, several in Aggregate mode). Only pods that
// run for host pods are kept, under their host namespace, name and UID (their volumes'
// PVC references too); the node is renamed to node. Several site nodes are merged: usage,
// capacity and counters are summed, times are the latest, the start time the earliest;
// what has no meaning summed (system containers, per-interface network stats, rlimits,
// pressure stall information) is dropped. Pods are sorted by namespace and name. The
// input is not modified.
func HostSummary(node, site string, in []*statsv1alpha1.Summary, hostPod HostPodFunc) *statsv1alpha1.Summary {
	out := &statsv1alpha1.Summary{Pods: []statsv1alpha1.PodStats{}}
	switch len(in) {
	case 0:
	case 1:
		out.Node = in[0].Node
	default:
		out.Node = mergeNodeStats(in)
	}
	out.Node.NodeName = node
	for _, s := range in {
		for _, p := range s.Pods {
			ref, ok := hostPod(site, p.PodRef.Namespace, p.PodRef.Name)
			if !ok {
				continue
			}
			p.PodRef = statsv1alpha1.PodReference{Name: ref.Name, Namespace: ref.Namespace, UID: string(ref.UID)}
			if len(p.VolumeStats) > 0 {
				vols := slices.Clone(p.VolumeStats)
				for i := range vols {
					if vols[i].PVCRef != nil {
						vols[i].PVCRef = &statsv1alpha1.PVCReference{Name: vols[i].PVCRef.Name, Namespace: ref.Namespace}
					}
				}
				p.VolumeStats = vols
			}
			out.Pods = append(out.Pods, p)
		}
	}
	sortPods(out.Pods)
	return out
}

func mergeNodeStats(in []*statsv1alpha1.Summary) statsv1alpha1.NodeStats {
	var n statsv1alpha1.NodeStats
	for i, s := range in {
		src := s.Node
		if i == 0 || (!src.StartTime.IsZero() && (n.StartTime.IsZero() || src.StartTime.Before(&n.StartTime))) {
			n.StartTime = src.StartTime
		}
		if src.CPU != nil {
			if n.CPU == nil {
				n.CPU = &statsv1alpha1.CPUStats{}
			}
			n.CPU.Time = later(n.CPU.Time, src.CPU.Time)
			n.CPU.UsageNanoCores = sum(n.CPU.UsageNanoCores, src.CPU.UsageNanoCores)
			n.CPU.UsageCoreNanoSeconds = sum(n.CPU.UsageCoreNanoSeconds, src.CPU.UsageCoreNanoSeconds)
		}
		if m := src.Memory; m != nil {
			if n.Memory == nil {
				n.Memory = &statsv1alpha1.MemoryStats{}
			}
			o := n.Memory
			o.Time = later(o.Time, m.Time)
			o.AvailableBytes = sum(o.AvailableBytes, m.AvailableBytes)
			o.UsageBytes = sum(o.UsageBytes, m.UsageBytes)
			o.WorkingSetBytes = sum(o.WorkingSetBytes, m.WorkingSetBytes)
			o.RSSBytes = sum(o.RSSBytes, m.RSSBytes)
			o.PageFaults = sum(o.PageFaults, m.PageFaults)
			o.MajorPageFaults = sum(o.MajorPageFaults, m.MajorPageFaults)
		}
		if net := src.Network; net != nil {
			if n.Network == nil {
				n.Network = &statsv1alpha1.NetworkStats{}
			}
			o := n.Network
			o.Time = later(o.Time, net.Time)
			o.RxBytes = sum(o.RxBytes, net.RxBytes)
			o.RxErrors = sum(o.RxErrors, net.RxErrors)
			o.TxBytes = sum(o.TxBytes, net.TxBytes)
			o.TxErrors = sum(o.TxErrors, net.TxErrors)
		}
		n.Fs = sumFs(n.Fs, src.Fs)
		if r := src.Runtime; r != nil {
			if n.Runtime == nil {
				n.Runtime = &statsv1alpha1.RuntimeStats{}
			}
			n.Runtime.ImageFs = sumFs(n.Runtime.ImageFs, r.ImageFs)
			n.Runtime.ContainerFs = sumFs(n.Runtime.ContainerFs, r.ContainerFs)
		}
		if sw := src.Swap; sw != nil {
			if n.Swap == nil {
				n.Swap = &statsv1alpha1.SwapStats{}
			}
			n.Swap.Time = later(n.Swap.Time, sw.Time)
			n.Swap.SwapAvailableBytes = sum(n.Swap.SwapAvailableBytes, sw.SwapAvailableBytes)
			n.Swap.SwapUsageBytes = sum(n.Swap.SwapUsageBytes, sw.SwapUsageBytes)
		}
	}
	return n
}

func sumFs(acc, more *statsv1alpha1.FsStats) *statsv1alpha1.FsStats {
	if more == nil {
		return acc
	}
	if acc == nil {
		acc = &statsv1alpha1.FsStats{}
	}
	acc.Time = later(acc.Time, more.Time)
	acc.AvailableBytes = sum(acc.AvailableBytes, more.AvailableBytes)
	acc.CapacityBytes = sum(acc.CapacityBytes, more.CapacityBytes)
	acc.UsedBytes = sum(acc.UsedBytes, more.UsedBytes)
	acc.InodesFree = sum(acc.InodesFree, more.InodesFree)
	acc.Inodes = sum(acc.Inodes, more.Inodes)
	acc.InodesUsed = sum(acc.InodesUsed, more.InodesUsed)
	return acc
}

// sum adds b to a; nil means unknown, and a sum is known when any part is.
func sum(a, b *uint64) *uint64 {
	switch {
	case b == nil:
		return a
	case a == nil:
		return ptr.To(*b)
	}
	return ptr.To(*a + *b)
}

func later(a, b metav1.Time) metav1.Time {
	if b.After(a.Time) {
		return b
	}
	return a
}

// Names and help of the kubelet's resource metrics (/metrics/resource), which
// metrics-server reads.
const (
	metricNodeCPU           = "node_cpu_usage_seconds_total"
	metricNodeMemory        = "node_memory_working_set_bytes"
	metricNodeSwap          = "node_swap_usage_bytes"
	metricContainerCPU      = "container_cpu_usage_seconds_total"
	metricContainerMemory   = "container_memory_working_set_bytes"
	metricContainerSwap     = "container_swap_usage_bytes"
	metricContainerStart    = "container_start_time_seconds"
	metricPodCPU            = "pod_cpu_usage_seconds_total"
	metricPodMemory         = "pod_memory_working_set_bytes"
	metricPodSwap           = "pod_swap_usage_bytes"
	metricScrapeError       = "scrape_error"
	metricResourceScrapeErr = "resource_scrape_error"
)

var metricHelp = map[string]string{
	metricNodeCPU:           "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
	metricNodeMemory:        "[STABLE] Current working set of the node in bytes",
	metricNodeSwap:          "[BETA] Current swap usage of the node in bytes. Reported only on non-windows systems",
	metricContainerCPU:      "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
	metricContainerMemory:   "[STABLE] Current working set of the container in bytes",
	metricContainerSwap:     "[BETA] Current amount of the container swap usage in bytes. Reported only on non-windows systems",
	metricContainerStart:    "[STABLE] Start time of the container since unix epoch in seconds",
	metricPodCPU:            "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
	metricPodMemory:         "[STABLE] Current working set of the pod in bytes",
	metricPodSwap:           "[BETA] Current amount of the pod swap usage in bytes. Reported only on non-windows systems",
	metricScrapeError:       "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
	metricResourceScrapeErr: "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
}

// ResourceMetrics returns the kubelet's resource metrics (/metrics/resource: the names,
// labels, types and timestamps metrics-server reads) made from a stats summary, with its
// pods as they are named in s. A value the summary lacks is left out. Labels come in the
// order namespace, pod, container (see orderLabels).
func ResourceMetrics(s *statsv1alpha1.Summary) []*dto.MetricFamily {
	fams := map[string]*dto.MetricFamily{}
	add := func(name string, t dto.MetricType, value float64, at metav1.Time, labels ...string) {
		f := fams[name]
		if f == nil {
			f = &dto.MetricFamily{Name: ptr.To(name), Help: ptr.To(metricHelp[name]), Type: t.Enum()}
			fams[name] = f
		}
		m := &dto.Metric{}
		for i := 0; i+1 < len(labels); i += 2 {
			m.Label = append(m.Label, &dto.LabelPair{Name: ptr.To(labels[i]), Value: ptr.To(labels[i+1])})
		}
		setValue(m, t, value)
		if !at.IsZero() {
			m.TimestampMs = ptr.To(at.UnixMilli())
		}
		f.Metric = append(f.Metric, m)
	}
	cpuMem := func(cpuName, memName, swapName string, cpu *statsv1alpha1.CPUStats, mem *statsv1alpha1.MemoryStats, swap *statsv1alpha1.SwapStats, labels ...string) {
		if cpu != nil && cpu.UsageCoreNanoSeconds != nil {
			add(cpuName, dto.MetricType_COUNTER, float64(*cpu.UsageCoreNanoSeconds)/float64(time.Second), cpu.Time, labels...)
		}
		if mem != nil && mem.WorkingSetBytes != nil {
			add(memName, dto.MetricType_GAUGE, float64(*mem.WorkingSetBytes), mem.Time, labels...)
		}
		if swap != nil && swap.SwapUsageBytes != nil {
			add(swapName, dto.MetricType_GAUGE, float64(*swap.SwapUsageBytes), swap.Time, labels...)
		}
	}
	cpuMem(metricNodeCPU, metricNodeMemory, metricNodeSwap, s.Node.CPU, s.Node.Memory, s.Node.Swap)
	for _, p := range s.Pods {
		ns, pod := p.PodRef.Namespace, p.PodRef.Name
		for _, c := range p.Containers {
			cpuMem(metricContainerCPU, metricContainerMemory, metricContainerSwap, c.CPU, c.Memory, c.Swap,
				"namespace", ns, "pod", pod, "container", c.Name)
			if !c.StartTime.IsZero() {
				add(metricContainerStart, dto.MetricType_GAUGE, float64(c.StartTime.UnixNano())/float64(time.Second), c.StartTime,
					"namespace", ns, "pod", pod, "container", c.Name)
			}
		}
		cpuMem(metricPodCPU, metricPodMemory, metricPodSwap, p.CPU, p.Memory, p.Swap, "namespace", ns, "pod", pod)
	}
	add(metricScrapeError, dto.MetricType_GAUGE, 0, metav1.Time{})
	return sortedFamilies(fams)
}

// HostResourceMetrics returns the resource metrics of virtual node of site from those of
// the site nodes it stands for (each parsed from a kubelet's /metrics/resource, or made by
// ResourceMetrics). Series labelled with a pod are kept only for pods that run for host
// pods, relabelled with the host namespace and name; node_* series are summed over the site
// nodes (with the latest timestamp); other series (scrape_error) keep the largest value.
// Labels come in the order namespace, pod, container, then the others by name
// (orderLabels). failed, when true, sets scrape_error to 1: some site node could not be
// read. The input is not modified.
func HostResourceMetrics(site string, in []map[string]*dto.MetricFamily, hostPod HostPodFunc, failed bool) []*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	// merged indexes the node-level series of each family by their labels.
	merged := map[string]map[string]*dto.Metric{}
	for _, fams := range in {
		for name, f := range fams {
			o := out[name]
			if o == nil {
				o = &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type, Unit: f.Unit}
				out[name] = o
				merged[name] = map[string]*dto.Metric{}
			}
			for _, m := range f.Metric {
				if ns, pod, ok := podLabels(m); ok {
					ref, ok := hostPod(site, ns, pod)
					if !ok {
						continue
					}
					o.Metric = append(o.Metric, relabel(m, ref))
					continue
				}
				key := labelKey(m)
				prev := merged[name][key]
				if prev == nil {
					c := copyMetric(m)
					merged[name][key] = c
					o.Metric = append(o.Metric, c)
					continue
				}
				v := value(m)
				if strings.HasPrefix(name, "node_") {
					v += value(prev)
				} else {
					v = math.Max(v, value(prev))
				}
				setValue(prev, o.GetType(), v)
				if m.TimestampMs != nil && (prev.TimestampMs == nil || *m.TimestampMs > *prev.TimestampMs) {
					prev.TimestampMs = ptr.To(*m.TimestampMs)
				}
			}
		}
	}
	if failed {
		for _, name := range []string{metricScrapeError, metricResourceScrapeErr} {
			if f := out[name]; f != nil {
				for _, m := range f.Metric {
					setValue(m, f.GetType(), 1)
				}
			}
		}
		if out[metricScrapeError] == nil {
			v := &dto.Metric{}
			setValue(v, dto.MetricType_GAUGE, 1)
			out[metricScrapeError] = &dto.MetricFamily{
				Name: ptr.To(metricScrapeError), Help: ptr.To(metricHelp[metricScrapeError]),
				Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{v},
			}
		}
	}
	for name, f := range out {
		if len(f.Metric) == 0 {
			delete(out, name)
		}
	}
	return sortedFamilies(out)
}

func podLabels(m *dto.Metric) (ns, pod string, ok bool) {
	var hasNS, hasPod bool
	for _, l := range m.Label {
		switch l.GetName() {
		case "namespace":
			ns, hasNS = l.GetValue(), true
		case "pod":
			pod, hasPod = l.GetValue(), true
		}
	}
	return ns, pod, hasNS && hasPod
}

func relabel(m *dto.Metric, ref HostPod) *dto.Metric {
	c := copyMetric(m)
	for i, l := range c.Label {
		switch l.GetName() {
		case "namespace":
			c.Label[i] = &dto.LabelPair{Name: l.Name, Value: ptr.To(ref.Namespace)}
		case "pod":
			c.Label[i] = &dto.LabelPair{Name: l.Name, Value: ptr.To(ref.Name)}
		}
	}
	return c
}

// copyMetric copies m with its labels in orderLabels' order.
func copyMetric(m *dto.Metric) *dto.Metric {
	c := &dto.Metric{Label: slices.Clone(m.Label)}
	orderLabels(c.Label)
	if m.TimestampMs != nil {
		c.TimestampMs = ptr.To(*m.TimestampMs)
	}
	switch {
	case m.Counter != nil:
		c.Counter = &dto.Counter{Value: ptr.To(m.Counter.GetValue())}
	case m.Gauge != nil:
		c.Gauge = &dto.Gauge{Value: ptr.To(m.Gauge.GetValue())}
	case m.Untyped != nil:
		c.Untyped = &dto.Untyped{Value: ptr.To(m.Untyped.GetValue())}
	default:
		// Summaries and histograms are not among the resource metrics; keep them as they are.
		c.Summary, c.Histogram = m.Summary, m.Histogram
	}
	return c
}

// orderLabels sorts the labels of a resource metric from the widest scope to the
// narrowest: namespace, pod, container, then any others by name. Prometheus gives label
// order no meaning, and consumers such as metrics-server look labels up by name, but a
// stable order makes the output independent of the site's, and virtual-kubelet's e2e
// suite reads the pod name from a series' second label.
func orderLabels(labels []*dto.LabelPair) {
	rank := func(name string) int {
		switch name {
		case "namespace":
			return 0
		case "pod":
			return 1
		case "container":
			return 2
		}
		return 3
	}
	slices.SortStableFunc(labels, func(a, b *dto.LabelPair) int {
		return cmp.Or(cmp.Compare(rank(a.GetName()), rank(b.GetName())), cmp.Compare(a.GetName(), b.GetName()))
	})
}

// labelKey identifies a series of a family by its labels, whatever their order.
func labelKey(m *dto.Metric) string {
	labels := slices.Clone(m.Label)
	orderLabels(labels)
	var b strings.Builder
	for _, l := range labels {
		b.WriteString(l.GetName())
		b.WriteByte('=')
		b.WriteString(l.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func setValue(m *dto.Metric, t dto.MetricType, v float64) {
	m.Counter, m.Gauge, m.Untyped = nil, nil, nil
	switch t {
	case dto.MetricType_COUNTER:
		m.Counter = &dto.Counter{Value: ptr.To(v)}
	case dto.MetricType_GAUGE:
		m.Gauge = &dto.Gauge{Value: ptr.To(v)}
	default:
		m.Untyped = &dto.Untyped{Value: ptr.To(v)}
	}
}

func sortedFamilies(fams map[string]*dto.MetricFamily) []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

// SummaryFromMetrics returns the stats summary of site node node made from its resource
// metrics (/metrics/resource, parsed), for a node that serves no summary (kwok's nodes
// serve only the resource metrics their Metric resource describes). It holds what the
// metrics say and nothing more: cumulative CPU time, memory working set and swap of the
// node, its pods and their containers, and the containers' start times; a sample without a
// timestamp is dated scraped, when it was read. Rates (usageNanoCores), file systems,
// networks and the pods' own start times are not in the resource metrics and stay unset.
// Pods are named as the metrics name them (their UID unset) and sorted by namespace and
// name, their containers by name. The input is not modified.
func SummaryFromMetrics(node string, fams map[string]*dto.MetricFamily, scraped time.Time) *statsv1alpha1.Summary {
	out := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: node}, Pods: []statsv1alpha1.PodStats{}}
	type podKey struct{ namespace, name string }
	pods := map[podKey]*statsv1alpha1.PodStats{}
	containers := map[podKey]map[string]*statsv1alpha1.ContainerStats{}
	pod := func(m *dto.Metric) (*statsv1alpha1.PodStats, podKey, bool) {
		ns, name, ok := podLabels(m)
		if !ok {
			return nil, podKey{}, false
		}
		k := podKey{ns, name}
		p := pods[k]
		if p == nil {
			p = &statsv1alpha1.PodStats{PodRef: statsv1alpha1.PodReference{Namespace: ns, Name: name}}
			pods[k] = p
			containers[k] = map[string]*statsv1alpha1.ContainerStats{}
		}
		return p, k, true
	}
	container := func(m *dto.Metric) *statsv1alpha1.ContainerStats {
		_, k, ok := pod(m)
		name := labelValue(m, "container")
		if !ok || name == "" {
			return nil
		}
		c := containers[k][name]
		if c == nil {
			c = &statsv1alpha1.ContainerStats{Name: name}
			containers[k][name] = c
		}
		return c
	}
	at := func(m *dto.Metric) metav1.Time {
		if m.TimestampMs != nil {
			return metav1.NewTime(time.UnixMilli(*m.TimestampMs))
		}
		return metav1.NewTime(scraped)
	}
	// sample is a metric's value as a count of units (nanoseconds of CPU, bytes), or false
	// when it is not a finite, non-negative number.
	sample := func(m *dto.Metric, unit float64) (*uint64, bool) {
		v := value(m) * unit
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > math.MaxUint64 {
			return nil, false
		}
		return ptr.To(uint64(math.Round(v))), true
	}
	setCPU := func(dst **statsv1alpha1.CPUStats, m *dto.Metric) {
		if v, ok := sample(m, float64(time.Second)); ok {
			*dst = &statsv1alpha1.CPUStats{Time: at(m), UsageCoreNanoSeconds: v}
		}
	}
	setMemory := func(dst **statsv1alpha1.MemoryStats, m *dto.Metric) {
		if v, ok := sample(m, 1); ok {
			*dst = &statsv1alpha1.MemoryStats{Time: at(m), WorkingSetBytes: v}
		}
	}
	setSwap := func(dst **statsv1alpha1.SwapStats, m *dto.Metric) {
		if v, ok := sample(m, 1); ok {
			*dst = &statsv1alpha1.SwapStats{Time: at(m), SwapUsageBytes: v}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fams)) {
		for _, m := range fams[name].Metric {
			switch name {
			case metricNodeCPU:
				setCPU(&out.Node.CPU, m)
			case metricNodeMemory:
				setMemory(&out.Node.Memory, m)
			case metricNodeSwap:
				setSwap(&out.Node.Swap, m)
			case metricPodCPU, metricPodMemory, metricPodSwap:
				p, _, ok := pod(m)
				if !ok {
					continue
				}
				switch name {
				case metricPodCPU:
					setCPU(&p.CPU, m)
				case metricPodMemory:
					setMemory(&p.Memory, m)
				default:
					setSwap(&p.Swap, m)
				}
			case metricContainerCPU, metricContainerMemory, metricContainerSwap, metricContainerStart:
				c := container(m)
				if c == nil {
					continue
				}
				switch name {
				case metricContainerCPU:
					setCPU(&c.CPU, m)
				case metricContainerMemory:
					setMemory(&c.Memory, m)
				case metricContainerSwap:
					setSwap(&c.Swap, m)
				default:
					if v := value(m); v > 0 && !math.IsInf(v, 0) {
						sec, frac := math.Modf(v)
						c.StartTime = metav1.NewTime(time.Unix(int64(sec), int64(frac*float64(time.Second))))
					}
				}
			}
		}
	}
	for k, p := range pods {
		for _, name := range slices.Sorted(maps.Keys(containers[k])) {
			p.Containers = append(p.Containers, *containers[k][name])
		}
		out.Pods = append(out.Pods, *p)
	}
	sortPods(out.Pods)
	return out
}

// SummaryFromPods returns the stats summary of site node node made from the pods the site
// runs there, for a node that serves neither a summary nor resource metrics: the pods that
// have not terminated, each with its start time and its containers (restartable init
// containers included) with theirs. No usage is known, so none is given: the CPU, memory,
// file system and network fields stay unset. The input is not modified.
func SummaryFromPods(node string, pods []*corev1.Pod) *statsv1alpha1.Summary {
	out := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: node}, Pods: []statsv1alpha1.PodStats{}}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		started := map[string]metav1.Time{}
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			if cs.State.Running != nil {
				started[cs.Name] = cs.State.Running.StartedAt
			}
		}
		ps := statsv1alpha1.PodStats{
			PodRef:     statsv1alpha1.PodReference{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)},
			Containers: []statsv1alpha1.ContainerStats{},
		}
		if p.Status.StartTime != nil {
			ps.StartTime = *p.Status.StartTime
		}
		for _, c := range p.Spec.InitContainers {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{Name: c.Name, StartTime: started[c.Name]})
			}
		}
		for _, c := range p.Spec.Containers {
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{Name: c.Name, StartTime: started[c.Name]})
		}
		out.Pods = append(out.Pods, ps)
	}
	sortPods(out.Pods)
	return out
}

func sortPods(pods []statsv1alpha1.PodStats) {
	slices.SortFunc(pods, func(a, b statsv1alpha1.PodStats) int {
		return cmp.Or(cmp.Compare(a.PodRef.Namespace, b.PodRef.Namespace), cmp.Compare(a.PodRef.Name, b.PodRef.Name))
	})
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

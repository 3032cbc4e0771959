package kubeletapi

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
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
	slices.SortFunc(out.Pods, func(a, b statsv1alpha1.PodStats) int {
		return cmp.Or(cmp.Compare(a.PodRef.Namespace, b.PodRef.Namespace), cmp.Compare(a.PodRef.Name, b.PodRef.Name))
	})
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
// pods as they are named in s. A value the summary lacks is left out.
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
				"container", c.Name, "pod", pod, "namespace", ns)
			if !c.StartTime.IsZero() {
				add(metricContainerStart, dto.MetricType_GAUGE, float64(c.StartTime.UnixNano())/float64(time.Second), c.StartTime,
					"container", c.Name, "pod", pod, "namespace", ns)
			}
		}
		cpuMem(metricPodCPU, metricPodMemory, metricPodSwap, p.CPU, p.Memory, p.Swap, "pod", pod, "namespace", ns)
	}
	add(metricScrapeError, dto.MetricType_GAUGE, 0, metav1.Time{})
	return sortedFamilies(fams)
}

// HostResourceMetrics returns the resource metrics of virtual node of site from those of
// the site nodes it stands for (each parsed from a kubelet's /metrics/resource, or made by
// ResourceMetrics). Series labelled with a pod are kept only for pods that run for host
// pods, relabelled with the host namespace and name; node_* series are summed over the site
// nodes (with the latest timestamp); other series (scrape_error) keep the largest value.
// failed, when true, sets scrape_error to 1: some site node could not be read. The input is
// not modified.
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

func copyMetric(m *dto.Metric) *dto.Metric {
	c := &dto.Metric{Label: slices.Clone(m.Label)}
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

func labelKey(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.Label {
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

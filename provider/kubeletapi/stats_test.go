package kubeletapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

func hostPods(m map[string]HostPod) HostPodFunc {
	return func(site, ns, name string) (HostPod, bool) {
		p, ok := m[site+"/"+ns+"/"+name]
		return p, ok
	}
}

func TestHostSummary(t *testing.T) {
	later := metav1.NewTime(t0.Add(time.Minute))
	earlier := metav1.NewTime(t0.Add(-time.Hour))
	n1 := siteNodeSummary("n1", 100)
	n1.Node.SystemContainers = []statsv1alpha1.ContainerStats{{Name: "kubelet"}}
	n1.Node.Fs = &statsv1alpha1.FsStats{CapacityBytes: ptr.To(uint64(10)), UsedBytes: ptr.To(uint64(1))}
	n2 := siteNodeSummary("n2", 200)
	n2.Node.StartTime = earlier
	n2.Node.CPU.Time = later
	n2.Node.Fs = &statsv1alpha1.FsStats{CapacityBytes: ptr.To(uint64(20))}
	n2.Node.Memory.UsageBytes = nil
	refs := hostPods(map[string]HostPod{
		"s/acme-demo/web-n1": {Namespace: "demo", Name: "web-n1", UID: "u1"},
		"s/acme-demo/web-n2": {Namespace: "demo", Name: "web-n2", UID: "u2"},
	})
	before, _ := json.Marshal([]*statsv1alpha1.Summary{n1, n2})

	for _, tc := range []struct {
		name      string
		in        []*statsv1alpha1.Summary
		wantPods  []string
		wantCPU   uint64
		wantStart metav1.Time
		check     func(t *testing.T, s *statsv1alpha1.Summary)
	}{
		{name: "none", wantPods: nil},
		{name: "per node", in: []*statsv1alpha1.Summary{n1}, wantPods: []string{"demo/web-n1/u1"}, wantCPU: 100, wantStart: t0,
			check: func(t *testing.T, s *statsv1alpha1.Summary) {
				if len(s.Node.SystemContainers) != 1 {
					t.Error("per node: system containers dropped")
				}
				if ref := s.Pods[0].VolumeStats[0].PVCRef; ref.Namespace != "demo" || ref.Name != "data" {
					t.Errorf("PVC reference %+v, want demo/data", ref)
				}
			}},
		{name: "aggregate", in: []*statsv1alpha1.Summary{n1, n2}, wantPods: []string{"demo/web-n1/u1", "demo/web-n2/u2"}, wantCPU: 300, wantStart: earlier,
			check: func(t *testing.T, s *statsv1alpha1.Summary) {
				n := s.Node
				if n.SystemContainers != nil {
					t.Error("aggregate: system containers kept")
				}
				if !n.CPU.Time.Equal(&later) {
					t.Errorf("cpu time %v, want the latest", n.CPU.Time)
				}
				if *n.CPU.UsageCoreNanoSeconds != 300000 || *n.Memory.WorkingSetBytes != 2<<30 || *n.Memory.UsageBytes != 2<<30 {
					t.Errorf("sums: cpu %d ws %d usage %d", *n.CPU.UsageCoreNanoSeconds, *n.Memory.WorkingSetBytes, *n.Memory.UsageBytes)
				}
				if *n.Fs.CapacityBytes != 30 || *n.Fs.UsedBytes != 1 || n.Fs.InodesFree != nil {
					t.Errorf("fs %+v", n.Fs)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := HostSummary("vnode", "s", tc.in, refs)
			if got.Node.NodeName != "vnode" {
				t.Errorf("node name %q", got.Node.NodeName)
			}
			var pods []string
			for _, p := range got.Pods {
				pods = append(pods, p.PodRef.Namespace+"/"+p.PodRef.Name+"/"+p.PodRef.UID)
			}
			if !reflect.DeepEqual(pods, tc.wantPods) {
				t.Errorf("pods %v, want %v", pods, tc.wantPods)
			}
			if tc.wantCPU != 0 && *got.Node.CPU.UsageNanoCores != tc.wantCPU {
				t.Errorf("cpu %d, want %d", *got.Node.CPU.UsageNanoCores, tc.wantCPU)
			}
			if !got.Node.StartTime.Equal(&tc.wantStart) {
				t.Errorf("start %v, want %v", got.Node.StartTime, tc.wantStart)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
	after, _ := json.Marshal([]*statsv1alpha1.Summary{n1, n2})
	if !bytes.Equal(before, after) {
		t.Error("HostSummary modified its input")
	}
}

func encode(t *testing.T, fams []*dto.MetricFamily) string {
	t.Helper()
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestResourceMetrics(t *testing.T) {
	s := HostSummary("vnode", "s", []*statsv1alpha1.Summary{siteNodeSummary("n1", 100)},
		hostPods(map[string]HostPod{"s/acme-demo/web-n1": {Namespace: "demo", Name: "web-n1"}}))
	s.Node.Swap = &statsv1alpha1.SwapStats{Time: t0, SwapUsageBytes: ptr.To(uint64(7))}
	got := encode(t, ResourceMetrics(s))
	ms := t0.UnixMilli()
	for _, want := range []string{
		"# TYPE node_cpu_usage_seconds_total counter",
		"node_cpu_usage_seconds_total 0.0001 " + itoa(int(ms)),
		"node_memory_working_set_bytes 1.073741824e+09 " + itoa(int(ms)),
		"node_swap_usage_bytes 7 " + itoa(int(ms)),
		`container_cpu_usage_seconds_total{container="app",pod="web-n1",namespace="demo"} 2 ` + itoa(int(ms)),
		`container_memory_working_set_bytes{container="app",pod="web-n1",namespace="demo"} 4096 `,
		`container_start_time_seconds{container="app",pod="web-n1",namespace="demo"} 1.767323045e+09 `,
		`pod_cpu_usage_seconds_total{pod="web-n1",namespace="demo"} 2 `,
		`pod_memory_working_set_bytes{pod="web-n1",namespace="demo"} 4096 `,
		"scrape_error 0\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "container_swap_usage_bytes") {
		t.Error("a value the summary lacks was made up")
	}
}

func TestHostResourceMetrics(t *testing.T) {
	parse := func(text string) map[string]*dto.MetricFamily {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	siteNode := func(node, cpu, scrapeErr string) map[string]*dto.MetricFamily {
		return parse(`# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total ` + cpu + ` 1000
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="acme-demo",pod="web-` + node + `"} 1 1000
container_cpu_usage_seconds_total{container="app",namespace="kube-system",pod="coredns"} 9 1000
# TYPE scrape_error gauge
scrape_error ` + scrapeErr + `
`)
	}
	refs := hostPods(map[string]HostPod{
		"s/acme-demo/web-a": {Namespace: "demo", Name: "web-a"},
		"s/acme-demo/web-b": {Namespace: "demo", Name: "web-b"},
	})
	for _, tc := range []struct {
		name   string
		in     []map[string]*dto.MetricFamily
		failed bool
		want   []string
		absent []string
	}{
		{name: "per node", in: []map[string]*dto.MetricFamily{siteNode("a", "5", "0")},
			want:   []string{"node_cpu_usage_seconds_total 5 1000", `container_cpu_usage_seconds_total{container="app",namespace="demo",pod="web-a"} 1 1000`, "scrape_error 0"},
			absent: []string{"coredns", "acme-demo"}},
		{name: "aggregate sums nodes, keeps the worst scrape error", in: []map[string]*dto.MetricFamily{siteNode("a", "5", "0"), siteNode("b", "7", "1")},
			want: []string{"node_cpu_usage_seconds_total 12 1000", `pod="web-a"`, `pod="web-b"`, "scrape_error 1"}},
		{name: "a site node failed", in: []map[string]*dto.MetricFamily{siteNode("a", "5", "0")}, failed: true,
			want: []string{"scrape_error 1"}},
		{name: "every site node failed", failed: true, want: []string{"scrape_error 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before []string
			for _, f := range tc.in {
				for _, fam := range sortedKeys(f) {
					before = append(before, f[fam].String())
				}
			}
			got := encode(t, HostResourceMetrics("s", tc.in, refs, tc.failed))
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("%q kept in\n%s", a, got)
				}
			}
			var after []string
			for _, f := range tc.in {
				for _, fam := range sortedKeys(f) {
					after = append(after, f[fam].String())
				}
			}
			if !reflect.DeepEqual(before, after) {
				t.Error("input modified")
			}
		})
	}
}

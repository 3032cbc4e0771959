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
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
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
		`container_cpu_usage_seconds_total{namespace="demo",pod="web-n1",container="app"} 2 ` + itoa(int(ms)),
		`container_memory_working_set_bytes{namespace="demo",pod="web-n1",container="app"} 4096 `,
		`container_start_time_seconds{namespace="demo",pod="web-n1",container="app"} 1.767323045e+09 `,
		`pod_cpu_usage_seconds_total{namespace="demo",pod="web-n1"} 2 `,
		`pod_memory_working_set_bytes{namespace="demo",pod="web-n1"} 4096 `,
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
			want:   []string{"node_cpu_usage_seconds_total 5 1000", `container_cpu_usage_seconds_total{namespace="demo",pod="web-a",container="app"} 1 1000`, "scrape_error 0"},
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

// kwokMetrics is what a kwok node's Metric resource serves: labels in kwok's order, samples
// without timestamps but one, a value that is not a number.
const kwokMetrics = `# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 3.5
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 2.097152e+06
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="a",namespace="ns",pod="p"} 1.25 1767323045000
container_cpu_usage_seconds_total{container="b",namespace="ns",pod="p"} 0.5
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="a",namespace="ns",pod="p"} 1.048576e+06
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="a",namespace="ns",pod="p"} 1.767323045e+09
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="ns",pod="p"} 1.75
pod_cpu_usage_seconds_total{namespace="ns",pod="q"} NaN
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="ns",pod="p"} 2.097152e+06
# TYPE scrape_error gauge
scrape_error 0
`

func TestSummaryFromMetrics(t *testing.T) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(kwokMetrics))
	if err != nil {
		t.Fatal(err)
	}
	before := encode(t, sortedFamilies(fams))
	scraped := t0.Add(time.Minute)
	s := SummaryFromMetrics("node1", fams, scraped)

	n := s.Node
	if n.NodeName != "node1" || n.CPU == nil || *n.CPU.UsageCoreNanoSeconds != 3.5e9 || !n.CPU.Time.Time.Equal(scraped) {
		t.Errorf("node %s cpu %+v, want 3.5e9 core-ns at the scrape", n.NodeName, n.CPU)
	}
	if n.CPU.UsageNanoCores != nil || n.Memory == nil || *n.Memory.WorkingSetBytes != 2<<20 || n.Memory.UsageBytes != nil || n.Fs != nil {
		t.Errorf("node: a rate or a value the metrics lack was made up, or the working set lost: %+v %+v", n.CPU, n.Memory)
	}
	var pods []string
	for _, p := range s.Pods {
		pods = append(pods, p.PodRef.Namespace+"/"+p.PodRef.Name)
	}
	if !reflect.DeepEqual(pods, []string{"ns/p", "ns/q"}) {
		t.Fatalf("pods %v, want ns/p and ns/q", pods)
	}
	p, q := s.Pods[0], s.Pods[1]
	if *p.CPU.UsageCoreNanoSeconds != 1.75e9 || *p.Memory.WorkingSetBytes != 2<<20 || !p.StartTime.IsZero() {
		t.Errorf("pod p: cpu %+v memory %+v start %v", p.CPU, p.Memory, p.StartTime)
	}
	if q.CPU != nil {
		t.Errorf("pod q: cpu %+v from NaN", q.CPU)
	}
	if len(p.Containers) != 2 || p.Containers[0].Name != "a" || p.Containers[1].Name != "b" {
		t.Fatalf("containers %+v, want a and b", p.Containers)
	}
	a, b := p.Containers[0], p.Containers[1]
	if *a.CPU.UsageCoreNanoSeconds != 1.25e9 || !a.CPU.Time.Equal(&t0) || *a.Memory.WorkingSetBytes != 1<<20 || !a.StartTime.Equal(&t0) {
		t.Errorf("container a: cpu %+v memory %+v start %v", a.CPU, a.Memory, a.StartTime)
	}
	if *b.CPU.UsageCoreNanoSeconds != 0.5e9 || b.Memory != nil || !b.StartTime.IsZero() {
		t.Errorf("container b: cpu %+v memory %+v start %v", b.CPU, b.Memory, b.StartTime)
	}
	// Back to resource metrics, the counters are the site's.
	got := encode(t, ResourceMetrics(s))
	for _, want := range []string{
		`container_cpu_usage_seconds_total{namespace="ns",pod="p",container="a"} 1.25 1767323045000`,
		`pod_cpu_usage_seconds_total{namespace="ns",pod="p"} 1.75 `,
		"node_cpu_usage_seconds_total 3.5 ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if after := encode(t, sortedFamilies(fams)); after != before {
		t.Error("SummaryFromMetrics modified its input")
	}
}

func TestSummaryFromPods(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	started := metav1.NewTime(t0.Add(time.Second))
	running := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u1"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init"}, {Name: "proxy", RestartPolicy: &always}},
			Containers:     []corev1.Container{{Name: "app"}, {Name: "log"}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, StartTime: &t0,
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}},
				{Name: "log", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
			},
		},
	}
	pending := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "new", UID: "u2"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	done := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job", UID: "u3"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodSucceeded},
	}
	before, _ := json.Marshal([]*corev1.Pod{running, pending, done})
	s := SummaryFromPods("node1", []*corev1.Pod{running, pending, done})
	if s.Node.NodeName != "node1" || s.Node.CPU != nil || s.Node.Memory != nil {
		t.Errorf("node %+v: want its name and no usage", s.Node)
	}
	if len(s.Pods) != 2 || s.Pods[0].PodRef != (statsv1alpha1.PodReference{Namespace: "ns", Name: "new", UID: "u2"}) ||
		s.Pods[1].PodRef != (statsv1alpha1.PodReference{Namespace: "ns", Name: "web", UID: "u1"}) {
		t.Fatalf("pods %+v, want ns/new and ns/web (the terminated one left out)", s.Pods)
	}
	web := s.Pods[1]
	var names []string
	for _, c := range web.Containers {
		names = append(names, c.Name)
		if c.CPU != nil || c.Memory != nil || c.Rootfs != nil || c.Logs != nil {
			t.Errorf("container %s: usage made up: %+v", c.Name, c)
		}
	}
	if !reflect.DeepEqual(names, []string{"proxy", "app", "log"}) {
		t.Errorf("containers %v, want the sidecar proxy, app and log", names)
	}
	if !web.StartTime.Equal(&t0) || !web.Containers[1].StartTime.Equal(&started) || !web.Containers[2].StartTime.IsZero() {
		t.Errorf("start times: pod %v, app %v, log %v", web.StartTime, web.Containers[1].StartTime, web.Containers[2].StartTime)
	}
	if web.CPU != nil || web.Memory != nil || web.Network != nil || web.EphemeralStorage != nil {
		t.Errorf("pod usage made up: %+v", web)
	}
	if after, _ := json.Marshal([]*corev1.Pod{running, pending, done}); !bytes.Equal(before, after) {
		t.Error("SummaryFromPods modified its input")
	}
}

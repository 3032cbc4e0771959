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

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab/kwokconfig"
)

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"default", Config{Name: "lab"}, ""},
		{"uppercase name", Config{Name: "Lab"}, `lab name "Lab"`},
		{"empty name", Config{Name: ""}, `lab name ""`},
		{"too many sites", Config{Name: "lab", Sites: 101}, "--sites 101"},
		{"negative nodes", Config{Name: "lab", Nodes: -1}, "--nodes -1"},
		{"metrics resolution below metrics-server's least", Config{Name: "lab", MetricsResolution: 5 * time.Second}, "metrics resolution 5s: want at least 10s"},
		{"metrics resolution", Config{Name: "lab", MetricsResolution: time.Minute}, ""},
		{"too many provider replicas", Config{Name: "lab", ProviderReplicas: 11}, "--provider-replicas 11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestProviderReplicas checks the provider processes of a lab: one as before by default;
// with more, every one shards the Sites, and each has its own pid file, log and
// certificate folder.
func TestProviderReplicas(t *testing.T) {
	l, err := New(Config{Name: "lab", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if p := providerReplica(1, 1); p.component != "vk8s-provider" || slices.Contains(p.args(l, "kc", [3]int{1, 2, 3}), "--shard") {
		t.Errorf("the only provider: %s %v, want vk8s-provider without --shard", p.component, p.args(l, "kc", [3]int{1, 2, 3}))
	}
	components, certs := map[string]bool{}, map[string]bool{}
	for _, p := range providerReplicas(3) {
		args := p.args(l, "kc", [3]int{1, 2, 3})
		if !slices.Contains(args, "--shard") {
			t.Errorf("%s: args %v, want --shard", p.component, args)
		}
		components[l.pidPath(p)] = true
		certs[args[slices.Index(args, "--kubelet-cert-dir")+1]] = true
	}
	if len(components) != 3 || len(certs) != 3 {
		t.Errorf("three replicas with %d pid files and %d certificate folders, want 3 each", len(components), len(certs))
	}
	if p := providerReplica(1, 3); p.component != "vk8s-provider" {
		t.Errorf("the first of three is %s, want vk8s-provider (its pid file and log stay)", p.component)
	}
}

// TestNewClosesInheritedDescriptorsOnExec: a descriptor the process inherited (a lock that
// `flock` holds for the command) does not reach the lab's daemons.
func TestNewClosesInheritedDescriptorsOnExec(t *testing.T) {
	fd, err := syscall.Open(filepath.Join(t.TempDir(), "lock"), syscall.O_CREAT|syscall.O_RDWR, 0o600) // no O_CLOEXEC: as inherited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Close(fd); err != nil {
			t.Error(err)
		}
	})
	open := func() string {
		out, err := exec.Command("/bin/sh", "-c", fmt.Sprintf("if [ -e /proc/self/fd/%d ]; then echo open; else echo closed; fi", fd)).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := open(); got != "open" {
		t.Fatalf("before New, a child sees descriptor %d %s; the test cannot tell", fd, got)
	}
	if _, err := New(Config{Name: "fd", Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if got := open(); got != "closed" {
		t.Errorf("after New, a child sees the inherited descriptor %d %s, want closed", fd, got)
	}
}

func TestNewDefaultDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/state")
	l, err := New(Config{Name: "two"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Dir(), "/state/vk8s/labs/two"; got != want {
		t.Errorf("Dir() = %s, want %s", got, want)
	}
	if got, want := l.ClusterName("site2"), "two-site2"; got != want {
		t.Errorf("ClusterName = %s, want %s", got, want)
	}
}

func TestUpNamesTheMissingTool(t *testing.T) {
	tools := t.TempDir()
	for _, name := range toolNames {
		if name == "kube-scheduler" {
			continue
		}
		if err := os.WriteFile(filepath.Join(tools, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := New(Config{Name: "missing", Dir: t.TempDir(), Tools: Tools{Dir: tools}})
	if err != nil {
		t.Fatal(err)
	}
	err = l.Up(t.Context())
	if err == nil || !strings.Contains(err.Error(), "tool kube-scheduler not found in "+tools) {
		t.Fatalf("Up: error %v, want one naming kube-scheduler and %s", err, tools)
	}
}

func TestKubeconfigOfLabNotUp(t *testing.T) {
	l, err := New(Config{Name: "absent", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Kubeconfig("site1"); !errors.Is(err, ErrNotUp) {
		t.Fatalf("Kubeconfig: %v, want ErrNotUp", err)
	}
	if _, err := l.Status(context.Background()); !errors.Is(err, ErrNotUp) {
		t.Fatalf("Status: %v, want ErrNotUp", err)
	}
}

func TestDownOfLabNotUpIsNoError(t *testing.T) {
	l, err := New(Config{Name: "absent", Dir: filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Down(t.Context()); err != nil {
		t.Fatalf("Down: %v", err)
	}
}

func TestSiteNode(t *testing.T) {
	for _, tc := range []struct {
		site, node         int
		wantName, wantZone string
		wantRegion         string
	}{
		{1, 1, "node1", "eu-west-a", "eu-west"},
		{2, 3, "node3", "us-east-c", "us-east"},
		{4, 4, "node4", "eu-west-a", "eu-west"},
	} {
		n := siteNode(tc.site, tc.node)
		if n.Name != tc.wantName || n.Labels[corev1.LabelHostname] != tc.wantName {
			t.Errorf("site %d node %d: name %s hostname %s, want %s", tc.site, tc.node, n.Name, n.Labels[corev1.LabelHostname], tc.wantName)
		}
		if got := n.Labels[corev1.LabelTopologyZone]; got != tc.wantZone {
			t.Errorf("site %d node %d: zone %s, want %s", tc.site, tc.node, got, tc.wantZone)
		}
		if got := n.Labels[corev1.LabelTopologyRegion]; got != tc.wantRegion {
			t.Errorf("site %d node %d: region %s, want %s", tc.site, tc.node, got, tc.wantRegion)
		}
		if n.Annotations[kwokNodeAnnotation] != "fake" {
			t.Errorf("site %d node %d: kwok does not manage it: annotations %v", tc.site, tc.node, n.Annotations)
		}
		alloc, capa := n.Status.Allocatable, n.Status.Capacity
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
			a, c := alloc[r], capa[r]
			if a.IsZero() || a.Cmp(c) > 0 {
				t.Errorf("site %d node %d: %s allocatable %s, capacity %s", tc.site, tc.node, r, a.String(), c.String())
			}
		}
	}
}

func TestSiteObjects(t *testing.T) {
	secret, site := siteObjects("demo", 2, []byte("kc"))
	if site.Name != "site2" || site.Labels[vk8sv1.LabelLab] != "demo" || site.Labels[LabelRegion] != "us-east" || site.Labels[LabelSiteIndex] != "2" {
		t.Errorf("site %s labels %v", site.Name, site.Labels)
	}
	ref := site.Spec.KubeconfigSecretRef
	if ref.Namespace != secret.Namespace || ref.Name != secret.Name || string(secret.Data[ref.Key]) != "kc" {
		t.Errorf("site points at %+v, secret %s/%s has keys %v", ref, secret.Namespace, secret.Name, secret.Data)
	}
}

func TestSiteContent(t *testing.T) {
	// writeSiteContent writes the tar shim kwok's exec runs: tar -x ends at the end of the
	// archive even though kwok never closes its stdin, and kubectl cp's old-style
	// "tar cf -" still works.
	t.Run("tar shim", func(t *testing.T) {
		dir := t.TempDir()
		if err := writeSiteContent(dir); err != nil {
			t.Fatal(err)
		}
		shim := filepath.Join(dir, kwokconfig.ShimDir, "tar")
		src := filepath.Join(dir, kwokconfig.ExecDir)
		var archive, stderr bytes.Buffer
		create := exec.CommandContext(t.Context(), shim, "cf", "-", SiteFile)
		create.Dir, create.Stdout, create.Stderr = src, &archive, &stderr
		if err := create.Run(); err != nil {
			t.Fatalf("tar cf -: %v\n%s", err, stderr.String())
		}
		// One block per record: no padding after the two end-of-archive blocks, as kubectl
		// cp's Go tar writer sends it (the system's tar pads to 10240 bytes).
		ar := archive.Bytes()
		if len(ar) != 4*512 {
			t.Fatalf("tar cf - wrote %d bytes, want a header, a block of data and 2 end-of-archive blocks", len(ar))
		}
		// ... and a stdin that then stays open, as kwok's (a file, so that exec does not
		// wait for the end of a copy).
		stdin, keepOpen, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = stdin.Close(), keepOpen.Close() }()
		if _, err := keepOpen.Write(ar); err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		extract := exec.CommandContext(ctx, shim, "-xmf", "-", "-C", dst)
		extract.Stdin = stdin
		if out, err := extract.CombinedOutput(); err != nil {
			t.Fatalf("tar -xmf - with a stdin that does not end: %v\n%s", err, out)
		}
		if got, err := os.ReadFile(filepath.Join(dst, SiteFile)); err != nil || string(got) != SiteFileContent {
			t.Errorf("extracted %q, %v", got, err)
		}
	})

	// writeSiteContent writes the lab's Stages: a pod annotated vk8sv1.AnnotationLabExitAfter
	// completes after the annotation's duration; a Job's pod ends after a while, with the
	// exit code of vk8sv1.AnnotationLabExitCode (0 without it). The status templates are
	// rendered as kwok renders them (Go templates over the pod as JSON, kwok's Now and
	// Quote), and what they make is read as a pod status.
	t.Run("site stages", func(t *testing.T) {
		dir := t.TempDir()
		if err := writeSiteContent(dir); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, kwokconfig.StagesFile))
		if err != nil {
			t.Fatal(err)
		}
		type kwokStage struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				ResourceRef struct{ APIGroup, Kind string } `json:"resourceRef"`
				Selector    struct {
					MatchExpressions []struct {
						Key, Operator string
						Values        []string
					} `json:"matchExpressions"`
				} `json:"selector"`
				Delay struct {
					DurationFrom struct {
						ExpressionFrom string `json:"expressionFrom"`
					} `json:"durationFrom"`
					DurationMilliseconds int64 `json:"durationMilliseconds"`
				} `json:"delay"`
				Next struct {
					StatusTemplate string `json:"statusTemplate"`
				} `json:"next"`
			} `json:"spec"`
		}
		stages := map[string]kwokStage{}
		selectors := map[string]map[string]string{}
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			var st kwokStage
			if err := yaml.UnmarshalStrict([]byte(doc), &st); err != nil {
				t.Fatalf("%v:\n%s", err, doc)
			}
			if st.APIVersion != "kwok.x-k8s.io/v1alpha1" || st.Kind != "Stage" || st.Spec.ResourceRef.Kind != "Pod" {
				t.Errorf("not a kwok Stage of pods:\n%s", doc)
			}
			sel := map[string]string{}
			for _, e := range st.Spec.Selector.MatchExpressions {
				sel[e.Key] = e.Operator + strings.Join(e.Values, ",")
			}
			if sel[".status.phase"] != "InRunning" || sel[".metadata.deletionTimestamp"] != "DoesNotExist" {
				t.Errorf("stage %s selects %v, want running pods only", st.Metadata.Name, sel)
			}
			stages[st.Metadata.Name], selectors[st.Metadata.Name] = st, sel
		}
		exitAfter := `.metadata.annotations["` + vk8sv1.AnnotationLabExitAfter + `"]`
		exitCode := `.metadata.annotations["` + vk8sv1.AnnotationLabExitCode + `"]`
		jobName := `.metadata.labels["batch.kubernetes.io/job-name"]`
		for name, want := range map[string]map[string]string{
			"vk8s-lab-exit-after":    {exitAfter: "Exists"},
			"vk8s-lab-job-complete":  {jobName: "Exists", exitAfter: "DoesNotExist", exitCode: "DoesNotExist"},
			"vk8s-lab-job-exit-code": {jobName: "Exists", exitAfter: "DoesNotExist", exitCode: "Exists"},
		} {
			for k, v := range want {
				if selectors[name][k] != v {
					t.Errorf("stage %s selects %v; want %s %s", name, selectors[name], k, v)
				}
			}
		}
		if got := stages["vk8s-lab-exit-after"].Spec.Delay.DurationFrom.ExpressionFrom; got != exitAfter {
			t.Errorf("vk8s-lab-exit-after waits %q, want the annotation", got)
		}
		for _, name := range []string{"vk8s-lab-job-complete", "vk8s-lab-job-exit-code"} {
			if got := stages[name].Spec.Delay.DurationMilliseconds; got != kwokconfig.JobPodRunTime {
				t.Errorf("%s waits %d ms, want %d", name, got, kwokconfig.JobPodRunTime)
			}
		}

		// What each stage makes of a pod of two containers.
		render := func(stage string, annotations map[string]string) corev1.PodStatus {
			t.Helper()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: annotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "busybox"}, {Name: "b", Image: "nginx"}}}}
			js, err := json.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			var data any
			if err := json.Unmarshal(js, &data); err != nil {
				t.Fatal(err)
			}
			funcs := template.FuncMap{"Now": func() string { return "2026-12-04T00:00:00Z" }, "Quote": func(v any) string { return strconv.Quote(fmt.Sprint(v)) }}
			tpl, err := template.New(stage).Funcs(funcs).Parse(stages[stage].Spec.Next.StatusTemplate)
			if err != nil {
				t.Fatalf("%s: %v", stage, err)
			}
			var out bytes.Buffer
			if err := tpl.Execute(&out, data); err != nil {
				t.Fatalf("%s: %v", stage, err)
			}
			var st corev1.PodStatus
			if err := yaml.UnmarshalStrict(out.Bytes(), &st); err != nil {
				t.Fatalf("%s renders no pod status: %v\n%s", stage, err, out.Bytes())
			}
			return st
		}
		for _, tc := range []struct {
			stage       string
			annotations map[string]string
			phase       corev1.PodPhase
			code        int32
			reason      string
		}{
			{"vk8s-lab-exit-after", map[string]string{vk8sv1.AnnotationLabExitAfter: "5s"}, corev1.PodSucceeded, 0, "Completed"},
			{"vk8s-lab-job-complete", nil, corev1.PodSucceeded, 0, "Completed"},
			{"vk8s-lab-job-exit-code", map[string]string{vk8sv1.AnnotationLabExitCode: "3"}, corev1.PodFailed, 3, "Error"},
			{"vk8s-lab-job-exit-code", map[string]string{vk8sv1.AnnotationLabExitCode: "0"}, corev1.PodSucceeded, 0, "Completed"},
		} {
			st := render(tc.stage, tc.annotations)
			if st.Phase != tc.phase || len(st.ContainerStatuses) != 2 {
				t.Errorf("%s %v: phase %s, %d container statuses; want %s and 2", tc.stage, tc.annotations, st.Phase, len(st.ContainerStatuses), tc.phase)
				continue
			}
			for _, c := range st.ContainerStatuses {
				if term := c.State.Terminated; term == nil || term.ExitCode != tc.code || term.Reason != tc.reason {
					t.Errorf("%s %v: container %s ended %+v, want exit code %d, reason %s", tc.stage, tc.annotations, c.Name, c.State, tc.code, tc.reason)
				}
			}
		}
	})

	// writeSiteContent writes the simulated resource metrics that the sites' kwok reads.
	t.Run("site metrics", func(t *testing.T) {
		dir := t.TempDir()
		if err := writeSiteContent(dir); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, kwokconfig.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		docs := strings.Split(string(raw), "\n---\n")
		if len(docs) != 2 {
			t.Fatalf("%d documents, want a Metric and a ClusterResourceUsage:\n%s", len(docs), raw)
		}
		var metric struct {
			Kind string `json:"kind"`
			Spec struct {
				Path    string `json:"path"`
				Metrics []struct {
					Name, Dimension, Kind, Value string
					Labels                       []struct{ Name, Value string }
				} `json:"metrics"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(docs[0]), &metric); err != nil {
			t.Fatal(err)
		}
		// The path kwok's nodes name in metrics.k8s.io/resource-metrics-path.
		if metric.Kind != "Metric" || metric.Spec.Path != "/metrics/nodes/{nodeName}/metrics/resource" {
			t.Errorf("kind %s path %s", metric.Kind, metric.Spec.Path)
		}
		// The kubelet's resource metrics, with the labels that name their pod and container.
		wantLabels := map[string]string{"node": "", "pod": "namespace,pod", "container": "container,namespace,pod"}
		got := map[string]string{}
		for _, m := range metric.Spec.Metrics {
			var labels []string
			for _, l := range m.Labels {
				labels = append(labels, l.Name)
			}
			if strings.Join(labels, ",") != wantLabels[m.Dimension] || m.Value == "" {
				t.Errorf("%s (%s): labels %v, value %q", m.Name, m.Dimension, labels, m.Value)
			}
			got[m.Name] = m.Kind
		}
		for name, kind := range map[string]string{
			"node_cpu_usage_seconds_total": "counter", "node_memory_working_set_bytes": "gauge",
			"pod_cpu_usage_seconds_total": "counter", "pod_memory_working_set_bytes": "gauge",
			"container_cpu_usage_seconds_total": "counter", "container_memory_working_set_bytes": "gauge",
			"container_start_time_seconds": "gauge", "scrape_error": "gauge",
		} {
			if got[name] != kind {
				t.Errorf("metric %s: kind %q, want %q", name, got[name], kind)
			}
		}
		var usage struct {
			Kind string `json:"kind"`
			Spec struct {
				Usages []struct {
					Usage map[string]struct{ Expression string } `json:"usage"`
				} `json:"usages"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(docs[1]), &usage); err != nil {
			t.Fatal(err)
		}
		if usage.Kind != "ClusterResourceUsage" || len(usage.Spec.Usages) != 1 {
			t.Fatalf("%s with %d usages", usage.Kind, len(usage.Spec.Usages))
		}
		for resource, fallback := range map[string]string{"cpu": `Quantity("1m")`, "memory": `Quantity("1Mi")`} {
			e := usage.Spec.Usages[0].Usage[resource].Expression
			if !strings.Contains(e, `pod.metadata.annotations["kwok.x-k8s.io/usage-`+resource+`"]`) || !strings.HasSuffix(e, fallback) {
				t.Errorf("%s usage: %q", resource, e)
			}
		}
	})
}

package lab

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab/kwokconfig"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
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

	// writeSiteContent writes the lab's Stage: a pod annotated vk8sv1.AnnotationLabExitAfter
	// completes after the annotation's duration.
	t.Run("site stages", func(t *testing.T) {
		dir := t.TempDir()
		if err := writeSiteContent(dir); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, kwokconfig.StagesFile))
		if err != nil {
			t.Fatal(err)
		}
		docs := strings.Split(string(raw), "\n---\n")
		if len(docs) != 2 {
			t.Fatalf("%d stages, want vk8s-lab-exit-after and vk8s-lab-job-complete:\n%s", len(docs), raw)
		}
		raw = []byte(docs[0])
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
		var stage, job kwokStage

		if err := yaml.UnmarshalStrict(raw, &stage); err != nil {
			t.Fatalf("%v:\n%s", err, raw)
		}
		annotation := `.metadata.annotations["` + vk8sv1.AnnotationLabExitAfter + `"]`
		if stage.APIVersion != "kwok.x-k8s.io/v1alpha1" || stage.Kind != "Stage" || stage.Spec.ResourceRef.Kind != "Pod" || stage.Spec.Delay.DurationFrom.ExpressionFrom != annotation {
			t.Errorf("stage:\n%s", raw)
		}
		sel := map[string]string{}
		for _, e := range stage.Spec.Selector.MatchExpressions {
			sel[e.Key] = e.Operator + strings.Join(e.Values, ",")
		}
		if sel[annotation] != "Exists" || sel[".status.phase"] != "InRunning" || sel[".metadata.deletionTimestamp"] != "DoesNotExist" {
			t.Errorf("selector %v, want running pods with the annotation", sel)
		}
		for _, want := range []string{"phase: Succeeded", "exitCode: 0", "reason: Completed", "range .spec.containers"} {
			if !strings.Contains(stage.Spec.Next.StatusTemplate, want) {
				t.Errorf("status template lacks %q:\n%s", want, stage.Spec.Next.StatusTemplate)
			}
		}

		// The pods of a Job complete after a while, as a real site's would: their Job is
		// the host's, so kwokctl's own stage, which selects on the owner, never ends them.
		if err := yaml.UnmarshalStrict([]byte(docs[1]), &job); err != nil {
			t.Fatalf("%v:\n%s", err, docs[1])
		}
		sel = map[string]string{}
		for _, e := range job.Spec.Selector.MatchExpressions {
			sel[e.Key] = e.Operator + strings.Join(e.Values, ",")
		}
		jobName := `.metadata.labels["batch.kubernetes.io/job-name"]`
		if job.Metadata.Name != "vk8s-lab-job-complete" || sel[jobName] != "Exists" || sel[annotation] != "DoesNotExist" ||
			sel[".status.phase"] != "InRunning" || job.Spec.Delay.DurationMilliseconds != kwokconfig.JobPodRunTime ||
			!strings.Contains(job.Spec.Next.StatusTemplate, "phase: Succeeded") {
			t.Errorf("job stage %s, selector %v:\n%s", job.Metadata.Name, sel, docs[1])
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

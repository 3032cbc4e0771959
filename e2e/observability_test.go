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

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/translate"
	"github.com/vk8s-io/vk8s/webhook"
)

// obsWebhookConfig names the webhook configurations of the processes these tests run:
// the chart's, as the webhook's ServiceAccount may write only those.
const obsWebhookConfig = lab.WebhookConfigurationName

// vk8sProcesses are `vk8s provider` and `vk8s webhook` run from the product binary, as an
// installation runs them: their /metrics is what Prometheus scrapes, and their spans are
// what the standard OTEL_* variables send to a collector.
type vk8sProcesses struct {
	providerMetrics, webhookMetrics string
}

// startVK8sProcesses stops the shared in-process provider, runs the provider and the
// webhook as processes with env added to their environment until the test ends, and waits
// until the provider has probed every site and the API server calls the webhook. The
// shared provider starts again when the test ends.
func startVK8sProcesses(t *testing.T, env ...string) *vk8sProcesses {
	t.Helper()
	startProvider(t) // the virtual nodes exist before the process takes over
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	stopProvider()
	t.Cleanup(func() { startProvider(t) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = c.Delete(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: obsWebhookConfig}})
		_ = c.Delete(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: obsWebhookConfig}})
		_ = c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: lab.SystemNamespace, Name: lab.WebhookCASecret}})
	})
	// As the lab runs them: with tokens of the chart's ServiceAccounts.
	pkc, wkc := fleet.ComponentKubeconfig("provider"), fleet.ComponentKubeconfig("webhook")
	port := func() string {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		return strconv.Itoa(p)
	}
	started := time.Now()
	pm, ph := port(), port()
	runVk8sProcess(t, "provider", ph, env, "--kubeconfig", pkc, "--node-address", "127.0.0.1", "--kubelet-port", port(),
		"--kubelet-client-ca-file", fleet.CACertPath("host"), "--leader-elect=false", "--site-heartbeat-interval", "10s",
		"--metrics-bind-address", "127.0.0.1:"+pm, "--health-probe-bind-address", "127.0.0.1:"+ph)
	wm, wh, url := port(), port(), "https://127.0.0.1:"+port()
	webhookMakeConfigurations(t, webhook.Config{URL: url, ConfigurationName: obsWebhookConfig})
	runVk8sProcess(t, "webhook", wh, env, "--kubeconfig", wkc, "--bind-address", "127.0.0.1", "--url", url,
		"--leader-elect=false", "--configurations", "inject-ca", "--configuration-name", obsWebhookConfig, "--ca-secret", lab.SystemNamespace+"/"+lab.WebhookCASecret,
		"--metrics-bind-address", "127.0.0.1:"+wm, "--health-probe-bind-address", "127.0.0.1:"+wh)
	waitSitesProbed(t, started)
	waitAllVirtualNodes(t, c)
	// The API server reads webhook configurations through an informer.
	waitFor(t, "the API server to call the webhook process", func(ctx context.Context) (bool, error) {
		return webhookProbe(ctx, c) == nil, nil
	})
	return &vk8sProcesses{providerMetrics: "http://127.0.0.1:" + pm + "/metrics", webhookMetrics: "http://127.0.0.1:" + wm + "/metrics"}
}

// runVk8sProcess runs `vk8s <subcommand> args...` from the binary TestMain built, with
// env added, until the test ends (SIGTERM, so that it flushes its spans), and waits until
// its /readyz on port health answers.
func runVk8sProcess(t *testing.T, subcommand, health string, env []string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), subcommand+".log")
	watchLogForbidden(t, logPath)
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vk8sBinary, append([]string{subcommand}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logFile.Close()
		if t.Failed() {
			raw, _ := os.ReadFile(logPath)
			lines := strings.Split(string(raw), "\n")
			t.Logf("vk8s %s log (last lines):\n%s", subcommand, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	waitFor(t, "vk8s "+subcommand+" to be ready", func(ctx context.Context) (bool, error) {
		select {
		case <-exited:
			raw, _ := os.ReadFile(logPath)
			return false, fmt.Errorf("vk8s %s exited: %s", subcommand, raw)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+health+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// observedNamespace makes ns a vK8s namespace of the processes' webhook, deleted (its
// pods gone from the sites) while they still run.
func observedNamespace(t *testing.T, c client.Client, ns string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_ = c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		if err := webhookNamespaceGone(ctx, c, ns); err != nil {
			t.Logf("namespace %s is not gone: %v", ns, err)
		}
	})
	vk8sNamespace(t, c, ns)
}

// metrics is one scrape of a /metrics endpoint.
type metrics map[string]*dto.MetricFamily

// scrape reads url's metrics in the text exposition format, as Prometheus does.
func scrape(ctx context.Context, url string) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return fams, nil
}

func mustScrape(t *testing.T, url string) metrics {
	t.Helper()
	m, err := scrape(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// value sums the series of family name whose labels include want: a counter's or gauge's
// value, a histogram's count of observations. ok says some series matched.
func (m metrics) value(name string, want map[string]string) (sum float64, ok bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
	for _, s := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		ok = true
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			sum += s.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += s.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			sum += float64(s.GetHistogram().GetSampleCount())
		default:
			sum += s.GetUntyped().GetValue()
		}
	}
	return sum, ok
}

// get is value for a label list "k1", "v1", "k2", "v2", ...
func (m metrics) get(name string, kv ...string) (float64, bool) {
	want := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		want[kv[i]] = kv[i+1]
	}
	return m.value(name, want)
}

// sites are the fleet's site names.
func sites() []string {
	out := make([]string, 0, fleetSites)
	for i := 1; i <= fleetSites; i++ {
		out = append(out, fmt.Sprintf("site%d", i))
	}
	return out
}

// hostPodsBySite counts the host pods bound to each site's virtual nodes by phase (an
// empty phase is Pending), as vk8s_provider_pods should say.
func hostPodsBySite(ctx context.Context, c client.Client) (map[string]map[corev1.PodPhase]int, error) {
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes, client.MatchingLabels{vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}); err != nil {
		return nil, err
	}
	siteOf := map[string]string{}
	for _, n := range nodes.Items {
		siteOf[n.Name] = n.Labels[vk8sv1.LabelSite]
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods); err != nil {
		return nil, err
	}
	out := map[string]map[corev1.PodPhase]int{}
	for _, p := range pods.Items {
		site, ok := siteOf[p.Spec.NodeName]
		if !ok {
			continue
		}
		if out[site] == nil {
			out[site] = map[corev1.PodPhase]int{}
		}
		phase := p.Status.Phase
		if phase == "" {
			phase = corev1.PodPending
		}
		out[site][phase]++
	}
	return out, nil
}

// waitPodsGauge waits until vk8s_provider_pods says, for every site and phase Pending and
// Running, what the host says, and at least min Running pods per site.
func waitPodsGauge(t *testing.T, c client.Client, url string, minRunning int) metrics {
	t.Helper()
	var last metrics
	var why string
	waitFor(t, "vk8s_provider_pods to count the host's pods", func(ctx context.Context) (bool, error) {
		m, err := scrape(ctx, url)
		if err != nil {
			return false, err
		}
		truth, err := hostPodsBySite(ctx, c)
		if err != nil {
			return false, err
		}
		last = m
		for _, s := range sites() {
			for _, phase := range []corev1.PodPhase{corev1.PodPending, corev1.PodRunning} {
				v, ok := m.get("vk8s_provider_pods", "site", s, "phase", string(phase))
				if !ok || int(v) != truth[s][phase] {
					why = fmt.Sprintf("vk8s_provider_pods{site=%s,phase=%s} = %v (present %v), the host has %d", s, phase, v, ok, truth[s][phase])
					return false, nil
				}
			}
			if truth[s][corev1.PodRunning] < minRunning {
				why = fmt.Sprintf("site %s has %d Running pods, want at least %d", s, truth[s][corev1.PodRunning], minRunning)
				return false, nil
			}
		}
		return true, nil
	})
	if why != "" {
		t.Logf("vk8s_provider_pods agrees with the host; before, %s", why)
	}
	return last
}

// TestMetrics scrapes the /metrics of the provider and webhook processes over HTTP and
// checks that the metrics of docs/observability.md are there, by site, and that they move
// when pods are created and deleted on the sites and when admission places or refuses.
func TestMetrics(t *testing.T) {
	skipShort(t)
	vk := startVK8sProcesses(t)
	c := hostClient(t)
	const ns = "metrics-e2e"
	observedNamespace(t, c, ns)

	// The pods gauge appears once the provider's host caches are filled.
	p0, w0 := waitPodsGauge(t, c, vk.providerMetrics, 0), mustScrape(t, vk.webhookMetrics)
	t.Run("every site is there, connected, with a recent heartbeat and counted calls", func(t *testing.T) {
		for _, s := range sites() {
			if v, ok := p0.get("vk8s_sitereg_site_connected", "site", s); !ok || v != 1 {
				t.Errorf("vk8s_sitereg_site_connected{site=%s} = %v (present %v), want 1", s, v, ok)
			}
			hb, ok := p0.get("vk8s_sitereg_site_last_heartbeat_timestamp_seconds", "site", s)
			if age := time.Since(time.Unix(int64(hb), 0)); !ok || age > 30*time.Second {
				t.Errorf("vk8s_sitereg_site_last_heartbeat_timestamp_seconds{site=%s}: age %s (present %v), want under 3 heartbeats (30 s)", s, age, ok)
			}
			for _, name := range []string{"vk8s_sitereg_site_requests_total", "vk8s_sitereg_site_request_duration_seconds"} {
				if v, ok := p0.get(name, "site", s, "verb", "GET"); !ok || v == 0 {
					t.Errorf("%s{site=%s,verb=GET} = %v (present %v), want the probes counted", name, s, v, ok)
				}
			}
			if _, ok := p0.get("vk8s_provider_site_queue_depth", "site", s); !ok {
				t.Errorf("vk8s_provider_site_queue_depth{site=%s} is missing", s)
			}
			for _, phase := range []string{"Pending", "Running", "Succeeded", "Failed", "Unknown"} {
				if _, ok := p0.get("vk8s_provider_pods", "site", s, "phase", phase); !ok {
					t.Errorf("vk8s_provider_pods{site=%s,phase=%s} is missing", s, phase)
				}
			}
		}
		for _, name := range []string{"vk8s_provider_status_sync_lag_seconds", "vk8s_provider_pods_waiting_for_site", "vk8s_sitereg_probe_duration_seconds"} {
			if _, ok := p0[name]; !ok {
				t.Errorf("provider: %s is missing", name)
			}
		}
		for _, name := range []string{"vk8s_webhook_admission_duration_seconds", "vk8s_webhook_rejections_total",
			"vk8s_webhook_reservations", "vk8s_federation_rebalance_replans_total"} {
			if _, ok := w0[name]; !ok {
				t.Errorf("webhook: %s is missing", name)
			}
		}
	})

	// One pod per site, through admission.
	labels := map[string]string{"app": "observed"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "observed"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}},
			},
		},
	}
	mustCreate(t, c, d)
	var pods []corev1.Pod
	waitFor(t, "3 Running pods of the Deployment, one per site", func(ctx context.Context) (bool, error) {
		var list corev1.PodList
		if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return false, err
		}
		pods = list.Items
		perSite := map[string]int{}
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				perSite[p.Labels[vk8sv1.LabelSite]]++
			}
		}
		return len(pods) == fleetSites && len(perSite) == fleetSites, nil
	})

	t.Run("pods per site and phase follow the host's pods", func(t *testing.T) {
		p1 := waitPodsGauge(t, c, vk.providerMetrics, 1)
		for _, s := range sites() {
			before, _ := p0.get("vk8s_provider_pods", "site", s, "phase", "Running")
			after, _ := p1.get("vk8s_provider_pods", "site", s, "phase", "Running")
			if after < before+1 {
				t.Errorf("vk8s_provider_pods{site=%s,phase=Running}: %v before the Deployment, %v after, want one more", s, before, after)
			}
		}
	})

	t.Run("site calls, pod operations and status syncs are counted by site", func(t *testing.T) {
		p1 := mustScrape(t, vk.providerMetrics)
		for _, s := range sites() {
			for _, tc := range []struct {
				name string
				kv   []string
			}{
				{"vk8s_sitereg_site_requests_total", []string{"site", s, "verb", "POST", "code", "201"}},
				{"vk8s_sitereg_site_request_duration_seconds", []string{"site", s, "verb", "POST"}},
				{"vk8s_provider_site_pod_operations_total", []string{"site", s, "operation", "create", "result", "ok"}},
			} {
				before, _ := p0.get(tc.name, tc.kv...)
				after, _ := p1.get(tc.name, tc.kv...)
				if after < before+1 {
					t.Errorf("%s%v: %v before the Deployment, %v after, want at least one more", tc.name, tc.kv, before, after)
				}
			}
		}
		// Each pod's status went from Pending to Running on the host after its site said so.
		before, _ := p0.get("vk8s_provider_status_sync_lag_seconds")
		after, _ := p1.get("vk8s_provider_status_sync_lag_seconds")
		if after < before+fleetSites {
			t.Errorf("vk8s_provider_status_sync_lag_seconds count: %v before, %v after, want at least %d more", before, after, fleetSites)
		}
		// Each pod's start went through every stage once, from the provider's first sight
		// of it pending to the host accepting Running.
		for _, stage := range []string{"handed", "queued", "sent", "running_on_site", "host_status", "total"} {
			before, _ := p0.get("vk8s_provider_pod_start_stage_seconds", "stage", stage)
			after, _ := p1.get("vk8s_provider_pod_start_stage_seconds", "stage", stage)
			if after < before+fleetSites {
				t.Errorf("vk8s_provider_pod_start_stage_seconds{stage=%s} count: %v before, %v after, want at least %d more", stage, before, after, fleetSites)
			}
		}
	})

	t.Run("admissions are timed by kind, operation and result", func(t *testing.T) {
		w1 := mustScrape(t, vk.webhookMetrics)
		for _, tc := range []struct {
			kv   []string
			more float64
		}{
			{[]string{"kind", "Deployment", "operation", "CREATE", "result", "patched"}, 1},
			{[]string{"kind", "Pod", "operation", "CREATE", "result", "patched"}, fleetSites},
		} {
			before, _ := w0.get("vk8s_webhook_admission_duration_seconds", tc.kv...)
			after, _ := w1.get("vk8s_webhook_admission_duration_seconds", tc.kv...)
			if after < before+tc.more {
				t.Errorf("vk8s_webhook_admission_duration_seconds%v count: %v before, %v after, want %v more", tc.kv, before, after, tc.more)
			}
		}
		before, _ := w0.get("vk8s_webhook_placements_total")
		after, _ := w1.get("vk8s_webhook_placements_total")
		if after < before+fleetSites {
			t.Errorf("vk8s_webhook_placements_total: %v before, %v after, want %d more", before, after, fleetSites)
		}
		// Everything the Deployment's and its pods' admission read was in the cache.
		before, _ = w0.get("vk8s_webhook_api_reads_total")
		after, _ = w1.get("vk8s_webhook_api_reads_total")
		if after != before {
			t.Errorf("vk8s_webhook_api_reads_total: %v before the Deployment, %v after, want no reads of the API server", before, after)
		}
	})

	t.Run("a refused admission counts under its reason", func(t *testing.T) {
		w1 := mustScrape(t, vk.webhookMetrics)
		bad := d.DeepCopy()
		bad.ResourceVersion = ""
		bad.Name, bad.Annotations = "refused", map[string]string{vk8sv1.AnnotationVirtualSites: "absent"}
		if err := c.Create(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("a Deployment naming a missing VirtualSite: %v, want refused", err)
		}
		w2 := mustScrape(t, vk.webhookMetrics)
		for _, tc := range []struct {
			name string
			kv   []string
		}{
			{"vk8s_webhook_rejections_total", []string{"reason", federation.ReasonVirtualSite}},
			{"vk8s_webhook_admission_duration_seconds", []string{"kind", "Deployment", "operation", "CREATE", "result", "denied"}},
		} {
			before, _ := w1.get(tc.name, tc.kv...)
			after, _ := w2.get(tc.name, tc.kv...)
			if after != before+1 {
				t.Errorf("%s%v: %v before, %v after, want one more", tc.name, tc.kv, before, after)
			}
		}
	})

	t.Run("a host pod tells where it was created", func(t *testing.T) {
		p := pods[0]
		waitFor(t, "a Normal Event "+translate.ReasonSitePodCreated+" on host pod "+p.Name, func(ctx context.Context) (bool, error) {
			var evs corev1.EventList
			if err := c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
				return false, err
			}
			want := fmt.Sprintf("created on site %s as pod %s/%s on node ", p.Labels[vk8sv1.LabelSite], translate.SiteNamespace(provider.DefaultTenant, ns), p.Name)
			for _, e := range evs.Items {
				if e.InvolvedObject.UID == p.UID && e.Type == corev1.EventTypeNormal && e.Reason == translate.ReasonSitePodCreated && strings.HasPrefix(e.Message, want) {
					return true, nil
				}
			}
			return false, nil
		})
	})

	t.Run("pods deleted leave the gauge", func(t *testing.T) {
		if err := c.Delete(t.Context(), d, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the Deployment's pods to go", func(ctx context.Context) (bool, error) {
			var list corev1.PodList
			if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
				return false, err
			}
			return len(list.Items) == 0, nil
		})
		p2 := waitPodsGauge(t, c, vk.providerMetrics, 0)
		p1 := mustScrape(t, vk.providerMetrics)
		for _, s := range sites() {
			if v, _ := p2.get("vk8s_provider_site_pod_operations_total", "site", s); v == 0 {
				t.Errorf("vk8s_provider_site_pod_operations_total{site=%s} is 0", s)
			}
			if _, ok := p1.get("vk8s_sitereg_site_requests_total", "site", s, "verb", "DELETE"); !ok {
				t.Errorf("vk8s_sitereg_site_requests_total{site=%s,verb=DELETE} is missing after the pods' deletion", s)
			}
		}
	})
}

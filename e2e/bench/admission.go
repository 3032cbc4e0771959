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
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
)

// Namespaces of the admission figures: one the webhook is never called for, and a vK8s
// namespace on every site of the lab.
const (
	plainNS = "bench-plain"
	vk8sNS  = "bench-vk8s"
)

// admission measures pod CREATE through the API server with the webhook off (a namespace
// it does not serve) and on (a vK8s namespace), n dry-run creates each, one at a time and
// then concurrent at once, off and on alternating in batches of concurrent (at least 10),
// and the seed scenario: deployment1 with 3 replicas per site,
// from the create call to 9/9 pods Running.
func admission(ctx context.Context, l *lab.Lab, host kubernetes.Interface, n, concurrent int, res *results) error {
	c, err := l.Client("host")
	if err != nil {
		return err
	}
	for _, ns := range []string{plainNS, vk8sNS} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	if err := c.Create(ctx, &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: vk8sNS, Name: "vk"},
		Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: lab.SharedNamespace + "/" + lab.AllSitesVirtualSite}}); err != nil {
		return err
	}
	// The API server learns the namespace's label through an informer.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := host.CoreV1().Pods(vk8sNS).Create(ctx, benchPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && p.Labels[vk8sv1.LabelSite] != "", nil
	})
	if err != nil {
		return fmt.Errorf("the webhook never admitted a pod of %s: %w", vk8sNS, err)
	}

	webhookURL, err := l.WebhookMetricsURL()
	if err != nil {
		return err
	}
	res.Admission = &admissionResult{Creates: n}
	fmt.Printf("\nadmission: pod CREATE through the API server (dry run), %d one at a time, then %d at once\n", n, concurrent)
	for _, mode := range []struct {
		name string
		at   int
	}{{"one at a time", 1}, {fmt.Sprintf("%d at once", concurrent), concurrent}} {
		w0, a0, err := admissionMetrics(ctx, host, webhookURL)
		if err != nil {
			return err
		}
		// Off and on alternate in batches, so that the machine's noise falls on both.
		var off, on []time.Duration
		for len(on) < n {
			batch := min(max(mode.at, 10), n-len(on))
			o, err := creates(ctx, host, plainNS, batch, mode.at)
			if err != nil {
				return err
			}
			w, err := creates(ctx, host, vk8sNS, batch, mode.at)
			if err != nil {
				return err
			}
			off, on = append(off, o...), append(on, w...)
		}
		slices.Sort(off)
		slices.Sort(on)
		w1, a1, err := admissionMetrics(ctx, host, webhookURL)
		if err != nil {
			return err
		}
		fmt.Printf("  %s:\n", mode.name)
		fmt.Printf("    %-20s p50 %8s  p99 %8s\n", "webhook off", round(pct(off, 50)), round(pct(off, 99)))
		fmt.Printf("    %-20s p50 %8s  p99 %8s\n", "webhook on", round(pct(on, 50)), round(pct(on, 99)))
		fmt.Printf("    %-20s p50 %7.2fx  p99 %7.2fx\n", "ratio on/off", ratio(pct(on, 50), pct(off, 50)), ratio(pct(on, 99), pct(off, 99)))
		fmt.Printf("    %-20s p50 %+7dms p99 %+7dms  (goal at 20 at once: p99 at most +20ms)\n", "on - off",
			(pct(on, 50) - pct(off, 50)).Milliseconds(), (pct(on, 99) - pct(off, 99)).Milliseconds())
		m := admissionMode{At: mode.at, WebhookOff: distOf(off), WebhookOn: distOf(on), Ratio: ratiosOf(on, off)}
		pod := map[string]string{"kind": "Pod", "operation": "CREATE"}
		m.Handler = stageOf("webhook handler", "webhook", histogramWhere(w1, "vk8s_webhook_admission_duration_seconds", pod),
			histogramWhere(w0, "vk8s_webhook_admission_duration_seconds", pod))
		call := map[string]string{"name": "pods.mutate.vk8s.io"}
		m.APIServer = stageOf("API server calling the webhook", "host API server",
			histogramWhere(a1, "apiserver_admission_webhook_admission_duration_seconds", call),
			histogramWhere(a0, "apiserver_admission_webhook_admission_duration_seconds", call))
		m.APIReads = counterWhere(w1, "vk8s_webhook_api_reads_total", nil) - counterWhere(w0, "vk8s_webhook_api_reads_total", nil)
		var inside []stage
		for _, s := range []*stage{m.Handler, m.APIServer} {
			if s != nil {
				inside = append(inside, *s)
			}
		}
		printStages("webhook on, inside:", inside)
		fmt.Printf("    webhook reads of the API server meanwhile (vk8s_webhook_api_reads_total): %.0f\n", m.APIReads)
		res.Admission.Modes = append(res.Admission.Modes, m)
	}

	took, err := seedScenario(ctx, c, host)
	if err != nil {
		return fmt.Errorf("seed scenario: %w", err)
	}
	fmt.Printf("\nseed scenario: deployment1, 3 replicas per site on 3 sites: 9/9 Running %s after the create call\n", round(took))
	res.Admission.SeedSeconds = took.Seconds()
	return nil
}

func benchPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "app", Image: "nginx"}},
		},
	}
}

// creates makes n dry-run pod creates in ns, at at once, and returns their durations.
func creates(ctx context.Context, cs kubernetes.Interface, ns string, n, at int) ([]time.Duration, error) {
	out := make([]time.Duration, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, at)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			_, err := cs.CoreV1().Pods(ns).Create(ctx, benchPod(fmt.Sprintf("p%03d", i)), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			out[i] = time.Since(start)
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, fmt.Errorf("dry-run create in %s: %w", ns, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(out)
	return out, firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// seedScenario creates deployment1 (3 replicas per site) and waits until 9 of its pods run.
func seedScenario(ctx context.Context, c client.Client, host kubernetes.Interface) (time.Duration, error) {
	labels := map[string]string{"app": "deployment1"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: vk8sNS, Name: "deployment1"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}},
			},
		},
	}
	w, err := podWatch(ctx, host, vk8sNS, "app=deployment1")
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	start := time.Now()
	if err := c.Create(ctx, d); err != nil {
		return 0, err
	}
	if d.Annotations[vk8sv1.AnnotationPlacement] == "" {
		return 0, errors.New("deployment1 was not federated")
	}
	running := map[string]bool{}
	timeout := time.After(5 * time.Minute)
	for len(running) < 9 {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, errors.New("watch ended")
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type != watch.Deleted && p.Status.Phase == corev1.PodRunning {
				running[p.Name] = true
			}
		case <-timeout:
			return 0, fmt.Errorf("%d of 9 pods Running after 5m", len(running))
		}
	}
	return time.Since(start), nil
}

// admissionMetrics scrapes the webhook's metrics and the host API server's.
func admissionMetrics(ctx context.Context, host kubernetes.Interface, webhookURL string) (webhook, apiserver map[string]*dto.MetricFamily, err error) {
	if webhook, err = scrape(ctx, webhookURL); err != nil {
		return nil, nil, err
	}
	raw, err := host.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("the host API server's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	apiserver, err = parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("the host API server's metrics: %w", err)
	}
	return webhook, apiserver, nil
}

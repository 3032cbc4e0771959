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
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/federation"
	"github.com/vk8s-io/vk8s/translate"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/webhook"
)

const (
	webhookNS      = "demo"
	webhookPlainNS = "webhook-plain"
	// webhookConfigName names the test's webhook configurations: the chart's, as the
	// webhook's ServiceAccount may write only those.
	webhookConfigName = lab.WebhookConfigurationName
)

// webhookStarts counts the webhooks this process started.
var webhookStarts atomic.Int32

// webhookRun is the webhook running in this process.
type webhookRun struct {
	stop    func()
	metrics *prometheus.Registry
}

// webhookStart runs the webhook in this process against the fleet's host as the chart's
// ServiceAccount, called at a URL (https://127.0.0.1:<port>), with certificates that rotate
// within the test: a CA every 40 s, a serving certificate every 10 s. The test makes the
// chart's configurations (the lab removed them, as it runs no webhook) with this URL, and
// the webhook writes its CA bundle into them (inject-ca), as in the lab. It returns once
// /readyz says the configurations carry the bundle. Options, when given, change its
// configuration; one that names other configurations gives its own credentials.
func webhookStart(t *testing.T, options ...func(*webhook.Config)) *webhookRun {
	t.Helper()
	host := componentConfig(t, "webhook")
	port, health := webhookFreePort(t), webhookFreePort(t)
	reg := prometheus.NewRegistry()
	cfg := webhook.Config{
		Host:               host,
		Logger:             logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).WithName("webhook"),
		BindAddress:        "127.0.0.1",
		Port:               port,
		URL:                fmt.Sprintf("https://127.0.0.1:%d", port),
		Configurations:     webhook.ConfigurationsInjectCA,
		ConfigurationName:  webhookConfigName,
		CALifetime:         time.Minute,
		CertLifetime:       15 * time.Second,
		CAPropagationDelay: 5 * time.Second,
		HealthAddr:         fmt.Sprintf("127.0.0.1:%d", health),
		MetricsRegisterer:  reg,
		// controller-runtime refuses a controller name a process has seen before.
		Options:  federation.Options{Name: fmt.Sprintf("vk8s-webhook-e2e-%d", webhookStarts.Add(1))},
		CASecret: types.NamespacedName{Namespace: lab.SystemNamespace, Name: lab.WebhookCASecret},
	}
	for _, o := range options {
		o(&cfg)
	}
	if cfg.Configurations == webhook.ConfigurationsInjectCA && cfg.ConfigurationName == webhookConfigName {
		webhookMakeConfigurations(t, cfg)
	}
	srv, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	run := &webhookRun{metrics: reg, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("webhook: %v", err)
			}
		})
	}}
	waitFor(t, "the webhook to be ready", func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("the webhook stopped: %w", err)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.HealthAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	// The API server reads webhook configurations through an informer: wait until it
	// calls this webhook (a dry-run VirtualKubernetes on a missing virtual-site).
	c := hostClient(t)
	waitFor(t, "the API server to call the webhook", func(ctx context.Context) (bool, error) {
		return webhookProbe(ctx, c) == nil, nil
	})
	return run
}

// webhookMakeConfigurations makes the chart's webhook configurations calling cfg.URL, as
// the chart renders them (charts/chart_test.go compares the two), without a CA bundle: the
// installer's part, done with the lab's admin credentials.
func webhookMakeConfigurations(t *testing.T, cfg webhook.Config) {
	t.Helper()
	c := hostClient(t)
	m, v := webhook.Configurations(cfg, nil)
	for _, want := range []client.Object{m, v} {
		cur := want.DeepCopyObject().(client.Object)
		_, err := controllerutil.CreateOrUpdate(t.Context(), c, cur, func() error {
			switch o := cur.(type) {
			case *admissionregistrationv1.MutatingWebhookConfiguration:
				o.Webhooks = want.(*admissionregistrationv1.MutatingWebhookConfiguration).Webhooks
			case *admissionregistrationv1.ValidatingWebhookConfiguration:
				o.Webhooks = want.(*admissionregistrationv1.ValidatingWebhookConfiguration).Webhooks
			}
			return nil
		})
		if err != nil {
			t.Fatalf("make %T %s: %v", want, want.GetName(), err)
		}
	}
}

// webhookProbe is one admission the webhook answers without changing anything: a dry-run
// VirtualKubernetes naming a VirtualSite that does not exist. It returns nil when the
// webhook refused it for that reason, else what happened.
func webhookProbe(ctx context.Context, c client.Client) error {
	vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "probe"},
		Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/absent"}}
	err := c.Create(ctx, vk, client.DryRunAll)
	if err != nil && strings.Contains(err.Error(), "VirtualSite shared/absent does not exist") {
		return nil
	}
	if err == nil {
		return errors.New("the webhook admitted a VirtualKubernetes of a missing VirtualSite")
	}
	return err
}

func webhookFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// webhookMetric returns the sum of a counter's samples whose labels include want.
func webhookMetric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			match := true
			for k, v := range want {
				match = match && labels[k] == v
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// webhookDeployment is a Deployment of nginx with replicas per site.
func webhookDeployment(name string, replicas int32, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: name, Annotations: annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers:                    []corev1.Container{{Name: "app", Image: "nginx:1.25"}},
				},
			},
		},
	}
}

// webhookPods returns the live pods of app in the demo namespace.
func webhookPods(ctx context.Context, c client.Client, app string) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := c.List(ctx, &list, client.InNamespace(webhookNS), client.MatchingLabels{"app": app}); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil }), nil
}

// webhookPerSite counts pods by their vk8s.io/site label.
func webhookPerSite(pods []corev1.Pod) map[string]int {
	out := map[string]int{}
	for _, p := range pods {
		out[p.Labels[vk8sv1.LabelSite]]++
	}
	return out
}

func webhookRunningReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// webhookWaitPods waits until app has n live pods, n/3 per site, all Running and Ready.
func webhookWaitPods(t *testing.T, c client.Client, app string, n int) []corev1.Pod {
	t.Helper()
	want := map[string]int{"site1": n / 3, "site2": n / 3, "site3": n / 3}
	var last []corev1.Pod
	waitFor(t, fmt.Sprintf("%d pods of %s, %d per site, Running and Ready", n, app, n/3), func(ctx context.Context) (bool, error) {
		pods, err := webhookPods(ctx, c, app)
		if err != nil {
			return false, err
		}
		last = pods
		return len(pods) == n && maps.Equal(webhookPerSite(pods), want) && !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return !webhookRunningReady(&p) }), nil
	})
	return last
}

func TestWebhook(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	ctx := t.Context()
	waitAllVirtualNodes(t, c)

	wh := webhookStart(t)
	webhookCleanup(t, c, wh, webhookNS, webhookPlainNS)
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: webhookPlainNS}})
	webhookEnableNamespace(t, c)

	// Dry-run admissions run in the background for the whole test, across certificate
	// rotations: none may fail.
	var probes, probeFailures atomic.Int64
	var probeErr atomic.Value
	probeCtx, stopProbes := context.WithCancel(ctx)
	t.Cleanup(stopProbes)
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		for probeCtx.Err() == nil {
			d := webhookDeployment("probe", 1, nil)
			err := c.Create(probeCtx, d, client.DryRunAll)
			switch {
			case probeCtx.Err() != nil:
				return
			case err != nil:
				probeFailures.Add(1)
				probeErr.Store(err.Error())
			case *d.Spec.Replicas != 3:
				probeFailures.Add(1)
				probeErr.Store(fmt.Sprintf("dry-run Deployment has %d replicas, want 3 (not admitted?)", *d.Spec.Replicas))
			}
			probes.Add(1)
			time.Sleep(200 * time.Millisecond)
		}
	}()

	t.Run("deployment1 with 3 replicas is 9 pods, 3 per site, Running on the site nodes", func(t *testing.T) {
		start := time.Now()
		mustCreate(t, c, webhookDeployment("deployment1", 3, nil))
		pods := webhookWaitPods(t, c, "deployment1", 9)
		t.Logf("deployment1: 9/9 Running %s after create", time.Since(start).Round(100*time.Millisecond))
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: "deployment1"}, d); err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas != 9 || d.Annotations[vk8sv1.AnnotationReplicasPerSite] != "3" || d.Annotations[vk8sv1.AnnotationPlacement] != "site1=3,site2=3,site3=3" {
			t.Errorf("deployment1: replicas %d, annotations %v", *d.Spec.Replicas, d.Annotations)
		}
		owners := map[string]bool{}
		for _, p := range pods {
			owners[p.OwnerReferences[0].Name] = true
			site := p.Labels[vk8sv1.LabelSite]
			terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			if len(terms) != 1 || !slices.ContainsFunc(terms[0].MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
				return r.Key == vk8sv1.LabelSite && r.Operator == corev1.NodeSelectorOpIn && slices.Equal(r.Values, []string{site})
			}) {
				t.Errorf("pod %s on %s: node affinity %+v", p.Name, site, terms)
			}
			if !strings.HasPrefix(p.Spec.NodeName, site+"-node") {
				t.Errorf("pod %s labelled %s runs on %s", p.Name, site, p.Spec.NodeName)
			}
		}
		if len(owners) != 1 {
			t.Errorf("pods of %d ReplicaSets %v, want one", len(owners), owners)
		}
		out := kubectl(t, "host", "get", "pods", "-n", webhookNS, "-l", "app=deployment1", "-o", "wide")
		t.Logf("kubectl get pods -o wide:\n%s", out)
		nodes := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 7 || f[2] != "Running" || !strings.HasPrefix(f[0], "deployment1-") {
				t.Errorf("kubectl line %q: want a deployment1 pod Running", line)
				continue
			}
			nodes[f[6]] = true
		}
		for i := 1; i <= fleetSites; i++ {
			for j := 1; j <= fleetNodes; j++ {
				n := fmt.Sprintf("site%d-node%d", i, j)
				if !nodes[n] {
					t.Logf("no pod on %s (the host scheduler spreads within each site; every site has 3)", n)
				}
			}
		}
	})

	t.Run("scale to 5 and to 2 per site keeps exact per-site counts", func(t *testing.T) {
		kubectl(t, "host", "scale", "deployment/deployment1", "-n", webhookNS, "--replicas=15")
		webhookWaitPods(t, c, "deployment1", 15)
		waitFor(t, "vk8s.io/replicas-per-site to follow the scale", func(ctx context.Context) (bool, error) {
			d := &appsv1.Deployment{}
			err := c.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: "deployment1"}, d)
			return err == nil && d.Annotations[vk8sv1.AnnotationReplicasPerSite] == "5" && d.Annotations[vk8sv1.AnnotationPlacement] == "site1=5,site2=5,site3=5", err
		})
		// A total that is not a multiple of the sites is rounded up, and the user told.
		out := webhookKubectl(t, "scale", "deployment/deployment1", "-n", webhookNS, "--replicas=5")
		if !strings.Contains(out, "spec.replicas: 5 is not a multiple of the 3 sites: it is rounded up to 6 (2 per site)") {
			t.Errorf("kubectl scale --replicas=5 printed %q, want the rounding warning", out)
		}
		// Scale-downs remove the highest slots of every site first (pod-deletion-cost set
		// at admission), so the counts stay exact without the rebalancer while every pod
		// is Running and Ready.
		webhookWaitPods(t, c, "deployment1", 6)
	})

	t.Run("a rolling update ends with exact per-site counts, in one new ReplicaSet", func(t *testing.T) {
		before, err := webhookPods(ctx, c, "deployment1")
		if err != nil {
			t.Fatal(err)
		}
		kubectl(t, "host", "rollout", "restart", "deployment/deployment1", "-n", webhookNS)
		waitFor(t, "the rollout to end with 2 new pods per site", func(ctx context.Context) (bool, error) {
			pods, err := webhookPods(ctx, c, "deployment1")
			if err != nil || len(pods) != 6 || slices.ContainsFunc(pods, func(p corev1.Pod) bool {
				return p.OwnerReferences[0].Name == before[0].OwnerReferences[0].Name || p.OwnerReferences[0].Name != pods[0].OwnerReferences[0].Name ||
					!webhookRunningReady(&p)
			}) {
				return false, err
			}
			return maps.Equal(webhookPerSite(pods), map[string]int{"site1": 2, "site2": 2, "site3": 2}), nil
		})
	})

	t.Run("51 pods created at once end 17 per site", func(t *testing.T) {
		mustCreate(t, c, webhookDeployment("burst", 17, nil))
		waitFor(t, "51 pods of burst, 17 per site", func(ctx context.Context) (bool, error) {
			pods, err := webhookPods(ctx, c, "burst")
			return err == nil && len(pods) == 51 && maps.Equal(webhookPerSite(pods), map[string]int{"site1": 17, "site2": 17, "site3": 17}), err
		})
		if err := c.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: "burst"}}); err != nil {
			t.Error(err)
		}
	})

	t.Run("a canary Override on site2: only site2's pods run its image", func(t *testing.T) {
		tmpl := webhookDeployment("deployment2", 1, nil).Spec.Template
		tmpl.Spec.Containers[0].Image = "nginx:1.26"
		mustCreate(t, c, &vk8sv1.Override{ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: "canary"},
			Spec: vk8sv1.OverrideSpec{SiteList: []string{"site2"}, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Template: &tmpl}}})
		mustCreate(t, c, webhookDeployment("deployment2", 1, map[string]string{vk8sv1.AnnotationOverrides: "canary"}))
		pods := webhookWaitPods(t, c, "deployment2", 3)
		for _, p := range pods {
			image, override := "nginx:1.25", ""
			if p.Labels[vk8sv1.LabelSite] == "site2" {
				image, override = "nginx:1.26", "canary"
			}
			if p.Spec.Containers[0].Image != image || p.Labels[vk8sv1.LabelOverride] != override {
				t.Errorf("pod %s on %s: image %s, override label %q; want %s, %q", p.Name, p.Labels[vk8sv1.LabelSite],
					p.Spec.Containers[0].Image, p.Labels[vk8sv1.LabelOverride], image, override)
			}
			// The API server's ServiceAccount admission came before the Override: its token
			// volume survives it.
			if !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "kube-api-access-") }) {
				t.Errorf("pod %s lost its ServiceAccount token volume", p.Name)
			}
		}
		sp := &corev1.Pod{}
		site2 := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.Labels[vk8sv1.LabelSite] == "site2" })
		if site2 >= 0 {
			name := pods[site2].Name
			waitFor(t, "the canary pod on site2", func(ctx context.Context) (bool, error) {
				err := siteClient(t, "site2").Get(ctx, client.ObjectKey{Namespace: translate.SiteNamespace(provider.DefaultTenant, webhookNS), Name: name}, sp)
				return err == nil, client.IgnoreNotFound(err)
			})
			if sp.Spec.Containers[0].Image != "nginx:1.26" {
				t.Errorf("site2 runs %s, want the canary's nginx:1.26", sp.Spec.Containers[0].Image)
			}
		}
	})

	t.Run("Override and WorkloadFlavor status: their sites and Ready", func(t *testing.T) {
		ready := func(conds []metav1.Condition) *metav1.Condition {
			return meta.FindStatusCondition(conds, vk8sv1.ConditionReady)
		}
		o := &vk8sv1.Override{}
		waitFor(t, "Override canary Ready with site2", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: "canary"}, o)
			r := ready(o.Status.Conditions)
			return err == nil && r != nil && r.Status == metav1.ConditionTrue && slices.Equal(o.Status.Sites, []string{"site2"}), err
		})
		// A Site that does not exist: Ready turns False and names it; the others stay listed.
		o.Spec.SiteList = []string{"site2", "site9"}
		if err := c.Update(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "Override canary not Ready, naming site9", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: "canary"}, o)
			r := ready(o.Status.Conditions)
			return err == nil && r != nil && r.Status == metav1.ConditionFalse && r.Reason == "SitesNotFound" &&
				strings.Contains(r.Message, "site9") && slices.Equal(o.Status.Sites, []string{"site2"}) && o.Status.ObservedGeneration == o.Generation, err
		})
		f := &vk8sv1.WorkloadFlavor{ObjectMeta: metav1.ObjectMeta{Name: "e2e-status"},
			Spec: vk8sv1.WorkloadFlavorSpec{CPU: resource.MustParse("200m"), Memory: resource.MustParse("128Mi")}}
		mustCreate(t, c, f)
		t.Cleanup(func() { _ = c.Delete(context.Background(), f) })
		waitFor(t, "WorkloadFlavor e2e-status Ready", func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKeyFromObject(f), f)
			r := ready(f.Status.Conditions)
			return err == nil && r != nil && r.Status == metav1.ConditionTrue && r.Reason == "Valid" && f.Status.ObservedGeneration == f.Generation, err
		})
	})

	t.Run("bad inputs are rejected with their message and create nothing", func(t *testing.T) {
		bad := webhookDeployment("bad", 3, map[string]string{vk8sv1.AnnotationVirtualSites: "shared/all-sites,,"})
		err := c.Create(ctx, bad)
		want := `metadata.annotations["ves.io/virtual-sites"]: invalid value "shared/all-sites,,": entry 2 is empty; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("create: %v; want the message %q", err, want)
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(bad), &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Errorf("the rejected Deployment exists: %v", err)
		}
		plain := webhookDeployment("annotated", 1, map[string]string{vk8sv1.AnnotationVirtualSites: "shared/all-sites"})
		plain.Namespace = webhookPlainNS
		if err := c.Create(ctx, plain); err == nil || !strings.Contains(err.Error(), "namespace webhook-plain has no VirtualKubernetes") {
			t.Errorf("a vK8s annotation outside vK8s namespaces: %v", err)
		}
		err = c.Delete(ctx, &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: "vk"}})
		if err == nil || !strings.Contains(err.Error(), "cannot be deleted while namespace demo has federated workloads: deployment/deployment1, deployment/deployment2") {
			t.Errorf("deleting the VirtualKubernetes: %v", err)
		}
	})

	t.Run("certificates rotate without an admission error", func(t *testing.T) {
		waitFor(t, "a CA rotation", func(context.Context) (bool, error) {
			return webhookMetric(t, wh.metrics, "vk8s_webhook_certificates_issued_total", map[string]string{"certificate": "ca"}) >= 2, nil
		})
		// Let the probes cross the switch to the new CA's serving certificate.
		time.Sleep(8 * time.Second)
		stopProbes()
		<-probesDone
		ca := webhookMetric(t, wh.metrics, "vk8s_webhook_certificates_issued_total", map[string]string{"certificate": "ca"})
		serving := webhookMetric(t, wh.metrics, "vk8s_webhook_certificates_issued_total", map[string]string{"certificate": "serving"})
		t.Logf("%d dry-run admissions across %v CAs and %v serving certificates", probes.Load(), ca, serving)
		if n := probeFailures.Load(); n > 0 {
			t.Errorf("%d of %d admissions failed; last: %v", n, probes.Load(), probeErr.Load())
		}
	})

	t.Run("with the webhook down, other namespaces are untouched and vK8s namespaces fail closed", func(t *testing.T) {
		wh.stop()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: webhookPlainNS, Name: "plain",
			Annotations: map[string]string{vk8sv1.AnnotationVirtualSites: "shared/all-sites"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}}
		mustCreate(t, c, p)
		if p.Labels[vk8sv1.LabelSite] != "" || p.Spec.Affinity != nil || slices.ContainsFunc(p.Spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == vk8sv1.TaintKey }) {
			t.Errorf("a pod outside vK8s namespaces was changed: labels %v, affinity %v, tolerations %v", p.Labels, p.Spec.Affinity, p.Spec.Tolerations)
		}
		err := c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: webhookNS, Name: "unplaced"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}}})
		if err == nil || !strings.Contains(err.Error(), "pods.mutate.vk8s.io") {
			t.Errorf("a pod in a vK8s namespace with the webhook down: %v; want a failed call to pods.mutate.vk8s.io", err)
		}
	})
}

// webhookCleanup stops the webhook when t ends, removes its configurations (first: with
// the webhook gone, deleting a namespace's VirtualKubernetes would fail closed) and the
// namespaces, and waits for the namespaces to be gone so that later tests can create
// them again. It uses a context of its own: t's is cancelled by then.
func webhookCleanup(t *testing.T, c client.Client, wh *webhookRun, namespaces ...string) {
	t.Helper()
	t.Cleanup(func() {
		wh.stop()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_ = c.Delete(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName}})
		_ = c.Delete(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName}})
		_ = c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: lab.SystemNamespace, Name: lab.WebhookCASecret}})
		for _, ns := range namespaces {
			_ = c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		}
		for _, ns := range namespaces {
			if err := webhookNamespaceGone(ctx, c, ns); err != nil {
				t.Logf("namespace %s is not gone: %v", ns, err)
			}
		}
	})
}

// webhookNamespaceGone waits until namespace ns does not exist (a namespace being
// deleted cannot be created again).
func webhookNamespaceGone(ctx context.Context, c client.Client, ns string) error {
	return wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// webhookEnableNamespace creates the vK8s namespace demo (VirtualKubernetes vk on
// shared/all-sites) and waits until the API server sends its workloads to the webhook.
func webhookEnableNamespace(t *testing.T, c client.Client) { vk8sNamespace(t, c, webhookNS) }

// federatedNamespace starts a test of what runs in a vK8s namespace: the provider and the
// webhook running, every virtual node registered, and ns a vK8s namespace, deleted with the
// webhook when the test ends. It returns the host client and ns's site namespace.
func federatedNamespace(t *testing.T, ns string) (client.Client, string) {
	t.Helper()
	skipShort(t)
	startProvider(t)
	c := hostClient(t)
	waitAllVirtualNodes(t, c)
	webhookCleanup(t, c, webhookStart(t), ns)
	vk8sNamespace(t, c, ns)
	return c, translate.SiteNamespace(provider.DefaultTenant, ns)
}

// vk8sNamespace creates the vK8s namespace name (VirtualKubernetes vk on
// shared/all-sites) and waits until the API server sends its workloads to the webhook.
func vk8sNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	mustCreate(t, c, &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "vk"},
		Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: lab.SharedNamespace + "/" + lab.AllSitesVirtualSite}})
	// Admitting the VirtualKubernetes labelled the namespace; the API server selects on it.
	ns := &corev1.Namespace{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: name}, ns); err != nil || ns.Labels[vk8sv1.LabelVirtualKubernetes] != "vk" {
		t.Fatalf("namespace %s labels %v (%v), want %s=vk at once", name, ns.Labels, err, vk8sv1.LabelVirtualKubernetes)
	}
	// The API server selects namespaces by their labels through an informer too.
	waitFor(t, "the API server to send "+name+"'s workloads to the webhook", func(ctx context.Context) (bool, error) {
		d := webhookDeployment("probe", 1, nil)
		d.Namespace = name
		err := c.Create(ctx, d, client.DryRunAll)
		return err == nil && *d.Spec.Replicas == 3, err
	})
}

// webhookKubectl runs kubectl against the host and returns stdout and stderr together
// (kubectl prints admission warnings on stderr).
func webhookKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectlCmd(t.Context(), t, "host", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

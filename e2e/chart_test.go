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
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/api/crds"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/webhook"
)

const (
	// chartRelease and chartNS: the chart's release in the lab's host, in a namespace of its
	// own. Its configurations and roles are named after it, so they sit beside the lab's.
	chartRelease = "vk8s-chart-e2e"
	chartNS      = "vk8s-chart-e2e"
	chartConfig  = chartRelease + "-webhook"
	chartCA      = chartRelease + "-webhook-ca"
)

// TestChart installs charts/vk8s into the lab's host, upgrades it with other values and
// uninstalls it, against the real API server:
//
//   - The lab's host cannot run pods, so the release runs without its Deployments
//     (deployments.enabled=false) and the webhook runs in this process with
//     --configurations inject-ca, called at webhook.url, as the lab will run it.
//   - The lab made the CRDs and the built-in WorkloadFlavors before: the release takes them
//     over (--take-ownership) rather than leaving them out, so that its CRD templates and
//     flavors are applied and crds.keep is tested; the flavors go with the release and are
//     made again afterwards, as the lab makes them.
//
// It checks that every object is accepted, that the built-in flavors need no webhook (the
// release applies them before the webhook runs), that the webhook's CA bundle reaches the
// chart's configurations and that no version of them lacks it during helm upgrade (Helm 4
// applies server-side, and never owned the bundle), that the CRDs stay after helm
// uninstall, and that nothing else of the release does.
func TestChart(t *testing.T) {
	skipShort(t)
	c := hostClient(t)
	ctx := t.Context()
	t.Cleanup(func() { chartCleanup(t, c) })
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: chartNS}})
	port := webhookFreePort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	values := []string{"--set", "deployments.enabled=false", "--set", "webhook.url=" + url}

	out := helm(t, append([]string{"install", chartRelease, "../charts/vk8s", "--namespace", chartNS, "--take-ownership"}, values...)...)
	if !strings.Contains(out, "STATUS: deployed") {
		t.Fatalf("helm install: %s", out)
	}
	installed := chartManifest(t, "get", "manifest", chartRelease, "--namespace", chartNS)
	t.Run("every object of the release is in the API server", func(t *testing.T) {
		kinds := map[string]int{}
		for _, o := range installed {
			kinds[o.GetKind()]++
			got := o.DeepCopy()
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
				t.Errorf("%s %s: %v", o.GetKind(), client.ObjectKeyFromObject(o), err)
			}
		}
		for kind, n := range map[string]int{"CustomResourceDefinition": 5, "WorkloadFlavor": 3, "MutatingWebhookConfiguration": 1,
			"ValidatingWebhookConfiguration": 1, "ValidatingAdmissionPolicy": 1, "ClusterRole": 2, "Role": 3, "Deployment": 0} {
			if kinds[kind] != n {
				t.Errorf("%d %s in the release, want %d", kinds[kind], kind, n)
			}
		}
	})

	// Until the webhook runs, the chart's webhooks cannot be called: a flavor that is not
	// built in is refused once the API server knows the chart's configuration...
	probe := &vk8sv1.WorkloadFlavor{ObjectMeta: metav1.ObjectMeta{Name: "chart-e2e-probe"},
		Spec: vk8sv1.WorkloadFlavorSpec{CPU: resource.MustParse("200m"), Memory: resource.MustParse("256Mi")}}
	waitFor(t, "the API server to call the chart's webhooks", func(ctx context.Context) (bool, error) {
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "failed calling webhook"), nil
	})
	// ...while the built-in ones are still written: their matchCondition skips them.
	for _, f := range overrides.BuiltinFlavors() {
		patch := []byte(`{"metadata":{"labels":{"chart-e2e":"probe"}}}`)
		if err := c.Patch(ctx, &vk8sv1.WorkloadFlavor{ObjectMeta: metav1.ObjectMeta{Name: f.Name}}, client.RawPatch(types.MergePatchType, patch), client.DryRunAll); err != nil {
			t.Errorf("update built-in flavor %s without a webhook: %v", f.Name, err)
		}
	}

	wh := webhookStart(t, func(cfg *webhook.Config) {
		// As this release's ServiceAccount: its roles name its configurations and CA.
		cfg.Host = serviceAccountConfig(t, chartNS, chartRelease+"-webhook")
		cfg.Configurations = webhook.ConfigurationsInjectCA
		cfg.ConfigurationName = chartConfig
		cfg.Port, cfg.URL = port, url
		cfg.CASecret = types.NamespacedName{Namespace: chartNS, Name: chartCA}
	})
	t.Cleanup(wh.stop)
	var bundle []byte
	t.Run("the webhook writes its CA bundle into the chart's configurations, which are as the code makes them", func(t *testing.T) {
		ca := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: chartNS, Name: chartCA}, ca); err != nil {
			t.Fatal(err)
		}
		m, v := chartConfigurations(t, c)
		for _, cc := range chartClientConfigs(m, v) {
			if len(cc.CABundle) == 0 {
				t.Fatalf("a webhook has no CA bundle: %+v", cc)
			}
			bundle = cc.CABundle
		}
		wantM, wantV := webhook.Configurations(webhook.Config{URL: url, ConfigurationName: chartConfig}, bundle)
		if !apiequality.Semantic.DeepEqual(m.Webhooks, wantM.Webhooks) || !apiequality.Semantic.DeepEqual(v.Webhooks, wantV.Webhooks) {
			t.Errorf("the configurations the API server stored differ from webhook.Configurations")
		}
	})
	before := webhookMetric(t, wh.metrics, "vk8s_webhook_rejections_total", map[string]string{"reason": "invalid-flavor"})
	waitFor(t, "the API server to call the webhook through the chart's configurations", func(ctx context.Context) (bool, error) {
		return c.Create(ctx, probe.DeepCopy(), client.DryRunAll) == nil, nil
	})
	invalid := probe.DeepCopy()
	invalid.Spec.CPU = resource.MustParse("1m")
	if err := c.Create(ctx, invalid, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "is invalid") {
		t.Errorf("an invalid flavor: %v", err)
	}
	if after := webhookMetric(t, wh.metrics, "vk8s_webhook_rejections_total", map[string]string{"reason": "invalid-flavor"}); after <= before {
		t.Errorf("this process refused no flavor (%v before, %v after): the chart's configuration does not reach it", before, after)
	}

	t.Run("helm upgrade with other values keeps the CA bundle in every version of the configurations", func(t *testing.T) {
		seen := watchChartConfigurations(t)
		out := helm(t, append([]string{"upgrade", chartRelease, "../charts/vk8s", "--namespace", chartNS, "--set", "webhook.timeoutSeconds=7",
			"--set", "commonLabels.chart-e2e=upgraded", "--set", "flavors.builtin=false", "--set", "provider.replicaCount=1"}, values...)...)
		if !strings.Contains(out, "STATUS: deployed") {
			t.Fatalf("helm upgrade: %s", out)
		}
		if err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll); err != nil {
			t.Errorf("admission right after the upgrade: %v", err)
		}
		versions, missing := seen()
		if missing != "" {
			t.Errorf("a version of the configurations lacked the CA bundle: %s", missing)
		}
		m, v := chartConfigurations(t, c)
		for _, w := range m.Webhooks {
			if *w.TimeoutSeconds != 7 {
				t.Errorf("%s: timeout %d after the upgrade, want 7", w.Name, *w.TimeoutSeconds)
			}
		}
		if m.Labels["chart-e2e"] != "upgraded" || v.Labels["chart-e2e"] != "upgraded" || versions < 2 {
			t.Errorf("the upgrade did not write the configurations (labels %v, %d versions seen)", m.Labels, versions)
		}
		for _, cc := range chartClientConfigs(m, v) {
			if string(cc.CABundle) != string(bundle) {
				t.Errorf("the CA bundle changed with the upgrade")
			}
		}
		// flavors.builtin=false: the release no longer holds them.
		for _, f := range overrides.BuiltinFlavors() {
			err := c.Get(ctx, client.ObjectKey{Name: f.Name}, &vk8sv1.WorkloadFlavor{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("WorkloadFlavor %s after the upgrade without flavors: %v", f.Name, err)
			}
		}
	})

	upgraded := chartManifest(t, "get", "manifest", chartRelease, "--namespace", chartNS)
	wh.stop()
	helm(t, "uninstall", chartRelease, "--namespace", chartNS, "--wait", "--timeout", "2m")
	t.Run("helm uninstall keeps the CRDs and leaves nothing else", func(t *testing.T) {
		all, err := crds.All()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range all {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: want.Name}, crd); err != nil || crd.DeletionTimestamp != nil {
				t.Errorf("CRD %s after uninstall: %v (deleting: %v)", want.Name, err, crd.DeletionTimestamp != nil)
			}
		}
		for _, o := range append(installed, upgraded...) {
			if o.GetKind() == "CustomResourceDefinition" {
				continue
			}
			err := c.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopy())
			if !apierrors.IsNotFound(err) {
				t.Errorf("%s %s after uninstall: %v", o.GetKind(), client.ObjectKeyFromObject(o), err)
			}
		}
		// Cluster-wide, nothing of the release but the CRDs.
		left, err := leftOfRelease(ctx, c, chartRelease)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("left of the release after uninstall: %v", left)
		}
		// In its namespace, only what the webhook made itself (its CA), and what every
		// namespace has.
		left = nil
		for _, list := range []client.ObjectList{&corev1.SecretList{}, &corev1.ServiceAccountList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{}} {
			if err := c.List(ctx, list, client.InNamespace(chartNS)); err != nil {
				t.Fatal(err)
			}
			items, err := metaItems(list)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range items {
				if o.GetName() != chartCA && o.GetName() != "default" && o.GetName() != "kube-root-ca.crt" {
					left = append(left, fmt.Sprintf("%T %s", o, o.GetName()))
				}
			}
		}
		if len(left) > 0 {
			t.Errorf("left in namespace %s after uninstall: %v", chartNS, left)
		}
	})
}

// chartManifest parses the objects of a helm command's output (helm get manifest).
func chartManifest(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	return decodeObjects(t, helm(t, args...))
}

// decodeObjects decodes helm's multi-document output (get manifest, get hooks).
func decodeObjects(t *testing.T, out string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if m != nil {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// leftOfRelease lists, cluster-wide, the objects that still carry the release's instance
// label, the CRDs apart.
func leftOfRelease(ctx context.Context, c client.Client, release string) ([]string, error) {
	var left []string
	for _, kind := range []string{"ClusterRoleList", "ClusterRoleBindingList", "RoleList", "RoleBindingList", "ServiceAccountList", "ServiceList",
		"MutatingWebhookConfigurationList", "ValidatingWebhookConfigurationList", "ValidatingAdmissionPolicyList",
		"ValidatingAdmissionPolicyBindingList", "WorkloadFlavorList", "ConfigMapList", "SecretList", "DeploymentList", "PodDisruptionBudgetList"} {
		list := &unstructured.UnstructuredList{}
		list.SetKind(kind)
		list.SetAPIVersion(chartAPIVersion(kind))
		if err := c.List(ctx, list, client.MatchingLabels{"app.kubernetes.io/instance": release}); err != nil {
			return nil, fmt.Errorf("list %s: %w", kind, err)
		}
		for _, o := range list.Items {
			left = append(left, fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName()))
		}
	}
	return left, nil
}

func chartConfigurations(t *testing.T, c client.Client) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	m, v := &admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}
	for _, o := range []client.Object{m, v} {
		if err := c.Get(t.Context(), client.ObjectKey{Name: chartConfig}, o); err != nil {
			t.Fatal(err)
		}
	}
	return m, v
}

func chartClientConfigs(m *admissionregistrationv1.MutatingWebhookConfiguration, v *admissionregistrationv1.ValidatingWebhookConfiguration) []admissionregistrationv1.WebhookClientConfig {
	var out []admissionregistrationv1.WebhookClientConfig
	for _, w := range m.Webhooks {
		out = append(out, w.ClientConfig)
	}
	for _, w := range v.Webhooks {
		out = append(out, w.ClientConfig)
	}
	return out
}

// watchChartConfigurations watches both configurations of the chart until the returned
// function is called, which returns how many versions were seen and, if one lacked a CA
// bundle, which.
func watchChartConfigurations(t *testing.T) func() (int, string) {
	t.Helper()
	cs := clientset(t, "host")
	ctx, cancel := context.WithCancel(t.Context())
	opts := metav1.ListOptions{FieldSelector: "metadata.name=" + chartConfig}
	mw, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Watch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	vw, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		versions int
		missing  string
		wg       sync.WaitGroup
	)
	record := func(kind, rv string, configs []admissionregistrationv1.WebhookClientConfig) {
		mu.Lock()
		defer mu.Unlock()
		versions++
		if slices.ContainsFunc(configs, func(cc admissionregistrationv1.WebhookClientConfig) bool { return len(cc.CABundle) == 0 }) && missing == "" {
			missing = kind + " at resourceVersion " + rv
		}
	}
	for _, w := range []watch.Interface{mw, vw} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range w.ResultChan() {
				switch o := ev.Object.(type) {
				case *admissionregistrationv1.MutatingWebhookConfiguration:
					var ccs []admissionregistrationv1.WebhookClientConfig
					for _, w := range o.Webhooks {
						ccs = append(ccs, w.ClientConfig)
					}
					record("MutatingWebhookConfiguration", o.ResourceVersion, ccs)
				case *admissionregistrationv1.ValidatingWebhookConfiguration:
					var ccs []admissionregistrationv1.WebhookClientConfig
					for _, w := range o.Webhooks {
						ccs = append(ccs, w.ClientConfig)
					}
					record("ValidatingWebhookConfiguration", o.ResourceVersion, ccs)
				}
			}
		}()
	}
	return func() (int, string) {
		// The watch delivers the upgrade's writes a moment after helm returns.
		time.Sleep(2 * time.Second)
		cancel()
		mw.Stop()
		vw.Stop()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return versions, missing
	}
}

// chartAPIVersion is the API version of a list kind the uninstall check lists.
func chartAPIVersion(listKind string) string {
	switch strings.TrimSuffix(listKind, "List") {
	case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
		return "rbac.authorization.k8s.io/v1"
	case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
		return "admissionregistration.k8s.io/v1"
	case "WorkloadFlavor":
		return vk8sv1.GroupVersion.String()
	case "Deployment":
		return "apps/v1"
	case "PodDisruptionBudget":
		return "policy/v1"
	}
	return "v1"
}

func metaItems(list client.ObjectList) ([]client.Object, error) {
	var out []client.Object
	switch l := list.(type) {
	case *corev1.SecretList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.ServiceAccountList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.ServiceList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.ConfigMapList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	default:
		return nil, fmt.Errorf("unexpected %T", list)
	}
	return out, nil
}

// chartCleanup leaves the lab as the release found it: the release gone, the built-in
// flavors made again (the release took them over and took them away), the CRDs without
// the release's ownership marks, the namespace deleted.
func chartCleanup(t *testing.T, c client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := helmErr(ctx, t, "status", chartRelease, "--namespace", chartNS); err == nil {
		if _, err := helmErr(ctx, t, "uninstall", chartRelease, "--namespace", chartNS, "--wait", "--timeout", "2m"); err != nil {
			t.Error(err)
		}
	}
	for _, f := range overrides.BuiltinFlavors() {
		if err := c.Create(ctx, &f); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("make WorkloadFlavor %s again: %v", f.Name, err)
		}
	}
	all, err := crds.All()
	if err != nil {
		t.Error(err)
		return
	}
	for _, want := range all {
		patch := []byte(`{"metadata":{"annotations":{"meta.helm.sh/release-name":null,"meta.helm.sh/release-namespace":null,"helm.sh/resource-policy":null},` +
			`"labels":{"app.kubernetes.io/managed-by":null,"app.kubernetes.io/instance":null,"app.kubernetes.io/name":null,"app.kubernetes.io/component":null,` +
			`"app.kubernetes.io/version":null,"helm.sh/chart":null,"chart-e2e":null}}}`)
		if err := c.Patch(ctx, &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: want.Name}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Errorf("CRD %s: %v", want.Name, err)
		}
	}
	_ = c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: chartNS}})
	if err := webhookNamespaceGone(ctx, c, chartNS); err != nil {
		t.Logf("namespace %s is not gone: %v", chartNS, err)
	}
}

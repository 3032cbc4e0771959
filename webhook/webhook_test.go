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

package webhook

import (
	"fmt"
	"maps"
	"net"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestNewValidates(t *testing.T) {
	host := &rest.Config{Host: "https://127.0.0.1:6443"}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "lab", cfg: Config{Host: host, URL: "https://127.0.0.1:9443"}},
		{name: "in cluster", cfg: Config{Host: host, Service: &ServiceReference{Namespace: "vk8s-system", Name: "vk8s-webhook"}, Configurations: ConfigurationsRegister}},
		{name: "chart, self-managed", cfg: Config{Host: host, Service: &ServiceReference{Namespace: "vk8s-system", Name: "vk8s-webhook"}, Configurations: ConfigurationsInjectCA}},
		{name: "chart, cert-manager", cfg: Config{Host: host, CertDir: "/certs", Configurations: ConfigurationsNone}},
		{name: "cert-manager", cfg: Config{Host: host, Service: &ServiceReference{Namespace: "x", Name: "y"}, CertDir: "/certs", CAFile: "/certs/ca.crt"}},
		{name: "no host", cfg: Config{URL: "https://127.0.0.1:9443"}, wantErr: "webhook: host client configuration is required"},
		{name: "http", cfg: Config{Host: host, URL: "http://127.0.0.1:9443"}, wantErr: `webhook: URL "http://127.0.0.1:9443": must be https://<host>[:<port>][/<path>]`},
		{name: "both", cfg: Config{Host: host, URL: "https://a", Service: &ServiceReference{Namespace: "x", Name: "y"}},
			wantErr: "webhook: set either a URL or a Service for the API server to call, not both"},
		{name: "neither", cfg: Config{Host: host}, wantErr: "webhook: set a URL or a Service: the webhook configurations and the self-managed certificate name it"},
		{name: "timeout", cfg: Config{Host: host, URL: "https://a", Timeout: time.Minute}, wantErr: "webhook: timeout 1m0s: the API server takes 1s to 30s"},
		{name: "cert dir without CA", cfg: Config{Host: host, URL: "https://a", CertDir: "/certs", Configurations: ConfigurationsInjectCA},
			wantErr: "webhook: writing the CA bundle into the configurations with certificates from a folder needs the CA file that signed them " +
				"(or leave the configurations alone when cert-manager injects it)"},
		{name: "none without cert dir", cfg: Config{Host: host, URL: "https://a", Configurations: ConfigurationsNone},
			wantErr: "webhook: leaving the configurations alone needs certificates from a folder: nobody else knows the self-managed CA; register the configurations or inject the CA into them"},
		{name: "unknown mode", cfg: Config{Host: host, URL: "https://a", Configurations: "manage"},
			wantErr: `webhook: configurations "manage": choose one of [register inject-ca none]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestPortFromURL(t *testing.T) {
	for url, want := range map[string]int{"https://127.0.0.1:9555": 9555, "https://webhook.example": DefaultPort} {
		c := Config{URL: url}
		c.defaults()
		if c.Port != want {
			t.Errorf("%s: port %d, want %d", url, c.Port, want)
		}
	}
}

func TestServingNames(t *testing.T) {
	c := Config{Service: &ServiceReference{Namespace: "vk8s-system", Name: "vk8s-webhook"}}
	dns, ips := c.servingNames()
	if len(dns) != 3 || dns[0] != "vk8s-webhook.vk8s-system.svc" || ips != nil {
		t.Errorf("service names %v %v", dns, ips)
	}
	c = Config{URL: "https://127.0.0.1:9443/base"}
	dns, ips = c.servingNames()
	if dns != nil || len(ips) != 1 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("URL names %v %v", dns, ips)
	}
}

// TestConfigurations checks the scope of the registered webhooks: what must be decided
// by vk8s fails closed in vK8s namespaces only.
func TestConfigurations(t *testing.T) {
	m, v := Configurations(Config{URL: "https://127.0.0.1:9443/"}, []byte("CA"))
	if m.Name != DefaultConfigurationName || v.Name != DefaultConfigurationName {
		t.Errorf("names %s %s", m.Name, v.Name)
	}
	inVK8s := func(s *metav1.LabelSelector) bool {
		return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 1 &&
			s.MatchExpressions[0].Key == vk8sv1.LabelVirtualKubernetes && s.MatchExpressions[0].Operator == metav1.LabelSelectorOpExists
	}
	for _, w := range m.Webhooks {
		if *w.FailurePolicy != admissionregistrationv1.Fail || !inVK8s(w.NamespaceSelector) {
			t.Errorf("%s: failure policy %s, namespace selector %v", w.Name, *w.FailurePolicy, w.NamespaceSelector)
		}
		if *w.TimeoutSeconds != 5 || string(w.ClientConfig.CABundle) != "CA" || w.ClientConfig.URL == nil {
			t.Errorf("%s: timeout %d, client config %+v", w.Name, *w.TimeoutSeconds, w.ClientConfig)
		}
	}
	if got := *m.Webhooks[2].ClientConfig.URL; got != "https://127.0.0.1:9443/mutate/pods" {
		t.Errorf("pods URL %s", got)
	}
	policies := map[string]admissionregistrationv1.FailurePolicyType{}
	for _, w := range v.Webhooks {
		policies[w.Name] = *w.FailurePolicy
		if w.Name == "outside.validate.vk8s.io" {
			sel := w.NamespaceSelector.MatchExpressions
			if len(sel) != 1 || sel[0].Operator != metav1.LabelSelectorOpDoesNotExist || len(w.MatchConditions) != 2 {
				t.Errorf("outside: selector %v, conditions %v", sel, w.MatchConditions)
			}
		}
		if w.Name == "horizontalpodautoscalers.validate.vk8s.io" && !inVK8s(w.NamespaceSelector) {
			t.Errorf("HPA check outside vK8s namespaces: %v", w.NamespaceSelector)
		}
	}
	if policies["outside.validate.vk8s.io"] != admissionregistrationv1.Ignore || policies["virtualkubernetes.validate.vk8s.io"] != admissionregistrationv1.Fail {
		t.Errorf("failure policies %v", policies)
	}

	m, _ = Configurations(Config{Service: &ServiceReference{Namespace: "vk8s-system", Name: "vk8s-webhook"}, Timeout: 3 * time.Second}, nil)
	svc := m.Webhooks[0].ClientConfig.Service
	if svc == nil || svc.Namespace != "vk8s-system" || *svc.Port != 443 || *svc.Path != pathWorkloads || *m.Webhooks[0].TimeoutSeconds != 3 {
		t.Errorf("service client config %+v", m.Webhooks[0].ClientConfig)
	}
}

// TestRegistrarTouchesOnlyItsOwn checks that registering creates, then repairs, the
// process's two configurations, and leaves another configuration alone.
func TestRegistrarTouchesOnlyItsOwn(t *testing.T) {
	other := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "x.example.com", ClientConfig: admissionregistrationv1.WebhookClientConfig{CABundle: []byte("theirs")}}}}
	e := newEnv(t, other)
	before := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := e.c.Get(t.Context(), client.ObjectKey{Name: "someone-else"}, before); err != nil {
		t.Fatal(err)
	}
	cfg := e.a.cfg
	cfg.Configurations = ConfigurationsRegister
	r := &registrar{cfg: &cfg, client: e.c}
	if err := r.publish(t.Context(), []byte("CA1")); err != nil {
		t.Fatal(err)
	}
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, m); err != nil {
		t.Fatal(err)
	}
	// Someone edits ours; a new CA follows.
	m.Webhooks[0].FailurePolicy = ptrTo(admissionregistrationv1.Ignore)
	if err := e.c.Update(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if err := r.publish(t.Context(), []byte("CA2")); err != nil {
		t.Fatal(err)
	}
	_ = e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, m)
	if *m.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail || string(m.Webhooks[2].ClientConfig.CABundle) != "CA2" {
		t.Errorf("not repaired: %s, %q", *m.Webhooks[0].FailurePolicy, m.Webhooks[2].ClientConfig.CABundle)
	}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, v); err != nil || string(v.Webhooks[0].ClientConfig.CABundle) != "CA2" {
		t.Errorf("validating configuration: %v", err)
	}
	got := &admissionregistrationv1.MutatingWebhookConfiguration{}
	_ = e.c.Get(t.Context(), client.ObjectKey{Name: "someone-else"}, got)
	if got.ResourceVersion != before.ResourceVersion || string(got.Webhooks[0].ClientConfig.CABundle) != "theirs" {
		t.Errorf("another configuration was changed: %+v", got.Webhooks[0].ClientConfig)
	}
	if r.readyCheck(nil) != nil {
		t.Error("not ready after registering")
	}
}

func TestRegistrarInjectsIntoTemplatedConfigurations(t *testing.T) {
	e := newEnv(t)
	cfg := e.a.cfg
	cfg.Configurations = ConfigurationsInjectCA // the chart templates the configurations
	r := &registrar{cfg: &cfg, client: e.c}
	if err := r.publish(t.Context(), []byte("CA1")); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, &admissionregistrationv1.MutatingWebhookConfiguration{}); err == nil {
		t.Fatal("created a configuration with --configurations=inject-ca")
	}
	m, v := Configurations(cfg, nil)
	m.Webhooks = m.Webhooks[:1]
	for _, obj := range []client.Object{m, v} {
		if err := e.c.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.publish(t.Context(), []byte("CA2")); err != nil {
		t.Fatal(err)
	}
	gotM, gotV := &admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}
	_ = e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, gotM)
	_ = e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, gotV)
	if len(gotM.Webhooks) != 1 || string(gotM.Webhooks[0].ClientConfig.CABundle) != "CA2" || string(gotV.Webhooks[4].ClientConfig.CABundle) != "CA2" {
		t.Errorf("bundle not injected, or webhooks changed: %d mutating", len(gotM.Webhooks))
	}
}

// TestRegistrarFillsOnlyMissingBundles checks what happens when a configuration shows up
// under --configurations=inject-ca: one without a bundle (Helm made or replaced it) gets
// the process's at once; one with another bundle (another replica wrote a newer one) is
// left to the periodic repair, so that replicas never undo each other's writes.
func TestRegistrarFillsOnlyMissingBundles(t *testing.T) {
	e := newEnv(t)
	cfg := e.a.cfg
	cfg.Configurations = ConfigurationsInjectCA
	r := &registrar{cfg: &cfg, client: e.c}
	if err := r.fillMissing(t.Context()); err != nil {
		t.Fatalf("no bundle yet, no configuration: %v", err)
	}
	r.bundle = []byte("CA1")
	m, v := Configurations(cfg, nil)
	v.Webhooks[1].ClientConfig.CABundle = []byte("CA2")
	for _, obj := range []client.Object{m, v} {
		if err := e.c.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.fillMissing(t.Context()); err != nil {
		t.Fatal(err)
	}
	gotM, gotV := &admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}
	_ = e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, gotM)
	_ = e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, gotV)
	for _, cc := range append(clientConfigs(gotM), clientConfigs(gotV)...) {
		if string(cc.CABundle) != "CA1" {
			t.Errorf("a webhook kept bundle %q, want CA1 everywhere (one of them had none)", cc.CABundle)
		}
	}

	// Every webhook has a bundle, though not this replica's: left alone.
	before := gotV.ResourceVersion
	r.bundle = []byte("CA3")
	if err := r.fillMissing(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, gotV)
	if gotV.ResourceVersion != before {
		t.Errorf("a configuration whose webhooks all had a bundle was rewritten")
	}
	// Inject-ca never creates, nor touches the kind policy (the chart templates both).
	if err := r.publish(t.Context(), []byte("CA3")); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Get(t.Context(), client.ObjectKey{Name: DefaultConfigurationName}, &admissionregistrationv1.ValidatingAdmissionPolicy{}); err == nil {
		t.Error("inject-ca created the ValidatingAdmissionPolicy")
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestAdmissionSpans(t *testing.T) {
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	e.a.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	h := e.a.instrument(e.a.admitWorkload)
	d := deployment("web", 3, nil)
	h.Handle(t.Context(), e.request(admissionv1.Create, d, nil))
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	attrs := map[string]string{}
	for _, kv := range s.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{"k8s.namespace.name": ns, "vk8s.object.name": "web", "vk8s.admission.operation": "CREATE", "vk8s.admission.result": "patched"}
	if s.Name() != "admit Deployment" || !maps.Equal(attrs, want) {
		t.Errorf("span %q %v, want admit Deployment %v", s.Name(), attrs, want)
	}
}

// TestPodAdmissionRecordsItsTrace: a placed pod carries the admission span's traceparent
// (the provider continues the trace from it); with tracing off it carries none, not even
// one it came with.
func TestPodAdmissionRecordsItsTrace(t *testing.T) {
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	h := e.a.instrument(e.a.admitPod)
	stale := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	admit := func() *corev1.Pod {
		t.Helper()
		p := podFrom(podTemplate("solo"), metav1.ObjectMeta{Namespace: ns, Name: "solo",
			Annotations: map[string]string{vk8sv1.AnnotationTraceParent: stale}})
		resp := h.Handle(t.Context(), e.request(admissionv1.Create, p, nil))
		if !resp.Allowed {
			t.Fatalf("denied: %v", resp.Result)
		}
		out := &corev1.Pod{}
		patched(t, e.request(admissionv1.Create, p, nil), resp, out)
		return out
	}
	if got := admit().Annotations[vk8sv1.AnnotationTraceParent]; got != "" {
		t.Errorf("without tracing: %s=%q, want none", vk8sv1.AnnotationTraceParent, got)
	}
	e.a.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	got := admit().Annotations[vk8sv1.AnnotationTraceParent]
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sc := spans[0].SpanContext()
	if want := fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID()); got != want {
		t.Errorf("%s=%q, want the admission span's %q", vk8sv1.AnnotationTraceParent, got, want)
	}
}

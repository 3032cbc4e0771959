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
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	collectortracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/translate"
)

// otlpReceiver is an OTLP/gRPC trace collector that keeps every span it receives.
type otlpReceiver struct {
	collectortracev1.UnimplementedTraceServiceServer

	mu    sync.Mutex
	spans []receivedSpan
}

// receivedSpan is a span and the service.name of the process that sent it.
type receivedSpan struct {
	service string
	*tracev1.Span
}

// Export keeps the spans of req.
func (r *otlpReceiver) Export(_ context.Context, req *collectortracev1.ExportTraceServiceRequest) (*collectortracev1.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := attribute(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, receivedSpan{service: service, Span: s})
			}
		}
	}
	return &collectortracev1.ExportTraceServiceResponse{}, nil
}

// received returns the spans received so far.
func (r *otlpReceiver) received() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedSpan(nil), r.spans...)
}

func attribute(kvs []*commonv1.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// startOTLPReceiver serves an otlpReceiver on a loopback port until the test ends and
// returns it with its endpoint for OTEL_EXPORTER_OTLP_ENDPOINT.
func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{}
	srv := grpc.NewServer()
	collectortracev1.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return r, "http://" + l.Addr().String()
}

// TestTrace runs the provider and the webhook as processes that export their spans to an
// in-process OTLP receiver through the standard OTEL_* variables, creates a pod through
// admission, and checks that one trace goes from the admission through the provider to
// the site's API server, linked up through the pod's vk8s.io/traceparent.
func TestTrace(t *testing.T) {
	skipShort(t)
	recv, endpoint := startOTLPReceiver(t)
	// Cleanups run last first: the processes stop (and flush) before the receiver does.
	startVK8sProcesses(t, "OTEL_EXPORTER_OTLP_ENDPOINT="+endpoint, "OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_BSP_SCHEDULE_DELAY=200")
	c := hostClient(t)
	const ns = "trace-e2e"
	observedNamespace(t, c, ns)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "traced"},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}},
	}
	mustCreate(t, c, pod)
	host := waitPod(t, c, client.ObjectKey{Namespace: ns, Name: pod.Name}, "Running", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	traceparent := host.Annotations[vk8sv1.AnnotationTraceParent]
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("host pod %s=%q, want a W3C traceparent", vk8sv1.AnnotationTraceParent, traceparent)
	}
	traceID, admitID := parts[1], parts[2]
	site := host.Labels[vk8sv1.LabelSite]
	sitePod := &corev1.Pod{}
	if err := siteClient(t, site).Get(t.Context(), client.ObjectKey{Namespace: translate.SiteNamespace(provider.DefaultTenant, ns), Name: pod.Name}, sitePod); err != nil {
		t.Fatal(err)
	}
	if v, ok := sitePod.Annotations[vk8sv1.AnnotationTraceParent]; ok {
		t.Errorf("the site pod carries %s=%q, the host's own", vk8sv1.AnnotationTraceParent, v)
	}

	// The spans of the pod's trace: the admission's (webhook), CreatePod's and the
	// creation's on the site (provider), and the POST of the pod to the site's API server.
	var admit, create, onSite, post *receivedSpan
	var byID map[string]receivedSpan
	waitFor(t, "the pod's trace from admission to the site", func(context.Context) (bool, error) {
		byID = map[string]receivedSpan{}
		admit, create, onSite, post = nil, nil, nil, nil
		for _, s := range recv.received() {
			if hex.EncodeToString(s.GetTraceId()) != traceID {
				continue
			}
			byID[hex.EncodeToString(s.GetSpanId())] = s
			switch {
			case s.service == "vk8s-webhook" && s.GetName() == "admit Pod":
				admit = &s
			case s.service == "vk8s-provider" && s.GetName() == "provider CreatePod":
				create = &s
			case s.service == "vk8s-provider" && s.GetName() == "provider create pod on site":
				onSite = &s
			case s.service == "vk8s-provider" && s.GetName() == "site POST" &&
				strings.HasSuffix(attribute(s.GetAttributes(), "url.full")+attribute(s.GetAttributes(), "http.url"),
					"/namespaces/"+translate.SiteNamespace(provider.DefaultTenant, ns)+"/pods"):
				post = &s
			}
		}
		return admit != nil && create != nil && onSite != nil && post != nil, nil
	})
	id := func(s *receivedSpan) string { return hex.EncodeToString(s.GetSpanId()) }
	parent := func(s *receivedSpan) string { return hex.EncodeToString(s.GetParentSpanId()) }
	if id(admit) != admitID || attribute(admit.GetAttributes(), "vk8s.object.name") != pod.Name {
		t.Errorf("admission span %s (object %q), want the pod's traceparent's %s", id(admit), attribute(admit.GetAttributes(), "vk8s.object.name"), admitID)
	}
	if parent(create) != id(admit) {
		t.Errorf("CreatePod's span has parent %s, want the admission's %s", parent(create), id(admit))
	}
	if parent(onSite) != id(create) || attribute(onSite.GetAttributes(), "vk8s.site") != site {
		t.Errorf("the creation on the site: parent %s, site %q; want CreatePod's %s, %s", parent(onSite), attribute(onSite.GetAttributes(), "vk8s.site"), id(create), site)
	}
	// The POST descends from the admission, through the creation on the site.
	var chain []string
	for s, ok := byID[id(post)], true; ok; s, ok = byID[hex.EncodeToString(s.GetParentSpanId())] {
		chain = append(chain, fmt.Sprintf("%s %q", s.service, s.GetName()))
		if hex.EncodeToString(s.GetSpanId()) == id(admit) {
			break
		}
	}
	if len(chain) < 4 || chain[len(chain)-1] != `vk8s-webhook "admit Pod"` || !strings.Contains(strings.Join(chain, ","), `"provider create pod on site"`) {
		t.Errorf("the site call's ancestors: %v, want the creation on the site, CreatePod and the admission", chain)
	}
	t.Logf("trace %s: %s", traceID, strings.Join(chain, " <- "))
}

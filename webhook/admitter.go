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
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

// Paths of the admission handlers.
const (
	pathWorkloads         = "/mutate/workloads"
	pathScale             = "/mutate/scale"
	pathPods              = "/mutate/pods"
	pathClaims            = "/mutate/persistentvolumeclaims"
	pathVirtualKubernetes = "/validate/virtualkubernetes"
	pathOverrides         = "/validate/overrides"
	pathFlavors           = "/validate/workloadflavors"
	pathAutoscalers       = "/validate/horizontalpodautoscalers"
	pathRoleBindings      = "/validate/rolebindings"
	pathOutside           = "/validate/outside"
)

// admitter holds the admission handlers and what they share: the federation State
// (resolver, reservations, the rollout's deletions) and the host's readers and writer.
type admitter struct {
	cfg      Config
	state    *federation.State
	cache    client.Reader
	api      client.Reader
	client   client.Client
	recorder events.EventRecorder
	now      func() time.Time
	decoder  admission.Decoder
	metrics  *metrics
	tracer   trace.Tracer
	// refresh hands a scale's R to the Refresher (State.Refresher.Enqueue).
	refresh func(federation.RefreshItem)
}

// newAdmitter returns the handlers over state; m nil: metrics of a registry of their own.
func newAdmitter(cfg Config, state *federation.State, s *runtime.Scheme, m *metrics) *admitter {
	if m == nil {
		// A new registry takes every metric: the error cannot happen.
		m, _ = newMetrics(prometheus.NewRegistry())
	}
	a := &admitter{
		cfg: cfg, state: state, cache: state.Cache, api: state.API, client: state.Client, recorder: state.Recorder, now: state.Now,
		decoder: admission.NewDecoder(s), metrics: m, refresh: state.Refresher.Enqueue,
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	a.tracer = tp.Tracer("github.com/vk8s-io/vk8s/webhook")
	m.reservations.set(func() float64 { return float64(state.Reservations.Count()) })
	return a
}

// What admission reads: the informers below and the pods and nodes of vk8s (server.go),
// the workloads of a namespace (cronjobs: only listed), an Override's PriorityClass; and
// its Events on workloads.
// +kubebuilder:rbac:groups=vk8s.io,resources=sites;virtualsites;virtualkubernetes;overrides;workloadflavors,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes;namespaces;pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments;replicasets;statefulsets;daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=list
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=scheduling.k8s.io,resources=priorityclasses,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// setupWithManager registers the handlers and the informers they read (so they sync
// before the webhook is ready).
func (a *admitter) setupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	for _, obj := range []client.Object{
		&vk8sv1.Site{}, &vk8sv1.VirtualSite{}, &vk8sv1.VirtualKubernetes{}, &vk8sv1.Override{}, &vk8sv1.WorkloadFlavor{},
		&corev1.Node{}, &corev1.Namespace{}, &appsv1.Deployment{}, &appsv1.ReplicaSet{}, &appsv1.StatefulSet{},
		&appsv1.DaemonSet{}, &batchv1.Job{}, &storagev1.StorageClass{},
	} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
	}
	srv := mgr.GetWebhookServer()
	for path, h := range map[string]func(context.Context, admission.Request) admission.Response{
		pathWorkloads:         a.admitWorkload,
		pathScale:             a.admitScale,
		pathPods:              a.admitPod,
		pathClaims:            a.admitClaim,
		pathVirtualKubernetes: a.validateVirtualKubernetes,
		pathOverrides:         a.validateOverride,
		pathFlavors:           a.validateFlavor,
		pathAutoscalers:       a.validateAutoscaler,
		pathRoleBindings:      a.validateRoleBinding,
		pathOutside:           a.validateOutside,
	} {
		srv.Register(path, &admission.Webhook{Handler: a.instrument(h)})
	}
	return nil
}

// instrument records the duration and result of every admission.
func (a *admitter) instrument(h func(context.Context, admission.Request) admission.Response) admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		start := a.now()
		kind := req.Kind.Kind
		if req.SubResource != "" {
			kind = kindOfResource(req.Resource.Resource) + "/" + req.SubResource
		}
		ctx, span := a.tracer.Start(ctx, "admit "+kind, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("k8s.namespace.name", req.Namespace), attribute.String("vk8s.object.name", req.Name),
			attribute.String("vk8s.admission.operation", string(req.Operation))))
		defer span.End()
		resp := h(ctx, req)
		result := "allowed"
		switch {
		case !resp.Allowed && resp.Result != nil && resp.Result.Code >= http.StatusInternalServerError:
			result = "error"
			span.SetStatus(codes.Error, resp.Result.Message)
		case !resp.Allowed:
			result = "denied"
		case len(resp.Patches) > 0:
			result = "patched"
		}
		span.SetAttributes(attribute.String("vk8s.admission.result", result))
		a.metrics.duration.WithLabelValues(kind, string(req.Operation), result).Observe(a.now().Sub(start).Seconds())
		return resp
	})
}

// decodeInVK8s decodes req's object into obj and looks up its namespace: a response ends
// the admission (a bad request, a failed lookup, or a namespace that is not a vK8s
// namespace, where vk8s has nothing to say); nil goes on.
func (a *admitter) decodeInVK8s(ctx context.Context, req admission.Request, obj runtime.Object) *admission.Response {
	if err := a.decoder.Decode(req, obj); err != nil {
		resp := admission.Errored(http.StatusBadRequest, err)
		return &resp
	}
	vk, err := a.state.Resolver.VirtualKubernetes(ctx, req.Namespace)
	if err != nil {
		resp := a.answer(ctx, err)
		return &resp
	}
	if vk == nil {
		resp := admission.Allowed("not a vK8s namespace")
		return &resp
	}
	return nil
}

// answer turns an error into the admission's answer: a *federation.Rejection denies,
// counted by its reason; any other error is the webhook's own (the cache, the API server)
// and fails the request.
func (a *admitter) answer(ctx context.Context, err error) admission.Response {
	var rej *federation.Rejection
	if errors.As(err, &rej) {
		a.metrics.rejections.WithLabelValues(rej.Reason).Inc()
		ctrl.LoggerFrom(ctx).V(1).Info("Rejected", "reason", rej.Reason, "message", rej.Message)
		return admission.Denied(rej.Message)
	}
	ctrl.LoggerFrom(ctx).Error(err, "Admission failed")
	return admission.Errored(http.StatusInternalServerError, err)
}

// Reasons of admission's own rejections, values of the reason label (the resolver's are
// package federation's).
const (
	reasonNoSites          = "no-sites"
	reasonReplicas         = "replicas"
	reasonSecondVK         = "second-virtual-kubernetes"
	reasonWorkloadsRemain  = "workloads-remain"
	reasonAutoscaler       = "autoscaler"
	reasonNotVK8sNamespace = "not-vk8s-namespace"
	reasonPlacement        = "placement"
	reasonNodeOutsideSites = "node-outside-sites"
	reasonInvalidFlavor    = "invalid-flavor"
	reasonInvalidOverride  = "invalid-override"
	reasonInvalidVK        = "invalid-virtual-kubernetes"
	reasonStorageClass     = "storage-class"
	reasonRoleBinding      = "role-binding"
)

// metrics are the webhook's Prometheus metrics.
type metrics struct {
	duration     *prometheus.HistogramVec
	rejections   *prometheus.CounterVec
	placements   *prometheus.CounterVec
	certExpiry   *prometheus.GaugeVec
	certIssued   *prometheus.CounterVec
	reservations *funcGauge
	apiReads     *prometheus.CounterVec
}

// funcGauge is a gauge whose function is set after registration.
type funcGauge struct {
	prometheus.Gauge
	fn func() float64
}

func (g *funcGauge) set(fn func() float64) { g.fn = fn }

func (g *funcGauge) Collect(ch chan<- prometheus.Metric) {
	if g.fn != nil {
		g.Set(g.fn())
	}
	g.Gauge.Collect(ch)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vk8s_webhook_admission_duration_seconds",
			Help:    "Time to answer an admission request, by kind (Deployment/scale for the subresource), operation and result (allowed, patched, denied, error).",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}, []string{"kind", "operation", "result"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_webhook_rejections_total",
			Help: "Admission requests denied, by reason.",
		}, []string{"reason"}),
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_webhook_placements_total",
			Help: "Pods placed on a site, by rule: deficit, ordinal, daemonset, fewest, node (already bound), kept (already placed).",
		}, []string{"rule"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vk8s_webhook_certificate_expiry_timestamp_seconds",
			Help: "When the current self-managed certificate expires, by certificate (ca, serving).",
		}, []string{"certificate"}),
		certIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_webhook_certificates_issued_total",
			Help: "Self-managed certificates issued (the first and every rotation), by certificate (ca, serving).",
		}, []string{"certificate"}),
		reservations: &funcGauge{Gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vk8s_webhook_reservations",
			Help: "Pods placed by admission that the webhook's cache does not show yet.",
		})},
		apiReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_webhook_api_reads_total",
			Help: "Reads of the host's API server that bypass the webhook's cache (admission and the federation controllers), by kind and verb (get, list).",
		}, []string{"kind", "verb"}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.rejections, m.placements, m.certExpiry, m.certIssued, m.reservations, m.apiReads} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	return m, nil
}

// itoa32 formats an int32 for annotations.
func itoa32(n int32) string { return strconv.FormatInt(int64(n), 10) }

// countedReader is the API server reader of admission and the federation controllers: it
// counts its reads in vk8s_webhook_api_reads_total, since each is a round trip that the
// cache answers without.
type countedReader struct {
	client.Reader
	scheme *runtime.Scheme
	reads  *prometheus.CounterVec
}

func (r countedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.reads.WithLabelValues(r.kind(obj), "get").Inc()
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r countedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.reads.WithLabelValues(strings.TrimSuffix(r.kind(list), "List"), "list").Inc()
	return r.Reader.List(ctx, list, opts...)
}

func (r countedReader) kind(obj runtime.Object) string {
	gvk, err := apiutil.GVKForObject(obj, r.scheme)
	if err != nil {
		return "unknown"
	}
	return gvk.Kind
}

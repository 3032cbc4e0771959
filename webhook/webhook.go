package webhook

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/webhook/certs"
)

// Defaults of Config.
const (
	DefaultConfigurationName = "vk8s-webhook"
	DefaultPort              = 9443
	DefaultTimeout           = 5 * time.Second
	DefaultReservationTTL    = 30 * time.Second
	DefaultResyncInterval    = time.Minute
	defaultName              = "vk8s-webhook"
)

// ServiceReference is the in-cluster Service the API server calls the webhook through.
type ServiceReference struct {
	Namespace string
	Name      string
	// Port of the Service. Zero: 443.
	Port int32
}

// Config configures the webhook process.
type Config struct {
	// Host is the client configuration of the host cluster.
	Host *rest.Config
	// Logger is the webhook's logger. Zero: controller-runtime's global logger.
	Logger logr.Logger

	// BindAddress and Port are where the HTTPS server listens. Defaults: every address;
	// the port of URL, else DefaultPort.
	BindAddress string
	Port        int
	// URL is the base address the API server calls (https://127.0.0.1:9443 in the lab);
	// Service is the alternative for a webhook running in the cluster. One of them is
	// required to manage configurations or to name the self-managed certificate.
	URL     string
	Service *ServiceReference
	// ManageConfigurations makes the process create and update its own
	// MutatingWebhookConfiguration and ValidatingWebhookConfiguration, named
	// ConfigurationName, with the CA bundle it serves; it touches no other configuration.
	ManageConfigurations bool
	// ConfigurationName names both configurations. Empty: DefaultConfigurationName.
	ConfigurationName string
	// Timeout is the configurations' timeoutSeconds. Zero: DefaultTimeout.
	Timeout time.Duration
	// ResyncInterval is how often the configurations are checked and repaired. Zero:
	// DefaultResyncInterval.
	ResyncInterval time.Duration

	// CertDir, when set, holds tls.crt and tls.key, reloaded when they change (cert-manager
	// mode); CAFile is then the CA bundle written into managed configurations. Empty: a
	// self-managed CA (package certs) with CALifetime, CertLifetime and
	// CAPropagationDelay (zero: the package's defaults).
	CertDir            string
	CAFile             string
	CALifetime         time.Duration
	CertLifetime       time.Duration
	CAPropagationDelay time.Duration

	// MetricsAddr serves Prometheus metrics ("0" or empty: off); HealthAddr /healthz and
	// /readyz ("0" or empty: off).
	MetricsAddr string
	HealthAddr  string
	// MetricsRegisterer receives the webhook's metrics. Nil: controller-runtime's registry.
	MetricsRegisterer prometheus.Registerer

	// SharedNamespace holds the VirtualSites every workload may reference. Empty:
	// overrides.DefaultSharedNamespace.
	SharedNamespace string
	// DefaultWorkloadFlavor applies to workloads without ves.io/workload-flavor. Empty:
	// overrides.DefaultWorkloadFlavor.
	DefaultWorkloadFlavor string
	// StrictReplicas rejects a spec.replicas that is not a multiple of the site count
	// instead of rounding it up.
	StrictReplicas bool
	// ReservationTTL is how long a placement counts before its pod shows up in the cache.
	// Zero: DefaultReservationTTL.
	ReservationTTL time.Duration
	// Name names the process's controllers and the source of its Events; it must be
	// unique per process. Empty: "vk8s-webhook".
	Name string
	// TracerProvider makes the spans of admissions and of the rebalancer. Nil:
	// OpenTelemetry's global provider.
	TracerProvider trace.TracerProvider
}

// validate checks cfg and fills in defaults.
func (cfg *Config) validate() error {
	cfg.defaults()
	if cfg.Host == nil {
		return errors.New("webhook: host client configuration is required")
	}
	return cfg.check()
}

// defaults fills in the defaults of cfg.
func (cfg *Config) defaults() {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
		// The lab's API server calls the URL's port: listen there.
		if u, err := url.Parse(cfg.URL); err == nil && u.Port() != "" {
			if p, err := strconv.Atoi(u.Port()); err == nil {
				cfg.Port = p
			}
		}
	}
	cfg.ConfigurationName = cmp.Or(cfg.ConfigurationName, DefaultConfigurationName)
	cfg.SharedNamespace = cmp.Or(cfg.SharedNamespace, overrides.DefaultSharedNamespace)
	cfg.DefaultWorkloadFlavor = cmp.Or(cfg.DefaultWorkloadFlavor, overrides.DefaultWorkloadFlavor)
	cfg.Name = cmp.Or(cfg.Name, defaultName)
	cfg.MetricsAddr = cmp.Or(cfg.MetricsAddr, "0")
	cfg.HealthAddr = cmp.Or(cfg.HealthAddr, "0")
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ReservationTTL == 0 {
		cfg.ReservationTTL = DefaultReservationTTL
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
}

// check validates cfg once defaulted.
func (cfg *Config) check() error {
	if cfg.Timeout < time.Second || cfg.Timeout > 30*time.Second {
		return fmt.Errorf("webhook: timeout %s: the API server takes 1s to 30s", cfg.Timeout)
	}
	if cfg.URL != "" && cfg.Service != nil {
		return errors.New("webhook: set either a URL or a Service for the API server to call, not both")
	}
	if cfg.URL != "" {
		u, err := url.Parse(cfg.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("webhook: URL %q: must be https://<host>[:<port>][/<path>]", cfg.URL)
		}
	}
	if s := cfg.Service; s != nil && (s.Namespace == "" || s.Name == "") {
		return errors.New("webhook: the Service needs a namespace and a name")
	}
	if cfg.URL == "" && cfg.Service == nil && (cfg.ManageConfigurations || cfg.CertDir == "") {
		return errors.New("webhook: set a URL or a Service: the webhook configurations and the self-managed certificate name it")
	}
	if cfg.CertDir == "" && cfg.CAFile != "" {
		return errors.New("webhook: a CA file goes with a certificate folder")
	}
	if cfg.CertDir != "" && cfg.ManageConfigurations && cfg.CAFile == "" {
		return errors.New("webhook: managing the configurations with certificates from a folder needs the CA file that signed them")
	}
	return nil
}

// servingNames returns the DNS names and IPs the self-managed serving certificate holds.
func (cfg *Config) servingNames() ([]string, []net.IP) {
	if cfg.Service != nil {
		svc := cfg.Service.Name + "." + cfg.Service.Namespace
		return []string{svc + ".svc", svc + ".svc.cluster.local", svc}, nil
	}
	u, _ := url.Parse(cfg.URL)
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		return nil, []net.IP{ip}
	}
	return []string{u.Hostname()}, nil
}

// Scheme knows the kinds the webhook reads and admits.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := vk8sv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Server is the webhook process: admission handlers, their cache, the namespace labels,
// the certificate authority and the webhook configurations.
type Server struct {
	cfg Config
}

// New validates cfg.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg}, nil
}

// Run serves admission until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.cfg
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	registry := cfg.MetricsRegisterer
	if registry == nil {
		registry = ctrlmetrics.Registry
	}
	m, err := newMetrics(registry)
	if err != nil {
		return err
	}

	var authority *certs.Authority
	reg := &registrar{cfg: &cfg}
	tlsOpts := []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}
	if cfg.CertDir == "" {
		dns, ips := cfg.servingNames()
		authority, err = certs.New(certs.Config{
			DNSNames: dns, IPAddresses: ips,
			CALifetime: cfg.CALifetime, CertLifetime: cfg.CertLifetime, PropagationDelay: cfg.CAPropagationDelay,
			Publish: reg.publish,
			OnIssue: func(kind certs.Kind, notAfter time.Time) {
				m.certIssued.WithLabelValues(string(kind)).Inc()
				m.certExpiry.WithLabelValues(string(kind)).Set(float64(notAfter.Unix()))
			},
			Logger: loggerOr(cfg.Logger).WithName("certs"),
		})
		if err != nil {
			return err
		}
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = authority.GetCertificate })
	}

	vk8sSite, err := labels.NewRequirement(vk8sv1.LabelSite, selection.Exists, nil)
	if err != nil {
		return err
	}
	strip := cache.TransformStripManagedFields()
	mgr, err := ctrl.NewManager(cfg.Host, ctrl.Options{
		Scheme:                  scheme,
		Logger:                  cfg.Logger,
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.HealthAddr,
		GracefulShutdownTimeout: ptr.To(10 * time.Second),
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: cfg.BindAddress, Port: cfg.Port, CertDir: cfg.CertDir, TLSOpts: tlsOpts,
		}),
		Cache: cache.Options{
			DefaultTransform: strip,
			ByObject: map[client.Object]cache.ByObject{
				// Only what vk8s admitted, and only virtual nodes.
				&corev1.Pod{}:  {Label: labels.NewSelector().Add(*vk8sSite)},
				&corev1.Node{}: {Label: labels.NewSelector().Add(*vk8sSite)},
			},
		},
	})
	if err != nil {
		return fmt.Errorf("webhook manager: %w", err)
	}
	a, err := newAdmitter(admitterConfig{
		cfg: cfg, cache: mgr.GetCache(), api: mgr.GetAPIReader(), client: mgr.GetClient(),
		scheme: scheme, recorder: mgr.GetEventRecorder(cfg.Name), metrics: m,
	})
	if err != nil {
		return err
	}
	if err := a.setupWithManager(ctx, mgr); err != nil {
		return err
	}
	if err := setupRebalancer(mgr, a); err != nil {
		return err
	}
	if err := setupRollout(mgr, a); err != nil {
		return fmt.Errorf("rollout controller: %w", err)
	}
	reg.client, reg.log = mgr.GetClient(), mgr.GetLogger().WithName("configurations")
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return reg.run(ctx, mgr, authority)
	})); err != nil {
		return err
	}
	if cfg.HealthAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("webhook-server", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("configurations", reg.readyCheck); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}

func loggerOr(l logr.Logger) logr.Logger {
	if l.GetSink() == nil {
		return ctrl.Log.WithName(defaultName)
	}
	return l
}

// Paths of the admission handlers.
const (
	pathWorkloads         = "/mutate/workloads"
	pathScale             = "/mutate/scale"
	pathPods              = "/mutate/pods"
	pathVirtualKubernetes = "/validate/virtualkubernetes"
	pathOverrides         = "/validate/overrides"
	pathFlavors           = "/validate/workloadflavors"
	pathAutoscalers       = "/validate/horizontalpodautoscalers"
	pathOutside           = "/validate/outside"
)

// admitter holds the admission handlers and what they share.
type admitter struct {
	cfg      Config
	cache    client.Reader
	api      client.Reader
	client   client.Client
	decoder  admission.Decoder
	resolver *resolver
	res      *reservations
	metrics  *metrics
	recorder events.EventRecorder
	refresh  *refresher
	tracer   trace.Tracer
	// deleting holds the pods the per-site rollout deleted, which placement does not
	// count even before the cache shows them terminating.
	deleting *deletions
	now      func() time.Time
}

type admitterConfig struct {
	cfg      Config
	cache    client.Reader
	api      client.Reader
	client   client.Client
	scheme   *runtime.Scheme
	recorder events.EventRecorder
	metrics  *metrics
	now      func() time.Time
}

func newAdmitter(c admitterConfig) (*admitter, error) {
	if c.now == nil {
		c.now = time.Now
	}
	if c.metrics == nil {
		m, err := newMetrics(prometheus.NewRegistry())
		if err != nil {
			return nil, err
		}
		c.metrics = m
	}
	a := &admitter{
		cfg: c.cfg, cache: c.cache, api: c.api, client: c.client, decoder: admission.NewDecoder(c.scheme),
		resolver: &resolver{cache: c.cache, shared: c.cfg.SharedNamespace, defaultFlavor: c.cfg.DefaultWorkloadFlavor},
		res:      newReservations(c.cfg.ReservationTTL, c.now),
		metrics:  c.metrics, recorder: c.recorder, deleting: newDeletions(c.now), now: c.now,
	}
	a.refresh = newRefresher(a)
	tp := c.cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	a.tracer = tp.Tracer("github.com/vk8s-io/vk8s/webhook")
	c.metrics.reservations.set(func() float64 { return float64(a.res.count()) })
	return a, nil
}

// Index of pods by the UID of their controller.
const indexOwnerUID = "vk8s.owner-uid"

func ownerUIDIndex(obj client.Object) []string {
	for _, r := range obj.GetOwnerReferences() {
		if r.Controller != nil && *r.Controller {
			return []string{string(r.UID)}
		}
	}
	return nil
}

// setupWithManager registers the handlers, the pod index, the informers the handlers read
// (so they sync before the webhook is ready) and the namespace labeler.
func (a *admitter) setupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, indexOwnerUID, ownerUIDIndex); err != nil {
		return fmt.Errorf("index pods by owner: %w", err)
	}
	for _, obj := range []client.Object{
		&vk8sv1.Site{}, &vk8sv1.VirtualSite{}, &vk8sv1.VirtualKubernetes{}, &vk8sv1.Override{}, &vk8sv1.WorkloadFlavor{},
		&corev1.Node{}, &corev1.Namespace{}, &appsv1.Deployment{}, &appsv1.ReplicaSet{}, &appsv1.StatefulSet{},
		&appsv1.DaemonSet{}, &batchv1.Job{},
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
		pathVirtualKubernetes: a.validateVirtualKubernetes,
		pathOverrides:         a.validateOverride,
		pathFlavors:           a.validateFlavor,
		pathAutoscalers:       a.validateAutoscaler,
		pathOutside:           a.validateOutside,
	} {
		srv.Register(path, &admission.Webhook{Handler: a.instrument(h)})
	}
	if err := mgr.Add(a.refresh); err != nil {
		return err
	}
	return setupNamespaceLabeler(mgr, a.cfg.Name)
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

// deny answers a rejection, counting it.
func (a *admitter) deny(ctx context.Context, rej *rejection) admission.Response {
	a.metrics.rejections.WithLabelValues(rej.reason).Inc()
	ctrl.LoggerFrom(ctx).V(1).Info("Rejected", "reason", rej.reason, "message", rej.msg)
	return admission.Denied(rej.msg)
}

// fail answers an error of the webhook itself (the cache, the API server).
func (a *admitter) fail(ctx context.Context, err error) admission.Response {
	ctrl.LoggerFrom(ctx).Error(err, "Admission failed")
	return admission.Errored(http.StatusInternalServerError, err)
}

// metrics are the webhook's Prometheus metrics.
type metrics struct {
	duration     *prometheus.HistogramVec
	rejections   *prometheus.CounterVec
	placements   *prometheus.CounterVec
	certExpiry   *prometheus.GaugeVec
	certIssued   *prometheus.CounterVec
	reservations *funcGauge
	moves        *prometheus.CounterVec
	replans      prometheus.Counter
	restarts     *prometheus.CounterVec
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
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_webhook_rebalance_moves_total",
			Help: "Pods the rebalancer deleted off a site with too many, so that they come back on a site that lacks them, by the site they left.",
		}, []string{"site"}),
		replans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vk8s_webhook_rebalance_replans_total",
			Help: "Workloads the rebalancer re-planned because their sites changed.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_webhook_rollout_restarts_total",
			Help: "Pods the per-site rollout deleted so that admission applies their site's current Override, by site.",
		}, []string{"site"}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.rejections, m.placements, m.certExpiry, m.certIssued, m.reservations, m.moves, m.replans, m.restarts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	return m, nil
}

// itoa32 formats an int32 for annotations.
func itoa32(n int32) string { return strconv.FormatInt(int64(n), 10) }

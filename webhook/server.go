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
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/election"
	"github.com/vk8s-io/vk8s/federation"
	"github.com/vk8s-io/vk8s/promreg"
	"github.com/vk8s-io/vk8s/webhook/certs"
)

// Defaults of Config.
const (
	DefaultConfigurationName = "vk8s-webhook"
	DefaultPort              = 9443
	DefaultTimeout           = 5 * time.Second
	DefaultResyncInterval    = time.Minute
	// DefaultCASecret is the Secret that keeps the self-managed CA of every replica.
	DefaultCASecret = "vk8s-webhook-ca"
)

// The leader election Lease of the federation controllers and its duration
// (controller-runtime's default).
const (
	leaseName     = "vk8s-webhook"
	leaseDuration = 15 * time.Second
)

// ConfigurationsMode says who makes the webhook configurations and who writes the CA bundle
// into them.
type ConfigurationsMode string

// The modes of Config.Configurations.
const (
	// ConfigurationsRegister: the process creates and keeps its MutatingWebhookConfiguration,
	// ValidatingWebhookConfiguration, ValidatingAdmissionPolicy and binding (Configurations,
	// KindPolicy), with the CA bundle it serves: a webhook run without the chart (the lab).
	ConfigurationsRegister ConfigurationsMode = "register"
	// ConfigurationsInjectCA: someone else makes them (the chart); the process writes its CA
	// bundle into the two webhook configurations and keeps it there.
	ConfigurationsInjectCA ConfigurationsMode = "inject-ca"
	// ConfigurationsNone: the process leaves them alone; someone else writes the bundle of
	// the certificates it serves from CertDir (cert-manager's CA injector).
	ConfigurationsNone ConfigurationsMode = "none"
)

// ConfigurationsModes lists the valid values of Config.Configurations.
var ConfigurationsModes = []ConfigurationsMode{ConfigurationsRegister, ConfigurationsInjectCA, ConfigurationsNone}

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
	// required to register configurations or to name the self-managed certificate.
	URL     string
	Service *ServiceReference
	// Configurations says what the process does with its webhook configurations, both
	// named ConfigurationName (it touches no other). Empty: ConfigurationsRegister.
	Configurations ConfigurationsMode
	// ConfigurationName names both configurations. Empty: DefaultConfigurationName.
	ConfigurationName string
	// Timeout is the configurations' timeoutSeconds. Zero: DefaultTimeout.
	Timeout time.Duration
	// ResyncInterval is how often the configurations are checked and repaired. Zero:
	// DefaultResyncInterval.
	ResyncInterval time.Duration

	// CertDir, when set, holds tls.crt and tls.key, reloaded when they change (cert-manager
	// mode); CAFile is then the CA bundle written into the configurations (unless
	// ConfigurationsNone). Empty: a
	// self-managed CA (package certs) kept in the Secret CASecret, which every replica
	// shares (empty: DefaultCASecret in LeaderElectionNamespace), with CALifetime,
	// CertLifetime and CAPropagationDelay (zero: the package's defaults).
	CertDir            string
	CAFile             string
	CASecret           types.NamespacedName
	CALifetime         time.Duration
	CertLifetime       time.Duration
	CAPropagationDelay time.Duration

	// MetricsAddr serves Prometheus metrics ("0" or empty: off); HealthAddr /healthz and
	// /readyz ("0" or empty: off).
	MetricsAddr string
	HealthAddr  string
	// Profiling also serves Go's profiles (net/http/pprof) under /debug/pprof/ on
	// MetricsAddr, as Kubernetes' own components do with --profiling.
	Profiling bool
	// MetricsRegisterer receives the webhook's metrics. Nil: controller-runtime's registry.
	MetricsRegisterer prometheus.Registerer
	// LeaderElection makes replicas elect one that runs the federation controllers
	// (Lease LeaderElectionNamespace/vk8s-webhook); every replica serves admission and
	// keeps the webhook configurations. LeaderElectionNamespace empty: vk8s-system.
	LeaderElection          bool
	LeaderElectionNamespace string

	// Options are the installation's settings that admission and the federation
	// controllers share: the shared namespace, the default flavor, the reservations' TTL
	// and the name of the process's controllers.
	federation.Options
	// StrictReplicas rejects a spec.replicas that is not a multiple of the site count
	// instead of rounding it up.
	StrictReplicas bool
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
	cfg.Configurations = cmp.Or(cfg.Configurations, ConfigurationsRegister)
	cfg.Default() // federation.Options' defaults
	cfg.MetricsAddr = cmp.Or(cfg.MetricsAddr, "0")
	cfg.HealthAddr = cmp.Or(cfg.HealthAddr, "0")
	cfg.LeaderElectionNamespace = cmp.Or(cfg.LeaderElectionNamespace, "vk8s-system")
	cfg.CASecret.Namespace = cmp.Or(cfg.CASecret.Namespace, cfg.LeaderElectionNamespace)
	cfg.CASecret.Name = cmp.Or(cfg.CASecret.Name, DefaultCASecret)
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
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
	if !slices.Contains(ConfigurationsModes, cfg.Configurations) {
		return fmt.Errorf("webhook: configurations %q: choose one of %v", cfg.Configurations, ConfigurationsModes)
	}
	if cfg.URL == "" && cfg.Service == nil && (cfg.Configurations == ConfigurationsRegister || cfg.CertDir == "") {
		return errors.New("webhook: set a URL or a Service: the webhook configurations and the self-managed certificate name it")
	}
	if cfg.CertDir == "" && cfg.CAFile != "" {
		return errors.New("webhook: a CA file goes with a certificate folder")
	}
	if cfg.CertDir == "" && cfg.Configurations == ConfigurationsNone {
		return errors.New("webhook: leaving the configurations alone needs certificates from a folder: " +
			"nobody else knows the self-managed CA; register the configurations or inject the CA into them")
	}
	if cfg.CertDir != "" && cfg.Configurations != ConfigurationsNone && cfg.CAFile == "" {
		return errors.New("webhook: writing the CA bundle into the configurations with certificates from a folder needs the CA file that signed them " +
			"(or leave the configurations alone when cert-manager injects it)")
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

// Host RBAC of the webhook process (make generate collects these markers into the
// chart's ClusterRole and Roles; namespace vk8s-system stands for the release namespace):
// the leader election Lease (create cannot be limited by name) and its Events.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;update,resourceNames=vk8s-webhook,namespace=vk8s-system
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=create,namespace=vk8s-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=vk8s-system

// Run serves admission until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.cfg
	hostScheme, err := scheme.New()
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
		clientset, err := kubernetes.NewForConfig(cfg.Host)
		if err != nil {
			return fmt.Errorf("webhook: host client: %w", err)
		}
		authority, err = certs.New(certs.Config{
			DNSNames: dns, IPAddresses: ips,
			CALifetime: cfg.CALifetime, CertLifetime: cfg.CertLifetime, PropagationDelay: cfg.CAPropagationDelay,
			Store:          &certs.SecretStore{Secrets: clientset.CoreV1(), Namespace: cfg.CASecret.Namespace, Name: cfg.CASecret.Name},
			ReloadInterval: cfg.ResyncInterval,
			Publish:        reg.publish,
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
	// The process reads only its own configurations, so it lists and watches them by name:
	// RBAC can then limit every verb on them to that name.
	ownName := cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", cfg.ConfigurationName)}
	if cfg.LeaderElection {
		// After an outage of every replica, the elector would wait out a Lease nobody
		// renews any more; its holder is cleared first (package election).
		election.Prepare(ctx, cfg.Host, cfg.LeaderElectionNamespace, leaseName, leaseDuration, loggerOr(cfg.Logger))
	}
	mgr, err := ctrl.NewManager(cfg.Host, ctrl.Options{
		Scheme:                  hostScheme,
		Logger:                  cfg.Logger,
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr, ExtraHandlers: promreg.Profiling(cfg.Profiling)},
		HealthProbeBindAddress:  cfg.HealthAddr,
		GracefulShutdownTimeout: ptr.To(10 * time.Second),
		LeaderElection:          cfg.LeaderElection,
		LeaderElectionID:        leaseName,
		LeaderElectionNamespace: cfg.LeaderElectionNamespace,
		LeaseDuration:           ptr.To(leaseDuration),
		// A replica that stops hands the Lease over at once.
		LeaderElectionReleaseOnCancel: true,
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: cfg.BindAddress, Port: cfg.Port, CertDir: cfg.CertDir, TLSOpts: tlsOpts,
		}),
		Cache: cache.Options{
			DefaultTransform: strip,
			ByObject: map[client.Object]cache.ByObject{
				// Only what vk8s admitted, and only virtual nodes.
				&corev1.Pod{}:  {Label: labels.NewSelector().Add(*vk8sSite)},
				&corev1.Node{}: {Label: labels.NewSelector().Add(*vk8sSite)},
				&admissionregistrationv1.MutatingWebhookConfiguration{}:     ownName,
				&admissionregistrationv1.ValidatingWebhookConfiguration{}:   ownName,
				&admissionregistrationv1.ValidatingAdmissionPolicy{}:        ownName,
				&admissionregistrationv1.ValidatingAdmissionPolicyBinding{}: ownName,
			},
		},
	})
	if err != nil {
		return fmt.Errorf("webhook manager: %w", err)
	}
	state, err := federation.New(federation.Config{
		Options: cfg.Options, Cache: mgr.GetCache(), API: countedReader{Reader: mgr.GetAPIReader(), scheme: hostScheme, reads: m.apiReads}, Client: mgr.GetClient(),
		Recorder: mgr.GetEventRecorder(cfg.Name), MetricsRegisterer: registry, TracerProvider: cfg.TracerProvider,
	})
	if err != nil {
		return err
	}
	if err := state.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	a := newAdmitter(cfg, state, hostScheme, m)
	if err := a.setupWithManager(ctx, mgr); err != nil {
		return err
	}
	reg.client, reg.log = mgr.GetClient(), mgr.GetLogger().WithName("configurations")
	// Every replica keeps the configurations and its serving certificate, leader or not.
	if err := mgr.Add(everyReplica(func(ctx context.Context) error {
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

// everyReplica is a manager.Runnable that runs on every replica, not only on the leader.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is false: see everyReplica.
func (everyReplica) NeedLeaderElection() bool { return false }

func loggerOr(l logr.Logger) logr.Logger {
	if l.GetSink() == nil {
		return ctrl.Log.WithName(federation.DefaultName)
	}
	return l
}

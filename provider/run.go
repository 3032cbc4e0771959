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

package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"github.com/vk8s-io/vk8s/vnode"

	"github.com/vk8s-io/vk8s/translate"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/vk8s-io/vk8s/api/scheme"
	"github.com/vk8s-io/vk8s/election"
	"github.com/vk8s-io/vk8s/kubeletapi"
	"github.com/vk8s-io/vk8s/promreg"
	"github.com/vk8s-io/vk8s/shard"
	"github.com/vk8s-io/vk8s/siteadm"
	"github.com/vk8s-io/vk8s/sitereg"
	"github.com/vk8s-io/vk8s/storage"
	"github.com/vk8s-io/vk8s/tenancy"
)

// Config configures the whole provider process.
type Config struct {
	// Host is the client configuration of the host cluster.
	Host *rest.Config
	// Endpoint is the kubelet API advertised in every virtual node.
	Endpoint translate.Endpoint
	// MetricsAddr serves Prometheus metrics ("0": off).
	MetricsAddr string
	// Profiling also serves Go's profiles (net/http/pprof) under /debug/pprof/ on
	// MetricsAddr, as Kubernetes' own components do with --profiling.
	Profiling bool
	// HealthAddr serves /healthz and /readyz ("0" or empty: off).
	HealthAddr string
	// Registry configures the site registry.
	Registry sitereg.Config
	// Logger is the provider's logger. Zero: controller-runtime's global logger.
	Logger logr.Logger
	// Tenant names this host installation; site namespaces are <tenant>-<namespace>.
	// Empty: DefaultTenant.
	Tenant string
	// HostName names this host in the tenant claim on each site, which a second host of
	// the same tenant sees in its refusal (sitereg.Claim). Empty: the host's API server
	// address.
	HostName string
	// PodWorkers is the number of workers of each of virtual-kubelet's pod queues. Zero:
	// DefaultPodWorkers.
	PodWorkers int
	// SweepInterval is how often site clusters are checked for site pods whose host pod
	// is gone. Zero: 1m.
	SweepInterval time.Duration
	// MetricsRegisterer receives the provider's metrics. Nil: controller-runtime's registry.
	MetricsRegisterer prometheus.Registerer
	// TracerProvider makes the provider's spans of pod creations. Nil: OpenTelemetry's
	// global one (which the site calls' spans and virtual-kubelet's use too).
	TracerProvider trace.TracerProvider
	// Kubelet configures the kubelet API endpoint that serves every virtual node.
	Kubelet KubeletAPI
	// LeaderElection makes replicas of the provider elect one that runs the virtual nodes
	// and pods (Lease LeaderElectionNamespace/vk8s-provider); the others wait.
	LeaderElection bool
	// LeaderElectionNamespace holds the leader election Lease. Empty: vk8s-system.
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election: a standby replica
	// takes over at most LeaseDuration+RetryPeriod after the leader died without releasing
	// the Lease. Zero: DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// VirtualNodeGrace is how long a virtual node that no longer stands for a node of its
	// Site (the Site was edited or deleted, or the site node went) stays, NotReady and
	// unschedulable, with its pods, before it is deleted. Zero: vnode.DefaultGrace (5m);
	// negative: at once.
	VirtualNodeGrace time.Duration
	// TenancyCleanupTimeout is how long a deleted VirtualKubernetes waits for sites that
	// do not answer before its finalizer goes anyway. Zero: tenancy.DefaultCleanupTimeout.
	TenancyCleanupTimeout time.Duration
	// TokenRenewInterval is how often the site tokens that `vk8s site join` issued are
	// looked at, and renewed once half of their lifetime has passed (siteadm.Renewer), in
	// the Secrets of LeaderElectionNamespace. Zero: siteadm.DefaultRenewInterval.
	TokenRenewInterval time.Duration
	// Shard shares the Sites among the replicas (package shard): every replica acts for
	// the Sites it owns (their connections, virtual nodes, pods and copies), and the
	// leader elected through LeaderElection runs only what is host-wide (the storage
	// provisioner, the site token renewer, the tenancy controllers). It requires
	// LeaderElection.
	Shard bool
	// Shards is the number of shards the Sites are hashed into; every replica must use
	// the same. Zero: shard.DefaultShards.
	Shards int
	// ShardIdentity names this replica among the members. Empty: shard.DefaultIdentity
	// (the host name, a pod's name, with a random suffix).
	ShardIdentity string
	// SkipNameValidation lets a process run the provider more than once (tests):
	// controller-runtime refuses a controller name it has seen before.
	SkipNameValidation bool
}

// KubeletAPI configures the provider's kubelet API endpoint (package kubeletapi).
type KubeletAPI struct {
	// Disabled turns the endpoint off; virtual nodes still advertise Endpoint.
	Disabled bool
	// BindAddress is the IP the endpoint listens on. Empty: every address.
	BindAddress string
	// NodePorts, when set, gives each virtual node a port of its own from this range,
	// so that node-level requests (stats, metrics) say which node they are for.
	NodePorts kubeletapi.PortRange
	// ClientCAFile holds the CA of the client certificates the host's API server
	// presents (--kubelet-client-certificate); empty: bearer tokens only.
	ClientCAFile string
	// CertFile and KeyFile are a serving certificate; empty: one from the host's
	// kubernetes.io/kubelet-serving signer through a CertificateSigningRequest.
	CertFile, KeyFile string
	// CertDir keeps the signed certificate and its key across restarts. Empty: memory.
	CertDir string
	// DisableCSRApproval leaves the provider's CertificateSigningRequest to an operator
	// (kubectl certificate approve).
	DisableCSRApproval bool
	// SelfSigned serves a self-signed certificate (tests that do not go through the host).
	SelfSigned bool
}

// withRateLimits returns a copy of cfg with vnode.DefaultHostQPS and DefaultHostBurst when it
// sets no rate limits of its own.
func withRateLimits(cfg *rest.Config) *rest.Config {
	return withRateLimitsOf(cfg, vnode.DefaultHostQPS, vnode.DefaultHostBurst)
}

// withRateLimitsOf returns a copy of cfg with qps and burst when it sets no rate limits of
// its own.
func withRateLimitsOf(cfg *rest.Config, qps float32, burst int) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = qps, burst
	}
	return cfg
}

// Client rate limits of the pods' status writes towards the host when the configuration
// sets none. The provider writes the status of every pod of every virtual node, as each
// node's kubelet would, and a kubelet allows itself 50 requests a second (kubeAPIQPS) for
// its own pods: a pod starting writes three statuses (Pending, scheduled on the site,
// Running), so 100 pods starting at once are 300 writes, and 1,000 are 3,000. The host's
// API server protects itself (API Priority and Fairness); this limit only stops a runaway.
const (
	PodStatusQPS   = 1000
	PodStatusBurst = 2000
)

// DefaultPodWorkers is the number of workers of each of virtual-kubelet's pod queues
// (its own default is 10). A create or update only queues the pod for its site cluster's
// workers, but a status worker waits for the host to accept the write, so the statuses
// written a second are the workers over the host's write time: 10 workers at the 200 ms
// a write took in the lab while 1,000 pods started were 50 a second, and the statuses
// waited in the queue for 4 to 5 s at p50 (docs/performance.md, "Status writes").
const DefaultPodWorkers = 50

// leaseName is the provider's leader election Lease.
const leaseName = "vk8s-provider"

// DefaultTenant is the tenant of a provider configured without one.
const DefaultTenant = "vk8s"

// Defaults of the leader election: a standby replica takes over within 14 s of a leader
// that died (controller-runtime's defaults, 15 s, 10 s and 2 s, allow 17 s).
const (
	DefaultLeaseDuration = 12 * time.Second
	DefaultRenewDeadline = 8 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// defaults fills in the defaults of cfg; Run applies them once, and every part it builds
// reads them from there.
func (cfg *Config) defaults() {
	cfg.Tenant = cmp.Or(cfg.Tenant, DefaultTenant)
	if cfg.Logger.GetSink() == nil {
		// A zero logr.Logger drops everything: the parts that name theirs from it
		// (storage, the kubelet API, election) would be silent.
		cfg.Logger = ctrl.Log
	}
	cfg.MetricsAddr = cmp.Or(cfg.MetricsAddr, "0")
	cfg.HealthAddr = cmp.Or(cfg.HealthAddr, "0")
	cfg.LeaderElectionNamespace = cmp.Or(cfg.LeaderElectionNamespace, "vk8s-system")
	cfg.LeaseDuration = cmp.Or(cfg.LeaseDuration, DefaultLeaseDuration)
	cfg.RenewDeadline = cmp.Or(cfg.RenewDeadline, DefaultRenewDeadline)
	cfg.RetryPeriod = cmp.Or(cfg.RetryPeriod, DefaultRetryPeriod)
	if cfg.PodWorkers <= 0 {
		cfg.PodWorkers = DefaultPodWorkers
	}
}

// Host RBAC of the provider process (make generate collects these markers into the
// chart's ClusterRole and Roles; namespace vk8s-system stands for the release namespace):
// the leader election Lease, whose create cannot be limited by name; the host's identity
// (kube-system's UID, hostClaim); the VirtualKubernetes the mirror reads.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;update,resourceNames=vk8s-provider,namespace=vk8s-system
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=create,namespace=vk8s-system
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// +kubebuilder:rbac:groups=vk8s.io,resources=virtualkubernetes,verbs=get;list;watch

// Run runs the provider until ctx ends: the site registry, the virtual nodes and their pods,
// the kubelet API, and the tenancy controllers (VirtualSite status, VirtualKubernetes
// namespaces on the sites).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Host == nil {
		return errors.New("provider: host client configuration is required")
	}
	cfg.defaults()
	if err := translate.ValidTenant(cfg.Tenant); err != nil {
		return fmt.Errorf("provider: %w", err)
	}
	if cfg.Shard && !cfg.LeaderElection {
		return errors.New("provider: --shard needs --leader-elect: the host-wide work (storage, token renewal, tenancy) runs on one elected replica")
	}
	hostScheme, err := scheme.New()
	if err != nil {
		return err
	}
	// The manager's client writes every Site's status each heartbeat (1,000 Sites every
	// 30s: 33 a second), and the pod controller's client a status per pod change and an
	// Event per operation: client-go's default of 5 requests per second would queue them.
	hostCfg := withRateLimits(cfg.Host)
	if cfg.LeaderElection {
		// After an outage of every replica, the elector would wait out a Lease nobody
		// renews any more; its holder is cleared first (package election).
		election.Prepare(ctx, hostCfg, cfg.LeaderElectionNamespace, leaseName, cfg.LeaseDuration, cfg.Logger)
	}
	mgr, err := ctrl.NewManager(hostCfg, ctrl.Options{
		Scheme:                  hostScheme,
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr, ExtraHandlers: promreg.Profiling(cfg.Profiling)},
		HealthProbeBindAddress:  cfg.HealthAddr,
		GracefulShutdownTimeout: ptr.To(10 * time.Second),
		Controller:              config.Controller{SkipNameValidation: ptr.To(cfg.SkipNameValidation)},
		LeaderElection:          cfg.LeaderElection,
		LeaderElectionID:        leaseName,
		LeaderElectionNamespace: cfg.LeaderElectionNamespace,
		LeaseDuration:           &cfg.LeaseDuration,
		RenewDeadline:           &cfg.RenewDeadline,
		RetryPeriod:             &cfg.RetryPeriod,
		// A new leader takes over at once when the old one stops cleanly.
		LeaderElectionReleaseOnCancel: true,
		Logger:                        cfg.Logger,
		// As the pods' caches (newLifecycle): managedFields are never read from them.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
	})
	if err != nil {
		return fmt.Errorf("provider manager: %w", err)
	}
	if cfg.HealthAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
			return err
		}
	}
	host, err := kubernetes.NewForConfig(hostCfg)
	if err != nil {
		return err
	}
	claim, err := hostClaim(ctx, host, cfg)
	if err != nil {
		return err
	}
	regCfg := cfg.Registry
	regCfg.Claim = claim
	// perSite adds what acts for Sites: on the leader alone, or, with sharding, on every
	// replica for the Sites it owns.
	perSite := mgr
	var (
		sharder *shard.Sharder
		changes <-chan struct{}
	)
	if cfg.Shard {
		if sharder, err = newSharder(host, cfg); err != nil {
			return fmt.Errorf("provider: %w", err)
		}
		regCfg.Owns = sharder.Owns
		changes = sharder.Watch()
		perSite = shardedManager{mgr}
		// An error of the sharder (its member Lease not renewed in time: it stopped acting)
		// stops the process, as a leader that lost its election.
		if err := perSite.Add(manager.RunnableFunc(sharder.Run)); err != nil {
			return err
		}
		cfg.Logger.Info("Sharding the Sites among the replicas", "identity", sharder.Identity(), "shards", sharder.Shards())
	}
	reg, err := sitereg.New(regCfg)
	if err != nil {
		return err
	}
	if sharder != nil {
		if err := perSite.Add(manager.RunnableFunc(func(ctx context.Context) error {
			return followOwnership(ctx, sharder, changes, mgr.GetClient(), reg)
		})); err != nil {
			return err
		}
	}
	siteEvents := reg.Watch()
	podSiteEvents := reg.Watch()
	mirrorSiteEvents := reg.Watch()
	tenancySiteEvents := reg.Watch()
	if err := reg.SetupWithManager(ctx, perSite); err != nil {
		return fmt.Errorf("site registry: %w", err)
	}
	hostClient := mgr.GetClient()
	// The pods' status writes and their Events have clients of their own: on one client
	// (100 a second) with two Events per pod and everything else, 100 pods starting at once
	// waited p50 316 ms, p99 900 ms from Running on their site to the host accepting it
	// (docs/performance.md).
	status, err := kubernetes.NewForConfig(withRateLimitsOf(cfg.Host, PodStatusQPS, PodStatusBurst))
	if err != nil {
		return err
	}
	events, err := kubernetes.NewForConfig(hostCfg)
	if err != nil {
		return err
	}
	lifecycle, err := newLifecycle(podClients{host: host, status: status, events: events}, reg, podSiteEvents, cfg, hostScheme, mirrorConfig{
		siteEvents: mirrorSiteEvents,
		virtualKubernetesSites: func(ctx context.Context, namespace string) ([]string, bool, error) {
			var list vk8sv1.VirtualKubernetesList
			if err := hostClient.List(ctx, &list, client.InNamespace(namespace)); err != nil {
				return nil, false, err
			}
			if len(list.Items) == 0 {
				return nil, false, nil
			}
			return list.Items[0].Status.Sites, true, nil
		},
	})
	if err != nil {
		return err
	}
	if err := perSite.Add(lifecycle); err != nil {
		return err
	}
	if err := perSite.Add(lifecycle.mirror); err != nil {
		return err
	}
	// The site tokens that `vk8s site join` issued, renewed before they expire, in the
	// Secrets of the release namespace.
	if err := mgr.Add(&siteadm.Renewer{
		Host: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: cfg.LeaderElectionNamespace,
		Interval: cfg.TokenRenewInterval, Log: cfg.Logger.WithName("token-renewer"),
	}); err != nil {
		return err
	}
	// Claims in vK8s namespaces are Bound on the host, so the host scheduler places their
	// pods; the sites bind the copies.
	volumes := storage.New(storage.Config{Host: host, Log: cfg.Logger.WithName("storage"), MetricsRegisterer: cfg.MetricsRegisterer})
	if err := mgr.Add(volumes); err != nil {
		return err
	}
	nodesCfg := vnode.NodesConfig{Host: host, HeartbeatConfig: hostCfg, Registry: reg, SiteEvents: siteEvents, Endpoint: cfg.Endpoint, Grace: cfg.VirtualNodeGrace}
	if !cfg.Kubelet.Disabled {
		// TokenReviews and SubjectAccessReviews of the kubelet API have a client of their
		// own: metrics-server asks for every virtual node every 15 s, and reviews that wait
		// behind the pods' requests time out uncached and are asked again, which at 3,000
		// virtual nodes kept the shared client saturated.
		reviews, err := kubernetes.NewForConfig(hostCfg)
		if err != nil {
			return err
		}
		api, err := newKubeletAPI(cfg, host, reviews, lifecycle.pods)
		if err != nil {
			return err
		}
		if err := perSite.Add(manager.RunnableFunc(api.Run)); err != nil {
			return err
		}
		nodesCfg.Endpoints = api
	}
	nodes, err := vnode.NewNodes(nodesCfg)
	if err != nil {
		return err
	}
	if err := nodes.SetupWithManager(perSite); err != nil {
		return fmt.Errorf("virtual nodes: %w", err)
	}
	// VirtualSite status, and the namespaces and isolation NetworkPolicies of
	// VirtualKubernetes on the sites.
	ten, err := tenancy.New(tenancy.Config{
		Tenant:            cfg.Tenant,
		Sites:             tenancy.RegistrySites(reg),
		SiteEvents:        tenancySiteEvents,
		CleanupTimeout:    cfg.TenancyCleanupTimeout,
		MetricsRegisterer: cfg.MetricsRegisterer,
	})
	if err != nil {
		return err
	}
	if err := ten.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("tenancy: %w", err)
	}
	return mgr.Start(ctx)
}

// hostClaim is this host's tenant claim on the sites: the tenant, and the UID of the
// host's kube-system namespace as the host's identity.
func hostClaim(ctx context.Context, host kubernetes.Interface, cfg Config) (*sitereg.Claim, error) {
	ns, err := host.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the host's identity (namespace %s): %w", metav1.NamespaceSystem, err)
	}
	return &sitereg.Claim{Tenant: cfg.Tenant, HostID: string(ns.UID), HostName: cmp.Or(cfg.HostName, cfg.Host.Host)}, nil
}

// newKubeletAPI builds the kubelet API endpoint of all virtual nodes; reviews is the host
// client of its authentication and authorization.
func newKubeletAPI(cfg Config, host, reviews kubernetes.Interface, resolver kubeletapi.Resolver) (*kubeletapi.Server, error) {
	k := cfg.Kubelet
	auth := kubeletapi.AuthConfig{Host: reviews}
	if k.ClientCAFile != "" {
		ca, err := os.ReadFile(k.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("kubelet API client CA: %w", err)
		}
		auth.ClientCA = ca
	}
	tlsCfg := kubeletapi.TLSConfig{CertFile: k.CertFile, KeyFile: k.KeyFile, SelfSigned: k.SelfSigned}
	if k.CertFile == "" && !k.SelfSigned {
		csr := &kubeletapi.CSRConfig{Host: host, Name: "vk8s-provider", CertDir: k.CertDir, DisableApproval: k.DisableCSRApproval}
		if ip := net.ParseIP(cfg.Endpoint.Address); ip != nil {
			csr.IPs = []net.IP{ip}
		} else {
			csr.DNSNames = []string{cfg.Endpoint.Address}
		}
		tlsCfg.CSR = csr
	}
	if k.SelfSigned {
		tlsCfg.SelfSignedHosts = []string{cfg.Endpoint.Address}
	}
	api, err := kubeletapi.New(kubeletapi.Config{
		Resolver:          resolver,
		Address:           net.JoinHostPort(k.BindAddress, strconv.Itoa(int(cfg.Endpoint.Port))),
		NodePorts:         k.NodePorts,
		Auth:              auth,
		TLS:               tlsCfg,
		Logger:            cfg.Logger.WithName("kubelet-api"),
		MetricsRegisterer: cfg.MetricsRegisterer,
	})
	if err != nil {
		return nil, fmt.Errorf("kubelet API: %w", err)
	}
	return api, nil
}

// Sharding's Leases, in the release namespace: a member Lease per replica and one per
// shard (package shard).
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;delete,namespace=vk8s-system

// everyReplica runs a runnable on every replica, elected or not: with sharding, what acts
// for a Site follows the Site's owner (package shard), not the leader election.
type everyReplica struct{ manager.Runnable }

// NeedLeaderElection is false: see everyReplica.
func (everyReplica) NeedLeaderElection() bool { return false }

// shardedManager adds every runnable (controllers included, which builders add through
// it) as everyReplica.
type shardedManager struct{ ctrl.Manager }

func (m shardedManager) Add(r manager.Runnable) error { return m.Manager.Add(everyReplica{r}) }

// newSharder makes this replica's part in the sharding of the Sites.
func newSharder(host kubernetes.Interface, cfg Config) (*shard.Sharder, error) {
	return shard.New(shard.Config{
		Client: host, Namespace: cfg.LeaderElectionNamespace, Identity: cfg.ShardIdentity, Shards: cfg.Shards,
		Log: cfg.Logger.WithName("shard"), MetricsRegisterer: cfg.MetricsRegisterer,
	})
}

// followOwnership tells the registry of every Site whose owner changed, each time the
// shards this replica acts for change; the registry lets go of or takes on the Site, and
// its watchers (virtual nodes, pods, mirror) follow. It runs until ctx ends.
func followOwnership(ctx context.Context, sh *shard.Sharder, changes <-chan struct{}, sites client.Reader, reg *sitereg.Registry) error {
	log := ctrl.LoggerFrom(ctx).WithName("shard")
	owned := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		}
		var list vk8sv1.SiteList
		if err := sites.List(ctx, &list); err != nil {
			log.Error(err, "List Sites failed; their owners are looked at with the next change")
			continue
		}
		var moved []string
		now := map[string]bool{}
		for _, s := range list.Items {
			now[s.Name] = sh.Owns(s.Name)
			if now[s.Name] != owned[s.Name] {
				moved = append(moved, s.Name)
			}
		}
		owned = now
		if len(moved) > 0 {
			log.Info("Sites changed owner", "sites", len(moved), "shards", sh.Owned())
			reg.OwnershipChanged(moved...)
		}
	}
}

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
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vk8s-io/vk8s/kubeletapi"
	"github.com/vk8s-io/vk8s/provider"
)

func newProviderCommand() *cobra.Command {
	var (
		kubeconfig string
		cfg        provider.Config
		port       int32
		nodePorts  string
	)
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Run the virtual-kubelet provider: every Site as virtual nodes in the host cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, err := hostConfig(kubeconfig)
			if err != nil {
				return err
			}
			cfg.Host = host
			cfg.Endpoint.Port = port
			if nodePorts != "" {
				if cfg.Kubelet.NodePorts, err = kubeletapi.ParsePortRange(nodePorts); err != nil {
					return fmt.Errorf("--kubelet-node-ports: %w", err)
				}
			}
			stopTracing, err := setupTracing(cmd.Context(), "vk8s-provider")
			if err != nil {
				return err
			}
			defer stopTracing()
			return provider.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the host cluster (default: in-cluster, or $KUBECONFIG)")
	f.StringVar(&cfg.Endpoint.Address, "node-address", "", "address of this process that virtual nodes advertise for their kubelet API (required)")
	_ = cmd.MarkFlagRequired("node-address")
	f.Int32Var(&port, "kubelet-port", 10250, "port of the kubelet API that virtual nodes advertise")
	f.StringVar(&nodePorts, "kubelet-node-ports", "", "range of ports (e.g. 20000-23999) giving each virtual node its own kubelet API port; empty: all share --kubelet-port")
	f.StringVar(&cfg.Kubelet.BindAddress, "kubelet-bind-address", "", "IP the kubelet API listens on (default: every address)")
	f.StringVar(&cfg.Kubelet.ClientCAFile, "kubelet-client-ca-file", "", "CA of the client certificate the host's API server presents to kubelets (--kubelet-client-certificate); empty: bearer tokens only")
	f.StringVar(&cfg.Kubelet.CertFile, "kubelet-tls-cert-file", "", "serving certificate of the kubelet API (default: one from the host's kubelet-serving signer)")
	f.StringVar(&cfg.Kubelet.KeyFile, "kubelet-tls-key-file", "", "key of --kubelet-tls-cert-file")
	f.StringVar(&cfg.Kubelet.CertDir, "kubelet-cert-dir", "", "folder keeping the signed serving certificate across restarts (default: memory)")
	f.BoolVar(&cfg.Kubelet.DisableCSRApproval, "kubelet-disable-csr-approval", false, "do not approve the provider's own CertificateSigningRequest; wait for an operator")
	f.BoolVar(&cfg.Kubelet.Disabled, "kubelet-disabled", false, "do not serve the kubelet API (logs, exec, metrics through the host do not work)")
	f.BoolVar(&cfg.LeaderElection, "leader-elect", true, "elect one active replica (Lease vk8s-provider in --leader-elect-namespace); false only for a single replica that must not wait for a Lease")
	f.StringVar(&cfg.LeaderElectionNamespace, "leader-elect-namespace", "vk8s-system", "namespace of the leader election Lease, and of the site kubeconfig Secrets whose tokens (vk8s site join) the provider renews")
	f.DurationVar(&cfg.LeaseDuration, "leader-elect-lease-duration", provider.DefaultLeaseDuration, "how long a standby waits after the leader's last renewal before it takes over")
	f.DurationVar(&cfg.RenewDeadline, "leader-elect-renew-deadline", provider.DefaultRenewDeadline, "how long the leader keeps trying to renew before it steps down")
	f.DurationVar(&cfg.RetryPeriod, "leader-elect-retry-period", provider.DefaultRetryPeriod, "how often replicas try to acquire or renew the Lease")
	f.BoolVar(&cfg.Shard, "shard", false, "share the Sites among every replica through Leases in --leader-elect-namespace (each Site acted for by one live replica); the elected replica runs only the host-wide work (storage, token renewal, tenancy)")
	f.IntVar(&cfg.Shards, "shards", 0, "number of shards the Sites are hashed into with --shard, the same on every replica (default 64)")
	f.StringVar(&cfg.ShardIdentity, "shard-identity", "", "name of this replica among the members with --shard (default: the host name with a random suffix)")
	f.StringVar(&cfg.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 turns it off")
	f.BoolVar(&cfg.Profiling, "profiling", false, "also serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics address")
	f.StringVar(&cfg.HealthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 turns them off")
	f.StringVar(&cfg.Tenant, "tenant", provider.DefaultTenant, "name of this host installation; pods run on sites in namespaces <tenant>-<namespace>")
	f.StringVar(&cfg.HostName, "host-name", "", "name of this host in its tenant claim on each site, shown to a second host of the same tenant (default: the host's API server address)")
	f.IntVar(&cfg.PodWorkers, "pod-workers", 0, fmt.Sprintf("workers of each of virtual-kubelet's pod queues (pods to create or update on the sites, to delete, statuses to write to the host; default %d)", provider.DefaultPodWorkers))
	f.DurationVar(&cfg.Registry.HeartbeatInterval, "site-heartbeat-interval", 0, "how often each site is probed and its status written (default 30s)")
	f.DurationVar(&cfg.VirtualNodeGrace, "virtual-node-grace-period", 0, "how long a virtual node that no longer stands for a node of its Site (the Site was edited or deleted, or the site node went) stays, NotReady and unschedulable, with its pods, before it is deleted; undoing the change within it brings the node back (default 5m)")
	f.DurationVar(&cfg.TenancyCleanupTimeout, "tenancy-cleanup-timeout", 0, "how long a deleted VirtualKubernetes waits for sites that do not answer before its finalizer goes anyway (default 5m)")
	return cmd
}

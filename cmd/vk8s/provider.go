package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vk8s-io/vk8s/provider"
)

func newProviderCommand() *cobra.Command {
	var (
		kubeconfig string
		cfg        provider.Config
		port       int32
	)
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Run the virtual-kubelet provider: every Site as virtual nodes in the host cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			host, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
			if err != nil {
				return fmt.Errorf("host cluster configuration: %w", err)
			}
			cfg.Host = host
			cfg.Endpoint.Port = port
			return provider.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the host cluster (default: in-cluster, or $KUBECONFIG)")
	f.StringVar(&cfg.Endpoint.Address, "node-address", "", "address of this process that virtual nodes advertise for their kubelet API (required)")
	_ = cmd.MarkFlagRequired("node-address")
	f.Int32Var(&port, "kubelet-port", 10250, "port of the kubelet API that virtual nodes advertise")
	f.StringVar(&cfg.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 turns it off")
	f.StringVar(&cfg.HealthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 turns them off")
	f.StringVar(&cfg.Tenant, "tenant", provider.DefaultTenant, "name of this host installation; pods run on sites in namespaces <tenant>-<namespace>")
	f.DurationVar(&cfg.Registry.HeartbeatInterval, "site-heartbeat-interval", 0, "how often each site is probed and its status written (default 30s)")
	return cmd
}

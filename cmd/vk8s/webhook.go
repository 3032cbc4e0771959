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
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk8s-io/vk8s/federation"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/webhook"
	"github.com/vk8s-io/vk8s/webhook/certs"
)

func newWebhookCommand() *cobra.Command {
	var (
		kubeconfig  string
		service     string
		servicePort int32
		caSecret    string
		cfg         webhook.Config
	)
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Run the admission webhook: per-site replicas, placement, overrides and flavors",
		Long: `Run the admission webhook against the host cluster. It serves HTTPS with a CA it creates
and rotates itself, kept in a Secret that every replica shares (or certificates from --cert-dir), and registers its own
MutatingWebhookConfiguration and ValidatingWebhookConfiguration, which reach vK8s namespaces
only (--configurations=register; the chart makes them, and the process writes its CA bundle
into them with inject-ca, or leaves that to cert-manager with none). The API server calls it at --url (e.g. https://127.0.0.1:9443, for a webhook outside the
cluster) or through --service (namespace/name, in the cluster).`,
		Example: `  vk8s webhook --kubeconfig host.kubeconfig --url https://127.0.0.1:9443 --bind-address 127.0.0.1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, err := hostConfig(kubeconfig)
			if err != nil {
				return err
			}
			cfg.Host = host
			if service != "" {
				ns, name, ok := strings.Cut(service, "/")
				if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
					return fmt.Errorf("--service %q: write <namespace>/<name>", service)
				}
				cfg.Service = &webhook.ServiceReference{Namespace: ns, Name: name, Port: servicePort}
			}
			if caSecret != "" {
				ns, name, ok := strings.Cut(caSecret, "/")
				if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
					return fmt.Errorf("--ca-secret %q: write <namespace>/<name>", caSecret)
				}
				cfg.CASecret = types.NamespacedName{Namespace: ns, Name: name}
			}
			s, err := webhook.New(cfg)
			if err != nil {
				return err
			}
			stopTracing, err := setupTracing(cmd.Context(), "vk8s-webhook")
			if err != nil {
				return err
			}
			defer stopTracing()
			return s.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the host cluster (default: in-cluster, or $KUBECONFIG)")
	f.StringVar(&cfg.URL, "url", "", "base URL the API server calls the webhook at, e.g. https://127.0.0.1:9443 (one of --url and --service)")
	f.StringVar(&service, "service", "", "namespace/name of the Service the API server calls the webhook through (one of --url and --service)")
	f.Int32Var(&servicePort, "service-port", 443, "port of --service")
	f.StringVar(&cfg.BindAddress, "bind-address", "", "address the HTTPS server listens on (default: every address)")
	f.IntVar(&cfg.Port, "port", 0, fmt.Sprintf("port the HTTPS server listens on (default: the port of --url, else %d)", webhook.DefaultPort))
	f.BoolVar(&cfg.LeaderElection, "leader-elect", true, "elect one replica to run the federation controllers (Lease vk8s-webhook in --leader-elect-namespace); every replica serves admission")
	f.StringVar(&cfg.LeaderElectionNamespace, "leader-elect-namespace", "vk8s-system", "namespace of the leader election Lease")
	f.StringVar((*string)(&cfg.Configurations), "configurations", string(webhook.ConfigurationsRegister),
		"what to do with the webhook configurations named --configuration-name: register (create and keep them, with the CA bundle), "+
			"inject-ca (write the CA bundle into those the chart made, and keep it there) or none (cert-manager's CA injector writes it)")
	f.StringVar(&cfg.ConfigurationName, "configuration-name", webhook.DefaultConfigurationName, "name of both webhook configurations")
	f.DurationVar(&cfg.Timeout, "timeout", webhook.DefaultTimeout, "timeout the API server gives each call (1s to 30s)")
	f.StringVar(&cfg.CertDir, "cert-dir", "", "folder with tls.crt and tls.key, reloaded when they change (e.g. from cert-manager); default: a self-managed CA")
	f.StringVar(&cfg.CAFile, "ca-file", "", "with --cert-dir: the CA bundle written into the webhook configurations (not needed with --configurations=none)")
	f.StringVar(&caSecret, "ca-secret", "", fmt.Sprintf("namespace/name of the Secret that keeps the self-managed CA, shared by every replica (default: %s in --leader-elect-namespace)", webhook.DefaultCASecret))
	f.DurationVar(&cfg.CALifetime, "ca-lifetime", certs.DefaultCALifetime, "lifetime of the self-managed CA; renewed when a third remains")
	f.DurationVar(&cfg.CertLifetime, "cert-lifetime", certs.DefaultCertLifetime, "lifetime of the self-managed serving certificate; renewed when a third remains")
	f.DurationVar(&cfg.CAPropagationDelay, "ca-propagation-delay", certs.DefaultPropagationDelay,
		"how long a new CA is in the configurations before the certificate it signs is served")
	f.StringVar(&cfg.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 turns it off")
	f.BoolVar(&cfg.Profiling, "profiling", false, "also serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics address")
	f.StringVar(&cfg.HealthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 turns them off")
	f.StringVar(&cfg.SharedNamespace, "shared-namespace", overrides.DefaultSharedNamespace, "namespace whose VirtualSites every workload may reference")
	f.StringVar(&cfg.DefaultWorkloadFlavor, "default-workload-flavor", overrides.DefaultWorkloadFlavor, "WorkloadFlavor of workloads without ves.io/workload-flavor")
	f.BoolVar(&cfg.StrictReplicas, "strict-replicas", false, "reject a total spec.replicas that is not a multiple of the site count instead of rounding it up")
	f.DurationVar(&cfg.ReservationTTL, "reservation-ttl", federation.DefaultReservationTTL, "how long a placed pod counts before it shows up in the webhook's cache")
	return cmd
}

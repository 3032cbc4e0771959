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
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/plugin"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/siteadm"
)

func newSiteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "site",
		Short: "Join sites to the host, remove them, list them",
		Long: `Join a site cluster to the host, remove it, or list every Site.

The host is reached as kubectl does (--kubeconfig, else $KUBECONFIG, else ~/.kube/config;
--context); the site with its administrator's kubeconfig (--site-kubeconfig,
--site-context). docs/install.md#join-a-site says what join makes on either side.`,
	}
	cmd.AddCommand(newSiteJoinCommand(), newSiteLeaveCommand(), plugin.NewSitesCommand("list"))
	return cmd
}

// clusterFlags reach one cluster: a kubeconfig file (else the default loading rules) and
// a context.
type clusterFlags struct {
	kubeconfig, context string
}

func (f *clusterFlags) add(fs *pflag.FlagSet, prefix, what string) {
	fs.StringVar(&f.kubeconfig, prefix+"kubeconfig", "", "kubeconfig of the "+what)
	fs.StringVar(&f.context, prefix+"context", "", "context of that kubeconfig (default: its current context)")
}

// config loads the cluster's configuration; explicit says the file must be given.
func (f *clusterFlags) config(explicit bool, flag string) (*rest.Config, error) {
	if explicit && f.kubeconfig == "" {
		return nil, fmt.Errorf("--%s is required: the kubeconfig of the site's administrator", flag)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	if explicit {
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: f.kubeconfig}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return cfg, nil
}

// hostClient is a client of the host with vk8s's Scheme.
func (f *clusterFlags) hostClient() (client.Client, error) {
	cfg, err := f.config(false, "kubeconfig")
	if err != nil {
		return nil, err
	}
	return scheme.NewClient(cfg)
}

// parseLabels reads k=v,k2=v2.
func parseLabels(flag, s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: %q is not key=value", flag, s, kv)
		}
		out[k] = v
	}
	return out, nil
}

func newSiteJoinCommand() *cobra.Command {
	var (
		host, site                      clusterFlags
		cfg                             siteadm.JoinConfig
		typ, mode, labels, nodeSelector string
	)
	cmd := &cobra.Command{
		Use:   "join NAME --site-kubeconfig FILE",
		Short: "Join a site cluster to the host as Site NAME",
		Long: `Join the cluster that --site-kubeconfig (its administrator's) reaches to the host as Site NAME.

On the site: a ServiceAccount vk8s-system/vk8s-<tenant>-NAME, a ClusterRole with exactly the
rights vk8s uses there, and their ClusterRoleBinding. In the host: Secret
vk8s-system/NAME-kubeconfig, a kubeconfig with a bound token of that ServiceAccount (which
the provider renews), and the Site. Join checks first that the name is free, that the site
answers and takes the credentials, and that no other host serves the tenant there; it then
waits until the Site is Connected and its virtual nodes are Ready. When it fails, nothing
it made is left on either side.`,
		Example: `  vk8s site join store-042 --site-kubeconfig store-042.kubeconfig --labels region=eu-west
  vk8s site join dc1-gpu --site-kubeconfig dc1.kubeconfig --type RegionalEdge --node-selector pool=gpu`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Name = args[0]
			cfg.Type, cfg.NodeMode = vk8sv1.SiteType(typ), vk8sv1.NodeMode(mode)
			var err error
			if cfg.Labels, err = parseLabels("labels", labels); err != nil {
				return err
			}
			if cfg.NodeSelector, err = parseLabels("node-selector", nodeSelector); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			admin, err := site.config(true, "site-kubeconfig")
			if err != nil {
				return err
			}
			hc, err := host.hostClient()
			if err != nil {
				return err
			}
			cfg.Progress = cmd.ErrOrStderr()
			joined, err := siteadm.Join(cmd.Context(), hc, admin, cfg)
			if joined != nil {
				printJoined(cmd.OutOrStdout(), joined, cfg)
			}
			return err
		},
	}
	f := cmd.Flags()
	host.add(f, "", "host cluster (default: $KUBECONFIG, else ~/.kube/config)")
	site.add(f, "site-", "site cluster's administrator (required)")
	f.StringVar(&typ, "type", "", "site type: RegionalEdge or CustomerEdge (default CustomerEdge)")
	f.StringVar(&mode, "node-mode", "", "PerNode (a virtual node per site node) or Aggregate (one for the site) (default PerNode)")
	f.StringVar(&labels, "labels", "", "labels of the Site, k=v,k2=v2: what VirtualSites select on")
	f.StringVar(&nodeSelector, "node-selector", "", "only the site's nodes with these labels, k=v,...: several Sites in one cluster")
	f.StringVar(&cfg.Tenant, "tenant", provider.DefaultTenant, "the host's tenant (the provider's --tenant)")
	f.StringVar(&cfg.SecretNamespace, "namespace", siteadm.Namespace, "host namespace of the Site's kubeconfig Secret: the provider's release namespace, where it renews tokens")
	f.DurationVar(&cfg.TokenTTL, "token-ttl", siteadm.DefaultTokenTTL, "lifetime of the site token; the provider renews it at half")
	f.DurationVar(&cfg.SiteTimeout, "site-timeout", siteadm.DefaultSiteTimeout, "timeout of each call to the site")
	f.DurationVar(&cfg.Wait, "wait", siteadm.DefaultWait, "how long to wait for the Site to be Connected, then Ready")
	return cmd
}

func printJoined(out io.Writer, j *siteadm.Joined, cfg siteadm.JoinConfig) {
	s := j.Site
	name := siteadm.AccountName(cfg.Tenant, s.Name)
	fmt.Fprintf(out, "Site %s joined: %s, Kubernetes %s, %d nodes, %s, %s\n", s.Name, j.Server, s.Status.KubernetesVersion,
		s.Status.NodeCount, s.Spec.Type, s.Spec.NodeMode)
	fmt.Fprintf(out, "  virtual nodes: %s\n", strings.Join(s.Status.VirtualNodes, ", "))
	fmt.Fprintf(out, "  on the site:   ServiceAccount %s/%s, ClusterRole and ClusterRoleBinding %s\n", siteadm.Namespace, name, name)
	fmt.Fprintf(out, "  in the host:   Secret %s/%s (token until %s, renewed by the provider), Site %s\n",
		j.Secret.Namespace, j.Secret.Name, j.Token.Expires.UTC().Format(time.RFC3339), s.Name)
}

func newSiteLeaveCommand() *cobra.Command {
	var (
		host, site clusterFlags
		cfg        siteadm.LeaveConfig
	)
	cmd := &cobra.Command{
		Use:   "leave NAME --site-kubeconfig FILE",
		Short: "Remove Site NAME from the host, and what join made on the site",
		Long: `Remove Site NAME: in the host the Site and the Secret join made; on the site (with its
administrator's kubeconfig, --site-kubeconfig) the ServiceAccount, ClusterRole and
ClusterRoleBinding join made, this host's pods on the Site's nodes and, when no other Site
of this host is on that cluster, this host's site namespaces and its tenant claim.

Leave refuses while vK8s pods run on the Site; --force deletes them (their controllers
make them again on the other sites). --host-only undoes the host side alone, for a site
that is gone, and prints what to delete on the site.`,
		Example: `  vk8s site leave store-042 --site-kubeconfig store-042.kubeconfig
  vk8s site leave store-042 --site-kubeconfig store-042.kubeconfig --force
  vk8s site leave burnt-down-store --host-only --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Name = args[0]
			var admin *rest.Config
			if !cfg.HostOnly {
				var err error
				if admin, err = site.config(true, "site-kubeconfig"); err != nil {
					return fmt.Errorf("%w (or --host-only to undo only the host side)", err)
				}
			}
			hc, err := host.hostClient()
			if err != nil {
				return err
			}
			cfg.Progress = cmd.ErrOrStderr()
			if err := siteadm.Leave(cmd.Context(), hc, admin, cfg); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Site %s left\n", cfg.Name)
			return err
		},
	}
	f := cmd.Flags()
	host.add(f, "", "host cluster (default: $KUBECONFIG, else ~/.kube/config)")
	site.add(f, "site-", "site cluster's administrator")
	f.BoolVar(&cfg.Force, "force", false, "leave while vK8s pods run on the Site: delete them")
	f.BoolVar(&cfg.HostOnly, "host-only", false, "undo the host side alone (the site is gone or unreachable)")
	f.StringVar(&cfg.Tenant, "tenant", provider.DefaultTenant, "the host's tenant (the provider's --tenant)")
	f.DurationVar(&cfg.SiteTimeout, "site-timeout", siteadm.DefaultSiteTimeout, "timeout of each call to the site")
	return cmd
}

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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vk8s-io/vk8s/access"
	"github.com/vk8s-io/vk8s/api/scheme"
)

func newKubeconfigCommand() *cobra.Command {
	req := access.Request{User: access.DefaultUser, TTL: access.DefaultTTL}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	var overrides clientcmd.ConfigOverrides
	var output string
	cmd := &cobra.Command{
		Use:   "kubeconfig --namespace NS [--user NAME] [--ttl 24h] [-o FILE]",
		Short: "Print a kubeconfig that can use one vK8s namespace and nothing else",
		Long: `Print a kubeconfig for a team's vK8s namespace: plain kubectl and Helm work there with
it (the kinds a vK8s namespace holds, logs, exec, port-forward, scale), and are refused in
every other namespace and on cluster-scoped objects (nodes, namespaces, Sites).

Run it as the host's admin (--kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context).
It makes in the namespace a ServiceAccount (--user), a Role of the namespace's kinds and a
RoleBinding, all labelled vk8s.io/kubeconfig-user, then prints a kubeconfig with a token of
that ServiceAccount that expires after --ttl (the API server may cut it shorter: the expiry
is printed on stderr). Running it again brings the Role up to date and mints a new token;
earlier tokens stay valid until they expire. Deleting the ServiceAccount revokes them all:
  kubectl -n NS delete serviceaccount NAME role,rolebinding vk8s-kubeconfig-NAME`,
		Example: `  vk8s kubeconfig --namespace demo > demo.kubeconfig
  vk8s kubeconfig --namespace demo --user team-a --ttl 8h -o team-a.kubeconfig
  kubectl --kubeconfig team-a.kubeconfig get pods`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := req.Validate(); err != nil {
				return err
			}
			if output == "yaml" || output == "json" {
				return fmt.Errorf("-o %s: -o names the file to write the kubeconfig to; without it, the kubeconfig is printed as YAML", output)
			}
			loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &overrides)
			cfg, err := loader.ClientConfig()
			if err != nil {
				return fmt.Errorf("the host admin's kubeconfig: %w", err)
			}
			cluster, err := hostCluster(loader, cfg, overrides.CurrentContext)
			if err != nil {
				return err
			}
			// The file is made before anything in the host, so a path that cannot be
			// written leaves nothing behind.
			var file *os.File
			if output != "" {
				if file, err = outputFile(output, rules); err != nil {
					return err
				}
				defer func() { _ = os.Remove(file.Name()) }()
			}
			c, err := scheme.NewClient(cfg)
			if err != nil {
				return fmt.Errorf("the host admin's kubeconfig: %w", err)
			}
			granted, err := access.Grant(cmd.Context(), c, cluster, req)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			for _, change := range granted.Changes {
				fmt.Fprintln(stderr, change)
			}
			fmt.Fprintf(stderr, "token of ServiceAccount %s/%s expires at %s (in %s)\n", req.Namespace, req.User,
				granted.Expires.UTC().Format(time.RFC3339), time.Until(granted.Expires).Round(time.Minute))
			if short := req.TTL - time.Until(granted.Expires); short > time.Minute {
				fmt.Fprintf(stderr, "warning: the API server issued a token shorter than --ttl %s (kube-apiserver --service-account-max-token-expiration)\n", req.TTL)
			}
			if file == nil {
				_, err = cmd.OutOrStdout().Write(granted.Kubeconfig)
				return err
			}
			if err := writeFile(file, output, granted.Kubeconfig); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "kubeconfig written to %s\n  kubectl --kubeconfig %s get pods\n", output, output)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&req.Namespace, "namespace", "n", "", "the vK8s namespace the kubeconfig is for (required)")
	f.StringVar(&req.User, "user", req.User, "the ServiceAccount in the namespace the kubeconfig authenticates as; its Role and RoleBinding are vk8s-kubeconfig-<user>")
	f.DurationVar(&req.TTL, "ttl", req.TTL, "how long the token lives (at least 10m)")
	f.StringVarP(&output, "output", "o", "", "write the kubeconfig to this file (mode 0600) instead of stdout")
	f.StringVar(&rules.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "the host admin's kubeconfig (default $KUBECONFIG, else ~/.kube/config)")
	f.StringVar(&overrides.CurrentContext, "context", "", "the context of the admin's kubeconfig to use")
	return cmd
}

// hostCluster is the host as the admin's kubeconfig reaches it: the server, its CA (read
// from a file if the kubeconfig names one) and the cluster's name there.
func hostCluster(loader clientcmd.ClientConfig, cfg *rest.Config, context string) (access.Cluster, error) {
	tls := *cfg
	if err := rest.LoadTLSFiles(&tls); err != nil {
		return access.Cluster{}, fmt.Errorf("the host admin's kubeconfig: %w", err)
	}
	cluster := access.Cluster{
		Server: cfg.Host, CAData: tls.CAData, TLSServerName: cfg.ServerName, InsecureSkipTLSVerify: cfg.Insecure,
	}
	if raw, err := loader.RawConfig(); err == nil {
		if context == "" {
			context = raw.CurrentContext
		}
		if ctx, ok := raw.Contexts[context]; ok {
			cluster.Name = ctx.Cluster
			if c, ok := raw.Clusters[ctx.Cluster]; ok {
				cluster.ProxyURL = c.ProxyURL
			}
		}
	}
	return cluster, nil
}

// outputFile makes a temporary file beside path, which writeFile renames to path: it
// refuses a path that is one of the admin's kubeconfig files, which the user's would
// replace.
func outputFile(path string, rules *clientcmd.ClientConfigLoadingRules) (*os.File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", path, err)
	}
	for _, p := range append(slices.Clone(rules.GetLoadingPrecedence()), rules.ExplicitPath) {
		if a, err := filepath.Abs(p); p != "" && err == nil && a == abs {
			return nil, fmt.Errorf("-o %s is the admin's kubeconfig, which the team's would replace: write it to another file", path)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+"-*")
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", path, err)
	}
	return f, nil
}

// writeFile writes data to f and renames it to path, mode 0600 (it holds a token).
func writeFile(f *os.File, path string, data []byte) error {
	_, err := f.Write(data)
	err = errors.Join(err, f.Chmod(0o600), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("-o %s: %w", path, err)
	}
	return nil
}

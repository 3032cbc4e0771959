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
	"os"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/lab/relay"
	"github.com/vk8s-io/vk8s/lab/sitestorage"
)

func newLabCommand() *cobra.Command {
	var cfg lab.Config
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a local host cluster and site clusters (kwok) to try vk8s",
		Long: `The lab is a local fleet of real Kubernetes control planes started by kwokctl's
binary runtime: one host cluster and --sites site clusters of --nodes kwok nodes each.
Tools come from VK8S_TOOLS_DIR (make -s tools-dir), else from the folder the binary was
built with, else from PATH.`,
	}
	cmd.PersistentFlags().StringVar(&cfg.Name, "name", "lab", "name of the lab; labs with different names run side by side")
	cmd.PersistentFlags().StringVar(&cfg.Dir, "dir", "", "folder of the lab's files (default $XDG_STATE_HOME/vk8s/labs/<name>)")
	newLab := func(cmd *cobra.Command) (*lab.Lab, error) {
		cfg.Tools = lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")}
		if cfg.Tools.Dir == "" {
			if _, err := os.Stat(toolsDir); toolsDir != "" && err == nil {
				cfg.Tools.Dir = toolsDir
			}
		}
		cfg.Log = cmd.ErrOrStderr()
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("path of the vk8s binary: %w", err)
		}
		cfg.Vk8sBinary = self
		return lab.New(cfg)
	}

	up := &cobra.Command{
		Use:   "up",
		Short: "Create the lab, or bring it to the requested shape (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			if err := l.Up(cmd.Context()); err != nil {
				return err
			}
			p, err := l.Kubeconfig("host")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "host kubeconfig: %s\n  kubectl --kubeconfig %s get sites\n", p, p)
			return err
		},
	}
	up.Flags().IntVar(&cfg.Sites, "sites", 0, "number of site clusters (default 3, or what the lab has)")
	up.Flags().IntVar(&cfg.Nodes, "nodes", 0, "number of kwok nodes per site (default 3, or what the lab has)")
	up.Flags().IntVar(&cfg.ProviderReplicas, "provider-replicas", 0, "number of provider processes; more than one share the Sites with --shard (default 1, or what the lab has)")

	down := &cobra.Command{
		Use:   "down",
		Short: "Stop every process of the lab and remove its files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			return l.Down(cmd.Context())
		},
	}

	var site, as string
	kubeconfig := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the path of the host's kubeconfig, or of a site's with --site, or the host's as a component with --as",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			var p string
			switch {
			case as != "" && site != "":
				return fmt.Errorf("--as and --site: choose one")
			case as != "":
				if !slices.Contains(lab.Components, as) {
					return fmt.Errorf("--as %q: choose one of %v", as, lab.Components)
				}
				if _, err := l.ComponentConfig(as); err != nil {
					return err
				}
				p = l.ComponentKubeconfig(as)
			default:
				if p, err = l.Kubeconfig(site); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), p)
			return err
		},
	}
	kubeconfig.Flags().StringVar(&site, "site", "", "site whose kubeconfig to print (site1, ...); empty: the host")
	kubeconfig.Flags().StringVar(&as, "as", "", "print the host's kubeconfig with the token of the chart's ServiceAccount of this component (provider, webhook), which the lab's process runs with")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show every cluster of the lab, its components' health and log files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			all, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "CLUSTER\tREADY\tVERSION\tSERVER\tKUBECONFIG")
			unhealthy := 0
			for _, c := range all {
				ready := "yes"
				if !c.Ready {
					ready, unhealthy = "no", unhealthy+1
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Name, ready, c.Version, c.Server, c.Kubeconfig)
				for _, p := range c.Components {
					state := "running"
					if !p.Running {
						state, unhealthy = "STOPPED", unhealthy+1
					}
					fmt.Fprintf(w, "  %s\t%s\tpid %d\t\t%s\n", p.Name, state, p.PID, p.Log)
				}
				if c.Error != "" {
					fmt.Fprintf(w, "  error\t%s\t\t\t\n", c.Error)
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if unhealthy > 0 {
				return fmt.Errorf("lab %s: %d clusters or components are not healthy", cfg.Name, unhealthy)
			}
			return nil
		},
	}
	cmd.AddCommand(up, down, kubeconfig, status, newRelayCommand(), newSiteStorageCommand())
	return cmd
}

// newRelayCommand is the lab's kubelet relay, which `vk8s lab up` starts in the
// background (package relay); it is hidden, since nobody runs it by hand.
func newRelayCommand() *cobra.Command {
	var (
		cfg   relay.Config
		ports string
	)
	cmd := &cobra.Command{
		Use:    lab.RelaySubcommand,
		Short:  "Relay the site nodes' kubelet ports from the lab's network namespace to kwok (run by lab up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := relay.ParsePorts(ports)
			if err != nil {
				return err
			}
			cfg.Ports = p
			return relay.Run(cmd.Context(), cfg, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&cfg.Netns, "netns", "", "path of the network namespace to listen in (/run/netns/<name>)")
	cmd.Flags().StringVar(&cfg.Address, "address", "", "address to listen at inside the namespace: the site nodes' InternalIP")
	cmd.Flags().StringVar(&ports, "ports", "", "comma-separated kwok ports to relay to 127.0.0.1")
	return cmd
}

// newSiteStorageCommand is a lab site's storage provisioner, which the site's kwokctl runs
// as a component of the cluster (package sitestorage); hidden, like the relay.
func newSiteStorageCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:    sitestorage.Subcommand,
		Short:  "Provision the volumes of a lab site's default StorageClass (run by the site's kwokctl)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sitestorage.Run(cmd.Context(), kubeconfig, ctrllog.Log.WithName("site-storage"))
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the site's API server")
	return cmd
}

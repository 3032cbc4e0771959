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

// Command vk8s is the vk8s binary: the provider, the webhook, site onboarding, a
// kubeconfig per vK8s namespace (`vk8s kubeconfig`), the local lab and the kubectl plugin
// (`vk8s kubectl`, or the binary run as kubectl-vk8s), as subcommands.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vk8s-io/vk8s/plugin"
)

// Set by the Makefile through -ldflags -X.
var (
	version = "dev"
	// toolsDir is the folder of the lab's tools (hack/tools.sh dir) at build time.
	toolsDir = ""
)

func main() {
	// One structured logger for vk8s, controller-runtime and client-go.
	logger := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctrllog.SetLogger(logger)
	klog.SetLogger(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRootCommand()
	if isKubectlPlugin(os.Args[0]) {
		root = plugin.NewCommand(kubectlPluginName, "kubectl vk8s")
	}
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "vk8s",
		Short:         "Federate Kubernetes sites into one host cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCommand(), newLabCommand(), newProviderCommand(), newWebhookCommand(), newSiteCommand(), newKubeconfigCommand(),
		plugin.NewCommand("kubectl", ""))
	return root
}

// kubectlPluginName is the name kubectl finds plugins by: `kubectl vk8s` runs the first
// kubectl-vk8s on the PATH.
const kubectlPluginName = "kubectl-vk8s"

// isKubectlPlugin says whether the binary runs as kubectl-vk8s (a link that kubectl or
// Krew runs), where the plugin's commands are the top level.
func isKubectlPlugin(arg0 string) bool {
	return strings.TrimSuffix(filepath.Base(arg0), ".exe") == kubectlPluginName
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of vk8s",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "vk8s %s\n", version)
			return err
		},
	}
}

// hostConfig loads the host cluster's client configuration: the kubeconfig file given,
// else $KUBECONFIG, else in-cluster.
func hostConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	host, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("host cluster configuration: %w", err)
	}
	return host, nil
}

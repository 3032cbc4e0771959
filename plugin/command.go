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

package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	"github.com/vk8s-io/vk8s/fleet"
)

// NewCommand returns the root of the plugin's commands. use is the command's name where
// it is mounted ("kubectl" under vk8s); displayName, when set, is how its help names it
// ("kubectl vk8s" when the binary runs as kubectl-vk8s).
func NewCommand(use, displayName string) *cobra.Command {
	o := &options{flags: newConnectionFlags(), now: time.Now}
	root := &cobra.Command{
		Use:   use,
		Short: "The fleet in kubectl's idiom: sites, workloads site by site, why a pod is on its site",
		Long: `Show the fleet of the host cluster that vk8s federates:

  sites                 every Site: type, mode, Connected, Ready, nodes, allocatable, pods, heartbeat
  status TYPE/NAME      a federated workload (deployment, statefulset, daemonset, job, cronjob)
                        site by site: desired, ready, Override, flavor, images, last event
  explain pod/NAME      why a pod is on its site: virtual-sites, plan, rule, Override, flavor`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if displayName != "" {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: displayName}
	}
	o.flags.add(root.PersistentFlags())
	root.AddCommand(o.sitesCommand(), o.statusCommand(), o.explainCommand())
	return root
}

// NewSitesCommand returns the plugin's `sites` on its own, named use, with kubectl's
// connection flags: `vk8s site list`.
func NewSitesCommand(use string) *cobra.Command {
	o := &options{flags: newConnectionFlags(), now: time.Now}
	cmd := o.sitesCommand()
	cmd.Use = use
	o.flags.add(cmd.Flags())
	return cmd
}

// options are the flags every command shares.
type options struct {
	flags     *connectionFlags
	output    string
	noHeaders bool
	// now is the clock ages are computed against.
	now func() time.Time
}

// The values of -o: of the commands that print tables, and of explain.
var (
	tableFormats   = []string{"json", "wide", "yaml"}
	explainFormats = []string{"json", "yaml"}
)

// addOutputFlags adds -o, for formats, and --no-headers when they include wide.
func (o *options) addOutputFlags(cmd *cobra.Command, formats []string) {
	def := "text"
	if slices.Contains(formats, "wide") {
		def = "a table"
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: "+strings.Join(formats, ", ")+" (default: "+def+")")
	if slices.Contains(formats, "wide") {
		cmd.Flags().BoolVar(&o.noHeaders, "no-headers", false, "Print the table without its header line")
	}
}

// validateOutput refuses an -o value that is not one of formats, in kubectl's words.
func (o *options) validateOutput(formats []string) error {
	if o.output == "" || slices.Contains(formats, o.output) {
		return nil
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: %s", o.output, strings.Join(formats, ","))
}

// tablePrinter is cli-runtime's printer of metav1.Tables, as kubectl get prints them.
func (o *options) tablePrinter() printers.ResourcePrinter {
	return printers.NewTablePrinter(printers.PrintOptions{Wide: o.output == "wide", NoHeaders: o.noHeaders})
}

// print writes doc as -o asks: JSON or YAML of doc, else table through the table printer.
func (o *options) print(out io.Writer, table *metav1.Table, doc any) error {
	switch o.output {
	case "json":
		raw, err := json.MarshalIndent(doc, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", raw)
		return err
	case "yaml":
		raw, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = out.Write(raw)
		return err
	}
	return o.tablePrinter().PrintObj(table, out)
}

// SiteList is what `sites -o json|yaml` prints.
type SiteList struct {
	Items []fleet.SiteRow `json:"items"`
}

// WorkloadStatus is what `status -o json|yaml` prints.
type WorkloadStatus struct {
	Kind      string            `json:"kind"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Sites     []fleet.StatusRow `json:"sites"`
}

func (o *options) sitesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sites",
		Short: "List every Site: type, mode, Connected, Ready, nodes, allocatable, pods, heartbeat",
		Long: `List every Site of the host with its type and node mode, its Connected and Ready
conditions, its nodes (the site's own), the allocatable CPU and memory of its virtual nodes,
the pods on them that have not ended, and the age of its last heartbeat. -o wide adds the
virtual nodes, the site's Kubernetes version and why it is not Connected or Ready.`,
		Example: `  kubectl vk8s sites
  kubectl vk8s sites -o wide`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validateOutput(tableFormats); err != nil {
				return err
			}
			s, err := o.connect()
			if err != nil {
				return err
			}
			in, err := s.readSites(cmd.Context())
			if err != nil {
				return err
			}
			rows := fleet.Sites(in.sites, in.nodes, in.pods)
			if len(rows) == 0 && o.output != "json" && o.output != "yaml" {
				fmt.Fprintln(cmd.ErrOrStderr(), "No Sites found.")
				return nil
			}
			return o.print(cmd.OutOrStdout(), fleet.SitesTable(rows, o.now()), SiteList{Items: rows})
		},
	}
	o.addOutputFlags(cmd, tableFormats)
	return cmd
}

func (o *options) statusCommand() *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status (TYPE/NAME | TYPE NAME)",
		Short: "Show a federated workload site by site: desired, ready, Override, flavor, images, last event",
		Long: `Show a federated workload (deployment, statefulset, daemonset, job, cronjob) one row
per site: the pods its plan wants there (vk8s.io/placement), the live and Ready ones (the
host pods, whose status the provider mirrors from the site), those up to date (current
template and the site's current Override), the Override that applies there, the flavor
(<manifest> where the site is CustomerEdge and keeps the manifest's resources), the images
its pods run, and the last event of its pods there (or of the workload naming the site).
A CronJob shows its latest Job. -w prints the rows again as they change, to follow a rollout
site by site, until interrupted.`,
		Example: `  kubectl vk8s status deployment/web -n demo
  kubectl vk8s status sts web -o wide
  kubectl vk8s status deploy/web -w`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validateOutput(tableFormats); err != nil {
				return err
			}
			typ, name, err := typeAndName(args, "")
			if err != nil {
				return err
			}
			s, err := o.connect()
			if err != nil {
				return err
			}
			kind, err := s.workloadKind(typ)
			if err != nil {
				return err
			}
			if watch {
				return o.watchStatus(cmd.Context(), cmd.OutOrStdout(), s, kind, name)
			}
			in, err := readStatus(cmd.Context(), s.client, kind, s.namespace, name)
			if err != nil {
				return err
			}
			rows, err := fleet.Status(in)
			if err != nil {
				return err
			}
			if len(rows) == 0 && o.output != "json" && o.output != "yaml" {
				fmt.Fprintf(cmd.ErrOrStderr(), "No sites in the plan of %s %s/%s, and no pods.\n", strings.ToLower(kind), s.namespace, name)
				return nil
			}
			return o.printStatus(cmd.OutOrStdout(), o.tablePrinter(), kind, s.namespace, name, rows)
		},
	}
	o.addOutputFlags(cmd, tableFormats)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "After printing the rows, print them again as they change (a rollout site by site), until interrupted")
	return cmd
}

// printStatus prints a workload's rows: through p as a table, or as a WorkloadStatus.
func (o *options) printStatus(out io.Writer, p printers.ResourcePrinter, kind, namespace, name string, rows []fleet.StatusRow) error {
	if o.output == "json" || o.output == "yaml" {
		return o.print(out, nil, WorkloadStatus{Kind: kind, Namespace: namespace, Name: name, Sites: rows})
	}
	return p.PrintObj(fleet.StatusTable(kind, rows, o.now()), out)
}

func (o *options) explainCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "explain (pod/NAME | NAME)",
		Short: "Say why a pod is on its site: virtual-sites, plan, rule, Override, flavor",
		Long: `Say why a pod is on its site, from what vk8s' admission recorded: the virtual-sites of
its workload (or of its namespace) and the Sites they select, the workload's plan
(vk8s.io/placement), the rule that chose the site (the largest deficit and the pod's slot,
a StatefulSet's ordinal block, the DaemonSet's node, the fewest pods), the Override applied
and whether it is still the site's, and the flavor and whether the site applies it.`,
		Example: `  kubectl vk8s explain pod/web-7d4b9c-x2x8k -n demo
  kubectl vk8s explain web-0 -o yaml`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validateOutput(explainFormats); err != nil {
				return err
			}
			typ, name, err := typeAndName(args, "pod")
			if err != nil {
				return err
			}
			s, err := o.connect()
			if err != nil {
				return err
			}
			if err := s.isPods(typ); err != nil {
				return err
			}
			in, err := readExplain(cmd.Context(), s.client, s.namespace, name)
			if err != nil {
				return err
			}
			e, err := fleet.Explain(in)
			if err != nil {
				return err
			}
			if o.output != "" {
				return o.print(cmd.OutOrStdout(), nil, e)
			}
			w := printers.GetNewTabWriter(cmd.OutOrStdout())
			for _, l := range e.Lines() {
				fmt.Fprintf(w, "%s:\t%s\n", l[0], l[1])
			}
			return w.Flush()
		},
	}
	o.addOutputFlags(cmd, explainFormats)
	return cmd
}

// typeAndName reads TYPE/NAME or TYPE NAME from args; a bare NAME takes def as its type
// when def is set.
func typeAndName(args []string, def string) (string, string, error) {
	if len(args) == 2 {
		if strings.Contains(args[0], "/") || strings.Contains(args[1], "/") {
			return "", "", fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl vk8s status deployment/web' instead of 'kubectl vk8s status deployment deployment/web')")
		}
		return args[0], args[1], nil
	}
	typ, name, ok := strings.Cut(args[0], "/")
	switch {
	case ok && typ != "" && name != "" && !strings.Contains(name, "/"):
		return typ, name, nil
	case !ok && def != "":
		return def, args[0], nil
	}
	example := "deployment/web"
	if def != "" {
		example = def + "/web-0"
	}
	return "", "", fmt.Errorf("arguments in resource/name form must have a single resource and name: %q (e.g. %s)", args[0], example)
}

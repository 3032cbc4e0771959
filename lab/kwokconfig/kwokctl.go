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

package kwokconfig

import (
	"bytes"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// KubernetesVersion is the version of the lab's Kubernetes binaries (hack/tools.sh).
const KubernetesVersion = "v1.35.4"

// Role says what a cluster is for; it decides which components run.
type Role int

const (
	// Host is the lab's host cluster: its own nodes are kwok's (KwokNodeAnnotation
	// selects them; the provider's virtual nodes are not kwok's), and it verifies kubelet
	// serving certificates.
	Host Role = iota
	// Site is a lab site: kwok runs its nodes and simulates their containers.
	Site
)

// Cluster is what the configuration of one lab cluster depends on.
type Cluster struct {
	Role Role
	// Tools maps each tool name (kube-apiserver, etcd, kwok, ...) to its binary.
	Tools map[string]string
	// Advertise is the API server's advertise address.
	Advertise string
	// NodeIP, when set, is the sites' nodes' InternalIP (kwok's --node-ip).
	NodeIP string
	// PKI is the cluster's pki folder (kwokctl writes ca.crt, ca.key, admin.crt and
	// admin.key there).
	PKI string
	// Content is the lab's folder of simulated container logs, exec working directory and
	// kwok's extra configuration files (MetricsFile, StagesFile, ShimDir).
	Content string
	// Path is the PATH the lab runs with; the sites' kwok gets the shims before it.
	Path string
	// Components are processes of the lab's own that kwokctl runs with the cluster's
	// (the sites' storage provisioner): started, stopped and listed with them.
	Components []Component
}

// Component is a process kwokctl runs beside the cluster's own components, in WorkDir.
// kwokctl names its pid and log files after the binary's file name, so Binary's should be
// Name.
type Component struct {
	Name    string
	Binary  string
	Args    []string
	WorkDir string
}

// KwokNodeAnnotation marks the nodes a cluster's kwok runs ("fake"): all of a site's, and
// of the host's only its own nodes, never the provider's virtual nodes.
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// The host's node Lease duration and node grace period (kube-controller-manager's
// --node-monitor-grace-period), as in SPEC §4 "Disconnection".
const (
	HostNodeLeaseSeconds      = 40
	HostNodeGraceMilliseconds = 40000
)

// DefaultTolerationSeconds is how long, in the lab's host, a pod tolerates by default
// the not-ready and unreachable taints of its node (the API server's
// DefaultTolerationSeconds; Kubernetes' default is 300): shorter, so that a test sees in
// about a minute and a half whether an outage of the provider evicts what it should not.
const DefaultTolerationSeconds = "30"

// Render renders the KwokctlConfiguration of one cluster: the binary runtime with local
// binaries only, so kwokctl never downloads anything.
//
// The host verifies kubelet serving certificates as hardened clusters do: its API server
// presents the admin certificate to kubelets and checks theirs against the cluster CA,
// which its controller manager signs kubernetes.io/kubelet-serving requests with. Sites
// get kwok's ClusterLogs, ClusterExec, ClusterAttach and ClusterPortForward (an echo
// server on every port), so that logs, exec, cp, attach and port-forward of their pods
// answer, and
// kwok's Metric and ClusterResourceUsage (MetricsFile, which the lab writes to Content), so that their nodes serve simulated resource metrics, the lab's Stage
// (StagesFile: a pod annotated vk8sv1.AnnotationLabExitAfter completes) and a tar for exec
// (ShimDir, see TarShim). NodeIP is what the sites' API servers dial first (the lab's
// kubelet network).
func Render(c Cluster) ([]byte, error) {
	role, tools, advertise, nodeIP, pki, content := c.Role, c.Tools, c.Advertise, c.NodeIP, c.PKI, c.Content
	options := map[string]any{
		"runtime":                     "binary",
		"kubeVersion":                 KubernetesVersion,
		"bindAddress":                 "127.0.0.1",
		"kubeApiserverBinary":         tools["kube-apiserver"],
		"kubeControllerManagerBinary": tools["kube-controller-manager"],
		"kubeSchedulerBinary":         tools["kube-scheduler"],
		"kubectlBinary":               tools["kubectl"],
		"etcdBinary":                  tools["etcd"],
		"etcdctlBinary":               tools["etcdctl"],
		"etcdutlBinary":               tools["etcdutl"],
		"kwokControllerBinary":        tools["kwok"],
	}
	apiserverArgs := []any{arg("advertise-address", advertise)}
	patches := []any{}
	if role == Host {
		// The host's own nodes are kwok's, as a real host has healthy nodes of its own (so
		// that its node lifecycle controller evicts as in production); the provider's
		// virtual nodes are not. kwokctl derives the controller manager's node grace period
		// from kwok's node Lease duration times its heartbeat factor (5 by default: a grace
		// of 3m20s); the host's is Kubernetes' own scale instead: 40 s Leases, a 40 s grace
		// (SPEC's), a 5 s monitor.
		options["heartbeatFactor"] = 1
		options["nodeLeaseDurationSeconds"] = HostNodeLeaseSeconds
		options["kubeControllerManagerNodeMonitorGracePeriodMilliseconds"] = HostNodeGraceMilliseconds
		options["kubeControllerManagerNodeMonitorPeriodMilliseconds"] = 5000
		patches = append(patches, map[string]any{
			"name": "kwok-controller",
			"extraArgs": []any{
				arg("manage-all-nodes", "false"),
				arg("manage-nodes-with-annotation-selector", KwokNodeAnnotation+"=fake"),
			},
		})
		apiserverArgs = append(apiserverArgs,
			arg("kubelet-client-certificate", filepath.Join(pki, "admin.crt")),
			arg("kubelet-client-key", filepath.Join(pki, "admin.key")),
			arg("kubelet-certificate-authority", filepath.Join(pki, "ca.crt")),
			arg("kubelet-preferred-address-types", "InternalIP"),
			arg("default-not-ready-toleration-seconds", DefaultTolerationSeconds),
			arg("default-unreachable-toleration-seconds", DefaultTolerationSeconds),
		)
		patches = append(patches, map[string]any{
			"name": "kube-controller-manager",
			"extraArgs": []any{
				arg("cluster-signing-cert-file", filepath.Join(pki, "ca.crt")),
				arg("cluster-signing-key-file", filepath.Join(pki, "ca.key")),
			},
		})
	}
	if role == Site {
		// kwokctl v0.8.0 passes Metric and ClusterResourceUsage documents on to kwok only
		// when it also runs its metrics-server component (which the sites do not need), so
		// kwok reads them from a configuration file of its own beside the one kwokctl
		// writes (kwok's --config may be given more than once). The lab's Stage comes the
		// same way: a Stage in kwokctl's configuration would replace kwokctl's default
		// stages, while kwok runs every Stage of all its files.
		// PATH: kwok's exec resolves a command in kwok-controller's own PATH (exec.LookPath),
		// so the lab's tar shim (TarShim) is found first.
		kwokArgs := []any{arg("config", filepath.Join(content, MetricsFile)), arg("config", filepath.Join(content, StagesFile))}
		if nodeIP != "" {
			kwokArgs = append(kwokArgs, arg("node-ip", nodeIP))
			apiserverArgs = append(apiserverArgs, arg("kubelet-preferred-address-types", "InternalIP,Hostname"))
		}
		patches = append(patches, map[string]any{
			"name":      "kwok-controller",
			"extraArgs": kwokArgs,
			"extraEnvs": []any{map[string]any{"name": "PATH", "value": ShimPath(content, c.Path)}},
		})
	}
	patches = append([]any{map[string]any{"name": "kube-apiserver", "extraArgs": apiserverArgs}}, patches...)
	kwokctl := map[string]any{
		"apiVersion":        "config.kwok.x-k8s.io/v1alpha1",
		"kind":              "KwokctlConfiguration",
		"options":           options,
		"componentsPatches": patches,
	}
	if len(c.Components) > 0 {
		components := make([]any, 0, len(c.Components))
		for _, comp := range c.Components {
			components = append(components, map[string]any{"name": comp.Name, "binary": comp.Binary, "args": comp.Args, "workDir": comp.WorkDir})
		}
		kwokctl["components"] = components
	}
	docs := []any{kwokctl}
	if role == Site {
		docs = append(docs,
			map[string]any{
				"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs",
				"metadata": map[string]any{"name": "vk8s-lab-logs"},
				"spec": map[string]any{"logs": []any{map[string]any{
					"logsFile":         filepath.Join(content, CurrentLogFile),
					"previousLogsFile": filepath.Join(content, PreviousLogFile),
					"follow":           true,
				}}},
			},
			map[string]any{
				"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterExec",
				"metadata": map[string]any{"name": "vk8s-lab-exec"},
				"spec": map[string]any{"execs": []any{map[string]any{
					"local": map[string]any{"workDir": filepath.Join(content, ExecDir)},
				}}},
			},
			// attach follows the container's log from its end.
			map[string]any{
				"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterAttach",
				"metadata": map[string]any{"name": "vk8s-lab-attach"},
				"spec": map[string]any{"attaches": []any{map[string]any{
					"logsFile": filepath.Join(content, CurrentLogFile),
				}}},
			},
			// Every port of every site pod answers as an echo server: kwok connects the
			// forwarded stream to cat's stdin and stdout (no network is opened).
			map[string]any{
				"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward",
				"metadata": map[string]any{"name": "vk8s-lab-port-forward"},
				"spec":     map[string]any{"forwards": []any{map[string]any{"command": []any{"cat"}}}},
			})
	}
	return yamlDocuments(docs)
}

// yamlDocuments renders docs as one YAML stream.
func yamlDocuments(docs []any) ([]byte, error) {
	var out bytes.Buffer
	for i, d := range docs {
		raw, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(raw)
	}
	return out.Bytes(), nil
}

func arg(key, value string) map[string]any { return map[string]any{"key": key, "value": value} }

// Files of the simulated containers on the sites (kwok's ClusterLogs and ClusterExec), of
// the sites' simulated resource metrics and Stages, and the folder of the commands that
// stand in for the system's in kwok's exec.
const (
	CurrentLogFile  = "current.log"
	PreviousLogFile = "previous.log"
	ExecDir         = "exec"
	MetricsFile     = "kwok-metrics.yaml"
	StagesFile      = "kwok-stages.yaml"
	ShimDir         = "bin"
)

// ShimPath is the PATH of the sites' kwok-controller: the lab's shims (in content) first,
// then path, the lab's own PATH.
func ShimPath(content, path string) string {
	return filepath.Join(content, ShimDir) + string(os.PathListSeparator) + path
}

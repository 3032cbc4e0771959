package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"sigs.k8s.io/yaml"
)

// KubernetesVersion is the version of the lab's Kubernetes binaries (hack/tools.sh).
const KubernetesVersion = "v1.35.4"

// fallbackAdvertiseAddress is used when the machine has no global IPv4 address:
// kube-apiserver refuses to start without an advertise address and rejects loopback. It is
// a documentation address (RFC 5737); nothing dials it.
const fallbackAdvertiseAddress = "192.0.2.250"

// clusterRole says what a cluster is for; it decides which components run.
type clusterRole int

const (
	roleHost clusterRole = iota
	roleSite
)

// kwokctlConfig renders the KwokctlConfiguration of one cluster: the binary runtime with
// local binaries only, so kwokctl never downloads anything. pki is the cluster's pki folder
// (kwokctl writes ca.crt, ca.key, admin.crt and admin.key there); content is the lab's
// folder of simulated container logs and exec working directory.
//
// The host verifies kubelet serving certificates as hardened clusters do: its API server
// presents the admin certificate to kubelets and checks theirs against the cluster CA,
// which its controller manager signs kubernetes.io/kubelet-serving requests with. Sites
// get kwok's ClusterLogs, ClusterExec, ClusterAttach and ClusterPortForward (an echo
// server on every port), so that logs, exec, cp, attach and port-forward of their pods
// answer, and
// kwok's Metric and ClusterResourceUsage (siteMetricsFile, which writeSiteContent writes
// to content), so that their nodes serve simulated resource metrics, the lab's Stage
// (siteStagesFile: a pod annotated vk8sv1.AnnotationLabExitAfter completes) and a tar for exec
// (shimDir, see tarShim). nodeIP, when set, is the sites' nodes' InternalIP (kwok's
// --node-ip), which their API servers dial first (kubeletnet.go).
func kwokctlConfig(role clusterRole, tools map[string]string, advertise, nodeIP, pki, content string) ([]byte, error) {
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
	if role == roleHost {
		// Host nodes are the provider's virtual nodes; kwok must not manage them.
		options["disable"] = []string{"kwok-controller"}
		apiserverArgs = append(apiserverArgs,
			arg("kubelet-client-certificate", filepath.Join(pki, "admin.crt")),
			arg("kubelet-client-key", filepath.Join(pki, "admin.key")),
			arg("kubelet-certificate-authority", filepath.Join(pki, "ca.crt")),
			arg("kubelet-preferred-address-types", "InternalIP"),
		)
		patches = append(patches, map[string]any{
			"name": "kube-controller-manager",
			"extraArgs": []any{
				arg("cluster-signing-cert-file", filepath.Join(pki, "ca.crt")),
				arg("cluster-signing-key-file", filepath.Join(pki, "ca.key")),
			},
		})
	}
	if role == roleSite {
		// kwokctl v0.8.0 passes Metric and ClusterResourceUsage documents on to kwok only
		// when it also runs its metrics-server component (which the sites do not need), so
		// kwok reads them from a configuration file of its own beside the one kwokctl
		// writes (kwok's --config may be given more than once). The lab's Stage comes the
		// same way: a Stage in kwokctl's configuration would replace kwokctl's default
		// stages, while kwok runs every Stage of all its files.
		// PATH: kwok's exec resolves a command in kwok-controller's own PATH (exec.LookPath),
		// so the lab's tar shim (tarShim) is found first.
		kwokArgs := []any{arg("config", filepath.Join(content, siteMetricsFile)), arg("config", filepath.Join(content, siteStagesFile))}
		if nodeIP != "" {
			kwokArgs = append(kwokArgs, arg("node-ip", nodeIP))
			apiserverArgs = append(apiserverArgs, arg("kubelet-preferred-address-types", "InternalIP,Hostname"))
		}
		patches = append(patches, map[string]any{
			"name":      "kwok-controller",
			"extraArgs": kwokArgs,
			"extraEnvs": []any{map[string]any{"name": "PATH", "value": shimPath(content)}},
		})
	}
	patches = append([]any{map[string]any{"name": "kube-apiserver", "extraArgs": apiserverArgs}}, patches...)
	docs := []any{map[string]any{
		"apiVersion":        "config.kwok.x-k8s.io/v1alpha1",
		"kind":              "KwokctlConfiguration",
		"options":           options,
		"componentsPatches": patches,
	}}
	if role == roleSite {
		docs = append(docs,
			map[string]any{
				"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs",
				"metadata": map[string]any{"name": "vk8s-lab-logs"},
				"spec": map[string]any{"logs": []any{map[string]any{
					"logsFile":         filepath.Join(content, currentLogFile),
					"previousLogsFile": filepath.Join(content, previousLogFile),
					"follow":           true,
				}}},
			},
			map[string]any{
				"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterExec",
				"metadata": map[string]any{"name": "vk8s-lab-exec"},
				"spec": map[string]any{"execs": []any{map[string]any{
					"local": map[string]any{"workDir": filepath.Join(content, execDir)},
				}}},
			},
			// attach follows the container's log from its end.
			map[string]any{
				"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterAttach",
				"metadata": map[string]any{"name": "vk8s-lab-attach"},
				"spec": map[string]any{"attaches": []any{map[string]any{
					"logsFile": filepath.Join(content, currentLogFile),
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
	currentLogFile  = "current.log"
	previousLogFile = "previous.log"
	execDir         = "exec"
	siteMetricsFile = "kwok-metrics.yaml"
	siteStagesFile  = "kwok-stages.yaml"
	shimDir         = "bin"
)

// shimPath is the PATH of the sites' kwok-controller: the lab's shims first, then the
// lab's own PATH.
func shimPath(content string) string {
	return filepath.Join(content, shimDir) + string(os.PathListSeparator) + os.Getenv("PATH")
}

// tarShim is the tar that kwok's exec runs on the sites (kubectl cp runs tar through exec):
// the system's tar with a blocking factor of 1. kwok v0.8.0 copies an exec's stdin into
// the command's pipe and never closes the pipe (pkg/utils/exec/exec.go, Command, the
// PipeStdin branch, about line 220), so the command never sees the end of its stdin. GNU
// tar reads whole records of 20 blocks (10240 bytes) and so waits forever for the rest of
// the record after the end-of-archive blocks kubectl cp's Go tar writer sends; with one
// block per record, tar -x stops at the end-of-archive marker. The option goes through
// TAR_OPTIONS because an argument before kubectl's old-style "tar cf -" would make tar
// read "cf" as a file name. On a real kubelet the end of stdin arrives and no shim is
// needed.
func tarShim(systemTar string) []byte {
	return []byte(`#!/bin/sh
# vk8s lab: see tarShim in e2e/lab/kwokctl.go. kwok v0.8.0's exec never closes a
# command's stdin (pkg/utils/exec/exec.go, PipeStdin), so tar -x must stop at the
# end-of-archive marker (one 512-byte block per record) instead of waiting for the rest
# of a 10240-byte record that never comes.
TAR_OPTIONS="--blocking-factor=1${TAR_OPTIONS:+ $TAR_OPTIONS}"
export TAR_OPTIONS
exec ` + systemTar + ` "$@"
`)
}

// siteStagesConfig renders the lab's kwok Stage: a running pod annotated
// vk8sv1.AnnotationLabExitAfter completes after the annotation's duration, as kwok's own
// pod-complete stage does for a Job's pods (kustomize/stage/pod/fast/pod-complete.yaml,
// whose delay.durationFrom reads a duration from the pod the same way). kwokctl's default
// stages still apply: they come from kwokctl's configuration file, this from kwok's second.
func siteStagesConfig() ([]byte, error) {
	annotation := fmt.Sprintf(".metadata.annotations[%q]", vk8sv1.AnnotationLabExitAfter)
	return yamlDocuments([]any{map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
		"metadata": map[string]any{"name": "vk8s-lab-exit-after"},
		"spec": map[string]any{
			"resourceRef": map[string]any{"apiGroup": "v1", "kind": "Pod"},
			"selector": map[string]any{"matchExpressions": []any{
				map[string]any{"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
				map[string]any{"key": ".status.phase", "operator": "In", "values": []any{"Running"}},
				map[string]any{"key": annotation, "operator": "Exists"},
			}},
			"delay": map[string]any{"durationFrom": map[string]any{"expressionFrom": annotation}},
			"next": map[string]any{"statusTemplate": `{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Succeeded
`},
		},
	}})
}

// siteMetricsConfig renders the kwok configuration that simulates the resource metrics of
// the sites' nodes, as kwokctl's metrics-server option would (kwok's kustomize/metrics):
// a Metric serving the kubelet's /metrics/resource series at
// /metrics/nodes/{nodeName}/metrics/resource, the path kwok's nodes name in their
// metrics.k8s.io/resource-metrics-path annotation, and a ClusterResourceUsage giving every
// container the CPU and memory its pod's kwok.x-k8s.io/usage-cpu and
// kwok.x-k8s.io/usage-memory annotations say (1m and 1Mi without them).
func siteMetricsConfig() ([]byte, error) {
	type series struct {
		name, dimension, kind, help, value string
	}
	labels := map[string][]any{
		"node": nil,
		"pod":  {label("namespace", "pod.metadata.namespace"), label("pod", "pod.metadata.name")},
		"container": {label("container", "container.name"), label("namespace", "pod.metadata.namespace"),
			label("pod", "pod.metadata.name")},
	}
	// A node uses some CPU and memory of its own (the system and the kubelet), as a real
	// node does; metrics-server drops a node whose CPU or memory reads 0, so an idle kwok
	// node would show <unknown> in kubectl top.
	const (
		nodeCPU    = `node.CumulativeUsage("cpu") + node.SinceSecond() * 0.05` // 50m
		nodeMemory = `node.Usage("memory") + 268435456.0`                      // 256Mi
	)
	var metrics []any
	for _, m := range []series{
		{"scrape_error", "node", "gauge", "1 if there was an error while getting container metrics, 0 otherwise", "0"},
		{"node_cpu_usage_seconds_total", "node", "counter", "Cumulative cpu time consumed by the node in core-seconds", nodeCPU},
		{"node_memory_working_set_bytes", "node", "gauge", "Current working set of the node in bytes", nodeMemory},
		{"pod_cpu_usage_seconds_total", "pod", "counter", "Cumulative cpu time consumed by the pod in core-seconds", `pod.CumulativeUsage("cpu")`},
		{"pod_memory_working_set_bytes", "pod", "gauge", "Current working set of the pod in bytes", `pod.Usage("memory")`},
		{"container_start_time_seconds", "container", "gauge", "Start time of the container since unix epoch in seconds", "pod.SinceSecond()"},
		{"container_cpu_usage_seconds_total", "container", "counter", "Cumulative cpu time consumed by the container in core-seconds",
			`pod.CumulativeUsage("cpu", container.name)`},
		{"container_memory_working_set_bytes", "container", "gauge", "Current working set of the container in bytes",
			`pod.Usage("memory", container.name)`},
	} {
		metric := map[string]any{"name": m.name, "dimension": m.dimension, "kind": m.kind, "help": m.help, "value": m.value}
		if l := labels[m.dimension]; l != nil {
			metric["labels"] = l
		}
		metrics = append(metrics, metric)
	}
	usage := func(resource, fallback string) map[string]any {
		annotation := "kwok.x-k8s.io/usage-" + resource
		return map[string]any{"expression": fmt.Sprintf("%q in pod.metadata.annotations ? Quantity(pod.metadata.annotations[%q]) : Quantity(%q)",
			annotation, annotation, fallback)}
	}
	return yamlDocuments([]any{
		map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Metric",
			"metadata": map[string]any{"name": "vk8s-lab-metrics-resource"},
			"spec":     map[string]any{"path": "/metrics/nodes/{nodeName}/metrics/resource", "metrics": metrics},
		},
		map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterResourceUsage",
			"metadata": map[string]any{"name": "vk8s-lab-usage"},
			"spec": map[string]any{"usages": []any{map[string]any{
				"usage": map[string]any{"cpu": usage("cpu", "1m"), "memory": usage("memory", "1Mi")},
			}}},
		},
	})
}

func label(name, value string) map[string]any { return map[string]any{"name": name, "value": value} }

// writeSiteContent writes what site pods show through kwok: container logs in the CRI
// format kubelets write (the current run and a previous one), the folder exec runs in, the
// tar shim exec finds first, and the configuration of the simulated resource metrics and
// of the lab's Stage.
func writeSiteContent(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, execDir), 0o755); err != nil {
		return err
	}
	systemTar, err := exec.LookPath("tar")
	if err != nil {
		return fmt.Errorf("site content: kubectl cp on the sites needs a tar: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, shimDir), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, shimDir, "tar"), tarShim(systemTar), 0o755); err != nil { //nolint:gosec // an executable script
		return err
	}
	metrics, err := siteMetricsConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, siteMetricsFile), metrics, 0o644); err != nil {
		return err
	}
	stages, err := siteStagesConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, siteStagesFile), stages, 0o644); err != nil {
		return err
	}
	now := time.Now().UTC()
	var cur, prev strings.Builder
	for i := 1; i <= 5; i++ {
		ts := now.Add(time.Duration(i-6) * time.Second).Format(time.RFC3339Nano)
		fmt.Fprintf(&cur, "%s stdout F vk8s lab: line %d of the simulated container on its site\n", ts, i)
		fmt.Fprintf(&prev, "%s stdout F vk8s lab: line %d of the previous run\n", ts, i)
	}
	if err := os.WriteFile(filepath.Join(dir, currentLogFile), []byte(cur.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, execDir, SiteFile), []byte(SiteFileContent), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, previousLogFile), []byte(prev.String()), 0o644)
}

// SiteFile is a file in the working directory of every simulated site container (where
// exec runs), holding SiteFileContent: kubectl cp reads it.
const (
	SiteFile        = "hello.txt"
	SiteFileContent = "hello from the site's container\n"
)

// AppendSiteLog appends a line to the log of every simulated site container, as the
// container would print it: kubectl logs -f and kubectl attach show it.
func (l *Lab) AppendSiteLog(line string) error {
	f, err := os.OpenFile(filepath.Join(l.siteContentDir(), currentLogFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), line)
	return errors.Join(err, f.Close())
}

// AdvertiseAddress returns the address the lab's API servers advertise, the machine's
// first global IPv4 address, and false when the machine has none (the address is then a
// documentation address nothing listens on). An API server proxies to nodes and pods only
// at global unicast addresses, so a kubelet endpoint that the host's node proxy should
// reach must be advertised, and listen, there.
func AdvertiseAddress() (string, bool) {
	a := advertiseAddress()
	return a, a != fallbackAdvertiseAddress
}

// advertiseAddress returns the machine's first global IPv4 address, as kube-apiserver would
// choose from the default route, or a documentation address where there is none.
func advertiseAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fallbackAdvertiseAddress
	}
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip := ipnet.IP.To4(); ip != nil && ip.IsGlobalUnicast() {
			return ip.String()
		}
	}
	return fallbackAdvertiseAddress
}

// kwokctl runs kwokctl with the lab's work folder, returning its combined output in errors.
func (l *Lab) kwokctl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, l.tools["kwokctl"], args...)
	cmd.Env = append(os.Environ(),
		"KWOK_WORKDIR="+l.workdir(),
		"KWOK_KUBECTL_BINARY="+l.tools["kubectl"],
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kwokctl %s: %w%s", strings.Join(args, " "), err, kwokctlErrors(out.String()))
	}
	return nil
}

// kwokctlErrors picks the errors out of kwokctl's JSON log lines, one indented line each;
// output that is not kwokctl's JSON is kept as its last lines.
func kwokctlErrors(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Err   string `json:"err"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec.Level == "ERROR" && rec.Err != "" {
			fmt.Fprintf(&b, "\n  %s: %s", rec.Msg, strings.ReplaceAll(strings.TrimSpace(rec.Err), "\n", "\n    "))
		}
	}
	if b.Len() == 0 && strings.TrimSpace(out) != "" {
		return "\n" + tail(out, 20)
	}
	return b.String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeFile writes data to path, creating its folder.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

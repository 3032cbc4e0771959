package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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
// local binaries only, so kwokctl never downloads anything.
func kwokctlConfig(role clusterRole, tools map[string]string, advertise string) ([]byte, error) {
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
	if role == roleHost {
		// Host nodes are the provider's virtual nodes; kwok must not manage them.
		options["disable"] = []string{"kwok-controller"}
	}
	cfg := map[string]any{
		"apiVersion": "config.kwok.x-k8s.io/v1alpha1",
		"kind":       "KwokctlConfiguration",
		"options":    options,
		"componentsPatches": []any{map[string]any{
			"name": "kube-apiserver",
			"extraArgs": []any{
				map[string]any{"key": "advertise-address", "value": advertise},
			},
		}},
	}
	return yaml.Marshal(cfg)
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

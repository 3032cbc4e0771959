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

package lab

import (
	"context"
	"errors"
	"fmt"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vk8s-io/vk8s/translate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// labProcess is a process the lab runs itself, beside kwokctl's (the provider, the
// webhook, metrics-server, the kubelet relay): its pid file, its log, and how to tell that
// the process a pid names is still it.
type labProcess struct {
	name, pidPath, logPath string
	// is says whether the running process pid is this one: a pid the system gave to
	// another process since is not ours.
	is func(pid int) bool
}

// pid is the pid in the pid file when that process still runs and is this one, and 0
// otherwise.
func (p labProcess) pid() int {
	pid := readPID(p.pidPath)
	if pid <= 0 || !ProcessRunning(pid) || !p.is(pid) {
		return 0
	}
	return pid
}

// stop stops the process, if it runs, and removes its pid file.
func (p labProcess) stop(ctx context.Context) error {
	pid := p.pid()
	if err := stopProcess(ctx, pid); err != nil {
		return fmt.Errorf("stop %s (pid %d): %w", p.name, pid, err)
	}
	if err := os.Remove(p.pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// status is the process as Status shows it; false when it has no pid file.
func (p labProcess) status() (ComponentStatus, bool) {
	if _, err := os.Stat(p.pidPath); err != nil {
		return ComponentStatus{}, false
	}
	pid := readPID(p.pidPath)
	return ComponentStatus{Name: p.name, PID: pid, Running: ProcessRunning(pid), Log: p.logPath}, true
}

// cmdline is a process's arguments, or nil when they cannot be read.
func cmdline(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(string(raw), "\x00")
}

// vk8s is the lab process of p, a subcommand of the vk8s binary.
func (l *Lab) vk8s(p vk8sProcess) labProcess {
	return labProcess{name: p.component, pidPath: l.pidPath(p), logPath: l.logPath(p), is: func(pid int) bool {
		args := cmdline(pid)
		return len(args) >= 2 && args[1] == p.subcommand
	}}
}

// metricsServer is the lab's metrics-server process. Stopping it leaves the APIService:
// the host's aggregator reports it unavailable until Up runs again.
func (l *Lab) metricsServer() labProcess {
	return labProcess{name: MetricsServerComponent, pidPath: l.metricsServerPIDPath(), logPath: l.metricsServerLogPath(), is: func(pid int) bool {
		args := cmdline(pid)
		return len(args) > 0 && filepath.Base(args[0]) == MetricsServerComponent
	}}
}

// relayProcess is the lab's kubelet relay process: `vk8s lab kubelet-relay` (of Config.LabBinary).
func (l *Lab) relayProcess() labProcess {
	return labProcess{name: RelayComponent, pidPath: l.relayPIDPath(), logPath: l.relayLogPath(), is: func(pid int) bool {
		return slices.Contains(cmdline(pid), RelaySubcommand)
	}}
}

// vk8sProcess is a `vk8s <subcommand>` the lab runs against the host: the provider and
// the admission webhook. Each has a pid file, a log file and its ports in lab.json, and is
// started again when it died or its binary changed.
type vk8sProcess struct {
	// component names it in pid and log files and in Status.
	component string
	// subcommand is the vk8s subcommand.
	subcommand string
	// args are its flags; ports are its three free ports: main, metrics, health.
	args func(l *Lab, kubeconfig string, ports [3]int) []string
	// fixedPort, when set, is its main port: the lab's webhook stays where the chart's
	// configurations call it.
	fixedPort func(st *state) int
	// replicas is the number of its kind running (0: one); a process started for another
	// number is started again.
	replicas int
}

// daemonState is what lab.json records about a running vk8s process.
type daemonState struct {
	Binary      string `json:"binary"`
	BinaryMTime int64  `json:"binaryMTime"`
	Port        int    `json:"port"`
	// Replicas is the vk8sProcess's replicas it was started for.
	Replicas    int `json:"replicas,omitempty"`
	MetricsPort int `json:"metricsPort"`
	HealthPort  int `json:"healthPort"`
	// TokenExpiry is when the token it runs with expires: a new token, a new process.
	TokenExpiry string `json:"tokenExpiry,omitempty"`
}

var (
	providerProcess = vk8sProcess{component: "vk8s-provider", subcommand: "provider",
		args: func(l *Lab, kubeconfig string, ports [3]int) []string {
			return []string{
				"--kubeconfig", kubeconfig,
				// The chart's Role grants the Lease there.
				"--leader-elect-namespace", SystemNamespace,
				"--node-address", "127.0.0.1",
				// One listener for every virtual node (no --kubelet-node-ports): metrics-server
				// follows each node's metrics.k8s.io/resource-metrics-path, and a listener per
				// node is a port and a goroutine per node (docs/kubeletapi.md).
				"--kubelet-port", strconv.Itoa(ports[0]),
				"--kubelet-client-ca-file", l.CACertPath("host"),
				"--kubelet-cert-dir", filepath.Join(l.cfg.Dir, "provider-certs"),
				"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(ports[1]),
				// Go's profiles beside the metrics, on loopback (the webhook's too): the bench
				// reads the heap.
				"--profiling",
				"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(ports[2]),
			}
		}}
	// The host's API server calls the webhook at a URL (the chart's webhook.url): the lab
	// has no Service for it. The chart owns the configurations; the webhook writes its CA
	// bundle into them, and keeps the CA where the chart's Role lets it.
	webhookProcess = vk8sProcess{component: "vk8s-webhook", subcommand: "webhook",
		fixedPort: func(st *state) int { return st.WebhookPort },
		args: func(_ *Lab, kubeconfig string, ports [3]int) []string {
			return []string{
				"--kubeconfig", kubeconfig,
				"--bind-address", "127.0.0.1",
				"--url", webhookURL(ports[0]),
				"--configurations", "inject-ca",
				"--configuration-name", WebhookConfigurationName,
				"--ca-secret", SystemNamespace + "/" + WebhookCASecret,
				"--leader-elect-namespace", SystemNamespace,
				"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(ports[1]),
				"--profiling",
				"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(ports[2]),
			}
		}}
)

// providerReplica is provider process i (1-based) of n. The first is providerProcess;
// with n > 1 every one runs with --shard, and the second and later have a pid file, a log
// and a certificate folder of their own (vk8s-provider-<i>).
func providerReplica(i, n int) vk8sProcess {
	if n <= 1 {
		return providerProcess
	}
	p := providerProcess
	p.replicas = n
	certs := "provider-certs"
	if i > 1 {
		p.component = fmt.Sprintf("%s-%d", providerProcess.component, i)
		certs = fmt.Sprintf("provider-certs-%d", i)
	}
	p.args = func(l *Lab, kubeconfig string, ports [3]int) []string {
		args := providerProcess.args(l, kubeconfig, ports)
		for j := range args {
			if args[j] == "--kubelet-cert-dir" && j+1 < len(args) {
				args[j+1] = filepath.Join(l.cfg.Dir, certs)
			}
		}
		return append(args, "--shard")
	}
	return p
}

// providerReplicas are provider processes 1 to n of n.
func providerReplicas(n int) []vk8sProcess {
	out := make([]vk8sProcess, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, providerReplica(i, n))
	}
	return out
}

// webhookURL is where the host's API server calls the lab's webhook.
func webhookURL(port int) string { return "https://127.0.0.1:" + strconv.Itoa(port) }

func (l *Lab) pidPath(p vk8sProcess) string {
	return filepath.Join(l.cfg.Dir, "pids", p.component+".pid")
}
func (l *Lab) logPath(p vk8sProcess) string {
	return filepath.Join(l.cfg.Dir, "logs", p.component+".log")
}

// ensureProcess runs p against the host, as the chart's ServiceAccount of component,
// unless it already runs from the same binary with the same token, and waits until it is
// ready. prev is its state in lab.json; the new state is returned.
func (l *Lab) ensureProcess(ctx context.Context, p vk8sProcess, component string, st0 *state, prev *daemonState, tokenExpiry string) (*daemonState, error) {
	bin := l.cfg.Vk8sBinary
	info, err := os.Stat(bin)
	if err != nil {
		return nil, fmt.Errorf("vk8s binary for the %s: %w", p.subcommand, err)
	}
	pid := l.vk8s(p).pid()
	fixed := 0
	if p.fixedPort != nil {
		fixed = p.fixedPort(st0)
	}
	if prev != nil && ProcessRunning(pid) && prev.Binary == bin && prev.BinaryMTime == info.ModTime().UnixNano() &&
		prev.TokenExpiry == tokenExpiry && (fixed == 0 || prev.Port == fixed) && prev.Replicas == p.replicas && processReady(ctx, prev.HealthPort) {
		l.logf("%s: running", p.component)
		return prev, nil
	}
	if err := l.vk8s(p).stop(ctx); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	if fixed != 0 {
		ports[0] = fixed
	}
	st := &daemonState{Binary: bin, BinaryMTime: info.ModTime().UnixNano(), Port: ports[0], MetricsPort: ports[1], HealthPort: ports[2], TokenExpiry: tokenExpiry, Replicas: p.replicas}
	kubeconfig := l.ComponentKubeconfig(component)
	logPath := l.logPath(p)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(bin, append([]string{p.subcommand}, p.args(l, kubeconfig, [3]int(ports))...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own session: it outlives `vk8s lab up`, as kwokctl's processes do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	l.logf("%s: starting (log %s)", p.component, logPath)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.component, err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it dies while we wait
	if err := writeFile(l.pidPath(p), []byte(strconv.Itoa(cmd.Process.Pid))); err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if !ProcessRunning(cmd.Process.Pid) {
			return false, errors.New("it exited")
		}
		return processReady(ctx, st.HealthPort), nil
	})
	if err != nil {
		// Not left half-started: the next Up starts it afresh.
		_ = l.vk8s(p).stop(ctx)
		raw, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%s is not ready: %w; log: %s\n%s", p.component, err, logPath, tail(string(raw), 10))
	}
	return st, nil
}

// processReady says whether a vk8s process's /readyz answers 200.
func processReady(ctx context.Context, port int) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// ProviderMetricsURL is the URL of the lab provider's Prometheus metrics.
func (l *Lab) ProviderMetricsURL() (string, error) {
	st, err := l.readState()
	if err != nil {
		return "", err
	}
	if st.Provider == nil {
		return "", fmt.Errorf("%w: lab %s runs no provider", ErrNotUp, l.cfg.Name)
	}
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", st.Provider.MetricsPort), nil
}

// WebhookMetricsURL is the URL of the lab webhook's Prometheus metrics.
func (l *Lab) WebhookMetricsURL() (string, error) {
	st, err := l.readState()
	if err != nil {
		return "", err
	}
	if st.Webhook == nil {
		return "", fmt.Errorf("%w: lab %s runs no webhook", ErrNotUp, l.cfg.Name)
	}
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", st.Webhook.MetricsPort), nil
}

// waitVirtualNodes waits until the host has n Ready virtual nodes.
func (l *Lab) waitVirtualNodes(ctx context.Context, n int) error {
	c, err := l.Client("host")
	if err != nil {
		return err
	}
	ready := 0
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var list corev1.NodeList
		if err := c.List(ctx, &list, client.MatchingLabels{vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}); err != nil {
			return false, nil
		}
		ready = 0
		for i := range list.Items {
			if translate.NodeReady(&list.Items[i]) {
				ready++
			}
		}
		return ready == n, nil
	})
	if err != nil {
		// The log goes with the lab: say its end here.
		raw, _ := os.ReadFile(l.logPath(providerProcess))
		return fmt.Errorf("%d of %d virtual nodes Ready in the host: %w; provider log: %s, ending:\n%s",
			ready, n, err, l.logPath(providerProcess), tail(string(raw), 30))
	}
	return nil
}

// readPID returns the pid in a pid file, or 0 when there is none.
func readPID(path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return pid
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ensureVk8s runs the provider and the admission webhook against the host, as the chart's
// ServiceAccounts, and records them in lab.json. creds are their tokens' expiry times.
func (l *Lab) ensureVk8s(ctx context.Context, st *state, creds map[string]string) error {
	n := max(st.ProviderReplicas, 1)
	for i := 1; i <= n; i++ {
		var prev *daemonState
		switch {
		case i == 1:
			prev = st.Provider
		case i-2 < len(st.Providers):
			prev = st.Providers[i-2]
		}
		p, err := l.ensureProcess(ctx, providerReplica(i, n), "provider", st, prev, creds["provider"])
		if err != nil {
			return err
		}
		switch {
		case i == 1:
			st.Provider = p
		case i-2 < len(st.Providers):
			st.Providers[i-2] = p
		default:
			st.Providers = append(st.Providers, p)
		}
		if err := l.writeState(*st); err != nil {
			return err
		}
	}
	// Replicas beyond n, from an Up with more.
	for i := n + 1; i <= maxProviderReplicas; i++ {
		if err := l.vk8s(providerReplica(i, maxProviderReplicas)).stop(ctx); err != nil {
			return err
		}
	}
	st.Providers = st.Providers[:n-1]
	if err := l.writeState(*st); err != nil {
		return err
	}
	w, err := l.ensureProcess(ctx, webhookProcess, "webhook", st, st.Webhook, creds["webhook"])
	if err != nil {
		return err
	}
	st.Webhook = w
	return l.writeState(*st)
}

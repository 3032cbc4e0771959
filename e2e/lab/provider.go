package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/sitereg"
)

// providerComponent names the lab's vk8s provider process in pid and log files and status.
const providerComponent = "vk8s-provider"

// providerState is what lab.json records about the running provider.
type providerState struct {
	Binary      string `json:"binary"`
	BinaryMTime int64  `json:"binaryMTime"`
	KubeletPort int    `json:"kubeletPort"`
	MetricsPort int    `json:"metricsPort"`
	HealthPort  int    `json:"healthPort"`
}

func (l *Lab) providerPIDPath() string {
	return filepath.Join(l.cfg.Dir, "pids", providerComponent+".pid")
}
func (l *Lab) providerLogPath() string {
	return filepath.Join(l.cfg.Dir, "logs", providerComponent+".log")
}

// ensureProvider runs `vk8s provider` against the host, unless it already runs from the
// same binary, and waits until it is ready.
// labNodePorts gives each virtual node its own kubelet API port; a port another lab holds
// is skipped.
const labNodePorts = "21000-21999"

func (l *Lab) ensureProvider(ctx context.Context, st *state) error {
	bin := l.cfg.Vk8sBinary
	info, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("vk8s binary for the provider: %w", err)
	}
	pid := l.providerPID()
	if p := st.Provider; p != nil && ProcessRunning(pid) && p.Binary == bin && p.BinaryMTime == info.ModTime().UnixNano() &&
		providerReady(ctx, p.HealthPort) {
		l.logf("%s: running", providerComponent)
		return nil
	}
	if err := l.stopProvider(ctx); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	p := &providerState{Binary: bin, BinaryMTime: info.ModTime().UnixNano(), KubeletPort: ports[0], MetricsPort: ports[1], HealthPort: ports[2]}
	kubeconfig, err := l.Kubeconfig("host")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(l.providerLogPath()), 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(l.providerLogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(bin, "provider",
		"--kubeconfig", kubeconfig,
		"--node-address", "127.0.0.1",
		"--kubelet-port", strconv.Itoa(p.KubeletPort),
		"--kubelet-node-ports", labNodePorts,
		"--kubelet-client-ca-file", l.CACertPath("host"),
		"--kubelet-cert-dir", filepath.Join(l.cfg.Dir, "provider-certs"),
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(p.MetricsPort),
		"--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(p.HealthPort),
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own session: it outlives `vk8s lab up`, as kwokctl's processes do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	l.logf("%s: starting (log %s)", providerComponent, l.providerLogPath())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", providerComponent, err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it dies while we wait
	if err := writeFile(l.providerPIDPath(), []byte(strconv.Itoa(cmd.Process.Pid))); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	st.Provider = p
	if err := l.writeState(*st); err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if !ProcessRunning(cmd.Process.Pid) {
			return false, errors.New("it exited")
		}
		return providerReady(ctx, p.HealthPort), nil
	})
	if err != nil {
		// Not left half-started: the next Up starts it afresh.
		_ = l.stopProvider(ctx)
		raw, _ := os.ReadFile(l.providerLogPath())
		return fmt.Errorf("%s is not ready: %w; log: %s\n%s", providerComponent, err, l.providerLogPath(), tail(string(raw), 10))
	}
	return nil
}

// providerReady says whether the provider's /readyz answers 200.
func providerReady(ctx context.Context, port int) bool {
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

// providerPID is the pid in the provider's pid file when that process is still a vk8s
// provider, and 0 otherwise: a pid the system gave to another process since is not ours.
func (l *Lab) providerPID() int {
	pid := readPID(l.providerPIDPath())
	if pid <= 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	args := strings.Split(string(raw), "\x00")
	if len(args) < 2 || args[1] != "provider" {
		return 0
	}
	return pid
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
		if err := c.List(ctx, &list, client.MatchingLabels{provider.LabelType: provider.TypeVirtualKubelet}); err != nil {
			return false, nil
		}
		ready = 0
		for i := range list.Items {
			if sitereg.NodeReady(&list.Items[i]) {
				ready++
			}
		}
		return ready == n, nil
	})
	if err != nil {
		return fmt.Errorf("%d of %d virtual nodes Ready in the host: %w; provider log: %s", ready, n, err, l.providerLogPath())
	}
	return nil
}

// stopProvider stops the provider process, if any, and removes its pid file.
func (l *Lab) stopProvider(ctx context.Context) error {
	pid := l.providerPID()
	if err := stopProcess(ctx, pid); err != nil {
		return fmt.Errorf("stop %s (pid %d): %w", providerComponent, pid, err)
	}
	if err := os.Remove(l.providerPIDPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// providerStatus is the provider process as Status shows it.
func (l *Lab) providerStatus() (ComponentStatus, bool) {
	if _, err := os.Stat(l.providerPIDPath()); err != nil {
		return ComponentStatus{}, false
	}
	pid := readPID(l.providerPIDPath())
	return ComponentStatus{Name: providerComponent, PID: pid, Running: ProcessRunning(pid), Log: l.providerLogPath()}, true
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

package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// relay is the lab's kubelet relay process: a lab program started with relayEnv set.
func (l *Lab) relay() labProcess {
	return labProcess{name: RelayComponent, pidPath: l.relayPIDPath(), logPath: l.relayLogPath(), is: func(pid int) bool {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		return err == nil && (strings.Contains(string(env), "\x00"+relayEnv+"=") || strings.HasPrefix(string(env), relayEnv+"="))
	}}
}

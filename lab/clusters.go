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

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vk8s-io/vk8s/lab/kwokconfig"
	"github.com/vk8s-io/vk8s/lab/sitestorage"
)

// fallbackAdvertiseAddress is used when the machine has no global IPv4 address:
// kube-apiserver refuses to start without an advertise address and rejects loopback. It is
// a documentation address (RFC 5737); nothing dials it.
const fallbackAdvertiseAddress = "192.0.2.250"

// ensureCluster creates the cluster, or starts it when it exists but does not answer, and
// waits until its API server is ready.
func (l *Lab) ensureCluster(ctx context.Context, cluster string, role kwokconfig.Role, advertise, nodeIP string) error {
	name := l.ClusterName(cluster)
	if _, err := os.Stat(l.kubeconfigPath(cluster)); err == nil {
		if l.ready(ctx, cluster) == nil && l.allRunning(cluster) {
			l.logf("%s: running", name)
			return nil
		}
		l.logf("%s: starting", name)
		if err := l.startCluster(ctx, cluster); err != nil {
			return err
		}
	} else {
		l.logf("%s: creating", name)
		if err := writeSiteContent(l.siteContentDir()); err != nil {
			return err
		}
		components, err := l.siteComponents(cluster, role)
		if err != nil {
			return err
		}
		cfg, err := kwokconfig.Render(kwokconfig.Cluster{Role: role, Tools: l.tools, Advertise: advertise, NodeIP: nodeIP,
			PKI: l.pkiDir(cluster), Content: l.siteContentDir(), Path: os.Getenv("PATH"), Components: components})
		if err != nil {
			return err
		}
		cfgPath := l.clusterConfigPath(cluster)
		if err := writeFile(cfgPath, cfg); err != nil {
			return err
		}
		// --kubeconfig "" keeps kwokctl away from the user's ~/.kube/config.
		if err := l.kwokctl(ctx, "create", "cluster", "--name", name, "--config", cfgPath, "--kubeconfig", ""); err != nil {
			return l.diagnose(cluster, err)
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, readyTimeout, true, func(ctx context.Context) (bool, error) {
		return l.ready(ctx, cluster) == nil, nil
	})
	if err != nil {
		return l.diagnose(cluster, fmt.Errorf("cluster %s: API server not ready after %s: %w", name, readyTimeout, err))
	}
	// kwokctl does not wait for the other components; one that exits (a bad flag, a busy
	// port) is caught here rather than as a cluster that silently never schedules. A
	// component may also give up waiting for a slow API server (kube-controller-manager does
	// on a loaded machine), so it is started again, as a kubelet would, a few times.
	for attempt := 1; ; attempt++ {
		if err := ctxSleep(ctx, componentSettle); err != nil {
			return err
		}
		if l.allRunning(cluster) {
			return nil
		}
		if attempt == componentStarts {
			return l.diagnose(cluster, fmt.Errorf("cluster %s: a component exited after start, %d times", name, componentStarts))
		}
		for _, c := range l.components(cluster) {
			if !c.Running {
				l.logf("%s: %s exited; starting it again (log %s)", name, c.Name, c.Log)
			}
		}
		if err := l.startCluster(ctx, cluster); err != nil {
			return err
		}
	}
}

// siteComponents are the lab's own processes that a site's kwokctl runs with it: the
// site's storage provisioner (package sitestorage), when the lab has a vk8s binary
// (Config.LabBinary). kwokctl
// names a component's pid and log files after its binary, so the binary is a link named
// for the component.
func (l *Lab) siteComponents(cluster string, role kwokconfig.Role) ([]kwokconfig.Component, error) {
	if role != kwokconfig.Site || l.cfg.LabBinary == "" {
		return nil, nil
	}
	bin, err := filepath.Abs(l.cfg.LabBinary)
	if err != nil {
		return nil, err
	}
	link := filepath.Join(l.cfg.Dir, "bin", sitestorage.Component)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return nil, err
	}
	if cur, err := os.Readlink(link); err != nil || cur != bin {
		_ = os.Remove(link)
		if err := os.Symlink(bin, link); err != nil {
			return nil, err
		}
	}
	dir := l.clusterDir(cluster)
	return []kwokconfig.Component{{
		Name:   sitestorage.Component,
		Binary: link,
		// The binary runtime's components use the cluster's kubeconfig.yaml too.
		Args:    []string{"lab", sitestorage.Subcommand, "--kubeconfig", l.kubeconfigPath(cluster)},
		WorkDir: dir,
	}}, nil
}

// componentStarts is how often Up starts a component that keeps exiting before it fails.
const componentStarts = 3

// startCluster starts the cluster's components that are not running. It first removes
// their pid files: kwokctl skips a component whose pid file names a process that still
// exists, and a dead child waiting to be reaped does.
func (l *Lab) startCluster(ctx context.Context, cluster string) error {
	for _, c := range l.components(cluster) {
		if !c.Running {
			_ = os.Remove(filepath.Join(l.clusterDir(cluster), "pids", c.Name+".pid"))
		}
	}
	if err := l.kwokctl(ctx, "start", "cluster", "--name", l.ClusterName(cluster)); err != nil {
		return l.diagnose(cluster, err)
	}
	return nil
}

// componentSettle is how long a started component must stay up before Up trusts it.
const componentSettle = time.Second

// ctxSleep waits d or until ctx ends.
func ctxSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (l *Lab) clusterConfigPath(cluster string) string {
	return filepath.Join(l.cfg.Dir, cluster+".kwokctl.yaml")
}

// writeSiteContent writes what site pods show through kwok: container logs in the CRI
// format kubelets write (the current run and a previous one), the folder exec runs in, the
// tar shim exec finds first, and the configuration of the simulated resource metrics and
// of the lab's Stage.
func writeSiteContent(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, kwokconfig.ExecDir), 0o755); err != nil {
		return err
	}
	systemTar, err := exec.LookPath("tar")
	if err != nil {
		return fmt.Errorf("site content: kubectl cp on the sites needs a tar: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, kwokconfig.ShimDir), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, kwokconfig.ShimDir, "tar"), kwokconfig.TarShim(systemTar), 0o755); err != nil { //nolint:gosec // an executable script
		return err
	}
	metrics, err := kwokconfig.Metrics()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, kwokconfig.MetricsFile), metrics, 0o644); err != nil {
		return err
	}
	stages, err := kwokconfig.Stages()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, kwokconfig.StagesFile), stages, 0o644); err != nil {
		return err
	}
	now := time.Now().UTC()
	var cur, prev strings.Builder
	for i := 1; i <= 5; i++ {
		ts := now.Add(time.Duration(i-6) * time.Second).Format(time.RFC3339Nano)
		fmt.Fprintf(&cur, "%s stdout F vk8s lab: line %d of the simulated container on its site\n", ts, i)
		fmt.Fprintf(&prev, "%s stdout F vk8s lab: line %d of the previous run\n", ts, i)
	}
	if err := os.WriteFile(filepath.Join(dir, kwokconfig.CurrentLogFile), []byte(cur.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, kwokconfig.ExecDir, SiteFile), []byte(SiteFileContent), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, kwokconfig.PreviousLogFile), []byte(prev.String()), 0o644)
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
	f, err := os.OpenFile(filepath.Join(l.siteContentDir(), kwokconfig.CurrentLogFile), os.O_APPEND|os.O_WRONLY, 0)
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

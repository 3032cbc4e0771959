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
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/discovery"
)

// ClusterStatus is the health of one lab cluster.
type ClusterStatus struct {
	// Name is the cluster's role in the lab: host, site1, ...
	Name string
	// Kubeconfig is the path of its kubeconfig.
	Kubeconfig string
	// Server is its API server URL.
	Server string
	// Ready says /readyz answered ok; Error says why not.
	Ready bool
	Error string
	// Version is the API server's gitVersion.
	Version string
	// Components are the cluster's processes.
	Components []ComponentStatus
}

// ComponentStatus is one process of a cluster.
type ComponentStatus struct {
	Name    string
	PID     int
	Running bool
	Log     string
}

// Status reports every cluster of the lab.
func (l *Lab) Status(ctx context.Context) ([]ClusterStatus, error) {
	st, err := l.readState()
	if err != nil {
		return nil, err
	}
	var out []ClusterStatus
	for _, c := range clusters(st.Sites) {
		cs := ClusterStatus{Name: c, Kubeconfig: l.kubeconfigPath(c), Components: l.components(c)}
		for _, p := range append(providerReplicas(maxProviderReplicas), webhookProcess) {
			if ps, ok := l.vk8s(p).status(); ok && c == "host" {
				cs.Components = append(cs.Components, ps)
			}
		}
		if m, ok := l.metricsServer().status(); ok && c == "host" {
			cs.Components = append(cs.Components, m)
		}
		if r, ok := l.relayProcess().status(); ok && c == "host" {
			cs.Components = append(cs.Components, r)
		}
		if cfg, err := l.RESTConfig(c); err != nil {
			cs.Error = err.Error()
		} else {
			cs.Server = cfg.Host
			if err := l.ready(ctx, c); err != nil {
				cs.Error = err.Error()
			} else {
				cs.Ready = true
				if dc, err := discovery.NewDiscoveryClientForConfig(cfg); err == nil {
					if v, err := dc.ServerVersion(); err == nil {
						cs.Version = v.GitVersion
					}
				}
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

// ready returns nil when the cluster's API server answers /readyz with ok.
func (l *Lab) ready(ctx context.Context, cluster string) error {
	cfg, err := l.RESTConfig(cluster)
	if err != nil {
		return err
	}
	cfg.Timeout = 3 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	body, err := dc.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("readyz: %w", err)
	}
	if strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("readyz: %s", body)
	}
	return nil
}

// components lists a cluster's processes from kwokctl's pid files, with their log files.
func (l *Lab) components(cluster string) []ComponentStatus {
	dir := l.clusterDir(cluster)
	pids, _ := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
	sort.Strings(pids)
	out := make([]ComponentStatus, 0, len(pids))
	for _, p := range pids {
		name := strings.TrimSuffix(filepath.Base(p), ".pid")
		cs := ComponentStatus{Name: name, Log: filepath.Join(dir, "logs", name+".log")}
		cs.PID = readPID(p)
		cs.Running = ProcessRunning(cs.PID)
		out = append(out, cs)
	}
	return out
}

// allRunning says whether every component of the cluster that kwokctl started is running.
func (l *Lab) allRunning(cluster string) bool {
	for _, c := range l.components(cluster) {
		if !c.Running {
			return false
		}
	}
	return true
}

// ProcessRunning says whether pid names a live process: a process that exited but was not
// reaped yet (a zombie) is not running.
func ProcessRunning(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(raw), ')'); i >= 0 && i+2 < len(raw) {
		return raw[i+2] != 'Z'
	}
	return true
}

// diagnose adds to err the components of the cluster that are not running, each with its
// log file and last lines, so a failed start names what failed and where to look.
func (l *Lab) diagnose(cluster string, err error) error {
	var b strings.Builder
	for _, c := range l.components(cluster) {
		if c.Running {
			continue
		}
		fmt.Fprintf(&b, "\n  component %s of %s is not running; log: %s", c.Name, l.ClusterName(cluster), c.Log)
		if raw, rerr := os.ReadFile(c.Log); rerr == nil {
			for _, line := range strings.Split(tail(string(raw), 5), "\n") {
				fmt.Fprintf(&b, "\n    | %s", line)
			}
		}
	}
	if b.Len() == 0 {
		return fmt.Errorf("%w\n  logs: %s", err, filepath.Join(l.clusterDir(cluster), "logs"))
	}
	return fmt.Errorf("%w%s", err, b.String())
}

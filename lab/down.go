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
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Down stops every process of the lab and removes its folder. A lab that is not there is
// not an error.
func (l *Lab) Down(ctx context.Context) error {
	if _, err := os.Stat(l.cfg.Dir); os.IsNotExist(err) {
		l.logf("down: nothing to do")
		return nil
	}
	// Down must work even when the tools are gone: kwokctl is used when it is there, and the
	// pid files make sure nothing is left behind either way.
	if tools, err := l.cfg.Tools.resolve(); err == nil {
		l.tools = tools
	}
	for _, p := range append([]vk8sProcess{webhookProcess}, providerReplicas(maxProviderReplicas)...) {
		if err := l.vk8s(p).stop(ctx); err != nil {
			return err
		}
	}
	if err := l.metricsServer().stop(ctx); err != nil {
		return err
	}
	if err := l.relayProcess().stop(ctx); err != nil {
		return err
	}
	dirs, _ := filepath.Glob(filepath.Join(l.workdir(), "clusters", l.cfg.Name+"-*"))
	for _, d := range dirs {
		cluster := filepath.Base(d)[len(l.cfg.Name)+1:]
		if err := l.deleteCluster(ctx, cluster); err != nil {
			return err
		}
	}
	l.removeKubeletNet(ctx)
	if err := os.RemoveAll(l.cfg.Dir); err != nil {
		return err
	}
	l.logf("down: removed %s", l.cfg.Dir)
	return nil
}

// deleteCluster stops a cluster's processes and removes its files.
func (l *Lab) deleteCluster(ctx context.Context, cluster string) error {
	name := l.ClusterName(cluster)
	l.logf("%s: deleting", name)
	comps := l.components(cluster)
	if l.tools != nil {
		if err := l.kwokctl(ctx, "delete", "cluster", "--name", name); err != nil {
			l.logf("%s: kwokctl delete failed, stopping its processes directly: %v", name, err)
		}
	}
	for _, c := range comps {
		if err := stopProcess(ctx, c.PID); err != nil {
			return fmt.Errorf("stop %s of %s (pid %d): %w", c.Name, name, c.PID, err)
		}
	}
	if err := os.RemoveAll(l.clusterDir(cluster)); err != nil {
		return err
	}
	return os.RemoveAll(l.clusterConfigPath(cluster))
}

// stopProcess sends SIGTERM, then SIGKILL after 10 s, and waits until pid is gone.
func stopProcess(ctx context.Context, pid int) error {
	if !ProcessRunning(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	gone := func(context.Context) (bool, error) { return !ProcessRunning(pid), nil }
	if wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, gone) == nil {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, gone)
}

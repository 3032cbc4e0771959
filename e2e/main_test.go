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

package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/lab"
)

// fleet is the lab every test of this package uses: a host and 3 sites x 3 nodes.
var fleet *lab.Lab

// vk8sBinary is the vk8s binary TestMain builds: the lab's kubelet relay, and the
// provider and webhook of the tests that run them as `vk8s lab up` does.
var vk8sBinary string

const (
	fleetSites = 3
	fleetNodes = 3
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(runWithLab(m))
}

func runWithLab(m *testing.M) int {
	tools := os.Getenv("VK8S_TOOLS_DIR")
	if tools == "" {
		fmt.Fprintln(os.Stderr, "e2e: VK8S_TOOLS_DIR is not set: run `make test`, or `go test -short` to skip the e2e tests")
		return 1
	}
	removeOrphanLabs(tools)
	dir, err := os.MkdirTemp("", "vk8s-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// The lab's kubelet relay is `vk8s lab kubelet-relay`: the tests run the provider and
	// the webhook in this process, but the relay from the product binary.
	vk8sBinary = filepath.Join(dir, "vk8s")
	if out, err := exec.Command("go", "build", "-o", vk8sBinary, "../cmd/vk8s").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ../cmd/vk8s: %v\n%s", err, out)
		return 1
	}
	fleet, err = lab.New(lab.Config{
		Name: fleetName(), Sites: fleetSites, Nodes: fleetNodes, Dir: filepath.Join(dir, fleetName()),
		Tools: lab.Tools{Dir: tools}, Log: os.Stderr, LabBinary: vk8sBinary,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Down runs whatever happened, so a failed Up or test leaves no process behind.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := fleet.Down(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: lab down:", err)
		}
	}()
	if err := fleet.Up(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: lab up:", err)
		return 1
	}
	code := func() int {
		defer stopProvider()
		return m.Run()
	}()
	if calls := forbiddenCalls(fleet); len(calls) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the chart's RBAC or the site ClusterRole refused %d calls of vk8s (charts/vk8s, +kubebuilder:rbac markers; siteadm.Permissions):\n", len(calls))
		for _, c := range calls {
			fmt.Fprintln(os.Stderr, "  "+c)
		}
		return 1
	}
	return code
}

// fleetName names the test lab: VK8S_E2E_LAB, default "e2e". Test processes with labs of
// different names run side by side (each lab picks free ports).
func fleetName() string {
	if name := os.Getenv("VK8S_E2E_LAB"); name != "" {
		return name
	}
	return "e2e"
}

// ownerFile holds the pid of the test process that owns a lab folder.
const ownerFile = "owner.pid"

// removeOrphanLabs takes down the labs of earlier test processes that died without doing
// so themselves (a panic in a test ends the process before TestMain's cleanup).
func removeOrphanLabs(tools string) {
	owners, _ := filepath.Glob(filepath.Join(os.TempDir(), "vk8s-e2e-*", ownerFile))
	for _, owner := range owners {
		raw, err := os.ReadFile(owner)
		if err != nil {
			continue
		}
		if pid, _ := strconv.Atoi(string(raw)); pid > 0 && lab.ProcessRunning(pid) {
			continue
		}
		dir := filepath.Dir(owner)
		// The lab's folder is named after the lab; one that died before writing lab.json
		// is the default's.
		name := "e2e"
		if states, _ := filepath.Glob(filepath.Join(dir, "*", "lab.json")); len(states) == 1 {
			name = filepath.Base(filepath.Dir(states[0]))
		}
		l, err := lab.New(lab.Config{Name: name, Dir: filepath.Join(dir, name), Tools: lab.Tools{Dir: tools}, Log: os.Stderr})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			err = l.Down(ctx)
			cancel()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: remove the orphan lab in %s: %v\n", dir, err)
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// skipShort skips a test that needs the lab under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the lab; run without -short")
	}
}

// kubectl runs the lab's kubectl against a cluster of the fleet and returns its stdout.
func kubectl(t *testing.T, cluster string, args ...string) string {
	t.Helper()
	out, err := kubectlErr(t, cluster, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kubectlErr is kubectl returning its error (with its stderr) instead of failing.
func kubectlErr(t *testing.T, cluster string, args ...string) (string, error) {
	t.Helper()
	out, err := kubectlCmd(t.Context(), t, cluster, args...).Output()
	if err != nil {
		stderr := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		return string(out), fmt.Errorf("kubectl %v: %w\n%s%s", args, err, out, stderr)
	}
	return string(out), nil
}

// kubectlCmd is the lab's kubectl against a cluster of the fleet ("host" or a site).
func kubectlCmd(ctx context.Context, t *testing.T, cluster string, args ...string) *exec.Cmd {
	t.Helper()
	kc, err := fleet.Kubeconfig(cluster)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")}.Path("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	// A discovery cache of the lab's own: kubectl caches discovery per server address for
	// ten minutes, and an earlier lab on the same port (with other CRDs) would answer.
	cache := filepath.Join(fleet.Dir(), "kubectl-cache")
	return exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kc, "--cache-dir", cache}, args...)...)
}

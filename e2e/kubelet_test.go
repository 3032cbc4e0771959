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
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	"github.com/creack/pty"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/provider"
)

// TestKubeletAPI reads logs, runs exec, port-forward, attach, cp (both ways) and run -it
// --rm through the host's API server, which reaches the provider's kubelet endpoint and
// verifies its serving certificate against the host CA (the lab's
// --kubelet-certificate-authority); kwok's ClusterLogs, ClusterExec, ClusterAttach and
// ClusterPortForward give the site pods their content, the lab's tar shim and Stage
// (vk8sv1.AnnotationLabExitAfter) make up for what kwok's containers do not do.
func TestKubeletAPI(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	const ns = "kubelet-e2e"
	hostNamespace(t, host, ns)
	waitAllVirtualNodes(t, host)
	p := testPod("talker", "site1-node2")
	p.Namespace = ns
	mustCreate(t, host, p)
	pollPod(t, host, client.ObjectKey{Namespace: ns, Name: "talker"}, "Running", time.Minute, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})

	t.Run("the serving certificate comes from the host's kubelet-serving signer", func(t *testing.T) {
		waitFor(t, "an approved, issued kubelet-serving CSR", func(ctx context.Context) (bool, error) {
			list := &certificatesv1.CertificateSigningRequestList{}
			if err := host.List(ctx, list); err != nil {
				return false, err
			}
			for _, csr := range list.Items {
				if csr.Spec.SignerName == certificatesv1.KubeletServingSignerName && len(csr.Status.Certificate) > 0 {
					return true, nil
				}
			}
			return false, nil
		})
	})

	t.Run("kubectl logs returns the site's log, with --tail and --previous", func(t *testing.T) {
		var out string
		waitFor(t, "kubectl logs to answer", func(ctx context.Context) (bool, error) {
			var err error
			out, err = kubectlErr(t, "host", "logs", "-n", ns, "talker")
			return err == nil, nil
		})
		if !strings.Contains(out, "line 1 of the simulated container") || !strings.Contains(out, "line 5 of the simulated container") {
			t.Errorf("kubectl logs:\n%s\nwant the 5 lines of the site's container", out)
		}
		tail := kubectl(t, "host", "logs", "-n", ns, "talker", "--tail", "1")
		if strings.Contains(tail, "line 4") || !strings.Contains(tail, "line 5") {
			t.Errorf("kubectl logs --tail 1:\n%s\nwant line 5 only", tail)
		}
		prev := kubectl(t, "host", "logs", "-n", ns, "talker", "--previous")
		if !strings.Contains(prev, "of the previous run") {
			t.Errorf("kubectl logs --previous:\n%s\nwant the previous run's lines", prev)
		}
	})

	t.Run("kubectl exec runs in the site's container", func(t *testing.T) {
		out := kubectl(t, "host", "exec", "-n", ns, "talker", "--", "echo", "hello from site1")
		if strings.TrimSpace(out) != "hello from site1" {
			t.Errorf("kubectl exec: %q, want %q", out, "hello from site1")
		}
	})

	t.Run("kubectl port-forward reaches the site pod's port", func(t *testing.T) {
		// The lab's site pods answer on every port as echo servers.
		out, stop := kubectlBackground(t, "port-forward", "-n", ns, "pod/talker", ":8080", "--address", "127.0.0.1")
		defer stop()
		var port string
		waitFor(t, "kubectl port-forward to listen", func(context.Context) (bool, error) {
			_, rest, ok := strings.Cut(out.String(), "Forwarding from 127.0.0.1:")
			port, _, _ = strings.Cut(rest, " ")
			return ok && port != "", nil
		})
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write([]byte("ping through the host\n")); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || line != "ping through the host\n" {
			t.Errorf("read %q, %v; want the echo of what was sent", line, err)
		}
	})

	t.Run("kubectl attach follows the site container's output", func(t *testing.T) {
		out, stop := kubectlBackground(t, "attach", "-n", ns, "talker", "-c", "app")
		defer stop()
		// attach shows what the container prints after it attached: print until it shows.
		i := 0
		waitFor(t, "kubectl attach to show a new line of the container", func(context.Context) (bool, error) {
			i++
			if err := fleet.AppendSiteLog(fmt.Sprintf("attach check %d", i)); err != nil {
				return false, err
			}
			return strings.Contains(out.String(), "attach check "), nil
		})
	})

	t.Run("kubectl cp copies from the site container", func(t *testing.T) {
		dir := t.TempDir()
		kubectlWithin(t, time.Minute, "cp", ns+"/talker:"+lab.SiteFile, filepath.Join(dir, "from-site.txt"), "-c", "app")
		if got, err := os.ReadFile(filepath.Join(dir, "from-site.txt")); err != nil || string(got) != lab.SiteFileContent {
			t.Errorf("copied from the site: %q, %v; want %q", got, err, lab.SiteFileContent)
		}
	})

	t.Run("kubectl cp copies to the site container", func(t *testing.T) {
		// kubectl cp runs tar -x in the container with the archive on stdin; on the lab's
		// sites that is the lab's tar shim (kwok's exec never closes stdin).
		dir := t.TempDir()
		name := fmt.Sprintf("to-site-%d.txt", time.Now().UnixNano())
		const content = "hello from the host, copied through the provider\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		kubectlWithin(t, time.Minute, "cp", filepath.Join(dir, name), ns+"/talker:"+name, "-c", "app")
		t.Cleanup(func() { _, _ = kubectlErr(t, "host", "exec", "-n", ns, "talker", "-c", "app", "--", "rm", "-f", name) })
		if got := kubectlWithin(t, time.Minute, "exec", "-n", ns, "talker", "-c", "app", "--", "cat", name); got != content {
			t.Errorf("cat in the site container: %q, want %q", got, content)
		}
		kubectlWithin(t, time.Minute, "cp", ns+"/talker:"+name, filepath.Join(dir, "back.txt"), "-c", "app")
		if got, err := os.ReadFile(filepath.Join(dir, "back.txt")); err != nil || string(got) != content {
			t.Errorf("copied back from the site: %q, %v; want %q", got, err, content)
		}
	})

	t.Run("kubectl run -it --rm attaches, ends when the container does and removes the pod", func(t *testing.T) {
		// The lab's kwok completes a pod annotated vk8sv1.AnnotationLabExitAfter that long after
		// it runs; the provider ends the attach then (kwok's attach never ends by itself).
		overrides, err := json.Marshal(map[string]any{"apiVersion": "v1", "spec": map[string]any{
			"nodeName":                      "site1-node3",
			"terminationGracePeriodSeconds": 1,
			"tolerations":                   []any{map[string]any{"key": vk8sv1.TaintKey, "operator": "Exists"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		cmd := kubectlCmd(ctx, t, "host", "run", "runner", "-n", ns, "-it", "--rm", "--restart=Never", "--image=busybox:1.36",
			"--annotations="+vk8sv1.AnnotationLabExitAfter+"=15s", "--overrides="+string(overrides), "--", "sh")
		// A real terminal, so that -t is honoured as for a user.
		tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tty.Close() }()
		out := &syncBuffer{}
		go func() { _, _ = io.Copy(out, tty) }()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			if t.Failed() {
				t.Logf("kubectl run:\n%s", out.String())
			}
		}()

		// What the container prints while kubectl is attached shows.
		i := 0
		waitFor(t, "kubectl run -it to show a new line of the container", func(context.Context) (bool, error) {
			select {
			case err := <-exited:
				if err == nil {
					err = errors.New("exit code 0")
				}
				return false, fmt.Errorf("kubectl run ended before it showed the container's output: %w", err)
			default:
			}
			i++
			if err := fleet.AppendSiteLog(fmt.Sprintf("run check %d", i)); err != nil {
				return false, err
			}
			return strings.Contains(out.String(), "run check "), nil
		})
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("kubectl run: %v, want exit code 0", err)
			}
		case <-ctx.Done():
			t.Fatal("kubectl run did not end after the container completed")
		}
		if strings.Contains(out.String(), "falling back to streaming logs") {
			t.Errorf("kubectl run did not attach")
		}
		pollPod(t, host, client.ObjectKey{Namespace: ns, Name: "runner"}, "the host pod gone", time.Minute,
			func(*corev1.Pod) bool { return false }, true)
		pollPod(t, siteClient(t, "site1"), client.ObjectKey{Namespace: translate.SiteNamespace(provider.DefaultTenant, ns), Name: "runner"},
			"the site pod gone", time.Minute, func(*corev1.Pod) bool { return false }, true)
	})

	t.Run("anonymous requests are refused", func(t *testing.T) {
		// The provider's certificate is verified by the host; here only the answer matters.
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // checks the status code only
		}}
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/containerLogs/%s/talker/app", providerPort, ns))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET containerLogs: %s, want 401", resp.Status)
		}
	})
}

// kubectlWithin runs the lab's kubectl against the host, failing the test when it fails
// or takes longer than timeout (a stream that never ends), and returns its stdout.
func kubectlWithin(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := kubectlCmd(ctx, t, "host", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %v: %v (ctx %v)\n%s%s", args, err, ctx.Err(), stdout.String(), stderr.String())
	}
	return stdout.String()
}

// kubectlBackground starts the lab's kubectl against the host and returns its output so
// far (stdout and stderr) and a function that stops it.
func kubectlBackground(t *testing.T, args ...string) (*syncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cmd := kubectlCmd(ctx, t, "host", args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return out, func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kubectl %v:\n%s", args, out.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

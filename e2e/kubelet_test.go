package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/e2e/lab"
)

// TestKubeletAPI reads logs, runs exec, port-forward, attach and cp through the host's API
// server, which reaches the provider's kubelet endpoint and verifies its serving
// certificate against the host CA (the lab's --kubelet-certificate-authority); kwok's
// ClusterLogs, ClusterExec, ClusterAttach and ClusterPortForward give the site pods their
// content.
func TestKubeletAPI(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	const ns = "kubelet-e2e"
	mustCreate(t, host, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	t.Cleanup(func() {
		_ = host.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	waitVirtualNodes(t, host, "all virtual nodes", func(nodes map[string]*corev1.Node) bool {
		return len(nodes) == fleetSites*fleetNodes
	})
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
		// Copying to a kwok container hangs on the site itself (kwok's exec never sees
		// stdin end), so only this direction is tested.
		dir := t.TempDir()
		kubectl(t, "host", "cp", ns+"/talker:"+lab.SiteFile, filepath.Join(dir, "from-site.txt"), "-c", "app")
		if got, err := os.ReadFile(filepath.Join(dir, "from-site.txt")); err != nil || string(got) != lab.SiteFileContent {
			t.Errorf("copied from the site: %q, %v; want %q", got, err, lab.SiteFileContent)
		}
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

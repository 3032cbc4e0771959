package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestKubeletAPI reads logs and runs exec through the host's API server, which reaches
// the provider's kubelet endpoint and verifies its serving certificate against the host CA
// (the lab's --kubelet-certificate-authority); kwok's ClusterLogs and ClusterExec give the
// site pods their content.
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

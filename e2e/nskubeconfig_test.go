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
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/access"
	"github.com/vk8s-io/vk8s/lab"
)

const (
	nskubeNS    = "nskube"
	nskubePlain = "nskube-plain"
	nskubeUser  = "team-a"
)

// TestNamespaceKubeconfig runs `vk8s kubeconfig` as the host's admin for a vK8s namespace,
// then uses ONLY the kubeconfig it printed: plain kubectl lists pods there, `helm install
// --wait` of e2e/testdata/charts/shop succeeds and its pods run on every site, kubectl logs
// and exec reach them, and kubectl is refused in another namespace, on cluster-scoped
// objects, on the namespace's VirtualKubernetes and on minting tokens. The command refuses
// a namespace that is not a vK8s namespace, a ServiceAccount it did not make and a bad
// --ttl, creating nothing; run again, it puts back a Role edited by hand and mints a new
// token.
func TestNamespaceKubeconfig(t *testing.T) {
	c, siteNS := federatedNamespace(t, nskubeNS)
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nskubePlain}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nskubePlain}})
	})
	dir := t.TempDir()
	file := filepath.Join(dir, "team-a.kubeconfig")

	t.Run("refused, creating nothing: not a vK8s namespace, a ServiceAccount it did not make, a bad --ttl", func(t *testing.T) {
		mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: nskubeNS, Name: "taken"}})
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-n", nskubePlain}, "namespace " + nskubePlain + " is not a vK8s namespace (it has no VirtualKubernetes)"},
			{[]string{"-n", "nskube-nowhere"}, "namespace nskube-nowhere not found"},
			{[]string{"-n", nskubeNS, "--user", "taken"}, "ServiceAccount " + nskubeNS + "/taken exists and was not made by vk8s kubeconfig"},
			{[]string{"-n", nskubeNS, "--ttl", "5m"}, "--ttl 5m0s"},
		} {
			stdout, _, err := nskubeRun(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || stdout != "" {
				t.Errorf("vk8s kubeconfig %v: stdout %q, error %v; want no kubeconfig and an error that says %q", tc.args, stdout, err, tc.want)
			}
		}
		for _, obj := range []client.Object{
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: nskubePlain, Name: access.DefaultUser}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: nskubePlain, Name: access.RoleName(access.DefaultUser)}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: nskubeNS, Name: access.RoleName("taken")}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: nskubeNS, Name: access.RoleName("taken")}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: nskubeNS, Name: access.DefaultUser}},
		} {
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err == nil {
				t.Errorf("%T %s/%s was created by a refused run", obj, obj.GetNamespace(), obj.GetName())
			}
		}
	})

	t.Run("vk8s kubeconfig -o FILE makes the ServiceAccount, Role and RoleBinding and a token of --ttl", func(t *testing.T) {
		_, stderr, err := nskubeRun(t, "-n", nskubeNS, "--user", nskubeUser, "--ttl", "2h", "-o", file)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"created ServiceAccount nskube/team-a", "created Role nskube/vk8s-kubeconfig-team-a", "created RoleBinding nskube/vk8s-kubeconfig-team-a",
			"token of ServiceAccount nskube/team-a expires at", "(in 2h0m0s)", "kubeconfig written to " + file,
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr does not say %q:\n%s", want, stderr)
			}
		}
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("kubeconfig file: %v, %v; want mode 0600 (it holds a token)", fi, err)
		}
		cfg, err := clientcmd.LoadFromFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cur := cfg.Contexts[cfg.CurrentContext]
		if cur == nil || cur.Namespace != nskubeNS || cfg.AuthInfos[cur.AuthInfo] == nil || cfg.AuthInfos[cur.AuthInfo].Token == "" {
			t.Fatalf("kubeconfig %s: want a context in namespace %s with a token", file, nskubeNS)
		}
		u := cfg.AuthInfos[cur.AuthInfo]
		if u.ClientCertificateData != nil || u.Username != "" || u.Exec != nil {
			t.Errorf("kubeconfig's user has more than a token: %+v", u)
		}
	})

	t.Run("with only that kubeconfig, kubectl lists pods and helm installs a chart whose pods run on every site", func(t *testing.T) {
		if out, err := nskubeKubectl(t, file, "get", "pods", "-o", "name"); err != nil || out != "" {
			t.Errorf("kubectl get pods: %q, %v; want none yet", out, err)
		}
		out, err := helmAt(t.Context(), file, filepath.Join(fleet.Dir(), "helm"), "install", "shop", "testdata/charts/shop", "--wait", "--timeout", "4m")
		if err != nil || !strings.Contains(out, "STATUS: deployed") || !strings.Contains(out, "NAMESPACE: "+nskubeNS) {
			t.Fatalf("helm install with the namespace's kubeconfig: %s %v", out, err)
		}
		for _, site := range labSites {
			var pods corev1.PodList
			if err := siteClient(t, site).List(t.Context(), &pods, client.InNamespace(siteNS), client.MatchingLabels{
				"app.kubernetes.io/instance": "shop", "app.kubernetes.io/component": "web"}); err != nil {
				t.Fatal(err)
			}
			running := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
			if running != 2 {
				t.Errorf("%s runs %d web pods of the release, want 2", site, running)
			}
		}
		out, err = nskubeKubectl(t, file, "get", "pods", "-l", "app.kubernetes.io/component=web", "-o", "name")
		pods := strings.Fields(out)
		if err != nil || len(pods) != 6 {
			t.Fatalf("kubectl get pods: %q, %v; want 6 web pods (2 on each of 3 sites)", out, err)
		}
		if _, err := nskubeKubectl(t, file, "logs", pods[0]); err != nil {
			t.Errorf("kubectl logs: %v", err)
		}
		if out, err := nskubeKubectl(t, file, "exec", pods[0], "--", "echo", "hi"); err != nil {
			t.Errorf("kubectl exec: %q, %v", out, err)
		}
		if out, err := nskubeKubectl(t, file, "scale", "deployment/shop-shop", "--replicas", "1"); err != nil {
			t.Errorf("kubectl scale: %q, %v", out, err)
		}
	})

	t.Run("with only that kubeconfig, kubectl is refused elsewhere", func(t *testing.T) {
		for _, args := range [][]string{
			{"get", "pods", "-n", nskubePlain},
			{"get", "pods", "-n", "default"},
			{"get", "pods", "-A"},
			{"create", "configmap", "x", "-n", nskubePlain},
			{"get", "nodes"},
			{"get", "namespaces"},
			{"get", "sites"},
			{"get", "workloadflavors"},
			{"delete", "virtualkubernetes", "vk"},
			{"create", "token", nskubeUser},
			{"create", "ingress", "x", "--rule", "a.example.com/=svc:80"},
		} {
			out, err := nskubeKubectl(t, file, args...)
			if err == nil || !strings.Contains(err.Error(), "Forbidden") && !strings.Contains(err.Error(), "forbidden") {
				t.Errorf("kubectl %v with the namespace's kubeconfig: %q, %v; want Forbidden", args, out, err)
			}
		}
	})

	t.Run("run again, it puts back the Role and mints another token", func(t *testing.T) {
		role := &rbacv1.Role{}
		key := client.ObjectKey{Namespace: nskubeNS, Name: access.RoleName(nskubeUser)}
		if err := c.Get(t.Context(), key, role); err != nil {
			t.Fatal(err)
		}
		role.Rules = role.Rules[:1]
		if err := c.Update(t.Context(), role); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := nskubeRun(t, "-n", nskubeNS, "--user", nskubeUser)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "updated Role nskube/vk8s-kubeconfig-team-a") || strings.Contains(stderr, "created") || strings.Contains(stderr, "RoleBinding") {
			t.Errorf("stderr of the second run:\n%s\nwant only the Role updated", stderr)
		}
		if err := c.Get(t.Context(), key, role); err != nil || len(role.Rules) != len(access.Rules()) {
			t.Errorf("Role after the second run: %d rules, %v; want %d", len(role.Rules), err, len(access.Rules()))
		}
		again, err := clientcmd.Load([]byte(stdout))
		if err != nil {
			t.Fatalf("stdout is not a kubeconfig: %v\n%s", err, stdout)
		}
		first, _ := clientcmd.LoadFromFile(file)
		a, b := first.AuthInfos[first.Contexts[first.CurrentContext].AuthInfo].Token, again.AuthInfos[again.Contexts[again.CurrentContext].AuthInfo].Token
		if a == b || b == "" {
			t.Error("the second run printed the first token, want a new one")
		}
		// Both tokens work until they expire.
		for i, tok := range []string{a, b} {
			if out, err := nskubeKubectl(t, file, "--token", tok, "get", "role", access.RoleName(nskubeUser), "-o", "name"); err != nil {
				t.Errorf("token %d: %q, %v", i+1, out, err)
			}
		}
	})

	t.Run("helm uninstall with that kubeconfig", func(t *testing.T) {
		if out, err := helmAt(t.Context(), file, filepath.Join(fleet.Dir(), "helm"), "uninstall", "shop", "--wait", "--timeout", "3m"); err != nil {
			t.Errorf("helm uninstall: %s %v", out, err)
		}
	})
}

// nskubeRun runs `vk8s kubeconfig args...` as the host's admin and returns its stdout, its
// stderr and an error with the stderr.
func nskubeRun(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	kc, err := fleet.Kubeconfig("host")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), vk8sBinary, append([]string{"kubeconfig", "--kubeconfig", kc}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), stderr.String(), fmt.Errorf("vk8s kubeconfig %v: %w\n%s", args, err, stderr.String())
	}
	return stdout.String(), stderr.String(), nil
}

// nskubeKubectl runs the lab's kubectl with kubeconfig kc and nothing else, and returns its
// stdout and an error with its stderr.
func nskubeKubectl(t *testing.T, kc string, args ...string) (string, error) {
	t.Helper()
	bin, err := lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")}.Path("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kc, "--cache-dir", filepath.Join(fleet.Dir(), "kubectl-cache")}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return string(out), err
	}
	return string(out), nil
}

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
	"net"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/siteadm"
	"github.com/vk8s-io/vk8s/sitereg"
)

// runSiteCmd runs `vk8s site ARGS` of the binary TestMain built against the fleet's host
// and returns its stdout, its stderr and its error.
func runSiteCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	kc, err := fleet.Kubeconfig("host")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.Context(): the cleanup of TestSiteJoin runs it too.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vk8sBinary, append([]string{"site"}, append(args, "--kubeconfig", kc)...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("vk8s site %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	return stdout.String(), stderr.String(), err
}

// siteKubeconfigFile is the admin kubeconfig of a lab site, changed by mutate, in a file.
func siteKubeconfigFile(t *testing.T, site string, mutate func(*clientcmdapi.Config)) string {
	t.Helper()
	p, err := fleet.Kubeconfig(site)
	if err != nil {
		t.Fatal(err)
	}
	if mutate == nil {
		return p
	}
	cfg, err := clientcmd.LoadFromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	mutate(cfg)
	out := filepath.Join(t.TempDir(), site+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// nothingJoined checks that neither the host nor the cluster of lab site site holds
// anything of a join of Site name with tenant.
func nothingJoined(t *testing.T, site, tenant, name string) {
	t.Helper()
	ctx := t.Context()
	host := hostClient(t)
	if err := host.Get(ctx, client.ObjectKey{Name: name}, &vk8sv1.Site{}); !apierrors.IsNotFound(err) {
		t.Errorf("Site %s in the host: %v, want none", name, err)
	}
	if err := host.Get(ctx, client.ObjectKey{Namespace: lab.SystemNamespace, Name: siteadm.SecretName(name)}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret %s in the host: %v, want none", siteadm.SecretName(name), err)
	}
	cs := clientset(t, site)
	account := siteadm.AccountName(tenant, name)
	if _, err := cs.CoreV1().ServiceAccounts(siteadm.Namespace).Get(ctx, account, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ServiceAccount %s on %s: %v, want none", account, site, err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, account, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole %s on %s: %v, want none", account, site, err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, account, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRoleBinding %s on %s: %v, want none", account, site, err)
	}
}

// TestSiteJoin (issue 15, item 1): `vk8s site join` joins site3's cluster a second time,
// as Site joined of its node1 (the lab's own Sites were joined by the lab through the
// same code); list shows it; a taken name, wrong credentials, a site that does not answer
// and a site joined to another host are refused, naming the cause, with nothing made on
// either side; leave refuses while a pod runs there, and with --force undoes both sides.
func TestSiteJoin(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	waitAllVirtualNodes(t, host)
	site3 := clientset(t, "site3")
	const name = "joined"
	account := siteadm.AccountName(lab.Tenant, name)
	admin := siteKubeconfigFile(t, "site3", nil)
	t.Cleanup(func() {
		// Whatever a failed test left.
		_, _, _ = runSiteCmd(t, "leave", name, "--site-kubeconfig", admin, "--force")
	})

	t.Run("join", func(t *testing.T) {
		stdout, stderr, err := runSiteCmd(t, "join", name, "--site-kubeconfig", admin,
			"--node-selector", corev1.LabelHostname+"=node1", "--labels", "e2e=join", "--type", "RegionalEdge")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"checking the site at", "creating on the site: ServiceAccount vk8s-system/" + account,
			"Connected=True", "virtual node " + name + "-node1 Ready"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("progress does not say %q", want)
			}
		}
		if !strings.Contains(stdout, "Site "+name+" joined") || !strings.Contains(stdout, name+"-node1") {
			t.Errorf("summary %q", stdout)
		}
		role, err := site3.RbacV1().ClusterRoles().Get(t.Context(), account, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(role.Rules, siteadm.Rules(account)) {
			t.Errorf("ClusterRole %s rules %v, want siteadm.Rules", account, role.Rules)
		}
		if _, err := site3.CoreV1().ServiceAccounts(siteadm.Namespace).Get(t.Context(), account, metav1.GetOptions{}); err != nil {
			t.Error(err)
		}
		secret := &corev1.Secret{}
		if err := host.Get(t.Context(), client.ObjectKey{Namespace: lab.SystemNamespace, Name: siteadm.SecretName(name)}, secret); err != nil {
			t.Fatal(err)
		}
		if secret.Annotations[vk8sv1.AnnotationSiteServiceAccount] != siteadm.Namespace+"/"+account || secret.Annotations[vk8sv1.AnnotationTokenExpiration] == "" {
			t.Errorf("Secret annotations %v", secret.Annotations)
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data[siteadm.SecretKey])
		if err != nil || cfg.BearerToken == "" || len(cfg.CertData) > 0 {
			t.Errorf("the Secret's kubeconfig is not a token's: %v", err)
		}
		s := &vk8sv1.Site{}
		if err := host.Get(t.Context(), client.ObjectKey{Name: name}, s); err != nil {
			t.Fatal(err)
		}
		if s.Labels["e2e"] != "join" || s.Spec.Type != vk8sv1.SiteTypeRegionalEdge || !meta.IsStatusConditionTrue(s.Status.Conditions, vk8sv1.ConditionReady) ||
			!reflect.DeepEqual(s.Status.VirtualNodes, []string{name + "-node1"}) {
			t.Errorf("Site %s: labels %v, type %s, status %+v", name, s.Labels, s.Spec.Type, s.Status)
		}
	})

	t.Run("list", func(t *testing.T) {
		stdout, _, err := runSiteCmd(t, "list")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"NAME", name, "site1", "site2", "site3"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("list does not show %q", want)
			}
		}
		for _, line := range strings.Split(stdout, "\n") {
			if f := strings.Fields(line); len(f) > 4 && f[0] == name && !strings.Contains(line, "True") {
				t.Errorf("row of %s is not Connected and Ready: %q", name, line)
			}
		}
	})

	t.Run("a taken name is refused", func(t *testing.T) {
		before := &vk8sv1.Site{}
		if err := host.Get(t.Context(), client.ObjectKey{Name: "site2"}, before); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := runSiteCmd(t, "join", "site2", "--site-kubeconfig", admin)
		if err == nil || !strings.Contains(stderr, "Site site2 already exists") {
			t.Errorf("join of a taken name: %v, %q", err, stderr)
		}
		after := &vk8sv1.Site{}
		if err := host.Get(t.Context(), client.ObjectKey{Name: "site2"}, after); err != nil || after.Generation != before.Generation {
			t.Errorf("Site site2 changed: %v", err)
		}
		// site2 was joined to its own cluster, not site3's.
		if _, err := site3.CoreV1().ServiceAccounts(siteadm.Namespace).Get(t.Context(), siteadm.AccountName(lab.Tenant, "site2"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ServiceAccount of site2 on site3: %v, want none", err)
		}
	})

	t.Run("wrong credentials are refused", func(t *testing.T) {
		bad := siteKubeconfigFile(t, "site3", func(cfg *clientcmdapi.Config) {
			u := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
			u.ClientCertificateData, u.ClientKeyData, u.ClientCertificate, u.ClientKey, u.Token = nil, nil, "", "", "made-up-token"
		})
		_, stderr, err := runSiteCmd(t, "join", "badcreds", "--site-kubeconfig", bad)
		if err == nil || !strings.Contains(stderr, "401 Unauthorized") || !strings.Contains(stderr, "--site-kubeconfig") {
			t.Errorf("join with wrong credentials: %v, %q", err, stderr)
		}
		nothingJoined(t, "site3", lab.Tenant, "badcreds")
	})

	t.Run("a site that does not answer is refused within the timeout", func(t *testing.T) {
		// A listener that accepts and never answers, as a site behind a black hole.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		go func() {
			var held []net.Conn
			for {
				c, err := l.Accept()
				if err != nil {
					for _, c := range held {
						_ = c.Close()
					}
					return
				}
				held = append(held, c)
			}
		}()
		dead := siteKubeconfigFile(t, "site3", func(cfg *clientcmdapi.Config) {
			cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server = "https://" + l.Addr().String()
		})
		start := time.Now()
		_, stderr, err := runSiteCmd(t, "join", "unreachable", "--site-kubeconfig", dead, "--site-timeout", "3s")
		if err == nil || !strings.Contains(stderr, "cannot reach the site's API server at https://"+l.Addr().String()) {
			t.Errorf("join of a site that does not answer: %v, %q", err, stderr)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("refused after %s, want within a few seconds of --site-timeout 3s", took)
		}
		nothingJoined(t, "site3", lab.Tenant, "unreachable")
	})

	t.Run("a site joined to another host is refused", func(t *testing.T) {
		// Tenant e2eother is claimed on site2 by another host.
		const tenant = "e2eother"
		claim := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: sitereg.ClaimNamespace, Name: sitereg.ClaimName(tenant)},
			Data: map[string]string{sitereg.ClaimKeyHostID: "uid-of-another-host", sitereg.ClaimKeyHostName: "https://other-host.example:6443"}}
		site2 := clientset(t, "site2")
		if _, err := site2.CoreV1().ConfigMaps(claim.Namespace).Create(t.Context(), claim, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = site2.CoreV1().ConfigMaps(claim.Namespace).Delete(context.Background(), claim.Name, metav1.DeleteOptions{})
		})
		_, stderr, err := runSiteCmd(t, "join", "elsewhere", "--tenant", tenant, "--site-kubeconfig", siteKubeconfigFile(t, "site2", nil))
		if err == nil || !strings.Contains(stderr, "already joined to another host, https://other-host.example:6443") {
			t.Errorf("join of a site of another host: %v, %q", err, stderr)
		}
		nothingJoined(t, "site2", tenant, "elsewhere")
	})

	t.Run("leave refuses while a pod runs there", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "on-joined", Namespace: metav1.NamespaceDefault},
			Spec: corev1.PodSpec{
				NodeName:    name + "-node1",
				Tolerations: []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}},
				Containers:  []corev1.Container{{Name: "c", Image: "nginx:1.27"}},
			},
		}
		mustCreate(t, host, pod)
		t.Cleanup(func() { _ = host.Delete(context.Background(), pod) })
		waitFor(t, "pod on-joined Running", func(ctx context.Context) (bool, error) {
			err := host.Get(ctx, client.ObjectKeyFromObject(pod), pod)
			return err == nil && pod.Status.Phase == corev1.PodRunning, nil
		})
		_, stderr, err := runSiteCmd(t, "leave", name, "--site-kubeconfig", admin)
		if err == nil || !strings.Contains(stderr, "1 vK8s pods run on Site "+name+" (default/on-joined)") || !strings.Contains(stderr, "--force") {
			t.Errorf("leave with a pod: %v, %q", err, stderr)
		}
		if err := host.Get(t.Context(), client.ObjectKey{Name: name}, &vk8sv1.Site{}); err != nil {
			t.Errorf("Site %s after a refused leave: %v", name, err)
		}
		if _, err := site3.CoreV1().ServiceAccounts(siteadm.Namespace).Get(t.Context(), account, metav1.GetOptions{}); err != nil {
			t.Errorf("ServiceAccount %s after a refused leave: %v", account, err)
		}
	})

	t.Run("leave --force undoes both sides", func(t *testing.T) {
		var uid string
		if p := (&corev1.Pod{}); host.Get(t.Context(), client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "on-joined"}, p) == nil {
			uid = string(p.UID)
		}
		stdout, _, err := runSiteCmd(t, "leave", name, "--site-kubeconfig", admin, "--force")
		if err != nil || !strings.Contains(stdout, "Site "+name+" left") {
			t.Fatalf("leave --force: %v, %q", err, stdout)
		}
		nothingJoined(t, "site3", lab.Tenant, name)
		waitFor(t, "the pod gone in the host and on site3", func(ctx context.Context) (bool, error) {
			if err := host.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "on-joined"}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
				return false, nil
			}
			pods, err := site3.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: vk8sv1.LabelHostPodUID + "=" + uid})
			return err == nil && len(pods.Items) == 0, nil
		})
		// site3, on the same cluster, keeps its claim and its connection.
		if _, err := site3.CoreV1().ConfigMaps(sitereg.ClaimNamespace).Get(t.Context(), sitereg.ClaimName(lab.Tenant), metav1.GetOptions{}); err != nil {
			t.Errorf("tenant claim on site3: %v", err)
		}
		s := &vk8sv1.Site{}
		if err := host.Get(t.Context(), client.ObjectKey{Name: "site3"}, s); err != nil || !meta.IsStatusConditionTrue(s.Status.Conditions, vk8sv1.ConditionConnected) {
			t.Errorf("site3 after leave: %v %+v", err, s.Status.Conditions)
		}
		_, stderr, err := runSiteCmd(t, "leave", name, "--site-kubeconfig", admin)
		if err == nil || !strings.Contains(stderr, "no Site "+name) {
			t.Errorf("leave of a Site that is gone: %v, %q", err, stderr)
		}
	})
}

// TestSiteTokenRenewal: the provider renews the token of a Site Secret that join made once
// half of its lifetime has passed (the lab's are; here the Secret says it was issued long
// ago), and the Site stays Connected with the new one.
func TestSiteTokenRenewal(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	waitAllVirtualNodes(t, host)
	key := client.ObjectKey{Namespace: lab.SystemNamespace, Name: siteadm.SecretName("site1")}
	secret := &corev1.Secret{}
	if err := host.Get(t.Context(), key, secret); err != nil {
		t.Fatal(err)
	}
	oldToken := tokenOf(t, secret)
	// A token of a day, issued 23 hours ago: past half of its life.
	longAgo := time.Now().Add(-23 * time.Hour).UTC().Format(time.RFC3339)
	patch := client.MergeFrom(secret.DeepCopy())
	secret.Annotations[vk8sv1.AnnotationTokenIssued] = longAgo
	secret.Annotations[vk8sv1.AnnotationTokenExpiration] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if err := host.Patch(t.Context(), secret, patch); err != nil {
		t.Fatal(err)
	}
	waitForLong(t, 2*time.Minute, "a new token in Secret site1-kubeconfig", func(ctx context.Context) (bool, error) {
		if err := host.Get(ctx, key, secret); err != nil {
			return false, err
		}
		return secret.Annotations[vk8sv1.AnnotationTokenIssued] != longAgo && tokenOf(t, secret) != oldToken, nil
	})
	exp, err := time.Parse(time.RFC3339, secret.Annotations[vk8sv1.AnnotationTokenExpiration])
	if err != nil || time.Until(exp) < 20*time.Hour {
		t.Errorf("new token expires %v (%v), want a day from now", exp, err)
	}
	started := time.Now()
	waitFor(t, "site1 Connected with the new token", func(ctx context.Context) (bool, error) {
		s := &vk8sv1.Site{}
		if err := host.Get(ctx, client.ObjectKey{Name: "site1"}, s); err != nil {
			return false, err
		}
		hb := s.Status.LastHeartbeatTime
		return hb != nil && hb.After(started) && meta.IsStatusConditionTrue(s.Status.Conditions, vk8sv1.ConditionConnected), nil
	})
}

func tokenOf(t *testing.T, s *corev1.Secret) string {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(s.Data[siteadm.SecretKey])
	if err != nil {
		t.Fatal(err)
	}
	return cfg.BearerToken
}

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
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/lab/kwokconfig"
	"github.com/vk8s-io/vk8s/translate"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
)

func TestLabClustersAnswer(t *testing.T) {
	skipShort(t)
	all, err := fleet.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"host", "site1", "site2", "site3"}
	var got []string
	for _, c := range all {
		got = append(got, c.Name)
		if !c.Ready || c.Version != kwokconfig.KubernetesVersion {
			t.Errorf("%s: ready %v version %q error %q; want ready at %s", c.Name, c.Ready, c.Version, c.Error, kwokconfig.KubernetesVersion)
		}
		names := map[string]bool{}
		for _, p := range c.Components {
			names[p.Name] = true
			if !p.Running {
				t.Errorf("%s: component %s (pid %d) is not running; log %s", c.Name, p.Name, p.PID, p.Log)
			}
			if _, err := os.Stat(p.Log); err != nil {
				t.Errorf("%s: component %s has no log file: %v", c.Name, p.Name, err)
			}
		}
		for _, n := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			if !names[n] {
				t.Errorf("%s: component %s missing from %v", c.Name, n, names)
			}
		}
		if c.Name != "host" && !names["kwok-controller"] {
			t.Errorf("%s: kwok controller missing from %v", c.Name, names)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("clusters %v, want %v", got, want)
	}
}

func TestKubectlSeesSitesAndVersion(t *testing.T) {
	skipShort(t)
	names := strings.Fields(kubectl(t, "host", "get", "sites", "-o", "name"))
	if want := []string{"site.vk8s.io/site1", "site.vk8s.io/site2", "site.vk8s.io/site3"}; !slices.Equal(names, want) {
		t.Errorf("kubectl get sites: %v, want %v", names, want)
	}
	// The printer columns and the category work through the real kubectl.
	table := kubectl(t, "host", "get", "vk8s-all", "-A")
	for _, want := range []string{"site1", "all-sites"} {
		if !strings.Contains(table, want) {
			t.Errorf("kubectl get vk8s-all -A does not list %s:\n%s", want, table)
		}
	}
	// vk8s is VirtualKubernetes' short name, not a category: it lists that kind only.
	if out, err := kubectlErr(t, "host", "get", "vk8s", "-A", "-o", "name"); err != nil || strings.Contains(out, "site") {
		t.Errorf("kubectl get vk8s -A lists more than VirtualKubernetes (%v):\n%s", err, out)
	}
	var v struct {
		Client struct{ GitVersion string } `json:"clientVersion"`
		Server struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, "host", "version", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Client.GitVersion != kwokconfig.KubernetesVersion || v.Server.GitVersion != kwokconfig.KubernetesVersion {
		t.Errorf("kubectl version: client %q server %q, want %s for both", v.Client.GitVersion, v.Server.GitVersion, kwokconfig.KubernetesVersion)
	}
}

func TestLabRegistersSites(t *testing.T) {
	skipShort(t)
	c := hostClient(t)
	var sites vk8sv1.SiteList
	if err := c.List(t.Context(), &sites); err != nil {
		t.Fatal(err)
	}
	if len(sites.Items) != fleetSites {
		t.Fatalf("%d Sites, want %d", len(sites.Items), fleetSites)
	}
	for _, s := range sites.Items {
		if s.Labels[vk8sv1.LabelLab] != fleetName() || s.Labels[lab.LabelRegion] == "" {
			t.Errorf("site %s labels %v", s.Name, s.Labels)
		}
		ref := s.Spec.KubeconfigSecretRef
		var secret corev1.Secret
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &secret); err != nil {
			t.Errorf("site %s: secret: %v", s.Name, err)
			continue
		}
		// The kubeconfig in the Secret works on its own (the CA inlined) with a token of
		// the site's ServiceAccount that join makes, never the site admin's certificate.
		if kc := string(secret.Data[ref.Key]); !strings.Contains(kc, "certificate-authority-data") || !strings.Contains(kc, "token: ") ||
			strings.Contains(kc, "client-certificate") || strings.Contains(kc, "client-key") {
			t.Errorf("site %s: kubeconfig is not a self-contained one of a token", s.Name)
		}
		if sa := secret.Annotations[vk8sv1.AnnotationSiteServiceAccount]; sa != "vk8s-system/vk8s-"+lab.Tenant+"-"+s.Name {
			t.Errorf("site %s: Secret names ServiceAccount %q", s.Name, sa)
		}
	}
	var vs vk8sv1.VirtualSite
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: lab.SharedNamespace, Name: lab.AllSitesVirtualSite}, &vs); err != nil {
		t.Fatalf("virtual-site shared/all-sites: %v", err)
	}
}

func TestCRDsValidateAndDefault(t *testing.T) {
	skipShort(t)
	c := hostClient(t)
	ref := vk8sv1.SecretKeyReference{Namespace: lab.SystemNamespace, Name: "x"}

	bad := &vk8sv1.Site{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-type"},
		Spec:       vk8sv1.SiteSpec{KubeconfigSecretRef: ref, Type: "EdgeOfTheWorld"},
	}
	err := c.Create(t.Context(), bad)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.type") || !strings.Contains(err.Error(), `"EdgeOfTheWorld"`) {
		t.Errorf("Site with a bad type: error %v, want Invalid naming spec.type and the value", err)
	}

	badVK := &vk8sv1.VirtualKubernetes{
		ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "default"},
		Spec:       vk8sv1.VirtualKubernetesSpec{VirtualSite: "Shared/All Sites"},
	}
	if err := c.Create(t.Context(), badVK); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.virtualSite") {
		t.Errorf("VirtualKubernetes with a bad virtualSite: error %v, want Invalid naming spec.virtualSite", err)
	}

	// An Override's pod template keeps its metadata: the API server must not prune labels.
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "kept"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
	ovr := &vk8sv1.Override{
		ObjectMeta: metav1.ObjectMeta{Name: "keeps-labels", Namespace: "default"},
		Spec:       vk8sv1.OverrideSpec{SiteList: []string{"site1"}, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Template: &tmpl}},
	}
	if err := c.Create(t.Context(), ovr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), ovr) })
	got := &vk8sv1.Override{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(ovr), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.DeploymentSpec.Template == nil || got.Spec.DeploymentSpec.Template.Labels["app"] != "kept" {
		t.Errorf("Override template metadata after a round trip: %+v; want labels app=kept", got.Spec.DeploymentSpec.Template)
	}

	good := &vk8sv1.Site{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec:       vk8sv1.SiteSpec{KubeconfigSecretRef: ref},
	}
	if err := c.Create(t.Context(), good); err != nil {
		t.Fatal(err)
	}
	// Not t.Context(): it is cancelled before cleanups run. A Site left behind would join
	// shared/all-sites and change every later test's site count.
	t.Cleanup(func() { _ = c.Delete(context.Background(), good) })
	if good.Spec.Type != vk8sv1.SiteTypeCustomerEdge || good.Spec.NodeMode != vk8sv1.NodeModePerNode || good.Spec.KubeconfigSecretRef.Key != "kubeconfig" {
		t.Errorf("defaults: type %q mode %q key %q, want CustomerEdge PerNode kubeconfig", good.Spec.Type, good.Spec.NodeMode, good.Spec.KubeconfigSecretRef.Key)
	}
}

func TestDeploymentOnSiteRunsOnKwokNodes(t *testing.T) {
	skipShort(t)
	c := siteClient(t, "site2")
	replicas := int32(4)
	labels := map[string]string{"app": "direct"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "direct", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}}},
			},
		},
	}
	if err := c.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), d) })
	var pods corev1.PodList
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels(labels)); err != nil {
			return false, nil
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running++
			}
		}
		return running == int(replicas), nil
	})
	if err != nil {
		t.Fatalf("pods did not all reach Running: %v", describePods(pods.Items))
	}
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Spec.NodeName, "node") {
			t.Errorf("pod %s on node %q, want a kwok node of site2", p.Name, p.Spec.NodeName)
		}
	}
}

func TestUpIsIdempotent(t *testing.T) {
	skipShort(t)
	before := pids(t, fleet)
	secrets := siteSecretVersions(t)
	if err := fleet.Up(t.Context()); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	if after := pids(t, fleet); !maps.Equal(before, after) {
		t.Errorf("second Up restarted components: before %v after %v", before, after)
	}
	// The Sites' tokens still work and are not due: their Secrets stay as they are, so
	// the provider keeps its connections.
	if after := siteSecretVersions(t); !maps.Equal(secrets, after) {
		t.Errorf("second Up rewrote the Site Secrets: resource versions before %v after %v", secrets, after)
	}
}

// siteSecretVersions are the resource versions of the lab's Site kubeconfig Secrets.
func siteSecretVersions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 1; i <= fleetSites; i++ {
		var s corev1.Secret
		if err := hostClient(t).Get(t.Context(), client.ObjectKey{Namespace: lab.SystemNamespace, Name: lab.SiteName(i) + "-kubeconfig"}, &s); err != nil {
			t.Fatal(err)
		}
		out[s.Name] = s.ResourceVersion
	}
	return out
}

// TestKubeletNetwork checks the lab's kubelet network (lab/kubeletnet.go): the site
// nodes' InternalIP is the network namespace's address, the sites' API servers proxy to
// their nodes through the relay, and a relay that died is shown by Status and started
// again by Up.
func TestKubeletNetwork(t *testing.T) {
	skipShort(t)
	ip, ok := fleet.SiteNodeIP()
	if !ok {
		t.Skip("the lab could not make its kubelet network (its log says why): site nodes at loopback")
	}
	site2 := clientset(t, "site2")
	proxy := func(ctx context.Context) error {
		_, err := site2.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", lab.NodeName(1), "proxy", "healthz").DoRaw(ctx)
		return err
	}
	for i := 1; i <= fleetSites; i++ {
		n := &corev1.Node{}
		if err := siteClient(t, lab.SiteName(i)).Get(t.Context(), client.ObjectKey{Name: lab.NodeName(1)}, n); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}) {
			t.Errorf("%s's %s: addresses %v, want InternalIP %s", lab.SiteName(i), n.Name, n.Status.Addresses, ip)
		}
	}
	if err := proxy(t.Context()); err != nil {
		t.Fatalf("site2's node proxy to %s: %v", lab.NodeName(1), err)
	}

	st, err := fleet.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	relay := findComponent(st, "host", lab.RelayComponent)
	if relay == nil || !relay.Running {
		t.Fatalf("status of %s: %+v, want it running", lab.RelayComponent, relay)
	}
	if err := syscall.Kill(relay.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "status to show the relay stopped and the node proxy to fail", func(ctx context.Context) (bool, error) {
		st, err := fleet.Status(ctx)
		return err == nil && !findComponent(st, "host", lab.RelayComponent).Running && proxy(ctx) != nil, nil
	})
	if err := fleet.Up(t.Context()); err != nil {
		t.Fatalf("Up after the relay died: %v", err)
	}
	st, _ = fleet.Status(t.Context())
	if again := findComponent(st, "host", lab.RelayComponent); again == nil || !again.Running || again.PID == relay.PID {
		t.Errorf("after Up: %+v, want a new running relay", again)
	}
	if err := proxy(t.Context()); err != nil {
		t.Errorf("site2's node proxy after Up: %v", err)
	}
}

func TestSecondLabSideBySideAndDown(t *testing.T) {
	skipShort(t)
	// This lab also runs the provider as `vk8s lab up` does, from the vk8s binary TestMain built.
	other, err := lab.New(lab.Config{
		Name: "e2e-b", Sites: 1, Nodes: 1, Dir: filepath.Join(t.TempDir(), "b"),
		Tools: lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")}, Log: testWriter{t}, Vk8sBinary: vk8sBinary,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Down(context.Background()) })
	if err := other.Up(t.Context()); err != nil {
		t.Fatalf("second lab: %v", err)
	}
	mine, _ := fleet.RESTConfig("host")
	theirs, err := other.RESTConfig("host")
	if err != nil {
		t.Fatal(err)
	}
	if mine.Host == theirs.Host {
		t.Errorf("both labs' hosts listen on %s", mine.Host)
	}

	// The provider runs: the site's node is a virtual node of the host.
	hc, err := other.Client("host")
	if err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		n := &corev1.Node{}
		return hc.Get(ctx, client.ObjectKey{Name: "site1-node1"}, n) == nil && translate.NodeReady(n), nil
	})
	if err != nil {
		t.Errorf("virtual node site1-node1 not Ready in the second lab's host: %v", err)
	}

	// The fleet's site1 joined to this lab's host too, with the same tenant: refused.
	t.Run("a second host with the same tenant on a site is refused", func(t *testing.T) {
		secondHostSameTenant(t, hc)
	})

	// A component that dies is reported with its log, and Up starts it again.
	st, err := other.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sched := findComponent(st, "site1", "kube-scheduler")
	if sched == nil {
		t.Fatalf("no kube-scheduler in %+v", st)
	}
	if err := syscall.Kill(sched.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		st, err = other.Status(ctx)
		return err == nil && !findComponent(st, "site1", "kube-scheduler").Running, nil
	})
	if err != nil {
		t.Fatalf("status still shows the killed kube-scheduler running: %+v", st)
	}
	if c := findComponent(st, "site1", "kube-scheduler"); !strings.HasSuffix(c.Log, "kube-scheduler.log") {
		t.Errorf("stopped component's log is %q", c.Log)
	}
	if err := other.Up(t.Context()); err != nil {
		t.Fatalf("Up after a component died: %v", err)
	}
	st, _ = other.Status(t.Context())
	if c := findComponent(st, "site1", "kube-scheduler"); c == nil || !c.Running {
		t.Errorf("Up did not restart kube-scheduler: %+v", c)
	}

	st, _ = other.Status(t.Context())
	if p := findComponent(st, "host", "vk8s-provider"); p == nil || !p.Running {
		t.Errorf("status does not show the provider running: %+v", p)
	}
	procs := pids(t, other)
	if err := other.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	for name, pid := range procs {
		if lab.ProcessRunning(pid) {
			t.Errorf("after Down, %s (pid %d) still runs", name, pid)
		}
	}
	if _, err := os.Stat(other.Dir()); !os.IsNotExist(err) {
		t.Errorf("after Down, %s remains: %v", other.Dir(), err)
	}
	if _, err := os.Stat("/run/netns/vk8s-lab-e2e-b"); !os.IsNotExist(err) {
		t.Errorf("after Down, its network namespace vk8s-lab-e2e-b remains: %v", err)
	}
	// The first lab is untouched.
	if _, err := fleet.Status(t.Context()); err != nil {
		t.Errorf("first lab after the second went down: %v", err)
	}
}

func findComponent(all []lab.ClusterStatus, cluster, name string) *lab.ComponentStatus {
	for _, c := range all {
		if c.Name != cluster {
			continue
		}
		for i := range c.Components {
			if c.Components[i].Name == name {
				return &c.Components[i]
			}
		}
	}
	return nil
}

// pids maps "<cluster>/<component>" to the pid of every process of l.
func pids(t *testing.T, l *lab.Lab) map[string]int {
	t.Helper()
	st, err := l.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range st {
		for _, p := range c.Components {
			out[c.Name+"/"+p.Name] = p.PID
		}
	}
	if len(out) == 0 {
		t.Fatal("lab has no processes")
	}
	return out
}

func describePods(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "\n  %s node=%s phase=%s", p.Name, p.Spec.NodeName, p.Status.Phase)
	}
	return b.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestComponentThatFailsIsNamedWithItsLog(t *testing.T) {
	skipShort(t)
	// The real tools, but a kube-scheduler that exits at once as on a busy port.
	tools := t.TempDir()
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kubectl", "etcd", "etcdctl", "etcdutl", "kwok", "kwokctl", "helm"} {
		p, err := lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")}.Path(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(tools, name)); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\ncase \"$*\" in *version*) echo 'Kubernetes v1.35.4'; exit 0;; esac\n" +
		"echo 'failed to listen on 127.0.0.1:10259: bind: address already in use' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(tools, "kube-scheduler"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	broken, err := lab.New(lab.Config{
		Name: "e2e-broken", Sites: 1, Nodes: 1, Dir: filepath.Join(t.TempDir(), "broken"),
		Tools: lab.Tools{Dir: tools}, Log: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broken.Down(context.Background()) })
	err = broken.Up(t.Context())
	if err == nil {
		t.Fatal("Up with a failing kube-scheduler succeeded")
	}
	t.Logf("Up error, as users see it:\n%v", err)
	for _, want := range []string{"a component exited after start, 3 times", "component kube-scheduler of e2e-broken-host is not running", "logs/kube-scheduler.log", "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Up error does not say %q:\n%v", want, err)
		}
	}
}

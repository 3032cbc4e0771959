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
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	vkfleet "github.com/vk8s-io/vk8s/fleet"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/placement"
	"github.com/vk8s-io/vk8s/plugin"
)

// TestFleetPlugin runs `kubectl vk8s` as users do, through kubectl's plugin mechanism
// (kubectl-vk8s on the PATH, a link to the vk8s binary), against the seed scenario and
// the A/B example, and checks its rows against what each site's own API server reports.
func TestFleetPlugin(t *testing.T) {
	c, siteNS := federatedNamespace(t, webhookNS)
	kubectl(t, "host", "apply", "-f", "../examples/seed/10-deployment1.yaml")
	kubectl(t, "host", "apply", "-f", "../examples/ab/ab-test.yaml")
	webhookWaitPods(t, c, "deployment1", 9)
	webhookWaitPods(t, c, "shop", 6)

	t.Run("sites: every Site, its virtual nodes, and the pods its own API server runs", func(t *testing.T) {
		var got plugin.SiteList
		waitFor(t, "kubectl vk8s sites to match the Sites, their virtual nodes and the sites' pods", func(ctx context.Context) (bool, error) {
			out, _, err := kubectlVK8s(ctx, t, "sites", "-o", "json")
			if err != nil {
				return false, err
			}
			got = plugin.SiteList{}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				return false, fmt.Errorf("%w: %s", err, out)
			}
			return fleetSitesMatch(ctx, t, c, got.Items) == nil, nil
		})
		if err := fleetSitesMatch(t.Context(), t, c, got.Items); err != nil {
			t.Error(err)
		}
		// The table, as kubectl prints one.
		out, _, err := kubectlVK8s(t.Context(), t, "sites")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kubectl vk8s sites:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "NAME TYPE MODE CONNECTED READY NODES CPU MEMORY PODS HEARTBEAT" {
			t.Fatalf("kubectl vk8s sites:\n%s\nwant a header and 3 rows", out)
		}
		for i, l := range lines[1:] {
			f := strings.Fields(l)
			if f[0] != labSites[i] || f[1] != "CustomerEdge" || f[2] != "PerNode" || f[3] != "True" || f[4] != "True" || f[5] != "3" {
				t.Errorf("row %q, want %s CustomerEdge PerNode True True 3 ...", l, labSites[i])
			}
		}
	})

	t.Run("status: the seed's rows match every site's own pods", func(t *testing.T) {
		want := map[string]fleetSite{}
		for _, s := range labSites {
			want[s] = fleetSite{desired: 3, override: "", images: "nginx:1.27"}
		}
		fleetStatusMatches(t, siteNS, "deployment/deployment1", "deployment1", want)
		// The table, through `vk8s kubectl` with kubectl's own flags rather than a plugin.
		kc, err := fleet.Kubeconfig("host")
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.LoadFromFile(kc)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(t.Context(), vk8sBinary, "kubectl", "status", "deploy", "deployment1", "--kubeconfig", kc, "--context", cfg.CurrentContext, "-n", webhookNS).Output()
		if err != nil {
			t.Fatalf("vk8s kubectl status: %v", err)
		}
		t.Logf("vk8s kubectl status deploy deployment1:\n%s", out)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 4 || !strings.HasPrefix(strings.Join(strings.Fields(lines[0]), " "), "SITE DESIRED CURRENT READY UP-TO-DATE OVERRIDE FLAVOR IMAGES LAST-EVENT") {
			t.Fatalf("vk8s kubectl status deploy deployment1:\n%s\nwant a header and 3 rows", out)
		}
		for i, l := range lines[1:] {
			if f := strings.Fields(l); !slices.Equal(f[:8], []string{labSites[i], "3", "3", "3", "3", "<none>", "<manifest>", "nginx:1.27"}) {
				t.Errorf("row %q, want %s 3 3 3 3 <none> <manifest> nginx:1.27 ...", l, labSites[i])
			}
		}
	})

	t.Run("status: A/B, each site's Override as its own pods carry it", func(t *testing.T) {
		fleetStatusMatches(t, siteNS, "deploy/shop", "shop", map[string]fleetSite{
			"site1": {desired: 2, override: "variant-a", images: "nginx:1.26"},
			"site2": {desired: 2, override: "", images: "nginx:1.25"},
			"site3": {desired: 2, override: "variant-b", images: "nginx:1.27"},
		})
		out, _, err := kubectlVK8s(t.Context(), t, "status", "deploy/shop", "-n", webhookNS, "-o", "wide")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kubectl vk8s status deploy/shop -o wide:\n%s", out)
	})

	t.Run("status and explain of a StatefulSet: its ordinal blocks", func(t *testing.T) {
		kubectl(t, "host", "apply", "-f", "../examples/apps/statefulset.yaml")
		webhookWaitPods(t, c, "nginx", 6)
		want := map[string]fleetSite{}
		for _, s := range labSites {
			want[s] = fleetSite{desired: 2, images: "registry.k8s.io/nginx-slim:0.24"}
		}
		fleetStatusMatches(t, siteNS, "sts/web", "nginx", want)
		var p corev1.Pod
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: webhookNS, Name: "web-3"}, &p); err != nil {
			t.Fatal(err)
		}
		out, _, err := kubectlVK8s(t.Context(), t, "explain", "web-3", "-n", webhookNS, "-o", "yaml")
		if err != nil {
			t.Fatal(err)
		}
		var e vkfleet.Explanation
		if err := yaml.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		site, _ := placementSiteOfOrdinal(t, c, 3)
		if e.Site != p.Labels[vk8sv1.LabelSite] || e.Site != site || e.Ordinal == nil || *e.Ordinal != 3 || !strings.Contains(e.Rule, "ordinal 3 is in "+site+"'s block of ordinals 2-3") {
			t.Errorf("explain web-3: %+v; want ordinal 3 in %s's block of ordinals 2-3", e, site)
		}
		fleetSitePod(t, site, siteNS, p.UID)
	})

	t.Run("explain: the site and the Override of a pod, as its site pod shows them", func(t *testing.T) {
		for _, site := range []string{"site1", "site2"} {
			var pods corev1.PodList
			if err := c.List(t.Context(), &pods, client.InNamespace(webhookNS), client.MatchingLabels{"app": "shop", vk8sv1.LabelSite: site}); err != nil || len(pods.Items) == 0 {
				t.Fatalf("shop's pods on %s: %v", site, err)
			}
			p := pods.Items[0]
			sitePod := fleetSitePod(t, site, siteNS, p.UID)
			out, _, err := kubectlVK8s(t.Context(), t, "explain", "pod/"+p.Name, "-n", webhookNS, "-o", "json")
			if err != nil {
				t.Fatal(err)
			}
			var e vkfleet.Explanation
			if err := json.Unmarshal([]byte(out), &e); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if e.Site != site || e.Node != site+"-"+sitePod.Spec.NodeName || e.Override != sitePod.Labels[vk8sv1.LabelOverride] ||
				!e.OverrideCurrent || !slices.Equal(e.Sites, labSites) || e.Placement != "site1=2,site2=2,site3=2" {
				t.Errorf("explain %s: %+v; its site pod is on %s's node %s with override %q", p.Name, e, site, sitePod.Spec.NodeName, sitePod.Labels[vk8sv1.LabelOverride])
			}
			text, _, err := kubectlVK8s(t.Context(), t, "explain", p.Name, "-n", webhookNS)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kubectl vk8s explain %s:\n%s", p.Name, text)
			// Compared word by word: the columns' width is the printer's.
			text = strings.Join(strings.Fields(text), " ")
			wantOverride := "Override: <none>: no Override of ves.io/overrides \"variant-a, variant-b\" lists site2"
			if site == "site1" {
				wantOverride = "Override: variant-a: the first Override of ves.io/overrides \"variant-a, variant-b\" whose siteList holds site1"
			}
			for _, want := range []string{"Site: " + site + " (CustomerEdge), node " + p.Spec.NodeName, "Controlled by: Deployment shop > ReplicaSet ",
				"Virtual-sites: shared/all-sites (site1,site2,site3), from the namespace's default, VirtualKubernetes vk", "largest deficit", wantOverride} {
				if !strings.Contains(text, want) {
					t.Errorf("kubectl vk8s explain %s:\n%s\nwant %q", p.Name, text, want)
				}
			}
		}
	})

	t.Run("errors: a missing workload or pod, a kind that is not a workload, an unknown type, exit non-zero with a message", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"status", "deployment/nope", "-n", webhookNS}, `error: deployments.apps "nope" not found in namespace "demo"`},
			{[]string{"status", "cj", "nope", "-n", webhookNS}, `error: cronjobs.batch "nope" not found in namespace "demo"`},
			{[]string{"status", "pod/x", "-n", webhookNS}, `error: "pod" is Pod, not a workload vk8s federates`},
			{[]string{"status", "frobs/x"}, `error: the server doesn't have a resource type "frobs"`},
			{[]string{"explain", "pod/nope", "-n", webhookNS}, `error: pods "nope" not found in namespace "demo"`},
			{[]string{"status", "deployment/deployment1", "-n", webhookNS, "-o", "name"}, `error: unable to match a printer suitable for the output format "name"`},
		} {
			_, stderr, err := kubectlVK8s(t.Context(), t, tc.args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("kubectl vk8s %v: %v, stderr %q; want a non-zero exit and %q", tc.args, err, stderr, tc.want)
			}
		}
		// A workload outside a vK8s namespace is not federated.
		kubectl(t, "host", "create", "deployment", "plain", "--image", "nginx:1.27", "-n", metav1.NamespaceDefault)
		t.Cleanup(func() { _, _ = kubectlErr(t, "host", "delete", "deployment", "plain", "-n", metav1.NamespaceDefault) })
		if _, stderr, err := kubectlVK8s(t.Context(), t, "status", "deployment/plain", "-n", metav1.NamespaceDefault); err == nil || !strings.Contains(stderr, "is not federated by vk8s") {
			t.Errorf("status of a Deployment outside vK8s namespaces: %v %q, want a refusal saying it is not federated", err, stderr)
		}
	})

	t.Run("status -w follows a per-site rollout", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cmd := kubectlVK8sCmd(ctx, t, "status", "deployment/shop", "-n", webhookNS, "-w")
		out := &syncBuffer{}
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cancel()
			_ = cmd.Wait()
			t.Logf("kubectl vk8s status -w:\n%s%s", out.String(), stderr.String())
		}()
		waitFor(t, "the first rows", func(context.Context) (bool, error) { return strings.Count(out.String(), "\n") >= 4, nil })
		// variant-a's new image rolls site1 only.
		kubectl(t, "host", "-n", webhookNS, "patch", "override", "variant-a", "--type", "json",
			"-p", `[{"op":"replace","path":"/spec/deploymentSpec/template/spec/containers/0/image","value":"nginx:1.24"}]`)
		done := []string{"site1", "2", "2", "2", "2", "variant-a", "<manifest>", "nginx:1.24"}
		waitForLong(t, 3*time.Minute, "a site1 row with its 2 pods on nginx:1.24, Ready and up to date", func(context.Context) (bool, error) {
			for _, l := range strings.Split(out.String(), "\n") {
				if f := strings.Fields(l); len(f) >= len(done) && slices.Equal(f[:len(done)], done) {
					return true, nil
				}
			}
			return false, nil
		})
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var site1, others, headers int
		for _, l := range lines {
			switch strings.Fields(l)[0] {
			case "SITE":
				headers++
			case "site1":
				site1++
			default:
				others++
			}
		}
		// The header once; site1 again as its rollout went; the other sites, untouched, once.
		if headers != 1 || site1 < 2 || others != 2 {
			t.Errorf("status -w printed %d headers, %d site1 rows and %d others; want 1 header, site1 row by row, the 2 others once", headers, site1, others)
		}
		// Later rows line up under the first ones.
		if i, j := strings.Index(lines[0], "OVERRIDE"), strings.Index(lines[len(lines)-1], "variant-a"); i != j {
			t.Errorf("the last row's OVERRIDE at column %d, the header's at %d", j, i)
		}
	})
}

// placementSiteOfOrdinal returns the site of StatefulSet web's ordinal i by its plan.
func placementSiteOfOrdinal(t *testing.T, c client.Client, i int) (string, bool) {
	t.Helper()
	var sts appsv1.StatefulSet
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: webhookNS, Name: "web"}, &sts); err != nil {
		t.Fatal(err)
	}
	l, err := placement.ParseLayout(sts.Annotations[vk8sv1.AnnotationPlacement])
	if err != nil {
		t.Fatal(err)
	}
	return l.SiteOfOrdinal(i)
}

// fleetSite is what a site's row should say.
type fleetSite struct {
	desired  int32
	override string
	images   string
}

// fleetStatusMatches waits until `kubectl vk8s status ref -o json` says, for every site,
// want's desired count, Override and images, and as many live and Ready pods as the site's
// own API server runs of app (in siteNS, the site pods carrying the Override's label), all
// up to date.
func fleetStatusMatches(t *testing.T, siteNS, ref, app string, want map[string]fleetSite) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		out, _, err := kubectlVK8s(ctx, t, "status", ref, "-n", webhookNS, "-o", "json")
		if err != nil {
			return false, err
		}
		var got plugin.WorkloadStatus
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			return false, fmt.Errorf("%w: %s", err, out)
		}
		var problems []string
		if len(got.Sites) != len(want) {
			problems = append(problems, fmt.Sprintf("%d rows, want %d", len(got.Sites), len(want)))
		}
		for _, r := range got.Sites {
			w := want[r.Site]
			var pods corev1.PodList
			if err := siteClient(t, r.Site).List(ctx, &pods, client.InNamespace(siteNS), client.MatchingLabels{"app": app}); err != nil {
				return false, err
			}
			var live, ready int32
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
					continue
				}
				live++
				if webhookRunningReady(&p) {
					ready++
				}
				if o := p.Labels[vk8sv1.LabelOverride]; o != r.Override {
					problems = append(problems, fmt.Sprintf("%s's pod %s carries override %q, the row %q", r.Site, p.Name, o, r.Override))
				}
			}
			if r.Desired != w.desired || r.Override != w.override || strings.Join(r.Images, ",") != w.images ||
				r.Current != live || r.Ready != ready || r.Desired != ready || r.UpToDate != ready {
				problems = append(problems, fmt.Sprintf("%s: row desired %d current %d ready %d up-to-date %d override %q images %v; want desired %d override %q images %s, and the site runs %d pods, %d Ready",
					r.Site, r.Desired, r.Current, r.Ready, r.UpToDate, r.Override, r.Images, w.desired, w.override, w.images, live, ready))
			}
		}
		last = strings.Join(problems, "\n")
		return len(problems) == 0, nil
	})
	if err != nil {
		t.Fatalf("kubectl vk8s status %s: %v\n%s", ref, err, last)
	}
}

// fleetSitesMatch compares the rows of `kubectl vk8s sites` with the Sites, their virtual
// nodes and the pods each site's API server runs for the host.
func fleetSitesMatch(ctx context.Context, t *testing.T, c client.Client, rows []vkfleet.SiteRow) error {
	var sites vk8sv1.SiteList
	if err := c.List(ctx, &sites, client.MatchingLabels{vk8sv1.LabelLab: fleetName()}); err != nil {
		return err
	}
	if len(rows) != len(sites.Items) {
		return fmt.Errorf("%d rows, %d Sites", len(rows), len(sites.Items))
	}
	for i, s := range sites.Items {
		r := rows[i]
		var nodes corev1.NodeList
		if err := c.List(ctx, &nodes, client.MatchingLabels{vk8sv1.LabelSite: s.Name}); err != nil {
			return err
		}
		var names []string
		for _, n := range nodes.Items {
			names = append(names, n.Name)
		}
		// The pods the site runs for this host.
		var sitePods corev1.PodList
		if err := siteClient(t, s.Name).List(ctx, &sitePods, client.HasLabels{vk8sv1.LabelHostPodUID}); err != nil {
			return err
		}
		running := 0
		for _, p := range sitePods.Items {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				running++
			}
		}
		connected, ready := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected), meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionReady)
		if r.Name != s.Name || r.Type != s.Spec.Type || r.Mode != s.Spec.NodeMode || connected == nil || r.Connected != connected.Status || ready == nil || r.Ready != ready.Status ||
			r.Nodes != s.Status.NodeCount || !slices.Equal(r.VirtualNodes, names) || r.Pods != running || r.LastHeartbeatTime == nil {
			return fmt.Errorf("row %+v; Site %s: %s %s, Connected %v, Ready %v, %d nodes, virtual nodes %v; the site runs %d pods for the host",
				r, s.Name, s.Spec.Type, s.Spec.NodeMode, connected, ready, s.Status.NodeCount, names, running)
		}
		if cpu := r.CPU.MilliValue(); cpu == 0 {
			return fmt.Errorf("row %s: no allocatable CPU", r.Name)
		}
	}
	return nil
}

// fleetSitePod returns the site pod of host pod uid.
func fleetSitePod(t *testing.T, site, siteNS string, uid any) corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := siteClient(t, site).List(t.Context(), &pods, client.InNamespace(siteNS), client.MatchingLabels{vk8sv1.LabelHostPodUID: fmt.Sprint(uid)}); err != nil || len(pods.Items) != 1 {
		t.Fatalf("the site pod of %v on %s: %d pods, %v", uid, site, len(pods.Items), err)
	}
	return pods.Items[0]
}

// kubectlVK8s runs `kubectl vk8s args...` against the host and returns its stdout and
// stderr.
func kubectlVK8s(ctx context.Context, t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := kubectlVK8sCmd(ctx, t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl vk8s %v: %w\n%s", args, err, stderr.String())
	}
	return stdout.String(), stderr.String(), err
}

// kubectlVK8sCmd is the lab's kubectl running the plugin: kubectl-vk8s, a link to the vk8s
// binary, first on the PATH, and the host's kubeconfig in $KUBECONFIG (kubectl takes no
// flags before a plugin's name).
func kubectlVK8sCmd(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	dir := filepath.Join(filepath.Dir(vk8sBinary), "plugin-path")
	link := filepath.Join(dir, "kubectl-vk8s")
	if _, err := os.Lstat(link); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(vk8sBinary, link); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	kc, err := fleet.Kubeconfig("host")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := lab.Tools{Dir: os.Getenv("VK8S_TOOLS_DIR")}.Path("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"vk8s"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kc, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return cmd
}

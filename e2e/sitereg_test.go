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
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/lab/kwokconfig"
	"github.com/vk8s-io/vk8s/translate"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/sitereg"
)

// siteRegTimeout bounds waits for a Site's status. Node changes must show well within the
// registry's default heartbeat (30s), which proves they come from the node informers.
const (
	siteRegTimeout   = 60 * time.Second
	nodeEventTimeout = 15 * time.Second
)

func TestSiteReg(t *testing.T) {
	skipShort(t)
	e := startSiteReg(t)
	reg, host := e.reg, e.host

	t.Run("lab sites connect", func(t *testing.T) {
		for i := 1; i <= fleetSites; i++ {
			name := lab.SiteName(i)
			want := make([]string, 0, fleetNodes)
			for j := 1; j <= fleetNodes; j++ {
				want = append(want, name+"-"+lab.NodeName(j))
			}
			s := e.waitSite(t, name, siteRegTimeout, "Connected, Ready, 3 nodes", func(s *vk8sv1.Site) bool {
				return e.isTrue(s, vk8sv1.ConditionConnected) && e.isTrue(s, vk8sv1.ConditionReady) &&
					s.Status.NodeCount == fleetNodes && slices.Equal(s.Status.VirtualNodes, want)
			})
			if s.Status.KubernetesVersion != kwokconfig.KubernetesVersion {
				t.Errorf("%s: kubernetesVersion %q, want %s", name, s.Status.KubernetesVersion, kwokconfig.KubernetesVersion)
			}
			// 3 lab nodes of 15800m CPU and 62Gi memory allocatable each.
			if cpu := s.Status.Allocatable[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("47400m")) != 0 {
				t.Errorf("%s: allocatable cpu %s, want 47400m", name, cpu.String())
			}
			if mem := s.Status.Allocatable[corev1.ResourceMemory]; mem.Cmp(resource.MustParse("186Gi")) != 0 {
				t.Errorf("%s: allocatable memory %s, want 186Gi", name, mem.String())
			}
			if s.Status.LastHeartbeatTime == nil || s.Status.ObservedGeneration != s.Generation {
				t.Errorf("%s: lastHeartbeatTime %v observedGeneration %d (generation %d)", name, s.Status.LastHeartbeatTime, s.Status.ObservedGeneration, s.Generation)
			}
			// The status may have been written by another registry (an earlier test's
			// provider): wait for this one's own connection.
			var conn *sitereg.Conn
			err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, siteRegTimeout, true, func(context.Context) (bool, error) {
				var err error
				conn, err = reg.Get(name)
				v, ok := e.metricValue(t, "vk8s_sitereg_site_connected", name)
				return err == nil && ok && v == 1, nil
			})
			if err != nil {
				_, err = reg.Get(name)
				t.Fatalf("Get(%s): %v", name, err)
			}
			nodes, err := conn.Nodes.List(labels.Everything())
			if err != nil || len(nodes) != fleetNodes {
				t.Errorf("Get(%s).Nodes: %d nodes, %v; want %d", name, len(nodes), err, fleetNodes)
			}
			if v, ok := e.metricValue(t, "vk8s_sitereg_site_connected", name); !ok || v != 1 {
				t.Errorf("vk8s_sitereg_site_connected{site=%s} = %v (present %v), want 1", name, v, ok)
			}
		}
		if v, _ := e.metricValue(t, "vk8s_sitereg_connections", ""); v != fleetSites {
			t.Errorf("vk8s_sitereg_connections = %v, want %d", v, fleetSites)
		}
	})

	t.Run("a node-selected slice shares its cluster's connection", func(t *testing.T) {
		site1 := e.getSite(t, "site1")
		slice := &vk8sv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: "sitereg-slice"},
			Spec: vk8sv1.SiteSpec{
				KubeconfigSecretRef: site1.Spec.KubeconfigSecretRef,
				NodeSelector:        map[string]string{corev1.LabelHostname: "node1"},
			},
		}
		e.create(t, slice)
		e.waitSite(t, slice.Name, siteRegTimeout, "Connected with node1 only", func(s *vk8sv1.Site) bool {
			return e.isTrue(s, vk8sv1.ConditionConnected) && e.isTrue(s, vk8sv1.ConditionReady) &&
				s.Status.NodeCount == 1 && slices.Equal(s.Status.VirtualNodes, []string{"sitereg-slice-node1"})
		})
		a, err := reg.Get("site1")
		if err != nil {
			t.Fatal(err)
		}
		b, err := reg.Get(slice.Name)
		if err != nil {
			t.Fatal(err)
		}
		if a.Key != b.Key || a.Client != b.Client {
			t.Errorf("the slice does not share site1's connection: keys %s and %s", a.Key, b.Key)
		}
		if v, _ := e.metricValue(t, "vk8s_sitereg_connections", ""); v != fleetSites {
			t.Errorf("vk8s_sitereg_connections = %v with the slice, want still %d", v, fleetSites)
		}

		// A spec change takes effect without a restart.
		patch := client.MergeFrom(slice.DeepCopy())
		slice.Spec.NodeMode = vk8sv1.NodeModeAggregate
		if err := host.Patch(t.Context(), slice, patch); err != nil {
			t.Fatal(err)
		}
		e.waitSite(t, slice.Name, siteRegTimeout, "one Aggregate virtual node", func(s *vk8sv1.Site) bool {
			return s.Status.ObservedGeneration == s.Generation && s.Generation > 1 &&
				slices.Equal(s.Status.VirtualNodes, []string{"sitereg-slice"}) && s.Status.NodeCount == 1
		})
	})

	for _, tc := range []struct {
		name, site, from, reason string
		mutate                   func(t *testing.T, cfg *clientcmdapi.Config)
	}{
		{
			name: "wrong credentials", site: "sitereg-badcreds", from: "site2", reason: sitereg.ReasonUnauthorized,
			mutate: func(t *testing.T, cfg *clientcmdapi.Config) {
				u := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
				u.ClientCertificateData, u.ClientKeyData, u.Token = nil, nil, "made-up-token"
			},
		},
		{
			name: "unused port", site: "sitereg-unreachable", from: "site3", reason: sitereg.ReasonUnreachable,
			mutate: func(t *testing.T, cfg *clientcmdapi.Config) {
				cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server = "https://" + e.unusedAddress(t)
			},
		},
	} {
		t.Run(tc.name+" make the site not Connected, and only it", func(t *testing.T) {
			before, _ := e.metricValue(t, "vk8s_sitereg_connections", "")
			kubeconfig := e.siteKubeconfig(t, tc.from, tc.mutate)
			e.createSiteWithSecret(t, tc.site, kubeconfig)
			s := e.waitSite(t, tc.site, siteRegTimeout, "Connected=False "+tc.reason, func(s *vk8sv1.Site) bool {
				c := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected)
				return c != nil && c.Status == metav1.ConditionFalse && c.Reason == tc.reason
			})
			if r := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionReady); r == nil || r.Status != metav1.ConditionFalse {
				t.Errorf("Ready %+v, want False", r)
			}
			c := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected)
			if !strings.Contains(c.Message, lab.SystemNamespace+"/"+tc.site+"-kubeconfig") {
				t.Errorf("message %q does not name the Secret to fix", c.Message)
			}
			e.waitWarningEvent(t, tc.site, tc.reason)
			if _, err := reg.Get(tc.site); !errors.Is(err, sitereg.ErrSiteNotConnected) {
				t.Errorf("Get(%s): %v, want ErrSiteNotConnected", tc.site, err)
			}
			if v, ok := e.metricValue(t, "vk8s_sitereg_site_connected", tc.site); !ok || v != 0 {
				t.Errorf("vk8s_sitereg_site_connected{site=%s} = %v (present %v), want 0", tc.site, v, ok)
			}
			for i := 1; i <= fleetSites; i++ {
				if s := e.getSite(t, lab.SiteName(i)); !e.isTrue(s, vk8sv1.ConditionConnected) {
					t.Errorf("%s lost its connection: %+v", s.Name, s.Status.Conditions)
				}
				if _, err := reg.Get(lab.SiteName(i)); err != nil {
					t.Errorf("Get(%s): %v", lab.SiteName(i), err)
				}
			}
			// The broken site has a connection of its own; deleting the Site drops it.
			if v, _ := e.metricValue(t, "vk8s_sitereg_connections", ""); v != before+1 {
				t.Errorf("vk8s_sitereg_connections = %v, want %v", v, before+1)
			}
			if err := host.Delete(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, siteRegTimeout, true, func(context.Context) (bool, error) {
				v, _ := e.metricValue(t, "vk8s_sitereg_connections", "")
				_, present := e.metricValue(t, "vk8s_sitereg_site_connected", tc.site)
				return v == before && !present, nil
			})
			if err != nil {
				v, _ := e.metricValue(t, "vk8s_sitereg_connections", "")
				t.Errorf("after deleting %s: %v connections, want %v, and no site_connected series", tc.site, v, before)
			}
		})
	}

	t.Run("a missing Secret is reported, and creating it connects the site", func(t *testing.T) {
		const name = "sitereg-late"
		secretName := name + "-kubeconfig"
		s := &vk8sv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: vk8sv1.SiteSpec{KubeconfigSecretRef: vk8sv1.SecretKeyReference{
				Namespace: lab.SystemNamespace, Name: secretName, Key: "kubeconfig",
			}},
		}
		e.create(t, s)
		e.waitSite(t, name, siteRegTimeout, "Connected=False SecretNotFound", func(s *vk8sv1.Site) bool {
			c := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == sitereg.ReasonSecretNotFound &&
				strings.Contains(c.Message, lab.SystemNamespace+"/"+secretName)
		})
		e.waitWarningEvent(t, name, sitereg.ReasonSecretNotFound)

		e.create(t, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: lab.SystemNamespace},
			Data:       map[string][]byte{"kubeconfig": e.siteKubeconfig(t, "site3", nil)},
		})
		// Well within the heartbeat: the Secret watch triggers the reconcile.
		e.waitSite(t, name, nodeEventTimeout, "Connected with 3 nodes", func(s *vk8sv1.Site) bool {
			return e.isTrue(s, vk8sv1.ConditionConnected) && e.isTrue(s, vk8sv1.ConditionReady) && s.Status.NodeCount == fleetNodes
		})
		site3, err := reg.Get("site3")
		if err != nil {
			t.Fatal(err)
		}
		if late, err := reg.Get(name); err != nil || late.Key != site3.Key {
			t.Errorf("Get(%s): %+v, %v; want site3's connection", name, late, err)
		}

		// The Secret changes to site1's kubeconfig, another cluster: refused, naming both
		// clusters, and the Site stays off site1's connection.
		secret := &corev1.Secret{}
		if err := host.Get(t.Context(), client.ObjectKey{Namespace: lab.SystemNamespace, Name: secretName}, secret); err != nil {
			t.Fatal(err)
		}
		secret.Data["kubeconfig"] = e.siteKubeconfig(t, "site1", nil)
		if err := host.Update(t.Context(), secret); err != nil {
			t.Fatal(err)
		}
		s3, s1 := e.getSite(t, "site3").Status.ClusterID, e.getSite(t, "site1").Status.ClusterID
		moved := e.waitSite(t, name, nodeEventTimeout, "Connected=False "+sitereg.ReasonClusterChanged, func(s *vk8sv1.Site) bool {
			c := meta.FindStatusCondition(s.Status.Conditions, vk8sv1.ConditionConnected)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == sitereg.ReasonClusterChanged
		})
		if c := meta.FindStatusCondition(moved.Status.Conditions, vk8sv1.ConditionConnected); s1 == "" || s3 == "" || moved.Status.ClusterID != s3 ||
			!strings.Contains(c.Message, s1) || !strings.Contains(c.Message, s3) {
			t.Errorf("clusterID %q, message %q: want site3's ID %q kept, and site1's %q named", moved.Status.ClusterID, c.Message, s3, s1)
		}
		if _, err := reg.Get(name); !errors.Is(err, sitereg.ErrSiteDown) {
			t.Errorf("Get(%s): %v, want ErrSiteDown", name, err)
		}
		if v, _ := e.metricValue(t, "vk8s_sitereg_connections", ""); v != fleetSites {
			t.Errorf("vk8s_sitereg_connections = %v, want %d", v, fleetSites)
		}
	})

	t.Run("node changes on a site show in its status", func(t *testing.T) {
		site2 := siteClient(t, "site2")
		gone := lab.SiteNode(2, 3)
		t.Cleanup(func() { e.restoreNode(t, site2, lab.SiteNode(2, 3)) })
		if err := site2.Delete(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: gone.Name}}); err != nil {
			t.Fatal(err)
		}
		e.waitSite(t, "site2", nodeEventTimeout, "2 nodes after deleting node3", func(s *vk8sv1.Site) bool {
			return s.Status.NodeCount == 2 && slices.Equal(s.Status.VirtualNodes, []string{"site2-node1", "site2-node2"})
		})
		if err := site2.Create(t.Context(), gone); err != nil {
			t.Fatal(err)
		}
		e.waitSite(t, "site2", nodeEventTimeout, "3 nodes after re-adding node3", func(s *vk8sv1.Site) bool {
			return s.Status.NodeCount == 3 && e.isTrue(s, vk8sv1.ConditionReady) &&
				slices.Equal(s.Status.VirtualNodes, []string{"site2-node1", "site2-node2", "site2-node3"})
		})
		for _, other := range []string{"site1", "site3"} {
			if s := e.getSite(t, other); s.Status.NodeCount != fleetNodes {
				t.Errorf("%s: nodeCount %d, want %d", other, s.Status.NodeCount, fleetNodes)
			}
		}
	})

	t.Run("each transition is one Event, not one per probe or reconcile", func(t *testing.T) {
		// Other tests run registries too (the provider's) and take sites away
		// (TestProviderDisconnection): per reporter, a site is Connected once, and once more
		// after each Warning that took it away.
		for i := 1; i <= fleetSites; i++ {
			site := lab.SiteName(i)
			connected := e.eventCounts(t, site, corev1.EventTypeNormal, sitereg.ReasonConnected)
			warnings := e.eventCounts(t, site, corev1.EventTypeWarning, "")
			total := 0
			for reporter, n := range connected {
				total += n
				if n > warnings[reporter]+1 {
					t.Errorf("%s: %s reported %d Connected events after %d Warnings; want one per transition", site, reporter, n, warnings[reporter])
				}
			}
			if total == 0 {
				t.Errorf("%s: no Connected event from any registry", site)
			}
		}
	})
}

// siteRegEnv is the site registry running against the fleet's host, with helpers for
// TestSiteReg (methods, so their names stay out of the package's namespace).
type siteRegEnv struct {
	reg  *sitereg.Registry
	host client.Client
}

// startSiteReg runs the site registry in-process against the fleet's host until the test
// ends, then removes the Events it recorded.
func startSiteReg(t *testing.T) *siteRegEnv {
	t.Helper()
	cfg, err := fleet.RESTConfig("host")
	if err != nil {
		t.Fatal(err)
	}
	scheme, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 testr.New(t),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := sitereg.New(sitereg.Config{WrapTransport: forbiddenRecorder("site registry (site)")})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.SetupWithManager(t.Context(), mgr); err != nil {
		t.Fatal(err)
	}
	e := &siteRegEnv{reg: reg, host: hostClient(t)}
	// Cleanups run last-in first-out: the manager stops (flushing its Events) before they
	// are deleted.
	t.Cleanup(func() { e.deleteRegistryEvents(t) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return e
}

// siteKubeconfig returns the kubeconfig of a lab site, from its Secret in the host, after
// mutate (if any) changed it.
func (e *siteRegEnv) siteKubeconfig(t *testing.T, site string, mutate func(*testing.T, *clientcmdapi.Config)) []byte {
	t.Helper()
	s := e.getSite(t, site)
	ref := s.Spec.KubeconfigSecretRef
	var secret corev1.Secret
	if err := e.host.Get(t.Context(), client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &secret); err != nil {
		t.Fatal(err)
	}
	if mutate == nil {
		return secret.Data[ref.Key]
	}
	cfg, err := clientcmd.Load(secret.Data[ref.Key])
	if err != nil {
		t.Fatal(err)
	}
	mutate(t, cfg)
	raw, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// createSiteWithSecret registers a Site whose kubeconfig is in a new Secret <name>-kubeconfig.
func (e *siteRegEnv) createSiteWithSecret(t *testing.T, name string, kubeconfig []byte) {
	t.Helper()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-kubeconfig", Namespace: lab.SystemNamespace},
		Data:       map[string][]byte{"kubeconfig": kubeconfig},
	}
	e.create(t, secret)
	e.create(t, &vk8sv1.Site{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: vk8sv1.SiteSpec{KubeconfigSecretRef: vk8sv1.SecretKeyReference{
			Namespace: secret.Namespace, Name: secret.Name, Key: "kubeconfig",
		}},
	})
}

// create creates obj and deletes it when the test ends.
func (e *siteRegEnv) create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := e.host.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() {
		if err := e.host.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %T %s: %v", obj, obj.GetName(), err)
		}
	})
}

func (e *siteRegEnv) getSite(t *testing.T, name string) *vk8sv1.Site {
	t.Helper()
	s := &vk8sv1.Site{}
	if err := e.host.Get(t.Context(), client.ObjectKey{Name: name}, s); err != nil {
		t.Fatalf("get Site %s: %v", name, err)
	}
	return s
}

// waitSite polls the Site until ok says its status is as wanted.
func (e *siteRegEnv) waitSite(t *testing.T, name string, timeout time.Duration, want string, ok func(*vk8sv1.Site) bool) *vk8sv1.Site {
	t.Helper()
	s := &vk8sv1.Site{}
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := e.host.Get(ctx, client.ObjectKey{Name: name}, s); err != nil {
			return false, nil
		}
		return ok(s), nil
	})
	if err != nil {
		t.Fatalf("Site %s: not %s within %s; status: %s", name, want, timeout, e.describeSite(s))
	}
	return s
}

func (e *siteRegEnv) describeSite(s *vk8sv1.Site) string {
	var b strings.Builder
	fmt.Fprintf(&b, "nodeCount=%d virtualNodes=%v version=%q observedGeneration=%d/%d",
		s.Status.NodeCount, s.Status.VirtualNodes, s.Status.KubernetesVersion, s.Status.ObservedGeneration, s.Generation)
	for _, c := range s.Status.Conditions {
		fmt.Fprintf(&b, "\n  %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func (e *siteRegEnv) isTrue(s *vk8sv1.Site, typ string) bool {
	return meta.IsStatusConditionTrue(s.Status.Conditions, typ)
}

// waitWarningEvent waits for a Warning Event with reason on the Site.
func (e *siteRegEnv) waitWarningEvent(t *testing.T, site, reason string) {
	t.Helper()
	var seen []string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, siteRegTimeout, true, func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := e.host.List(ctx, &list); err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, ev := range list.Items {
			if ev.Regarding.Kind != "Site" || ev.Regarding.Name != site {
				continue
			}
			seen = append(seen, ev.Type+" "+ev.Reason)
			if ev.Type == corev1.EventTypeWarning && ev.Reason == reason && ev.Note != "" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no Warning Event %s on Site %s; events: %v", reason, site, seen)
	}
}

// eventCounts counts the Events of a type and reason on the Site, repetitions included, by
// reporting controller (this test's registry, the provider's, ...).
func (e *siteRegEnv) eventCounts(t *testing.T, site, typ, reason string) map[string]int {
	t.Helper()
	var list eventsv1.EventList
	if err := e.host.List(t.Context(), &list); err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, ev := range list.Items {
		if ev.Regarding.Kind != "Site" || ev.Regarding.Name != site || ev.Type != typ || (reason != "" && ev.Reason != reason) {
			continue
		}
		n[ev.ReportingController]++
		if ev.Series != nil && ev.Series.Count > 1 {
			n[ev.ReportingController] += int(ev.Series.Count) - 1
		}
		if ev.DeprecatedCount > 1 {
			n[ev.ReportingController] += int(ev.DeprecatedCount) - 1
		}
	}
	return n
}

// deleteRegistryEvents deletes the Events the registry recorded.
func (e *siteRegEnv) deleteRegistryEvents(t *testing.T) {
	var list eventsv1.EventList
	if err := e.host.List(context.Background(), &list); err != nil {
		t.Errorf("list events: %v", err)
		return
	}
	for i := range list.Items {
		ev := &list.Items[i]
		if ev.ReportingController != sitereg.DefaultControllerName {
			continue
		}
		if err := e.host.Delete(context.Background(), ev); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete event %s/%s: %v", ev.Namespace, ev.Name, err)
		}
	}
}

// restoreNode creates the lab node n on a site if it is missing and waits until kwok
// reports it Ready, so later tests find the lab as it was.
func (e *siteRegEnv) restoreNode(t *testing.T, site client.Client, n *corev1.Node) {
	ctx := context.Background()
	if err := site.Create(ctx, n); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Errorf("restore node %s: %v", n.Name, err)
		return
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &corev1.Node{}
		if err := site.Get(ctx, client.ObjectKey{Name: n.Name}, got); err != nil {
			return false, nil
		}
		return translate.NodeReady(got), nil
	})
	if err != nil {
		t.Errorf("node %s not Ready again: %v", n.Name, err)
	}
}

// unusedAddress returns a loopback address nothing listens on.
func (e *siteRegEnv) unusedAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// metricValue reads a gauge from controller-runtime's metrics registry: the series with
// label site=site, or the unlabelled one when site is empty.
func (e *siteRegEnv) metricValue(t *testing.T, name, site string) (float64, bool) {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := site == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "site" && l.GetValue() == site {
					match = true
				}
			}
			if match && m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

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
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/lab/kwokconfig"
	"github.com/vk8s-io/vk8s/translate"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/sitereg"
)

// The provider runs once in this process for every test that needs it (controller names
// are unique per process), and stops before the lab goes down.
var (
	providerMu   sync.Mutex
	providerStop func()
	// providerPort is the kubelet API port of the running provider.
	providerPort int32
)

// providerSweep is how often the provider looks for site pods whose host pod is gone.
const providerSweep = 5 * time.Second

// providerNodeGrace is how long the shared provider keeps a virtual node that left its
// Site (vnode.NodesConfig.Grace): short, so that the tests that take site nodes and Sites
// away see their virtual nodes go within their waits; TestSiteEdit runs the provider with
// a longer one. Guarded by providerMu.
var providerNodeGrace = defaultProviderNodeGrace

const defaultProviderNodeGrace = 10 * time.Second

// startProvider runs the provider in this process against the fleet, once.
func startProvider(t *testing.T) {
	t.Helper()
	providerMu.Lock()
	defer providerMu.Unlock()
	if providerStop != nil {
		return
	}
	host := componentConfig(t, "provider")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	providerPort = int32(port)
	started := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctrllog.SetLogger(log)
	go func() {
		done <- provider.Run(ctx, provider.Config{
			Host:          host,
			Logger:        log,
			Endpoint:      translate.Endpoint{Address: providerKubelet.address, Port: int32(port)},
			SweepInterval: providerSweep,
			// TestSiteTokenRenewal waits for a renewal.
			TokenRenewInterval: 5 * time.Second,
			VirtualNodeGrace:   providerNodeGrace,
			Kubelet: provider.KubeletAPI{
				BindAddress:  providerKubelet.bind,
				NodePorts:    providerKubelet.nodePorts,
				ClientCAFile: fleet.CACertPath("host"),
			},
			MetricsRegisterer: prometheus.NewRegistry(),
			// TestProviderRestart stops this provider and starts another.
			SkipNameValidation: true,
			Registry: sitereg.Config{
				HeartbeatInterval: 10 * time.Second,
				ProbeTimeout:      3 * time.Second,
				ControllerName:    "sitereg-provider-e2e",
				MetricsRegisterer: prometheus.NewRegistry(),
				WrapTransport:     forbiddenRecorder("provider (site)"),
			},
		})
	}()
	providerStop = func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "e2e: provider:", err)
		}
	}
	waitSitesProbed(t, started)
}

// waitSitesProbed waits until the provider's registry has probed every site of the fleet
// since started (a Site heartbeat after it): the virtual nodes a previous provider left
// Ready say nothing about this one, and a test that began before it has its sites would
// wait for them. It uses a context of its own, as startProvider also runs in Cleanup.
func waitSitesProbed(t *testing.T, started time.Time) {
	t.Helper()
	c := hostClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for i := 1; i <= fleetSites; i++ {
			s := &vk8sv1.Site{}
			if err := c.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("site%d", i)}, s); err != nil {
				return false, nil
			}
			if hb := s.Status.LastHeartbeatTime; hb == nil || !hb.After(started) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("the provider started at %s has not probed every site: %v", started.UTC().Format(time.RFC3339), err)
	}
}

// freePort returns a TCP port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// stopProvider stops the provider if a test started it.
func stopProvider() {
	providerMu.Lock()
	defer providerMu.Unlock()
	if providerStop != nil {
		providerStop()
		providerStop = nil
	}
}

func TestProviderVirtualNodes(t *testing.T) {
	skipShort(t)
	startProvider(t)
	c := hostClient(t)

	var want []string
	for i := 1; i <= fleetSites; i++ {
		for j := 1; j <= fleetNodes; j++ {
			want = append(want, fmt.Sprintf("site%d-node%d", i, j))
		}
	}
	waitVirtualNodes(t, c, "all sites' nodes", func(nodes map[string]*corev1.Node) bool {
		return slices.Equal(slices.Sorted(maps.Keys(nodes)), want)
	})

	t.Run("a virtual node carries its site node", func(t *testing.T) {
		n := &corev1.Node{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: "site2-node3"}, n); err != nil {
			t.Fatal(err)
		}
		if n.Labels[vk8sv1.LabelSite] != "site2" || n.Labels[vk8sv1.LabelSiteNode] != "node3" ||
			n.Labels[corev1.LabelTopologyRegion] != lab.Region(2) || n.Labels[corev1.LabelHostname] != "site2-node3" ||
			n.Labels[vk8sv1.LabelType] != vk8sv1.TypeVirtualKubelet {
			t.Errorf("labels %v", n.Labels)
		}
		if cpu := n.Status.Allocatable[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("15800m")) != 0 {
			t.Errorf("allocatable cpu %s, want the site node's 15800m", cpu.String())
		}
		ours := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			return t.Key == vk8sv1.TaintKey && t.Value == vk8sv1.TaintValue && t.Effect == corev1.TaintEffectNoSchedule
		})
		if !ours {
			t.Errorf("taints %v, want %s=%s:NoSchedule among them", n.Spec.Taints, vk8sv1.TaintKey, vk8sv1.TaintValue)
		}
		if !translate.NodeReady(n) {
			t.Errorf("not Ready: %v", n.Status.Conditions)
		}
		if n.Status.NodeInfo.KubeletVersion != kwokconfig.KubernetesVersion || n.Status.DaemonEndpoints.KubeletEndpoint.Port != providerPort {
			t.Errorf("node info %+v, endpoints %+v", n.Status.NodeInfo, n.Status.DaemonEndpoints)
		}
		// A Lease per node, owned by the Node and renewed every 10 s, as a kubelet's.
		waitLeaseRenewed(t, c, n)
	})

	t.Run("a node cordoned at the site is unschedulable in the host", func(t *testing.T) {
		site := siteClient(t, "site1")
		setUnschedulable(t, site, "node2", true)
		t.Cleanup(func() { setUnschedulable(t, site, "node2", false) })
		waitVirtualNodes(t, c, "site1-node2 unschedulable", func(nodes map[string]*corev1.Node) bool {
			return nodes["site1-node2"] != nil && nodes["site1-node2"].Spec.Unschedulable
		})
		setUnschedulable(t, site, "node2", false)
		waitVirtualNodes(t, c, "site1-node2 schedulable again", func(nodes map[string]*corev1.Node) bool {
			return nodes["site1-node2"] != nil && !nodes["site1-node2"].Spec.Unschedulable
		})
	})

	t.Run("a site node removed takes its virtual node away", func(t *testing.T) {
		site := siteClient(t, "site3")
		if err := site.Delete(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node3"}}); err != nil {
			t.Fatal(err)
		}
		waitVirtualNodes(t, c, "site3-node3 gone", func(nodes map[string]*corev1.Node) bool {
			return nodes["site3-node3"] == nil && len(nodes) == len(want)-1
		})
		if err := site.Create(t.Context(), lab.SiteNode(3, 3)); err != nil {
			t.Fatal(err)
		}
		waitVirtualNodes(t, c, "site3-node3 back", func(nodes map[string]*corev1.Node) bool {
			return nodes["site3-node3"] != nil && translate.NodeReady(nodes["site3-node3"])
		})
	})

	t.Run("a virtual node deleted by hand comes back", func(t *testing.T) {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "site1-node1"}}
		old := &corev1.Node{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(n), old); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(t.Context(), n); err != nil {
			t.Fatal(err)
		}
		waitVirtualNodes(t, c, "site1-node1 recreated", func(nodes map[string]*corev1.Node) bool {
			return nodes["site1-node1"] != nil && nodes["site1-node1"].UID != old.UID
		})
		cur := &corev1.Node{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(n), cur); err != nil {
			t.Fatal(err)
		}
		waitLeaseRenewed(t, c, cur)
	})

	t.Run("an Aggregate site is one node with the sum of its nodes", func(t *testing.T) {
		s := &vk8sv1.Site{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: "site2"}, s); err != nil {
			t.Fatal(err)
		}
		agg := &vk8sv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: "agg"},
			Spec:       vk8sv1.SiteSpec{KubeconfigSecretRef: s.Spec.KubeconfigSecretRef, NodeMode: vk8sv1.NodeModeAggregate},
		}
		if err := c.Create(t.Context(), agg); err != nil {
			t.Fatal(err)
		}
		waitVirtualNodes(t, c, "node agg", func(nodes map[string]*corev1.Node) bool {
			n := nodes["agg"]
			if n == nil {
				return false
			}
			cpu := n.Status.Allocatable[corev1.ResourceCPU]
			return cpu.Cmp(resource.MustParse("47400m")) == 0 && translate.NodeReady(n)
		})
		if err := c.Delete(t.Context(), agg); err != nil {
			t.Fatal(err)
		}
		waitVirtualNodes(t, c, "node agg gone with its Site", func(nodes map[string]*corev1.Node) bool {
			return nodes["agg"] == nil
		})
	})
}

func setUnschedulable(t *testing.T, c client.Client, node string, v bool) {
	t.Helper()
	n := &corev1.Node{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: node}, n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Spec.Unschedulable = v
	if err := c.Patch(context.Background(), n, patch); err != nil {
		t.Fatal(err)
	}
}

// waitAllVirtualNodes waits until the host has a virtual node for every node of the fleet.
func waitAllVirtualNodes(t *testing.T, c client.Client) {
	t.Helper()
	waitVirtualNodes(t, c, "all virtual nodes", func(nodes map[string]*corev1.Node) bool {
		return len(nodes) == fleetSites*fleetNodes
	})
}

// hostNamespace creates namespace ns in the host through c and deletes it when the test ends.
func hostNamespace(t *testing.T, c client.Client, ns string) {
	t.Helper()
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
}

// waitVirtualNodes polls the host's virtual nodes until ok holds, for at most 30 s.
// waitLeaseRenewed waits until virtual node n's Lease in kube-node-lease names n (its UID)
// as its owner and has been renewed twice: the first renewal seen, then a later one.
func waitLeaseRenewed(t *testing.T, c client.Client, n *corev1.Node) {
	t.Helper()
	var first *metav1.MicroTime
	last := &coordinationv1.Lease{}
	err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 40*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: n.Name}, last); err != nil {
			return false, nil
		}
		if len(last.OwnerReferences) != 1 || last.OwnerReferences[0].UID != n.UID || last.Spec.RenewTime == nil ||
			last.Spec.HolderIdentity == nil || *last.Spec.HolderIdentity != n.Name {
			return false, nil
		}
		if first == nil {
			first = last.Spec.RenewTime.DeepCopy()
			return false, nil
		}
		return last.Spec.RenewTime.After(first.Time), nil
	})
	if err != nil {
		t.Errorf("Lease of %s (UID %s) not owned by it and renewed within 40s: owners %v, holder %v, renewed %v", n.Name, n.UID,
			last.OwnerReferences, last.Spec.HolderIdentity, last.Spec.RenewTime)
	}
}

func waitVirtualNodes(t *testing.T, c client.Client, what string, ok func(map[string]*corev1.Node) bool) {
	t.Helper()
	var last map[string]*corev1.Node
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var list corev1.NodeList
		if err := c.List(ctx, &list, client.MatchingLabels{vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
		last = map[string]*corev1.Node{}
		for i := range list.Items {
			last[list.Items[i].Name] = &list.Items[i]
		}
		return ok(last), nil
	})
	if err != nil {
		var b strings.Builder
		for _, name := range slices.Sorted(maps.Keys(last)) {
			fmt.Fprintf(&b, "\n  %s unschedulable=%v conditions=%v", name, last[name].Spec.Unschedulable, last[name].Status.Conditions)
		}
		t.Fatalf("waiting for %s: %v; virtual nodes:%s", what, err, b.String())
	}
}

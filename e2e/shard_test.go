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
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/shard"
	"github.com/vk8s-io/vk8s/translate"
)

// shardSites is the number of Sites of TestShardedProviders: the fleet's and node-selected
// slices of its clusters, one node each.
const shardSites = 30

// TestShardedProviders runs three provider processes with --shard over 30 Sites, with a
// pod on each, and kills one (SIGKILL: nothing released). Its Sites' virtual nodes must
// never leave Ready (the new owners renew their Leases within the host's grace), their
// shards must have new owners within 15 s, and every pod must be where it was: none lost,
// duplicated, deleted or replaced. Before the kill, every site pod must name the Site it
// was made for, and an orphan site pod made for a Site go at once (shardedOrphans). It
// prints the takeover times.
func TestShardedProviders(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	waitAllVirtualNodes(t, host)
	stopProvider()
	t.Cleanup(func() { startProvider(t) })

	bin := buildVk8s(t)
	replicas := []string{"r1", "r2", "r3"}
	procs := map[string]*providerProcess{}
	for _, id := range replicas {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		// Each replica serves its virtual nodes' kubelet API on a port of its own, and lets
		// the test's slices go quickly when they are deleted.
		procs[id] = runProviderProcess(t, bin, "shard-"+id, "--shard", "--shard-identity", id,
			"--kubelet-port", strconv.Itoa(port), "--virtual-node-grace-period", "5s")
	}

	// Sites slice4 to slice30: one node of a fleet cluster each, as the bench's slices.
	sites := make([]string, 0, shardSites)
	vnodeOf := map[string]string{} // Site -> its (first) virtual node
	clusterOf := map[string]string{}
	for i := 1; i <= fleetSites; i++ {
		site := fmt.Sprintf("site%d", i)
		sites = append(sites, site)
		vnodeOf[site], clusterOf[site] = site+"-node1", site
	}
	for i := fleetSites + 1; i <= shardSites; i++ {
		base := fmt.Sprintf("site%d", (i-1)%fleetSites+1)
		from := &vk8sv1.Site{}
		if err := host.Get(t.Context(), client.ObjectKey{Name: base}, from); err != nil {
			t.Fatal(err)
		}
		node := fmt.Sprintf("node%d", (i-1)/fleetSites%fleetNodes+1)
		slice := &vk8sv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("slice%d", i)},
			Spec: vk8sv1.SiteSpec{KubeconfigSecretRef: from.Spec.KubeconfigSecretRef,
				NodeSelector: map[string]string{corev1.LabelHostname: node}},
		}
		mustCreate(t, host, slice)
		sites = append(sites, slice.Name)
		vnodeOf[slice.Name], clusterOf[slice.Name] = slice.Name+"-"+node, base
	}
	t.Cleanup(func() { deleteSlices(t, host) })
	ready := func(ctx context.Context) (map[string]bool, error) {
		var list corev1.NodeList
		if err := host.List(ctx, &list, client.MatchingLabels{vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}); err != nil {
			return nil, err
		}
		out := map[string]bool{}
		for _, n := range list.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					out[n.Name] = c.Status == corev1.ConditionTrue
				}
			}
		}
		return out, nil
	}
	start := time.Now()
	waitLong(t, "every Site's virtual node Ready", func(ctx context.Context) (bool, error) {
		r, err := ready(ctx)
		if err != nil {
			return false, err
		}
		for _, s := range sites {
			if !r[vnodeOf[s]] {
				return false, nil
			}
		}
		return true, nil
	})
	plan := shard.Plan(shard.DefaultShards, replicas)
	waitLong(t, "the shards owned as the hashing says", func(ctx context.Context) (bool, error) {
		holders, err := shardHolders(ctx, host)
		if err != nil {
			return false, err
		}
		for _, s := range sites {
			i := shard.Of(s, shard.DefaultShards)
			if holders[i] != plan[i] {
				return false, nil
			}
		}
		return true, nil
	})
	owners := map[string][]string{}
	for _, s := range sites {
		owner := plan[shard.Of(s, shard.DefaultShards)]
		owners[owner] = append(owners[owner], s)
	}
	t.Logf("%d Sites Ready and shared in %s: %v", len(sites), time.Since(start).Round(100*time.Millisecond), owners)
	victim := replicas[0]
	for _, id := range replicas {
		if len(owners[id]) > len(owners[victim]) {
			victim = id
		}
	}
	if len(owners[victim]) == 0 {
		t.Fatalf("no replica owns a Site: %v", owners)
	}

	// A pod on every Site.
	const ns = "shard-e2e"
	siteNamespace := translate.SiteNamespace(provider.DefaultTenant, ns)
	hostNamespace(t, host, ns)
	deleted := watchSiteDeletions(t, siteNamespace)
	want := map[string]string{}
	for i, s := range sites {
		name := fmt.Sprintf("p%02d", i)
		p := testPod(name, vnodeOf[s])
		p.Namespace = ns
		mustCreate(t, host, p)
		want[name] = clusterOf[s]
	}
	waitFor(t, "every pod on its site", func(context.Context) (bool, error) {
		return len(sitePodUIDs(t, siteNamespace)) == len(want), nil
	})
	waitPodsIntact(t, host, ns, siteNamespace, want, nil, deleted)
	before := sitePodUIDs(t, siteNamespace)
	for _, id := range replicas {
		t.Logf("replica %s: %d Sites, RSS %.1f MiB", id, len(owners[id]), rssMiB(procs[id].cmd.Process.Pid))
	}
	for i, s := range sites {
		if name := fmt.Sprintf("p%02d", i); before[name].hostSite != s {
			t.Errorf("site pod %s says it was made for Site %q, want %s", name, before[name].hostSite, s)
		}
	}
	shardedOrphans(t)

	// Watch the victim's virtual nodes from now on: not one may leave Ready.
	watchCtx, stopWatch := context.WithCancel(t.Context())
	var (
		mu       sync.Mutex
		notReady = map[string]time.Time{}
		wg       sync.WaitGroup
	)
	wg.Go(func() {
		for watchCtx.Err() == nil {
			r, err := ready(watchCtx)
			if err == nil {
				mu.Lock()
				for _, s := range owners[victim] {
					if ok, known := r[vnodeOf[s]]; known && !ok {
						if _, seen := notReady[vnodeOf[s]]; !seen {
							notReady[vnodeOf[s]] = time.Now()
						}
					}
				}
				mu.Unlock()
			}
			time.Sleep(250 * time.Millisecond)
		}
	})

	procs[victim].kill(t)
	killed := time.Now()
	victimShards := map[int]bool{}
	for _, s := range owners[victim] {
		victimShards[shard.Of(s, shard.DefaultShards)] = true
	}
	var takeover time.Duration
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		holders, err := shardHolders(ctx, host)
		if err != nil {
			return false, nil
		}
		for i := range victimShards {
			if holders[i] == "" || holders[i] == victim {
				return false, nil
			}
		}
		takeover = time.Since(killed)
		return true, nil
	})
	if err != nil {
		t.Fatalf("the shards of %s were not taken over: %v", victim, err)
	}
	// The new owners renew the victim's virtual nodes' Leases.
	var renewed time.Duration
	waitFor(t, "the victim's virtual node Leases renewed by their new owners", func(ctx context.Context) (bool, error) {
		for _, s := range owners[victim] {
			l := &coordinationv1.Lease{}
			if err := host.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: vnodeOf[s]}, l); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(killed) {
				return false, nil
			}
		}
		renewed = time.Since(killed)
		return true, nil
	})
	t.Logf("replica %s killed with %d of %d Sites: its shards taken over after %s, its %d virtual nodes' Leases all renewed after %s",
		victim, len(owners[victim]), len(sites), takeover.Round(100*time.Millisecond), len(owners[victim]), renewed.Round(100*time.Millisecond))
	if takeover > 15*time.Second {
		t.Errorf("takeover took %s, want at most 15 s", takeover)
	}
	// Past the host's node grace (40 s since the last renewal before the kill): a virtual
	// node nobody renewed would have left Ready by now.
	select {
	case <-time.After(time.Until(killed.Add(50 * time.Second))):
	case <-t.Context().Done():
	}
	stopWatch()
	wg.Wait()
	if len(notReady) > 0 {
		t.Errorf("virtual nodes of the killed replica's Sites left Ready: %v", slices.Sorted(maps.Keys(notReady)))
	}
	waitPodsIntact(t, host, ns, siteNamespace, want, before, deleted)
	t.Logf("all %d pods Running and intact %s after the kill", len(want), time.Since(killed).Round(100*time.Millisecond))
}

// shardedOrphans checks which replica deletes a site pod whose host pod does not exist:
// one made for a Site (vk8s.io/host-site) goes at once, by the replica that owns that
// Site, while one without the label (an earlier vk8s') is kept 30 s, since it may be one
// another replica made from a host pod the deciding replica's cache does not show yet.
func shardedOrphans(t *testing.T) {
	t.Helper()
	const hostNS = "shard-orphans"
	ns := translate.SiteNamespace(provider.DefaultTenant, hostNS)
	site1 := siteClient(t, "site1")
	mustCreate(t, site1, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	t.Cleanup(func() {
		_ = site1.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	// The site's ServiceAccount admission wants it; its controller may have made it already.
	err := site1.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	orphan := func(name, site string) *corev1.Pod {
		p := testPod(name, "")
		p.Namespace = ns
		p.Labels = map[string]string{vk8sv1.LabelTenant: provider.DefaultTenant, vk8sv1.LabelHostNamespace: hostNS,
			vk8sv1.LabelHostPodUID: "00000000-0000-0000-0000-000000000000"}
		if site != "" {
			p.Labels[vk8sv1.LabelHostSite] = site
		}
		return p
	}
	labelled, unlabelled := orphan("made-for-site1", "site1"), orphan("made-before-the-label", "")
	made := time.Now()
	mustCreate(t, site1, unlabelled)
	mustCreate(t, site1, labelled)
	waitFor(t, "the orphan made for site1 to go", func(ctx context.Context) (bool, error) {
		err := site1.Get(ctx, client.ObjectKeyFromObject(labelled), &corev1.Pod{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	took := time.Since(made)
	t.Logf("an orphan site pod made for site1 went %s after it was made", took.Round(100*time.Millisecond))
	// The rule without the label would have waited 30 s, and then for a sweep.
	if took >= 25*time.Second {
		t.Errorf("the orphan made for site1 went after %s, want it gone at once", took.Round(100*time.Millisecond))
	}
	if err := site1.Get(t.Context(), client.ObjectKeyFromObject(unlabelled), &corev1.Pod{}); err != nil {
		t.Errorf("the orphan without %s is gone %s after it was made (%v), want it kept 30 s",
			vk8sv1.LabelHostSite, time.Since(made).Round(100*time.Millisecond), err)
	}
}

// rssMiB is a process's resident memory in MiB (0 when it cannot be read).
func rssMiB(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// waitLong is waitFor with three minutes: 27 Sites connecting on a shared machine.
func waitLong(t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 3*time.Minute, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// shardHolders reads the holder of each shard Lease.
func shardHolders(ctx context.Context, host client.Client) (map[int]string, error) {
	var list coordinationv1.LeaseList
	if err := host.List(ctx, &list, client.InNamespace("vk8s-system"), client.MatchingLabels{shard.LabelRole: shard.RoleShard}); err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, l := range list.Items {
		var i int
		if _, err := fmt.Sscanf(l.Name, shard.ShardPrefix+"%d", &i); err == nil && l.Spec.HolderIdentity != nil {
			out[i] = *l.Spec.HolderIdentity
		}
	}
	return out, nil
}

// deleteSlices deletes the test's slice Sites and waits until their virtual nodes are gone
// (the replicas run with a grace period of 5 s), so that the next tests see the fleet's.
func deleteSlices(t *testing.T, host client.Client) {
	ctx := context.Background()
	for i := fleetSites + 1; i <= shardSites; i++ {
		err := host.Delete(ctx, &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("slice%d", i)}})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete slice%d: %v", i, err)
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var list corev1.NodeList
		if err := host.List(ctx, &list, client.MatchingLabels{vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet}); err != nil {
			return false, nil
		}
		return len(list.Items) == fleetSites*fleetNodes, nil
	})
	if err != nil {
		t.Errorf("the slices' virtual nodes are still there: %v", err)
	}
}

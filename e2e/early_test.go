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
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/translate"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/provider"
)

// TestProviderPodBoundBeforeNode binds a pod by hand to the virtual node of a site node
// that does not exist yet, then adds the node to the site (the host's pod garbage
// collector would delete the pod after 40 s without its node).
func TestProviderPodBoundBeforeNode(t *testing.T) {
	skipShort(t)
	startProvider(t)
	host := hostClient(t)
	ctx := t.Context()
	const ns = "early-e2e"
	siteNamespace := translate.SiteNamespace(provider.DefaultTenant, ns)
	waitAllVirtualNodes(t, host)
	hostNamespace(t, host, ns)
	site := siteClient(t, "site1")
	node := lab.SiteNode(1, fleetNodes+1)
	vnode := "site1-" + node.Name
	t.Cleanup(func() {
		if err := site.Delete(context.Background(), node); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete site1's %s: %v", node.Name, err)
		}
	})

	p := testPod("early", vnode)
	p.Namespace = ns
	mustCreate(t, host, p)
	// Nothing can run it while its node is missing.
	sitePodKey := client.ObjectKey{Namespace: siteNamespace, Name: "early"}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Second, true, func(ctx context.Context) (bool, error) {
		return site.Get(ctx, sitePodKey, &corev1.Pod{}) == nil, nil
	}); err == nil {
		t.Fatalf("the pod reached site1 before its virtual node %s existed", vnode)
	}

	if err := site.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	hp := waitPod(t, host, client.ObjectKeyFromObject(p), "host pod early: Running on site1", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	t.Logf("Running %s after the site node was added", time.Since(added).Round(time.Millisecond))
	sp := &corev1.Pod{}
	if err := site.Get(ctx, sitePodKey, sp); err != nil {
		t.Fatalf("the pod is not on site1: %v", err)
	}
	if sp.Spec.NodeName != node.Name || sp.Labels[vk8sv1.LabelHostPodUID] != string(hp.UID) {
		t.Errorf("site pod on node %q with host UID %q; want %s and %s", sp.Spec.NodeName, sp.Labels[vk8sv1.LabelHostPodUID], node.Name, hp.UID)
	}

	// It is a pod like any other now: an edit reaches the site (and does not upset
	// virtual-kubelet's pod controller), and a delete removes it.
	patch := client.MergeFrom(hp.DeepCopy())
	hp.Labels["tier"] = "gold"
	if err := host.Patch(ctx, hp, patch); err != nil {
		t.Fatal(err)
	}
	waitPod(t, site, sitePodKey, "site pod early: the host's new label", func(p *corev1.Pod) bool {
		return p.Labels["tier"] == "gold"
	})
	if err := host.Delete(ctx, hp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the host pod and the site pod to go", func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(host.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{})) &&
			apierrors.IsNotFound(site.Get(ctx, sitePodKey, &corev1.Pod{})), nil
	})
	// The fleet as it was, for the tests that count virtual nodes.
	if err := site.Delete(ctx, node); err != nil {
		t.Fatal(err)
	}
	waitVirtualNodes(t, host, vnode+" gone", func(nodes map[string]*corev1.Node) bool {
		return nodes[vnode] == nil && len(nodes) == fleetSites*fleetNodes
	})
}

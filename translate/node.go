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

package translate

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// ManagedTaint says whether vk8s sets the taint key on virtual nodes, and removes it when
// it no longer applies.
func ManagedTaint(key string) bool {
	return key == vk8sv1.TaintKey || key == vk8sv1.TaintSiteUnreachable || key == vk8sv1.TaintLeftSite
}

// Endpoint is where the provider's kubelet API listens, advertised in every virtual node.
type Endpoint struct {
	// Address is the IP (or name) the host's API server reaches the provider on.
	Address string
	// Port is the kubelet API's HTTPS port.
	Port int32
}

// hostLabelsDropped are site node labels that would be wrong on a virtual node: the
// hostname is the virtual node's own, and roles belong to the site.
var hostLabelsDropped = []string{corev1.LabelHostname, "node-role.kubernetes.io/"}

// VirtualNodes returns the host nodes that stand for site's nodes (which must be the site's
// nodes only, as the registry lists them), sorted by name. kubeletVersion is the site's
// Kubernetes version.
func VirtualNodes(site *vk8sv1.Site, nodes []*corev1.Node, kubeletVersion string, ep Endpoint) []*corev1.Node {
	var out []*corev1.Node
	if site.Spec.NodeMode == vk8sv1.NodeModeAggregate {
		out = []*corev1.Node{aggregateNode(site, nodes, kubeletVersion, ep)}
	} else {
		for _, n := range nodes {
			if !VirtualNodeNameFits(VirtualNodeName(site.Name, n.Name)) {
				continue // it could never register; the Site's Ready condition names it
			}
			out = append(out, perNode(site, n, kubeletVersion, ep))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for _, v := range out {
		setCondition(v, corev1.NodeCondition{
			Type: vk8sv1.ConditionSiteConnected, Status: corev1.ConditionTrue, Reason: "SiteConnected",
			Message: "the site's API server answers",
		})
	}
	return out
}

// Disconnected returns virtual node n as it shows while its site does not answer: still
// Ready (the site keeps running its pods, and a host-side eviction would only do harm),
// with SiteConnected=False saying why and a NoSchedule taint so no new pod goes there.
func Disconnected(n *corev1.Node, reason, message string) *corev1.Node {
	out := n.DeepCopy()
	setCondition(out, corev1.NodeCondition{
		Type: vk8sv1.ConditionSiteConnected, Status: corev1.ConditionFalse, Reason: reason, Message: message,
	})
	if !slices.ContainsFunc(out.Spec.Taints, func(t corev1.Taint) bool { return t.Key == vk8sv1.TaintSiteUnreachable }) {
		out.Spec.Taints = append(out.Spec.Taints, corev1.Taint{Key: vk8sv1.TaintSiteUnreachable, Effect: corev1.TaintEffectNoSchedule})
	}
	return out
}

// ReasonNodeLeftSite is the reason of the Ready=False condition of a virtual node that no
// longer stands for a node of its Site, while it waits out its grace period (LeftSite).
const ReasonNodeLeftSite = "NodeLeftSite"

// LeftSite returns virtual node n as it shows while it waits out its grace period after
// leaving its Site's set of virtual nodes (the Site was edited or deleted, or the site
// node went): NotReady since since (Ready=False, ReasonNodeLeftSite, message) and tainted
// vk8sv1.TaintLeftSite:NoSchedule, so that no new pod goes there. Its pods stay: the site
// still runs them, and the edit may be undone.
func LeftSite(n *corev1.Node, message string, since metav1.Time) *corev1.Node {
	out := n.DeepCopy()
	setCondition(out, corev1.NodeCondition{
		Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: ReasonNodeLeftSite, Message: message,
		LastTransitionTime: since,
	})
	if !slices.ContainsFunc(out.Spec.Taints, func(t corev1.Taint) bool { return t.Key == vk8sv1.TaintLeftSite }) {
		out.Spec.Taints = append(out.Spec.Taints, corev1.Taint{Key: vk8sv1.TaintLeftSite, Effect: corev1.TaintEffectNoSchedule})
	}
	return out
}

// LeftSiteSince says when LeftSite marked n, and whether it did: a provider that restarts
// during a grace period goes on from there.
func LeftSiteSince(n *corev1.Node) (time.Time, bool) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Reason == ReasonNodeLeftSite && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time, true
		}
	}
	return time.Time{}, false
}

// LeftSiteMessage says why virtual node v no longer stands for a node of its Site, what
// happens to it and how to keep it: site is the Site now (nil: deleted), siteNode the
// node of the site's cluster that v stood for (nil: the cluster has none of that name; a
// PerNode node only), deadline the end of v's grace period.
func LeftSiteMessage(v *corev1.Node, site *vk8sv1.Site, siteNode *corev1.Node, grace time.Duration, deadline time.Time) string {
	siteName := v.Labels[vk8sv1.LabelSite]
	node, perNode := v.Labels[vk8sv1.LabelSiteNode]
	var what, fix string
	switch {
	case site == nil:
		what = fmt.Sprintf("Site %s was deleted", siteName)
		fix = fmt.Sprintf("create Site %s again as it was (the same kubeconfig Secret, spec.nodeMode and spec.nodeSelector)", siteName)
	case perNode && site.Spec.NodeMode == vk8sv1.NodeModeAggregate:
		what = fmt.Sprintf("Site %s's spec.nodeMode changed to Aggregate (one virtual node, %s, for the whole site)", site.Name, site.Name)
		fix = "set spec.nodeMode back to PerNode"
	case !perNode && site.Spec.NodeMode != vk8sv1.NodeModeAggregate:
		what = fmt.Sprintf("Site %s's spec.nodeMode changed to PerNode (one virtual node per node of the site)", site.Name)
		fix = "set spec.nodeMode back to Aggregate"
	case siteNode == nil:
		what = fmt.Sprintf("node %s is no longer in the cluster of Site %s", node, site.Name)
		fix = fmt.Sprintf("bring node %s back on the site", node)
	case !selects(site.Spec.NodeSelector, siteNode):
		what = fmt.Sprintf("Site %s's spec.nodeSelector {%s} no longer selects its node %s (labels {%s})",
			site.Name, labels.Set(site.Spec.NodeSelector), node, labels.Set(siteNode.Labels))
		fix = "fix spec.nodeSelector (or the node's labels on the site)"
	default:
		what = fmt.Sprintf("virtual node %s no longer stands for a node of Site %s", v.Name, site.Name)
		fix = fmt.Sprintf("undo the change to Site %s", site.Name)
	}
	return fmt.Sprintf("%s. Virtual node %s stays, NotReady and unschedulable, with its pods until %s (grace period %s); "+
		"then it is deleted, and the host deletes its pods. To keep them, %s before then",
		what, v.Name, deadline.UTC().Format(time.RFC3339), grace, fix)
}

// selects says whether a Site's node selector (empty: every node) selects n.
func selects(sel map[string]string, n *corev1.Node) bool {
	return labels.SelectorFromSet(sel).Matches(labels.Set(n.Labels))
}

// setCondition sets c on n, replacing a condition of its type.
func setCondition(n *corev1.Node, c corev1.NodeCondition) {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == c.Type {
			n.Status.Conditions[i] = c
			return
		}
	}
	n.Status.Conditions = append(n.Status.Conditions, c)
}

func perNode(site *vk8sv1.Site, n *corev1.Node, kubeletVersion string, ep Endpoint) *corev1.Node {
	name := VirtualNodeName(site.Name, n.Name)
	v := baseNode(site, name, kubeletVersion, ep)
	for k, val := range n.Labels {
		if !dropped(k) {
			v.Labels[k] = val
		}
	}
	setOwnLabels(v, site.Name)
	v.Labels[vk8sv1.LabelSiteNode] = n.Name
	v.Spec.Unschedulable = site.Spec.Unschedulable || n.Spec.Unschedulable
	v.Status.Capacity = n.Status.Capacity.DeepCopy()
	v.Status.Allocatable = n.Status.Allocatable.DeepCopy()
	v.Status.Conditions = siteConditions(n.Status.Conditions)
	if info := n.Status.NodeInfo; info.Architecture != "" && info.OperatingSystem != "" {
		v.Status.NodeInfo.Architecture, v.Status.NodeInfo.OperatingSystem = info.Architecture, info.OperatingSystem
	}
	return v
}

func aggregateNode(site *vk8sv1.Site, nodes []*corev1.Node, kubeletVersion string, ep Endpoint) *corev1.Node {
	v := baseNode(site, site.Name, kubeletVersion, ep)
	// Topology labels only when every node agrees, so a selector on them stays truthful.
	for _, key := range []string{corev1.LabelTopologyRegion, corev1.LabelTopologyZone, corev1.LabelOSStable, corev1.LabelArchStable} {
		if val, ok := common(nodes, key); ok {
			v.Labels[key] = val
		}
	}
	setOwnLabels(v, site.Name)
	capacity, allocatable := corev1.ResourceList{}, corev1.ResourceList{}
	usable := 0
	for _, n := range nodes {
		if n.Spec.Unschedulable || !NodeReady(n) {
			continue
		}
		usable++
		add(capacity, n.Status.Capacity)
		add(allocatable, n.Status.Allocatable)
	}
	v.Spec.Unschedulable = site.Spec.Unschedulable || usable == 0
	v.Status.Capacity, v.Status.Allocatable = capacity, allocatable
	ready := corev1.NodeCondition{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "SiteNodesReady",
		Message: "the site has schedulable Ready nodes",
	}
	if usable == 0 {
		ready.Status, ready.Reason, ready.Message = corev1.ConditionFalse, "NoReadySiteNodes", "no node of the site is Ready and schedulable"
	}
	v.Status.Conditions = []corev1.NodeCondition{ready}
	return v
}

func baseNode(site *vk8sv1.Site, name, kubeletVersion string, ep Endpoint) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Spec: corev1.NodeSpec{
			Taints: []corev1.Taint{{Key: vk8sv1.TaintKey, Value: vk8sv1.TaintValue, Effect: corev1.TaintEffectNoSchedule}},
		},
		Status: corev1.NodeStatus{
			Phase:           corev1.NodeRunning,
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ep.Address}, {Type: corev1.NodeHostName, Address: name}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: ep.Port}},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:  kubeletVersion,
				OperatingSystem: "linux",
				Architecture:    "amd64",
			},
		},
	}
}

func setOwnLabels(v *corev1.Node, site string) {
	v.Labels[corev1.LabelHostname] = v.Name
	v.Labels[vk8sv1.LabelSite] = site
	v.Labels[vk8sv1.LabelType] = vk8sv1.TypeVirtualKubelet
	v.Labels["kubernetes.io/role"] = "agent"
}

func dropped(key string) bool {
	for _, d := range hostLabelsDropped {
		if key == d || (strings.HasSuffix(d, "/") && strings.HasPrefix(key, d)) {
			return true
		}
	}
	return false
}

// siteConditions copies the site node's conditions without their heartbeat times: the
// provider's heartbeats set their own, and a site heartbeat alone is no change worth a write.
func siteConditions(in []corev1.NodeCondition) []corev1.NodeCondition {
	out := make([]corev1.NodeCondition, len(in))
	copy(out, in)
	for i := range out {
		out[i].LastHeartbeatTime = metav1.Time{}
	}
	return out
}

func common(nodes []*corev1.Node, key string) (string, bool) {
	if len(nodes) == 0 {
		return "", false
	}
	val, ok := nodes[0].Labels[key]
	if !ok {
		return "", false
	}
	for _, n := range nodes[1:] {
		if n.Labels[key] != val {
			return "", false
		}
	}
	return val, true
}

func add(sum, more corev1.ResourceList) {
	for name, q := range more {
		cur, ok := sum[name]
		if !ok {
			cur = resource.Quantity{Format: q.Format}
		}
		cur.Add(q)
		sum[name] = cur
	}
}

// VirtualNodeName is the name of the host node that stands for node of site in PerNode
// mode: "<site>-<node>".
func VirtualNodeName(site, node string) string { return site + "-" + node }

// VirtualNodeNameFits says whether a virtual node of this name can register: a Node's
// kubernetes.io/hostname label holds its name, and a label value has at most 63
// characters.
func VirtualNodeNameFits(name string) bool { return len(name) <= validation.LabelValueMaxLength }

// NodeReady says whether n's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

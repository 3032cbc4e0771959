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

package sitereg

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/translate"
)

// maxVirtualNodes is the bound the Site CRD puts on status.virtualNodes.
const maxVirtualNodes = 5000

// nodeSelector turns spec.nodeSelector into a selector; an empty map selects every node.
func nodeSelector(set map[string]string) (labels.Selector, error) {
	if len(set) == 0 {
		return labels.Everything(), nil
	}
	return labels.ValidatedSelectorFromSet(set)
}

// nodeSummary is what a Site's status says about the site's nodes.
type nodeSummary struct {
	// count is the number of the site's nodes, ready the number of those that are Ready,
	// total the number of the cluster's nodes (the site's or not).
	count, ready, total int
	// allocatable sums the allocatable resources of the site's nodes, Ready or not.
	allocatable corev1.ResourceList
	// virtualNodes are the host nodes that stand for the site, sorted.
	virtualNodes []string
	// tooLong are the names of virtual nodes that could not register, sorted: longer
	// than a kubernetes.io/hostname label value may be (the Node's own name label).
	tooLong []string
	// collisions are the virtual nodes another Site keeps (Registry.assign), left out of
	// virtualNodes.
	collisions []Collision
}

// summarizeNodes summarises the nodes of a cluster that sel selects for site.
func summarizeNodes(site string, mode vk8sv1.NodeMode, sel labels.Selector, nodes []*corev1.Node) nodeSummary {
	s := nodeSummary{total: len(nodes), allocatable: corev1.ResourceList{}}
	for _, n := range nodes {
		if !sel.Matches(labels.Set(n.Labels)) {
			continue
		}
		s.count++
		if translate.NodeReady(n) {
			s.ready++
		}
		for name, q := range n.Status.Allocatable {
			sum := s.allocatable[name]
			sum.Add(q)
			s.allocatable[name] = sum
		}
		if mode != vk8sv1.NodeModeAggregate {
			name := translate.VirtualNodeName(site, n.Name)
			if !translate.VirtualNodeNameFits(name) {
				s.tooLong = append(s.tooLong, name)
				continue
			}
			s.virtualNodes = append(s.virtualNodes, name)
		}
	}
	slices.Sort(s.tooLong)
	if mode == vk8sv1.NodeModeAggregate {
		s.virtualNodes = []string{site}
	}
	slices.Sort(s.virtualNodes)
	if len(s.virtualNodes) > maxVirtualNodes {
		s.virtualNodes = s.virtualNodes[:maxVirtualNodes]
	}
	if len(s.allocatable) == 0 {
		s.allocatable = nil
	}
	return s
}

// nodeChangeMatters says whether an update of a node can change a Site's status, so the
// registry does not reconcile sites on every node heartbeat.
func nodeChangeMatters(old, cur *corev1.Node) bool {
	return !equality.Semantic.DeepEqual(old.Labels, cur.Labels) ||
		!equality.Semantic.DeepEqual(old.Status.Allocatable, cur.Status.Allocatable) ||
		!equality.Semantic.DeepEqual(old.Status.Capacity, cur.Status.Capacity) ||
		old.Spec.Unschedulable != cur.Spec.Unschedulable ||
		!slices.Equal(conditionStates(old), conditionStates(cur))
}

// conditionStates is what a node's conditions say, without their times: the virtual nodes
// carry them, so a change of any condition (not only Ready) matters.
func conditionStates(n *corev1.Node) []string {
	out := make([]string, 0, len(n.Status.Conditions))
	for _, c := range n.Status.Conditions {
		out = append(out, string(c.Type)+"="+string(c.Status)+"/"+c.Reason)
	}
	return out
}

// observation is what one reconcile learnt about a site; siteStatus turns it into status.
type observation struct {
	// err says why the site is not connected; nil when its API server answered.
	err error
	// server is the URL of the site's API server, for messages.
	server string
	// version is the API server's gitVersion, heartbeat the time of its last answer.
	version   string
	heartbeat time.Time
	// clusterID is the identity of the cluster reached (the UID of its kube-system
	// namespace) once it is found to be the Site's; empty otherwise.
	clusterID string
	// nodesKnown says whether nodes holds the site's nodes: the node cache has been
	// synced once (it may be stale while the site is unreachable).
	nodesKnown bool
	nodes      nodeSummary
	// writesStalled says why the site's writes are stalled while reads answer; nil when
	// they are not.
	writesStalled error
}

// siteStatus computes a Site's status from what was observed. Fields the observation does
// not know (the version and nodes of a site that cannot be reached) keep their last values,
// so a site that stops answering keeps its virtual nodes.
func siteStatus(site *vk8sv1.Site, obs observation, now time.Time) vk8sv1.SiteStatus {
	st := *site.Status.DeepCopy()
	now = now.Truncate(time.Second)
	gen := site.Generation
	st.ObservedGeneration = gen
	set := func(typ string, status metav1.ConditionStatus, reason, message string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: message,
			ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now),
		})
	}

	if obs.clusterID != "" && st.ClusterID == "" {
		st.ClusterID = obs.clusterID
	}
	if obs.err == nil {
		st.KubernetesVersion = obs.version
		set(vk8sv1.ConditionConnected, metav1.ConditionTrue, ReasonConnected,
			fmt.Sprintf("the API server at %s answers (Kubernetes %s)", obs.server, obs.version))
	} else {
		reason, message := ReasonProbeFailed, obs.err.Error()
		var se *siteError
		if errors.As(obs.err, &se) {
			reason, message = se.reason, se.message
		}
		set(vk8sv1.ConditionConnected, metav1.ConditionFalse, reason, message)
		set(vk8sv1.ConditionReady, metav1.ConditionFalse, reason, message)
	}
	if !obs.heartbeat.IsZero() {
		t := metav1.NewTime(obs.heartbeat.Truncate(time.Second))
		st.LastHeartbeatTime = &t
	}

	switch {
	case obs.nodesKnown:
		n := obs.nodes
		st.NodeCount = int32(n.count)
		st.Allocatable = n.allocatable
		st.VirtualNodes = n.virtualNodes
	case site.Spec.NodeMode == vk8sv1.NodeModeAggregate:
		st.VirtualNodes = []string{site.Name}
	}

	if obs.err != nil {
		return st
	}
	n := obs.nodes
	switch {
	case !obs.nodesKnown:
		set(vk8sv1.ConditionReady, metav1.ConditionUnknown, ReasonNodesNotSynced,
			"connected; reading the site's nodes")
	case n.total == 0:
		set(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonNoReadyNodes,
			"the site's cluster has no nodes: add nodes to it")
	case n.count == 0:
		set(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonNoReadyNodes,
			fmt.Sprintf("spec.nodeSelector %v matches none of the cluster's %d nodes: fix spec.nodeSelector or label the nodes",
				labels.Set(site.Spec.NodeSelector), n.total))
	case len(n.tooLong) > 0:
		set(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonNodeNamesTooLong,
			fmt.Sprintf("virtual node names %s are longer than %d characters (a Node's %s label) and cannot register: "+
				"give the Site a shorter name, or set spec.nodeMode Aggregate (one virtual node named after the Site)",
				strings.Join(n.tooLong, ", "), validation.LabelValueMaxLength, corev1.LabelHostname))
	case len(n.collisions) > 0:
		set(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonNodeNameCollision, collisionMessage(n.collisions))
	case obs.writesStalled != nil:
		set(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonWritesTimingOut,
			fmt.Sprintf("the API server at %s answers reads, but its writes do not: %v: check the site's admission webhooks "+
				"(one that does not answer holds every create) and its etcd; pods wait for the site meanwhile", obs.server, obs.writesStalled))
	case n.ready == 0:
		set(vk8sv1.ConditionReady, metav1.ConditionFalse, ReasonNoReadyNodes,
			fmt.Sprintf("none of the site's %d nodes is Ready: check them on the site (kubectl get nodes)", n.count))
	default:
		set(vk8sv1.ConditionReady, metav1.ConditionTrue, ReasonNodesReady,
			fmt.Sprintf("%d of %d nodes are Ready", n.ready, n.count))
	}
	return st
}

// siteEvent is a Kubernetes Event to record on a Site.
type siteEvent struct {
	eventType, reason, action, note string
}

// Actions of the Events the registry records.
const (
	actionConnect     = "Connect"
	actionCheckNodes  = "CheckNodes"
	actionCheckWrites = "CheckWrites"
)

// transitionEvents returns the Events that a change of a Site's conditions from old to cur
// deserves: a Warning when the connection fails or changes how it fails, a Normal event
// when it is (re)established, and the same for readiness while connected (its nodes, and
// writes that hang while reads answer). An
// unchanged condition gives none, so a site probed every heartbeat is not an Event stream.
func transitionEvents(old, cur []metav1.Condition) []siteEvent {
	var out []siteEvent
	changed := func(typ string) (*metav1.Condition, bool) {
		o, c := meta.FindStatusCondition(old, typ), meta.FindStatusCondition(cur, typ)
		if c == nil {
			return nil, false
		}
		return c, o == nil || o.Status != c.Status || o.Reason != c.Reason
	}
	conn, connChanged := changed(vk8sv1.ConditionConnected)
	if connChanged {
		if conn.Status == metav1.ConditionTrue {
			out = append(out, siteEvent{corev1.EventTypeNormal, conn.Reason, actionConnect, conn.Message})
		} else {
			out = append(out, siteEvent{corev1.EventTypeWarning, conn.Reason, actionConnect, conn.Message})
		}
	}
	if conn == nil || conn.Status != metav1.ConditionTrue {
		return out
	}
	ready, readyChanged := changed(vk8sv1.ConditionReady)
	if !readyChanged {
		return out
	}
	prev := meta.FindStatusCondition(old, vk8sv1.ConditionReady)
	if action, ok := readyProblem(ready.Reason); ok {
		return append(out, siteEvent{corev1.EventTypeWarning, ready.Reason, action, ready.Message})
	}
	if prev != nil && ready.Status == metav1.ConditionTrue {
		if action, ok := readyProblem(prev.Reason); ok {
			out = append(out, siteEvent{corev1.EventTypeNormal, ready.Reason, action, ready.Message})
		}
	}
	return out
}

// readyProblem says whether a reason of Ready=False on a connected Site is a problem an
// Event tells (not the wait for the node cache), and the action that found it.
func readyProblem(reason string) (string, bool) {
	switch reason {
	case ReasonNoReadyNodes, ReasonNodeNameCollision, ReasonNodeNamesTooLong:
		return actionCheckNodes, true
	case ReasonWritesTimingOut:
		return actionCheckWrites, true
	}
	return "", false
}

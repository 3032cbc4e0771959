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

package fleet

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/placement"
)

// The kinds of workloads vk8s federates, as Workload.Kind names them.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
)

// ErrNotFederated is wrapped by Status's error for a workload without a plan
// (vk8s.io/placement): vk8s did not admit it, so it has no sites.
var ErrNotFederated = errors.New("not federated by vk8s")

// Workload is what Status reads of a federated workload, whatever its kind.
type Workload struct {
	// Kind is one of the Kind constants.
	Kind      string
	Namespace string
	Name      string
	// Annotations hold the plan (vk8s.io/placement) and the annotations users write
	// (ves.io/overrides, ves.io/workload-flavor): the workload's own; a CronJob's latest
	// Job's, or its jobTemplate's before its first Job.
	Annotations map[string]string
	// Template is the pod template; a DaemonSet's decides which virtual nodes run its pods.
	Template *corev1.PodTemplateSpec
	// Pods are the workload's pods, found by ownership: a Deployment's through its
	// ReplicaSets, a CronJob's through its latest Job.
	Pods []corev1.Pod
	// Owners are the UIDs of the workload and of the objects between it and its pods
	// (ReplicaSets, a CronJob's Job): their events count for the sites they name.
	Owners []types.UID
	// Revision holds the labels that the pods of the current template carry (a
	// Deployment's newest ReplicaSet's pod-template-hash, a StatefulSet's update
	// revision); nil: every pod is of the current template.
	Revision map[string]string
}

// StatusInput is what Status reads.
type StatusInput struct {
	Workload Workload
	// Sites are the host's Sites.
	Sites []vk8sv1.Site
	// Nodes are the host's virtual nodes (labelled vk8s.io/site).
	Nodes []corev1.Node
	// Overrides are the Overrides of the workload's namespace.
	Overrides []vk8sv1.Override
	// Events are the events of the workload's namespace.
	Events []corev1.Event
}

// StatusRow is one line of `kubectl vk8s status`: the workload on one site.
type StatusRow struct {
	// Site is the site's name; Type its type (empty when the Site is gone).
	Site string          `json:"site"`
	Type vk8sv1.SiteType `json:"type,omitempty"`
	// Desired is the site's count in the plan (vk8s.io/placement; a Job's completions per
	// site); a DaemonSet's is the site's virtual nodes that its template selects and whose
	// taints it tolerates. 0 for a site that left the plan and still has pods.
	Desired int32 `json:"desired"`
	// Current counts the site's live pods (not ended, not being deleted); Terminating
	// those being deleted; Ready the live pods that are Ready.
	Current     int32 `json:"current"`
	Terminating int32 `json:"terminating,omitempty"`
	Ready       int32 `json:"ready"`
	// UpToDate counts the live pods of the current template that carry the site's current
	// Override (their vk8s.io/override-hash is its stamp): what a rollout brings every pod
	// to.
	UpToDate int32 `json:"upToDate"`
	// Succeeded counts a Job's succeeded pods on the site (vk8s.io/site-succeeded).
	Succeeded int32 `json:"succeeded,omitempty"`
	// Override names the Override that applies on the site now (the first of
	// ves.io/overrides whose siteList holds it); empty: none.
	Override string `json:"override,omitempty"`
	// Flavor is the workload's WorkloadFlavor; FlavorApplied says whether it applies on
	// the site (RegionalEdge sites; CustomerEdge sites keep the manifest's resources).
	Flavor        string `json:"flavor"`
	FlavorApplied bool   `json:"flavorApplied"`
	// Images are the container images of the site's live pods, sorted.
	Images []string `json:"images,omitempty"`
	// Nodes are the virtual nodes of the site's live pods, sorted.
	Nodes []string `json:"nodes,omitempty"`
	// LastEvent is the newest event of the site's pods, or of the workload naming the
	// site.
	LastEvent *Event `json:"lastEvent,omitempty"`
}

// Event is an event as a row shows it.
type Event struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Object is the event's object, kind/name ("pod/web-0").
	Object string      `json:"object"`
	Time   metav1.Time `json:"time"`
}

// Status returns the workload's rows: one per site of its plan, in the plan's order, then
// one per other site that still has pods of it, sorted. Its error wraps ErrNotFederated
// when the workload has no plan.
func Status(in StatusInput) ([]StatusRow, error) {
	w := &in.Workload
	raw, ok := w.Annotations[vk8sv1.AnnotationPlacement]
	if !ok {
		return nil, fmt.Errorf("%s %s/%s is %w: it has no %s annotation, which admission writes on the workloads of vK8s namespaces (kubectl get virtualkubernetes -n %s)",
			strings.ToLower(w.Kind), w.Namespace, w.Name, ErrNotFederated, vk8sv1.AnnotationPlacement, w.Namespace)
	}
	layout, err := placement.ParseLayout(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", strings.ToLower(w.Kind), w.Namespace, w.Name, err)
	}
	siteOfNode := map[string]string{}
	nodesOf := map[string][]*corev1.Node{}
	for i := range in.Nodes {
		n := &in.Nodes[i]
		if s := n.Labels[vk8sv1.LabelSite]; s != "" {
			siteOfNode[n.Name] = s
			nodesOf[s] = append(nodesOf[s], n)
		}
	}
	sites := map[string]*vk8sv1.Site{}
	for i := range in.Sites {
		sites[in.Sites[i].Name] = &in.Sites[i]
	}
	podsOf := map[string][]*corev1.Pod{}
	for i := range w.Pods {
		p := &w.Pods[i]
		if s := siteOfPod(p, siteOfNode); s != "" {
			podsOf[s] = append(podsOf[s], p)
		}
	}
	order := slices.Clone(layout.Sites)
	var extra []string
	for s := range podsOf {
		if !slices.Contains(order, s) {
			extra = append(extra, s)
		}
	}
	slices.Sort(extra)
	order = append(order, extra...)

	names, _ := overrides.ParseOverrides(w.Annotations)
	existing := map[string]*vk8sv1.Override{}
	for i := range in.Overrides {
		existing[in.Overrides[i].Name] = &in.Overrides[i]
	}
	// As admission does for the pods of a running workload: an Override deleted since
	// applies nowhere.
	names = slices.DeleteFunc(names, func(n string) bool { return existing[n] == nil })
	flavor, err := overrides.ParseWorkloadFlavor(w.Annotations, "")
	if err != nil {
		flavor = w.Annotations[vk8sv1.AnnotationWorkloadFlavor]
	}
	succeeded := parseSiteCounts(w.Annotations[vk8sv1.AnnotationSiteSucceeded])
	events := eventsByObject(in.Events)
	revision := labels.SelectorFromSet(w.Revision)

	rows := make([]StatusRow, 0, len(order))
	for _, site := range order {
		r := StatusRow{Site: site, Flavor: flavor, Desired: layout.Counts[site]}
		if s := sites[site]; s != nil {
			r.Type = overrides.SiteType(s)
			r.FlavorApplied = r.Type == vk8sv1.SiteTypeRegionalEdge
		}
		if w.Kind == KindDaemonSet {
			r.Desired = 0
			if slices.Contains(layout.Sites, site) {
				r.Desired = eligibleNodes(w.Template, nodesOf[site])
			}
		}
		o, _ := overrides.SelectOverride(names, existing, site)
		if o != nil {
			r.Override = o.Name
		}
		images, nodes := map[string]bool{}, map[string]bool{}
		var last *Event
		for _, p := range podsOf[site] {
			last = newer(last, lastEventOf(events[p.UID], "pod/"+p.Name))
			switch {
			case ended(p):
				if p.Status.Phase == corev1.PodSucceeded {
					r.Succeeded++
				}
				continue
			case p.DeletionTimestamp != nil:
				r.Terminating++
				continue
			}
			r.Current++
			if podReady(p) {
				r.Ready++
			}
			if revision.Matches(labels.Set(p.Labels)) && !placement.Stale(p, o) {
				r.UpToDate++
			}
			for _, c := range p.Spec.Containers {
				images[c.Image] = true
			}
			if p.Spec.NodeName != "" {
				nodes[p.Spec.NodeName] = true
			}
		}
		if n, ok := succeeded[site]; ok {
			// The Job status controller's count outlives pods removed since.
			r.Succeeded = n
		}
		for _, uid := range w.Owners {
			for _, e := range events[uid] {
				if namesSite(e.Message, site) {
					last = newer(last, lastEventOf([]*corev1.Event{e}, strings.ToLower(e.InvolvedObject.Kind)+"/"+e.InvolvedObject.Name))
				}
			}
		}
		r.Images, r.Nodes, r.LastEvent = sortedKeys(images), sortedKeys(nodes), last
		rows = append(rows, r)
	}
	return rows, nil
}

// StatusTable returns the rows of a workload of kind as a table: SITE, DESIRED, CURRENT,
// READY, UP-TO-DATE (SUCCEEDED for Jobs and CronJobs), OVERRIDE, FLAVOR (the flavor where
// it applies, <manifest> on CustomerEdge sites), IMAGES, LAST-EVENT; with -o wide also
// TYPE, NODES and MESSAGE (the last event's).
func StatusTable(kind string, rows []StatusRow, now time.Time) *metav1.Table {
	job := kind == KindJob || kind == KindCronJob
	progress := metav1.TableColumnDefinition{Name: "Up-to-date", Type: "integer"}
	if job {
		progress = metav1.TableColumnDefinition{Name: "Succeeded", Type: "integer"}
	}
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Site", Type: "string", Format: "name"},
		{Name: "Desired", Type: "integer"},
		{Name: "Current", Type: "integer"},
		{Name: "Ready", Type: "integer"},
		progress,
		{Name: "Override", Type: "string"},
		{Name: "Flavor", Type: "string"},
		{Name: "Images", Type: "string"},
		{Name: "Last-Event", Type: "string"},
		{Name: "Type", Type: "string", Priority: 1},
		{Name: "Nodes", Type: "string", Priority: 1},
		{Name: "Message", Type: "string", Priority: 1},
	}}
	for i := range rows {
		r := &rows[i]
		p := int64(r.UpToDate)
		if job {
			p = int64(r.Succeeded)
		}
		flavor := r.Flavor
		if !r.FlavorApplied {
			flavor = "<manifest>"
		}
		event, message := none, none
		if e := r.LastEvent; e != nil {
			event = fmt.Sprintf("%s %s ago", e.Reason, Age(&e.Time, now))
			message = e.Object + ": " + e.Message
		}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells: []any{r.Site, int64(r.Desired), int64(r.Current), int64(r.Ready), p,
				orNone(r.Override), flavor, joinOrNone(r.Images), event,
				orNone(string(r.Type)), joinOrNone(r.Nodes), message},
			Object: runtime.RawExtension{},
		})
	}
	return t
}

// siteOfPod returns a pod's site: its vk8s.io/site label, else its virtual node's site.
func siteOfPod(p *corev1.Pod, siteOfNode map[string]string) string {
	if s := p.Labels[vk8sv1.LabelSite]; s != "" {
		return s
	}
	return siteOfNode[p.Spec.NodeName]
}

// eligibleNodes counts the nodes that the DaemonSet controller runs a pod of template on:
// those its node selector and required node affinity select, with no NoSchedule or
// NoExecute taint it does not tolerate.
func eligibleNodes(template *corev1.PodTemplateSpec, nodes []*corev1.Node) int32 {
	if template == nil {
		return 0
	}
	pod := &corev1.Pod{Spec: template.Spec}
	affinity := nodeaffinity.GetRequiredNodeAffinity(pod)
	var n int32
	for _, node := range nodes {
		if ok, err := affinity.Match(node); err != nil || !ok {
			continue
		}
		_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(logr.Discard(), node.Spec.Taints, template.Spec.Tolerations, func(t *corev1.Taint) bool {
			return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
		}, false)
		if !untolerated {
			n++
		}
	}
	return n
}

// parseSiteCounts parses vk8s.io/site-succeeded ("site1=2/2,site2=1/2", or bare counts)
// into each site's count; entries it cannot read are left out.
func parseSiteCounts(v string) map[string]int32 {
	out := map[string]int32{}
	for _, e := range strings.Split(v, ",") {
		site, count, ok := strings.Cut(strings.TrimSpace(e), "=")
		if !ok {
			continue
		}
		count, _, _ = strings.Cut(count, "/")
		if n, err := strconv.ParseInt(count, 10, 32); err == nil && site != "" {
			out[site] = int32(n)
		}
	}
	return out
}

// eventsByObject indexes events by the UID of their object.
func eventsByObject(events []corev1.Event) map[types.UID][]*corev1.Event {
	out := map[types.UID][]*corev1.Event{}
	for i := range events {
		e := &events[i]
		out[e.InvolvedObject.UID] = append(out[e.InvolvedObject.UID], e)
	}
	return out
}

// lastEventOf returns the newest of events, all of object, or nil.
func lastEventOf(events []*corev1.Event, object string) *Event {
	var last *Event
	for _, e := range events {
		last = newer(last, &Event{Type: e.Type, Reason: e.Reason, Message: e.Message, Object: object, Time: eventTime(e)})
	}
	return last
}

// newer returns the newer of two events, either of which may be nil. Events of the same
// moment (most have whole seconds) are ordered by object, reason and message, the last
// taken: the caches list in no fixed order, and a choice by order made the column of
// `status -w` change between two reads of the same events.
func newer(a, b *Event) *Event {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case b.Time.After(a.Time.Time):
		return b
	case a.Time.After(b.Time.Time):
		return a
	}
	if cmp.Or(cmp.Compare(b.Object, a.Object), cmp.Compare(b.Reason, a.Reason), cmp.Compare(b.Message, a.Message)) > 0 {
		return b
	}
	return a
}

// eventTime is when an event last happened: core/v1 events say it in lastTimestamp,
// events.k8s.io/v1 ones (read through core/v1) in eventTime or their series.
func eventTime(e *corev1.Event) metav1.Time {
	t := e.CreationTimestamp.Time
	for _, c := range []time.Time{e.FirstTimestamp.Time, e.LastTimestamp.Time, e.EventTime.Time} {
		if c.After(t) {
			t = c
		}
	}
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	return metav1.NewTime(t)
}

// namesSite says whether an event's message names site as a word of its own: "site
// site2: restarting 3 of 3 pods" and "placement site1=2,site2=2" name site2,
// "site2-node1" does not.
func namesSite(message, site string) bool {
	words := strings.FieldsFunc(message, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '.'
	})
	for _, w := range words {
		if strings.TrimRight(w, ".") == site {
			return true
		}
	}
	return false
}

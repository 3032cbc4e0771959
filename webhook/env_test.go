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

package webhook

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

const ns = "demo"

func init() {
	// Handlers log through controller-runtime's logger; tests need none of it.
	ctrllog.SetLogger(logr.Discard())
}

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is an admitter over a fake client that holds a small fleet: Sites site1..site3
// (CustomerEdge) and site4 (RegionalEdge, selected by no default virtual-site), three
// virtual nodes per site, VirtualSites shared/all-sites (site1..site3), shared/first-two
// and demo/eu, and namespace demo with VirtualKubernetes vk on shared/all-sites.
type env struct {
	t      testing.TB
	c      client.WithWatch
	a      *admitter
	state  *federation.State
	reg    *prometheus.Registry
	clock  *testClock
	events *events.FakeRecorder
	scheme *runtime.Scheme
}

func fleetObjects() []client.Object {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{vk8sv1.LabelVirtualKubernetes: "vk"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shared"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
		&vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "all-sites"},
			Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "lab"}}}},
		&vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "first-two"},
			Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "site-index", Operator: metav1.LabelSelectorOpIn, Values: []string{"1", "2"}}}}}},
		&vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "eu"},
			Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu-west"}}}},
		&vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "regional"},
			Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchLabels: map[string]string{"site-index": "4"}}}},
		&vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "nowhere"},
			Spec: vk8sv1.VirtualSiteSpec{SiteSelector: metav1.LabelSelector{MatchLabels: map[string]string{"region": "moon"}}}},
		&vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vk"}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/all-sites"}},
	}
	regions := []string{"", "eu-west", "us-east", "ap-south", "eu-west"}
	for i := 1; i <= 4; i++ {
		site := fmt.Sprintf("site%d", i)
		s := &vk8sv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: site, Labels: map[string]string{"region": regions[i], "site-index": strconv.Itoa(i)}},
			Spec:       vk8sv1.SiteSpec{Type: vk8sv1.SiteTypeCustomerEdge},
		}
		if i == 4 {
			s.Spec.Type = vk8sv1.SiteTypeRegionalEdge
		} else {
			s.Labels["fleet"] = "lab"
		}
		objs = append(objs, s)
		for j := 1; j <= 3; j++ {
			objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
				Name:   fmt.Sprintf("%s-node%d", site, j),
				Labels: map[string]string{vk8sv1.LabelSite: site, vk8sv1.LabelType: vk8sv1.TypeVirtualKubelet},
			}})
		}
	}
	return objs
}

func newEnv(t testing.TB, extra ...client.Object) *env {
	t.Helper()
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(append(fleetObjects(), extra...)...).
		WithIndex(&corev1.Pod{}, federation.IndexPodOwner, federation.PodOwnerIndex).Build()
	clock := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := events.NewFakeRecorder(1000)
	reg := prometheus.NewRegistry()
	cfg := Config{URL: "https://127.0.0.1:9443"}
	cfg.defaults()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	// The API server reader counts its reads, as the webhook's (server.go) does.
	api := countedReader{Reader: c, scheme: s, reads: m.apiReads}
	state, err := federation.New(federation.Config{Options: cfg.Options, Cache: c, API: api, Client: c, Recorder: rec, Now: clock.now, MetricsRegisterer: reg})
	if err != nil {
		t.Fatal(err)
	}
	a := newAdmitter(cfg, state, s, m)
	return &env{t: t, c: c, a: a, state: state, reg: reg, clock: clock, events: rec, scheme: s}
}

// request builds the admission request of op on obj (old for updates and deletes).
func (e *env) request(op admissionv1.Operation, obj, old client.Object) admission.Request {
	e.t.Helper()
	ref := obj
	if ref == nil {
		ref = old
	}
	gvk, err := apiutil.GVKForObject(ref, e.scheme)
	if err != nil {
		e.t.Fatal(err)
	}
	mapping := strings.ToLower(gvk.Kind) + "s"
	if gvk.Kind == "VirtualKubernetes" {
		mapping = "virtualkubernetes"
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       types.UID("req"),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: mapping},
		Namespace: ref.GetNamespace(), Name: ref.GetName(), Operation: op,
	}}
	if obj != nil {
		req.Object.Raw = e.marshal(obj, gvk)
	}
	if old != nil {
		req.OldObject.Raw = e.marshal(old, gvk)
	}
	return req
}

func (e *env) marshal(obj client.Object, gvk schema.GroupVersionKind) []byte {
	obj = obj.DeepCopyObject().(client.Object)
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	raw, err := json.Marshal(obj)
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

// patched applies resp's JSON patch to req's object and decodes the result into into.
func patched(t testing.TB, req admission.Request, resp admission.Response, into any) {
	t.Helper()
	if !resp.Allowed {
		t.Fatalf("denied: %s", resp.Result.Message)
	}
	var doc any
	if err := json.Unmarshal(req.Object.Raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Patches {
		var err error
		doc, err = applyOp(doc, splitPointer(p.Path), p.Operation, p.Value)
		if err != nil {
			t.Fatalf("patch %s %s: %v", p.Operation, p.Path, err)
		}
	}
	raw, _ := json.Marshal(doc)
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatal(err)
	}
}

func splitPointer(p string) []string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts
}

// applyOp applies one add, remove or replace (what jsonpatch.CreatePatch emits).
func applyOp(doc any, path []string, op string, value any) (any, error) {
	if len(path) == 0 {
		if op == "remove" {
			return nil, nil
		}
		return value, nil
	}
	switch d := doc.(type) {
	case map[string]any:
		if len(path) == 1 {
			if op == "remove" {
				delete(d, path[0])
			} else {
				d[path[0]] = value
			}
			return d, nil
		}
		child, err := applyOp(d[path[0]], path[1:], op, value)
		d[path[0]] = child
		return d, err
	case []any:
		i := len(d)
		if path[0] != "-" {
			n, err := strconv.Atoi(path[0])
			if err != nil {
				return nil, err
			}
			i = n
		}
		if len(path) == 1 {
			switch op {
			case "add":
				return append(d[:i], append([]any{value}, d[i:]...)...), nil
			case "remove":
				return append(d[:i], d[i+1:]...), nil
			default:
				d[i] = value
				return d, nil
			}
		}
		child, err := applyOp(d[i], path[1:], op, value)
		d[i] = child
		return d, err
	case nil:
		if op == "remove" {
			return nil, fmt.Errorf("remove from nothing")
		}
		m := map[string]any{}
		return applyOp(m, path, op, value)
	}
	return nil, fmt.Errorf("cannot walk into %T", doc)
}

// drainEvents takes the recorded Events out of the recorder and returns those that
// contain match.
func (e *env) drainEvents(match string) []string {
	var out []string
	for {
		select {
		case ev := <-e.events.Events:
			if strings.Contains(ev, match) {
				out = append(out, ev)
			}
		default:
			return out
		}
	}
}

// denied fails t unless resp denies with exactly msg.
func denied(t testing.TB, resp admission.Response, msg string) {
	t.Helper()
	if resp.Allowed {
		t.Fatalf("allowed, want denied with %q", msg)
	}
	if resp.Result == nil || resp.Result.Message != msg {
		got := "<nil>"
		if resp.Result != nil {
			got = resp.Result.Message
		}
		t.Fatalf("denied with\n  %q\nwant\n  %q", got, msg)
	}
}

// counter returns the value of the counter name{label=value} the federation controllers
// registered, 0 when it has no such series.
func (e *env) counter(name, label, value string) float64 {
	e.t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

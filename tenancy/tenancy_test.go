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

package tenancy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/api/scheme"

	"github.com/vk8s-io/vk8s/translate"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/sitereg"
)

const (
	tenant = "vk8s"
	hostNS = "demo"
	siteNS = "vk8s-demo"
)

// fakeSites is a site registry of fake clientsets; a site with an error set is unusable.
type fakeSites struct {
	mu      sync.Mutex
	clients map[string]*k8sfake.Clientset
	keys    map[string]string
	errs    map[string]error
	// levels are the Pod Security levels by connection key; baseline when unset.
	levels map[string]vk8sv1.PodSecurityLevel
}

func newFakeSites(sites ...string) *fakeSites {
	f := &fakeSites{clients: map[string]*k8sfake.Clientset{}, keys: map[string]string{}, errs: map[string]error{},
		levels: map[string]vk8sv1.PodSecurityLevel{}}
	for _, s := range sites {
		f.clients[s] = k8sfake.NewClientset()
		f.keys[s] = "cluster-" + s
	}
	return f
}

// share makes site use the cluster of other (a node-selected slice of it).
func (f *fakeSites) share(site, other string) {
	f.clients[site], f.keys[site] = f.clients[other], f.keys[other]
}

func (f *fakeSites) setErr(site string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[site] = err
}

func (f *fakeSites) Client(site string) (kubernetes.Interface, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.errs[site]; err != nil {
		return nil, "", err
	}
	c, ok := f.clients[site]
	if !ok {
		return nil, "", fmt.Errorf("site %s: %w: not registered, or not reconciled yet", site, sitereg.ErrSiteNotConnected)
	}
	return c, f.keys[site], nil
}

func (f *fakeSites) PodSecurity(key string) vk8sv1.PodSecurityLevel {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.levels[key]; ok {
		return l
	}
	return vk8sv1.PodSecurityBaseline
}

func (f *fakeSites) setPodSecurity(site string, level vk8sv1.PodSecurityLevel) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.levels[f.keys[site]] = level
}

var errDown = fmt.Errorf("site site2: %w: %w: Unreachable: dial tcp 10.0.0.2:6443: connect: connection refused", sitereg.ErrSiteNotConnected, sitereg.ErrSiteDown)

func newScheme(t testing.TB) *runtime.Scheme {
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func site(name string, labels ...string) *vk8sv1.Site {
	s := &vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for i := 0; i+1 < len(labels); i += 2 {
		s.Labels[labels[i]] = labels[i+1]
	}
	return s
}

func virtualSite(ns, name string, sel metav1.LabelSelector) *vk8sv1.VirtualSite {
	return &vk8sv1.VirtualSite{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1}, Spec: vk8sv1.VirtualSiteSpec{SiteSelector: sel}}
}

func edge() metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: map[string]string{"edge": "true"}}
}

// env is a controller over a fake host and fake sites.
type env struct {
	t        *testing.T
	c        *Controller
	host     client.WithWatch
	sites    *fakeSites
	recorder *events.FakeRecorder
	now      time.Time
	// statusWrites counts status patches.
	statusWrites int
}

func newEnv(t *testing.T, sites *fakeSites, objs ...client.Object) *env {
	e := &env{t: t, sites: sites, recorder: events.NewFakeRecorder(100), now: time.Now()}
	e.host = fake.NewClientBuilder().WithScheme(newScheme(t)).
		WithStatusSubresource(&vk8sv1.VirtualSite{}, &vk8sv1.VirtualKubernetes{}).
		WithIndex(&vk8sv1.VirtualKubernetes{}, indexVirtualSite, indexVirtualSiteRef).
		WithIndex(&vk8sv1.VirtualKubernetes{}, indexSite, indexSites).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			e.statusWrites++
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		}}).
		WithObjects(objs...).Build()
	c, err := New(Config{Tenant: tenant, Sites: sites, SiteTimeout: time.Second, MetricsRegisterer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	c.client, c.recorder, c.now = e.host, e.recorder, func() time.Time { return e.now }
	e.c = c
	return e
}

// vkEnv is an env with site1..site3 labelled edge=true, the VirtualSite shared/edge and
// the VirtualKubernetes demo/vk.
func vkEnv(t *testing.T, sites *fakeSites, extra ...client.Object) *env {
	objs := []client.Object{
		site("site1", "edge", "true"), site("site2", "edge", "true"), site("site3", "edge", "true"),
		virtualSite("shared", "edge", edge()),
		&vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: hostNS, Name: "vk", UID: "vk-uid", Generation: 1}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/edge"}},
	}
	return newEnv(t, sites, append(objs, extra...)...)
}

func (e *env) reconcileVK() ctrl.Result {
	e.t.Helper()
	res, err := e.c.ReconcileVirtualKubernetes(e.t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: hostNS, Name: "vk"}})
	if err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
	return res
}

func (e *env) vk() *vk8sv1.VirtualKubernetes {
	e.t.Helper()
	vk := &vk8sv1.VirtualKubernetes{}
	if err := e.host.Get(e.t.Context(), client.ObjectKey{Namespace: hostNS, Name: "vk"}, vk); err != nil {
		e.t.Fatal(err)
	}
	return vk
}

func (e *env) ready() *metav1.Condition {
	return meta.FindStatusCondition(e.vk().Status.Conditions, vk8sv1.ConditionReady)
}

// events drains the recorded Events.
func (e *env) events() []string {
	var out []string
	for {
		select {
		case ev := <-e.recorder.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// onSite reports whether the site namespace and the isolation NetworkPolicy exist on site.
// The fake clientset does not delete a namespace's contents with it; a site does.
func (e *env) onSite(name string) (ns, np bool) {
	e.t.Helper()
	c := e.sites.clients[name]
	_, err := c.CoreV1().Namespaces().Get(e.t.Context(), siteNS, metav1.GetOptions{})
	ns = err == nil
	_, err = c.NetworkingV1().NetworkPolicies(siteNS).Get(e.t.Context(), translate.IsolationPolicyName, metav1.GetOptions{})
	return ns, ns && err == nil
}

func hasEvent(evs []string, prefix string) bool {
	return slices.ContainsFunc(evs, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no tenant", Config{Sites: newFakeSites()}, "tenant is required"},
		{"bad tenant", Config{Tenant: "Vk8s", Sites: newFakeSites()}, `tenant "Vk8s"`},
		{"no sites", Config{Tenant: tenant}, "Sites is required"},
		{"negative timeout", Config{Tenant: tenant, Sites: newFakeSites(), SiteTimeout: -time.Second}, "want positive durations"},
		{"bad name", Config{Tenant: tenant, Sites: newFakeSites(), ControllerName: "Ten_ancy"}, `ControllerName "Ten_ancy"`},
		{"valid", Config{Tenant: tenant, Sites: newFakeSites()}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.MetricsRegisterer = prometheus.NewRegistry()
			c, err := New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "" && (c.cfg.SiteTimeout != DefaultSiteTimeout || c.cfg.CleanupTimeout != DefaultCleanupTimeout):
				t.Errorf("defaults not filled in: %+v", c.cfg)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestVirtualSiteStatus(t *testing.T) {
	sites := []client.Object{
		site("site2", "edge", "true"), site("site1", "edge", "true"), site("site3", "region", "us"),
		&vk8sv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "re1", Labels: map[string]string{"edge": "true"}}, Spec: vk8sv1.SiteSpec{Type: vk8sv1.SiteTypeRegionalEdge}},
	}
	for _, tc := range []struct {
		name       string
		vs         *vk8sv1.VirtualSite
		wantSites  []string
		wantStatus metav1.ConditionStatus
		wantReason string
		wantMsg    string
	}{
		{"selects, sorted", virtualSite("shared", "vs", edge()), []string{"re1", "site1", "site2"}, metav1.ConditionTrue, ReasonSitesSelected, "3 Sites selected"},
		{"empty selector selects all", virtualSite("shared", "vs", metav1.LabelSelector{}), []string{"re1", "site1", "site2", "site3"}, metav1.ConditionTrue, ReasonSitesSelected, "4 Sites selected"},
		{"site type", func() *vk8sv1.VirtualSite {
			vs := virtualSite("shared", "vs", edge())
			vs.Spec.SiteType = vk8sv1.SiteTypeCustomerEdge
			return vs
		}(), []string{"site1", "site2"}, metav1.ConditionTrue, ReasonSitesSelected, "2 Sites selected"},
		{"no match", virtualSite("shared", "vs", metav1.LabelSelector{MatchLabels: map[string]string{"region": "ap"}}), nil, metav1.ConditionFalse, ReasonNoSitesSelected,
			"no Site matches spec.siteSelector (region=ap), so workloads naming this virtual-site are refused; label Sites to match (kubectl label site <name> <key>=<value>), or change the selector (kubectl get sites --show-labels lists them)"},
		{"invalid", virtualSite("shared", "vs", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "edge", Operator: metav1.LabelSelectorOpIn}}}), nil, metav1.ConditionFalse, ReasonInvalidSelector,
			"spec.siteSelector is invalid: values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty; fix it (kubectl edit virtualsite -n shared vs): operators are In, NotIn (with values), Exists and DoesNotExist (without)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, newFakeSites(), append(slices.Clone(sites), tc.vs)...)
			req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tc.vs)}
			if _, err := e.c.ReconcileVirtualSite(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			got := &vk8sv1.VirtualSite{}
			if err := e.host.Get(t.Context(), req.NamespacedName, got); err != nil {
				t.Fatal(err)
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, vk8sv1.ConditionReady)
			switch {
			case !slices.Equal(got.Status.Sites, tc.wantSites) || got.Status.SiteCount != int32(len(tc.wantSites)):
				t.Errorf("sites %v (%d), want %v", got.Status.Sites, got.Status.SiteCount, tc.wantSites)
			case got.Status.ObservedGeneration != 1 || cond == nil || cond.ObservedGeneration != 1:
				t.Errorf("observedGeneration %d, condition %+v", got.Status.ObservedGeneration, cond)
			case cond.Status != tc.wantStatus || cond.Reason != tc.wantReason || cond.Message != tc.wantMsg:
				t.Errorf("Ready %s %s %q\nwant  %s %s %q", cond.Status, cond.Reason, cond.Message, tc.wantStatus, tc.wantReason, tc.wantMsg)
			}
			writes := e.statusWrites
			if _, err := e.c.ReconcileVirtualSite(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			if e.statusWrites != writes {
				t.Errorf("an unchanged status was written again")
			}
		})
	}
}

func TestSiteEventsMapToVirtualSitesAndVirtualKubernetes(t *testing.T) {
	e := vkEnv(t, newFakeSites("site1", "site2", "site3"), virtualSite("team", "us", metav1.LabelSelector{MatchLabels: map[string]string{"region": "us"}}),
		virtualSite("team", "broken", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Bad"}}}))
	ctx := t.Context()
	names := func(reqs []ctrl.Request) []string {
		var out []string
		for _, r := range reqs {
			out = append(out, r.String())
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	before, after := site("site3", "edge", "true"), site("site3", "region", "us")
	if got := names(e.c.virtualSitesOf(ctx, before, after)); !slices.Equal(got, []string{"shared/edge", "team/us"}) {
		t.Errorf("a Site moving from edge to us enqueues %v", got)
	}
	if got := names(e.c.virtualSitesOf(ctx, site("site9", "region", "ap"))); len(got) != 0 {
		t.Errorf("a Site nobody selects enqueues %v", got)
	}
	if got := names(e.c.virtualKubernetesOfSite(ctx, before, after)); !slices.Equal(got, []string{"demo/vk"}) {
		t.Errorf("VirtualKubernetes of the Site change: %v", got)
	}
	e.reconcileVK() // status.sites names site1..site3
	if got := names(e.c.virtualKubernetesOnSite(ctx, "site2")); !slices.Equal(got, []string{"demo/vk"}) {
		t.Errorf("a reconnecting site enqueues %v", got)
	}
	if got := names(e.c.virtualKubernetesOfVirtualSite(ctx, virtualSite("shared", "edge", edge()))); !slices.Equal(got, []string{"demo/vk"}) {
		t.Errorf("a VirtualSite change enqueues %v", got)
	}
}

func TestProvision(t *testing.T) {
	e := vkEnv(t, newFakeSites("site1", "site2", "site3"))
	res := e.reconcileVK()
	vk := e.vk()
	cond := e.ready()
	switch {
	case !slices.Contains(vk.Finalizers, vk8sv1.FinalizerSiteNamespaces):
		t.Errorf("finalizers %v", vk.Finalizers)
	case !slices.Equal(vk.Status.Sites, []string{"site1", "site2", "site3"}) || vk.Status.SiteNamespace != siteNS || vk.Status.ObservedGeneration != 1:
		t.Errorf("status %+v", vk.Status)
	case cond.Status != metav1.ConditionTrue || cond.Reason != ReasonProvisioned ||
		cond.Message != "namespace vk8s-demo and NetworkPolicy vk8s-isolation exist on all 3 sites":
		t.Errorf("Ready %+v", cond)
	case res.RequeueAfter != DefaultResyncInterval:
		t.Errorf("requeue after %s", res.RequeueAfter)
	}
	for _, s := range []string{"site1", "site2", "site3"} {
		c := e.sites.clients[s]
		ns, err := c.CoreV1().Namespaces().Get(t.Context(), siteNS, metav1.GetOptions{})
		if err != nil || !translate.CreatedByVK8s(ns, tenant, hostNS) {
			t.Errorf("%s: namespace %v, %v", s, ns, err)
		}
		if _, err := c.CoreV1().ServiceAccounts(siteNS).Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
			t.Errorf("%s: default ServiceAccount: %v", s, err)
		}
		np, err := c.NetworkingV1().NetworkPolicies(siteNS).Get(t.Context(), translate.IsolationPolicyName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		want := translate.IsolationPolicy(tenant, hostNS)
		if np.Labels[vk8sv1.LabelManagedBy] != "vk8s" || len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 ||
			np.Spec.Ingress[0].From[0].PodSelector == nil || np.Spec.Ingress[0].From[0].NamespaceSelector != nil ||
			!slices.Equal(np.Spec.PolicyTypes, want.Spec.PolicyTypes) {
			t.Errorf("%s: NetworkPolicy %+v", s, np)
		}
	}
	if evs := e.events(); !hasEvent(evs, "Normal Provisioned namespace vk8s-demo") {
		t.Errorf("events %q", evs)
	}

	// A second reconcile calls no site (they were provisioned within the resync interval)
	// and writes nothing.
	for _, s := range e.sites.clients {
		s.ClearActions()
	}
	writes := e.statusWrites
	e.reconcileVK()
	for name, s := range e.sites.clients {
		if a := s.Actions(); len(a) != 0 {
			t.Errorf("%s: %d calls on the second reconcile", name, len(a))
		}
	}
	if e.statusWrites != writes || len(e.events()) != 0 {
		t.Error("the second reconcile wrote status or recorded events")
	}

	// After the resync interval, a NetworkPolicy deleted by hand comes back.
	_ = e.sites.clients["site2"].NetworkingV1().NetworkPolicies(siteNS).Delete(t.Context(), translate.IsolationPolicyName, metav1.DeleteOptions{})
	e.now = e.now.Add(DefaultResyncInterval)
	e.reconcileVK()
	if _, np := e.onSite("site2"); !np {
		t.Error("the NetworkPolicy was not put back")
	}
}

func TestProvisionFailures(t *testing.T) {
	forbidden := func(c *k8sfake.Clientset) {
		c.PrependReactor("create", "networkpolicies", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "networking.k8s.io", Resource: "networkpolicies"}, translate.IsolationPolicyName, errors.New(`User "edge" cannot create resource "networkpolicies"`))
		})
	}
	sites := newFakeSites("site1", "site2", "site3")
	sites.setErr("site2", errDown)
	forbidden(sites.clients["site3"])
	e := vkEnv(t, sites)
	res := e.reconcileVK()
	cond := e.ready()
	wantMsg := "namespace vk8s-demo and NetworkPolicy vk8s-isolation are not in place on 2 of 3 sites: " +
		"site2: site not connected: site down: Unreachable: dial tcp 10.0.0.2:6443: connect: connection refused (kubectl get site site2 shows its Connected condition); " +
		`site3: create NetworkPolicy vk8s-demo/vk8s-isolation: networkpolicies.networking.k8s.io "vk8s-isolation" is forbidden: User "edge" cannot create resource "networkpolicies" (the Site's credentials need to create namespaces, serviceaccounts and networkpolicies, and to list pods and persistentvolumeclaims); ` +
		"vk8s retries with backoff, and at once when a site reconnects"
	if cond.Status != metav1.ConditionFalse || cond.Reason != ReasonProvisioningFailed || cond.Message != wantMsg {
		t.Errorf("Ready %s %s\n%s\nwant\n%s", cond.Status, cond.Reason, cond.Message, wantMsg)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > time.Minute {
		t.Errorf("requeue after %s, want a backoff", res.RequeueAfter)
	}
	if ns, np := e.onSite("site1"); !ns || !np {
		t.Error("site1 was not provisioned while the others failed")
	}
	if evs := e.events(); len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning ProvisioningFailed namespace vk8s-demo") {
		t.Errorf("events %q", evs)
	}
	// The same failure again: no new Event, a longer backoff.
	if res2 := e.reconcileVK(); res2.RequeueAfter <= res.RequeueAfter {
		t.Errorf("backoff %s then %s", res.RequeueAfter, res2.RequeueAfter)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("a repeated failure recorded %q", evs)
	}
	// Recovery.
	sites.setErr("site2", nil)
	sites.clients["site3"].ReactionChain = sites.clients["site3"].ReactionChain[1:]
	e.reconcileVK()
	if cond := e.ready(); cond.Status != metav1.ConditionTrue {
		t.Errorf("after recovery: %+v", cond)
	}
	if evs := e.events(); len(evs) != 1 || !strings.HasPrefix(evs[0], "Normal Provisioned") {
		t.Errorf("recovery events %q", evs)
	}
}

func TestProvisionKeepsReadyWhileSitesConnect(t *testing.T) {
	sites := newFakeSites("site1", "site2", "site3")
	e := vkEnv(t, sites)
	e.reconcileVK()
	_ = e.events()
	// A restarted provider: its registry has not connected site2 yet.
	e.c.provisioned = map[string]provisionMark{}
	e.c.reported = map[types.UID]string{}
	sites.setErr("site2", fmt.Errorf("site site2: %w: not probed yet", sitereg.ErrSiteNotConnected))
	e.reconcileVK()
	if cond := e.ready(); cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready turned %s while site2 was connecting: %s", cond.Status, cond.Message)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("events %q", evs)
	}
}

func TestSiteLeaves(t *testing.T) {
	sites := newFakeSites("site1", "site2", "site3")
	e := vkEnv(t, sites)
	e.reconcileVK()
	// A pod of the namespace on site2, and a namespace on site3 that an administrator made.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "web-1"}}
	if _, err := sites.clients["site2"].CoreV1().Pods(siteNS).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ns3, _ := sites.clients["site3"].CoreV1().Namespaces().Get(t.Context(), siteNS, metav1.GetOptions{})
	ns3.Labels = nil
	if _, err := sites.clients["site3"].CoreV1().Namespaces().Update(t.Context(), ns3, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Every site but site4... none of site1..site3 is selected any more but site1.
	for _, s := range []string{"site2", "site3"} {
		st := &vk8sv1.Site{}
		_ = e.host.Get(t.Context(), client.ObjectKey{Name: s}, st)
		st.Labels = map[string]string{"edge": "false"}
		if err := e.host.Update(t.Context(), st); err != nil {
			t.Fatal(err)
		}
	}
	res := e.reconcileVK()
	vk := e.vk()
	if !slices.Equal(vk.Status.Sites, []string{"site1"}) || !slices.Equal(vk.Status.DepartedSites, []string{"site2"}) {
		t.Errorf("sites %v, departed %v", vk.Status.Sites, vk.Status.DepartedSites)
	}
	if res.RequeueAfter != departedRetry {
		t.Errorf("requeue after %s", res.RequeueAfter)
	}
	if ns, np := e.onSite("site2"); !ns || !np {
		t.Errorf("site2 runs a pod of the namespace: namespace %v, NetworkPolicy %v; want both kept", ns, np)
	}
	if ns, np := e.onSite("site3"); !ns || np {
		t.Errorf("site3's namespace is not vk8s': namespace %v, NetworkPolicy %v; want the namespace kept, the NetworkPolicy gone", ns, np)
	}
	if cond := e.ready(); cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready %+v", cond)
	}
	// The pod goes: the namespace vk8s made goes too.
	_ = sites.clients["site2"].CoreV1().Pods(siteNS).Delete(t.Context(), "web-1", metav1.DeleteOptions{})
	e.reconcileVK()
	if ns, _ := e.onSite("site2"); ns {
		t.Error("site2's empty namespace stayed")
	}
	if vk := e.vk(); len(vk.Status.DepartedSites) != 0 {
		t.Errorf("departed %v", vk.Status.DepartedSites)
	}
}

func TestSiteLeavesSharedCluster(t *testing.T) {
	sites := newFakeSites("site1", "site2", "site3")
	sites.share("site3", "site2") // site3 is a slice of site2's cluster
	e := vkEnv(t, sites)
	e.reconcileVK()
	st := &vk8sv1.Site{}
	_ = e.host.Get(t.Context(), client.ObjectKey{Name: "site3"}, st)
	st.Labels = nil
	if err := e.host.Update(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	e.reconcileVK()
	if ns, np := e.onSite("site2"); !ns || !np {
		t.Errorf("the cluster of site2 and site3 lost namespace (%v) or NetworkPolicy (%v) when site3 left", ns, np)
	}
	if vk := e.vk(); len(vk.Status.DepartedSites) != 0 || !slices.Equal(vk.Status.Sites, []string{"site1", "site2"}) {
		t.Errorf("status %+v", vk.Status)
	}
}

func TestVirtualSiteProblemsChangeNothing(t *testing.T) {
	sites := newFakeSites("site1", "site2", "site3")
	e := vkEnv(t, sites)
	e.reconcileVK()
	if err := e.host.Delete(t.Context(), virtualSite("shared", "edge", edge())); err != nil {
		t.Fatal(err)
	}
	e.reconcileVK()
	cond := e.ready()
	if cond.Status != metav1.ConditionFalse || cond.Reason != ReasonVirtualSiteNotFound ||
		!strings.HasPrefix(cond.Message, "spec.virtualSite: VirtualSite shared/edge does not exist; create it") {
		t.Errorf("Ready %+v", cond)
	}
	for _, s := range []string{"site1", "site2", "site3"} {
		if ns, np := e.onSite(s); !ns || !np {
			t.Errorf("%s lost what it had while the VirtualSite was missing", s)
		}
	}
	if vk := e.vk(); len(vk.Status.Sites) != 3 {
		t.Errorf("sites %v", vk.Status.Sites)
	}
	if evs := e.events(); !hasEvent(evs, "Warning VirtualSiteNotFound") {
		t.Errorf("events %q", evs)
	}
}

func TestNoSites(t *testing.T) {
	e := newEnv(t, newFakeSites(), virtualSite("shared", "none", metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}),
		&vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: hostNS, Name: "vk", UID: "u", Generation: 1}, Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: "shared/none"}})
	e.reconcileVK()
	cond := e.ready()
	if cond.Status != metav1.ConditionFalse || cond.Reason != ReasonNoSites || !strings.Contains(cond.Message, "VirtualSite shared/none selects no Site") {
		t.Errorf("Ready %+v", cond)
	}
}

func TestDelete(t *testing.T) {
	for _, tc := range []struct {
		name string
		// prepare runs after provisioning.
		prepare func(e *env)
		// wantGone: the VirtualKubernetes is gone after the first reconcile.
		wantGone bool
		wantNS   map[string]bool
		wantNP   map[string]bool
		wantEv   string
	}{
		{
			name:     "everything goes",
			wantGone: true,
			wantNS:   map[string]bool{"site1": false, "site2": false, "site3": false},
			wantNP:   map[string]bool{"site1": false, "site2": false, "site3": false},
			wantEv:   "Normal CleanedUp removed namespace vk8s-demo",
		},
		{
			name: "a namespace with a claim stays, its NetworkPolicy goes",
			prepare: func(e *env) {
				pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "data"}}
				_, _ = e.sites.clients["site1"].CoreV1().PersistentVolumeClaims(siteNS).Create(e.t.Context(), pvc, metav1.CreateOptions{})
			},
			wantGone: true,
			wantNS:   map[string]bool{"site1": true, "site2": false, "site3": false},
			wantNP:   map[string]bool{"site1": false, "site2": false, "site3": false},
		},
		{
			name: "a site that does not answer is waited for",
			prepare: func(e *env) {
				e.sites.setErr("site2", errDown)
			},
			wantNS: map[string]bool{"site1": false, "site2": true, "site3": false},
			wantNP: map[string]bool{"site1": false, "site2": true, "site3": false},
			wantEv: "Warning CleanupFailed namespace vk8s-demo is not cleaned up yet on 1 of 3 sites: site2:",
		},
		{
			name: "pods that remain are waited for, without their NetworkPolicy",
			prepare: func(e *env) {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: "web-1"}}
				_, _ = e.sites.clients["site3"].CoreV1().Pods(siteNS).Create(e.t.Context(), pod, metav1.CreateOptions{})
			},
			wantNS: map[string]bool{"site1": false, "site2": false, "site3": true},
			wantNP: map[string]bool{"site1": false, "site2": false, "site3": false},
			wantEv: "Warning CleanupFailed namespace vk8s-demo is not cleaned up yet on 1 of 3 sites: site3: deleted NetworkPolicy vk8s-isolation; waiting for the pods",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := vkEnv(t, newFakeSites("site1", "site2", "site3"))
			e.reconcileVK()
			_ = e.events()
			if tc.prepare != nil {
				tc.prepare(e)
			}
			if err := e.host.Delete(t.Context(), e.vk()); err != nil {
				t.Fatal(err)
			}
			res := e.reconcileVK()
			err := e.host.Get(t.Context(), client.ObjectKey{Namespace: hostNS, Name: "vk"}, &vk8sv1.VirtualKubernetes{})
			if gone := apierrors.IsNotFound(err); gone != tc.wantGone {
				t.Errorf("gone %v, want %v (requeue after %s)", gone, tc.wantGone, res.RequeueAfter)
			}
			if !tc.wantGone && res.RequeueAfter <= 0 {
				t.Error("no retry while waiting")
			}
			for s, want := range tc.wantNS {
				if tc.name == "a site that does not answer is waited for" && s == "site2" {
					continue // unreachable: nothing changed there
				}
				ns, np := e.onSite(s)
				if ns != want || np != tc.wantNP[s] {
					t.Errorf("%s: namespace %v, NetworkPolicy %v; want %v, %v", s, ns, np, want, tc.wantNP[s])
				}
			}
			if evs := e.events(); tc.wantEv != "" && !hasEvent(evs, tc.wantEv) {
				t.Errorf("events %q, want one starting %q", evs, tc.wantEv)
			}
			if tc.wantGone {
				return
			}
			// The same state again records nothing new; after CleanupTimeout the finalizer
			// goes anyway, with a Warning naming what is left.
			e.reconcileVK()
			if evs := e.events(); len(evs) != 0 {
				t.Errorf("repeated events %q", evs)
			}
			e.now = e.now.Add(DefaultCleanupTimeout + time.Second)
			e.reconcileVK()
			if err := e.host.Get(t.Context(), client.ObjectKey{Namespace: hostNS, Name: "vk"}, &vk8sv1.VirtualKubernetes{}); !apierrors.IsNotFound(err) {
				t.Errorf("still there after the cleanup timeout: %v", err)
			}
			if evs := e.events(); !hasEvent(evs, "Warning CleanupAbandoned gave up cleaning up") {
				t.Errorf("events %q", evs)
			}
		})
	}
}

func TestDeleteNeverDeletesForeignNamespace(t *testing.T) {
	sites := newFakeSites("site1")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: siteNS}}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: siteNS, Name: translate.IsolationPolicyName}} // not labelled: not vk8s'
	sites.clients["site1"] = k8sfake.NewClientset(ns, np)
	e := vkEnv(t, sites)
	// site2, site3 are not registered with the fake: they wait, then are given up.
	e.reconcileVK()
	if _, err := sites.clients["site1"].NetworkingV1().NetworkPolicies(siteNS).Get(t.Context(), translate.IsolationPolicyName, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.host.Delete(t.Context(), e.vk()); err != nil {
		t.Fatal(err)
	}
	e.reconcileVK()
	if ns, np := e.onSite("site1"); !ns || np {
		t.Errorf("namespace %v (want kept: vk8s did not create it), NetworkPolicy %v (want gone: vk8s took it over)", ns, np)
	}
}

func TestNewSiteConnectingRecordsNoWarning(t *testing.T) {
	sites := newFakeSites("site1", "site2") // site3 is registered in the host, not connected yet
	e := vkEnv(t, sites)
	e.reconcileVK()
	if cond := e.ready(); cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, "site3: site not connected: not registered") {
		t.Errorf("Ready %+v", cond)
	}
	if evs := e.events(); hasEvent(evs, "Warning") {
		t.Errorf("events %q", evs)
	}
	sites.clients["site3"], sites.keys["site3"] = k8sfake.NewClientset(), "cluster-site3"
	e.reconcileVK()
	if cond := e.ready(); cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready %+v", cond)
	}
	if evs := e.events(); !hasEvent(evs, "Normal Provisioned") {
		t.Errorf("events %q", evs)
	}
}

// The site namespaces carry the Pod Security labels of their cluster's level; a level
// change reaches them at the next reconcile (Registry.Watch sends one), within the resync
// interval; a namespace vk8s did not create keeps its own labels.
func TestProvisionPodSecurity(t *testing.T) {
	sites := newFakeSites("site1", "site2", "site3")
	foreign := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: siteNS, Labels: map[string]string{
		vk8sv1.LabelPodSecurityEnforce: "restricted", "owner": "site-admin"}}}
	sites.clients["site3"] = k8sfake.NewClientset(foreign)
	sites.setPodSecurity("site2", vk8sv1.PodSecurityPrivileged)
	e := vkEnv(t, sites)
	e.reconcileVK()
	labels := func(site string) map[string]string {
		t.Helper()
		ns, err := e.sites.clients[site].CoreV1().Namespaces().Get(t.Context(), siteNS, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", site, err)
		}
		return ns.Labels
	}
	has := func(site string, level vk8sv1.PodSecurityLevel) {
		t.Helper()
		got := labels(site)
		for k, v := range translate.PodSecurityLabels(level) {
			if got[k] != v {
				t.Errorf("%s: namespace labels %v, want those of %s", site, got, level)
				return
			}
		}
	}
	has("site1", vk8sv1.PodSecurityBaseline)
	has("site2", vk8sv1.PodSecurityPrivileged)
	if got := labels("site3"); !maps.Equal(got, foreign.Labels) {
		t.Errorf("site3: a site administrator's namespace was relabelled: %v, want %v", got, foreign.Labels)
	}

	// site1's Site allows privileged pods: the next reconcile, within the resync interval,
	// relabels site1's namespace only, with one update.
	for _, c := range e.sites.clients {
		c.ClearActions()
	}
	sites.setPodSecurity("site1", vk8sv1.PodSecurityPrivileged)
	e.reconcileVK()
	has("site1", vk8sv1.PodSecurityPrivileged)
	has("site2", vk8sv1.PodSecurityPrivileged)
	for name, c := range e.sites.clients {
		var updates int
		for _, a := range c.Actions() {
			if a.GetVerb() == "update" && a.GetResource().Resource == "namespaces" {
				updates++
			}
		}
		if want := map[string]int{"site1": 1}[name]; updates != want {
			t.Errorf("%s: %d namespace updates, want %d", name, updates, want)
		}
	}
	if got := labels("site3"); !maps.Equal(got, foreign.Labels) {
		t.Errorf("site3: a site administrator's namespace was relabelled: %v", got)
	}
}

// EnsureNamespace creates the namespace at the level, puts the level back when it was
// edited on the site, and leaves a site administrator's namespace as it is.
func TestEnsureNamespaceCreatesWithLevelAndPutsItBack(t *testing.T) {
	c := k8sfake.NewClientset()
	created, err := EnsureNamespace(t.Context(), c, tenant, hostNS, vk8sv1.PodSecurityRestricted)
	if err != nil || !created {
		t.Fatalf("EnsureNamespace = %v, %v; want true, nil", created, err)
	}
	ns, err := c.CoreV1().Namespaces().Get(t.Context(), siteNS, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels[vk8sv1.LabelPodSecurityEnforce] != "restricted" || ns.Labels[vk8sv1.LabelPodSecurityEnforceVersion] != "latest" ||
		!translate.CreatedByVK8s(ns, tenant, hostNS) {
		t.Errorf("labels %v", ns.Labels)
	}
	// Someone lowered it on the site: the next call puts it back.
	ns.Labels[vk8sv1.LabelPodSecurityEnforce] = "privileged"
	if _, err := c.CoreV1().Namespaces().Update(t.Context(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureNamespace(t.Context(), c, tenant, hostNS, vk8sv1.PodSecurityRestricted); err != nil {
		t.Fatal(err)
	}
	ns, _ = c.CoreV1().Namespaces().Get(t.Context(), siteNS, metav1.GetOptions{})
	if ns.Labels[vk8sv1.LabelPodSecurityEnforce] != "restricted" {
		t.Errorf("enforce = %q after EnsureNamespace, want restricted put back", ns.Labels[vk8sv1.LabelPodSecurityEnforce])
	}

	// A site administrator's namespace: used, not labelled, and reported as not vk8s'.
	foreign := k8sfake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: siteNS}})
	created, err = EnsureNamespace(t.Context(), foreign, tenant, hostNS, vk8sv1.PodSecurityRestricted)
	if err != nil || created {
		t.Fatalf("EnsureNamespace of a foreign namespace = %v, %v; want false, nil", created, err)
	}
	ns, _ = foreign.CoreV1().Namespaces().Get(t.Context(), siteNS, metav1.GetOptions{})
	if len(ns.Labels) != 0 {
		t.Errorf("a foreign namespace got labels %v", ns.Labels)
	}
	if _, err := foreign.CoreV1().ServiceAccounts(siteNS).Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("default ServiceAccount in the foreign namespace: %v", err)
	}
}

// The provider and the VirtualKubernetes controller both follow a level change: a write
// that lost the race reads the namespace again instead of failing.
func TestSetPodSecurityRereadsOnConflict(t *testing.T) {
	c := k8sfake.NewClientset(translate.Namespace(tenant, hostNS, vk8sv1.PodSecurityBaseline))
	ns, err := c.CoreV1().Namespaces().Get(t.Context(), siteNS, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conflicts := 1
	c.PrependReactor("update", "namespaces", func(clienttesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "namespaces"}, siteNS, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	wrote, err := SetPodSecurity(t.Context(), c, ns, vk8sv1.PodSecurityPrivileged)
	if err != nil || !wrote {
		t.Fatalf("SetPodSecurity = %v, %v; want true, nil", wrote, err)
	}
	got, _ := c.CoreV1().Namespaces().Get(t.Context(), siteNS, metav1.GetOptions{})
	if got.Labels[vk8sv1.LabelPodSecurityEnforce] != "privileged" {
		t.Errorf("enforce = %q, want privileged", got.Labels[vk8sv1.LabelPodSecurityEnforce])
	}
	if wrote, err := SetPodSecurity(t.Context(), c, got, vk8sv1.PodSecurityPrivileged); err != nil || wrote {
		t.Errorf("SetPodSecurity at the same level = %v, %v; want false, nil", wrote, err)
	}
}

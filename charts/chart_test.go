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

package charts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/vk8s-io/vk8s/api/crds"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/webhook"
)

const (
	chart     = "vk8s"
	release   = "vk8s"
	namespace = "vk8s-system"
)

// helmBin is the project's helm (hack/tools.sh builds it; make exports VK8S_TOOLS_DIR).
// The tests need no cluster, so they run with -short too; without helm they fail rather
// than skip, so that CI cannot pass them silently.
func helmBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VK8S_TOOLS_DIR")
	if dir == "" {
		out, err := exec.Command("../hack/tools.sh", "dir").Output()
		if err != nil {
			t.Fatalf("hack/tools.sh dir: %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm is not built (%v): run make tools", err)
	}
	return bin
}

// helm runs the project's helm with a configuration of its own and returns its combined
// output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rendered is the chart as `helm template` renders it.
type rendered []*unstructured.Unstructured

// flavorAPI tells helm template that the cluster has the WorkloadFlavor CRD, as it does
// when the chart is upgraded (flavors-workloadflavor.yaml).
const flavorAPI = "vk8s.io/v1alpha1/WorkloadFlavor"

// render renders the chart with the given --set values (key=value), for a cluster that has
// the CRDs.
func render(t *testing.T, set ...string) rendered {
	t.Helper()
	return renderWith(t, []string{"--api-versions", flavorAPI}, set...)
}

// renderWith renders the chart with more helm template flags.
func renderWith(t *testing.T, flags []string, set ...string) rendered {
	t.Helper()
	args := append([]string{"template", release, chart, "--namespace", namespace}, flags...)
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return decode(t, out)
}

// decode reads helm's multi-document output: template, get manifest, get hooks.
func decode(t *testing.T, out string) rendered {
	t.Helper()
	var objs rendered
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode helm's output: %v", err)
		}
		if m == nil {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// all returns the objects of kind.
func (r rendered) all(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one decodes the only object of into's kind named name ("" for any) into into.
func (r rendered) one(t *testing.T, name string, into runtime.Object) {
	t.Helper()
	kind := strings.TrimPrefix(fmt.Sprintf("%T", into), "*")
	kind = kind[strings.LastIndex(kind, ".")+1:]
	var found []*unstructured.Unstructured
	for _, o := range r.all(kind) {
		if name == "" || o.GetName() == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s named %q, want 1", len(found), kind, name)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(found[0].Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", kind, found[0].GetName(), err)
	}
}

// args returns the flags of a Deployment's container as name -> value ("" for a bool).
func args(t *testing.T, r rendered, component string) map[string]string {
	t.Helper()
	d := &appsv1.Deployment{}
	r.one(t, release+"-"+component, d)
	out := map[string]string{}
	for _, a := range d.Spec.Template.Spec.Containers[0].Args[1:] {
		k, v, _ := strings.Cut(a, "=")
		out[k] = v
	}
	return out
}

func TestLint(t *testing.T) {
	for _, set := range [][]string{
		nil,
		{"webhook.certManager.enabled=true", "provider.serviceMonitor.enabled=true", "webhook.serviceMonitor.enabled=true", "dashboard.enabled=true"},
		{"deployments.enabled=false", "webhook.url=https://127.0.0.1:9443", "crds.enabled=false"},
	} {
		args := []string{"lint", "--strict", chart}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestDefaults checks what the default values make.
func TestDefaults(t *testing.T) {
	r := render(t)
	want := map[string]int{
		"CustomResourceDefinition": 5, "ServiceAccount": 2, "ClusterRole": 2, "ClusterRoleBinding": 2,
		// The release namespace's (both), kube-node-lease (the provider's node Leases).
		"Role": 3, "RoleBinding": 3,
		"Deployment": 2, "PodDisruptionBudget": 1, "Service": 2,
		"MutatingWebhookConfiguration": 1, "ValidatingWebhookConfiguration": 1,
		"ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1, "WorkloadFlavor": 3,
	}
	got := map[string]int{}
	for _, o := range r {
		got[o.GetKind()]++
	}
	for kind, n := range want {
		if got[kind] != n {
			t.Errorf("%d %s, want %d", got[kind], kind, n)
		}
	}
	for kind := range got {
		if _, ok := want[kind]; !ok {
			t.Errorf("unexpected %s by default", kind)
		}
	}
	for _, o := range r {
		if o.GetLabels()["app.kubernetes.io/instance"] != release {
			t.Errorf("%s %s lacks the release's labels", o.GetKind(), o.GetName())
		}
	}
	for _, d := range []string{"provider", "webhook"} {
		dep := &appsv1.Deployment{}
		r.one(t, release+"-"+d, dep)
		if *dep.Spec.Replicas != 2 {
			t.Errorf("%s: %d replicas, want 2", d, *dep.Spec.Replicas)
		}
		if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(img, "ghcr.io/vk8s-io/vk8s:v") {
			t.Errorf("%s: image %s, want ghcr.io/vk8s-io/vk8s:<appVersion>", d, img)
		}
	}
}

// TestWebhookConfigurationsMatchTheCode compares the chart's webhook configurations with
// webhook.Configurations, webhook by webhook: rules, selectors, match conditions, failure
// policies, side effects, timeouts and where the API server calls. The chart's have no
// caBundle: the webhook or cert-manager writes it.
func TestWebhookConfigurationsMatchTheCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		cfg  webhook.Config
	}{
		{name: "defaults", cfg: webhook.Config{
			Service:           &webhook.ServiceReference{Namespace: namespace, Name: "vk8s-webhook", Port: 443},
			ConfigurationName: "vk8s-webhook",
		}},
		{name: "other name, port and timeout",
			set: []string{"webhook.configurationName=federation", "webhook.service.port=8443", "webhook.timeoutSeconds=12", "webhook.certManager.enabled=true"},
			cfg: webhook.Config{
				Service:           &webhook.ServiceReference{Namespace: namespace, Name: "vk8s-webhook", Port: 8443},
				ConfigurationName: "federation", Timeout: 12 * time.Second,
			}},
		{name: "outside the cluster", set: []string{"deployments.enabled=false", "webhook.url=https://127.0.0.1:9555/"},
			cfg: webhook.Config{URL: "https://127.0.0.1:9555/", ConfigurationName: "vk8s-webhook"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.set...)
			wantM, wantV := webhook.Configurations(tc.cfg, nil)
			gotM, gotV := &admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}
			r.one(t, wantM.Name, gotM)
			r.one(t, wantV.Name, gotV)
			compareWebhooks(t, mutatingByName(gotM.Webhooks), mutatingByName(wantM.Webhooks))
			compareWebhooks(t, validatingByName(gotV.Webhooks), validatingByName(wantV.Webhooks))
		})
	}
}

func mutatingByName(ws []admissionregistrationv1.MutatingWebhook) map[string]any {
	out := map[string]any{}
	for _, w := range ws {
		out[w.Name] = w
	}
	return out
}

func validatingByName(ws []admissionregistrationv1.ValidatingWebhook) map[string]any {
	out := map[string]any{}
	for _, w := range ws {
		out[w.Name] = w
	}
	return out
}

func compareWebhooks(t *testing.T, got, want map[string]any) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("webhook %s: missing from the chart", name)
			continue
		}
		if !apiequality.Semantic.DeepEqual(g, w) {
			gy, _ := yamlOf(g)
			wy, _ := yamlOf(w)
			t.Errorf("webhook %s differs from webhook.Configurations:\nchart:\n%s\ncode:\n%s", name, gy, wy)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("webhook %s: in the chart, not in webhook.Configurations", name)
		}
	}
}

func yamlOf(v any) (string, error) {
	raw, err := yaml.Marshal(v)
	return string(raw), err
}

// TestKindPolicyMatchesTheCode compares the chart's ValidatingAdmissionPolicy and binding
// (generated) with webhook.KindPolicy.
func TestKindPolicyMatchesTheCode(t *testing.T) {
	r := render(t, "webhook.configurationName=federation")
	wantP, wantB := webhook.KindPolicy(webhook.Config{ConfigurationName: "federation"})
	gotP, gotB := &admissionregistrationv1.ValidatingAdmissionPolicy{}, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	r.one(t, "federation", gotP)
	r.one(t, "federation", gotB)
	if !apiequality.Semantic.DeepEqual(gotP.Spec, wantP.Spec) || !apiequality.Semantic.DeepEqual(gotB.Spec, wantB.Spec) {
		t.Errorf("the kind policy differs from webhook.KindPolicy: run make generate")
	}
}

// TestWebhookConfigurationsPointAtTheService checks that every webhook calls the chart's
// Service, whose https port reaches the webhook container's HTTPS port, and that the
// webhook process is told the same Service, port and configuration name.
func TestWebhookConfigurationsPointAtTheService(t *testing.T) {
	for _, set := range [][]string{nil, {"webhook.service.port=8443", "webhook.port=10443", "webhook.configurationName=federation"}} {
		r := render(t, set...)
		svc := &corev1.Service{}
		r.one(t, "vk8s-webhook", svc)
		dep := &appsv1.Deployment{}
		r.one(t, "vk8s-webhook", dep)
		var port corev1.ServicePort
		for _, p := range svc.Spec.Ports {
			if p.Name == "https" {
				port = p
			}
		}
		c := dep.Spec.Template.Spec.Containers[0]
		if !selects(svc.Spec.Selector, dep.Spec.Template.Labels) {
			t.Errorf("Service selector %v does not select the webhook's pods %v", svc.Spec.Selector, dep.Spec.Template.Labels)
		}
		a := args(t, r, "webhook")
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
			return p.Name == port.TargetPort.String() && fmt.Sprint(p.ContainerPort) == a["--port"]
		}) {
			t.Errorf("Service port %s: no container port %s on --port %s", port.Name, port.TargetPort.String(), a["--port"])
		}
		if a["--service"] != svc.Namespace+"/"+svc.Name || a["--service-port"] != fmt.Sprint(port.Port) {
			t.Errorf("webhook flags --service=%s --service-port=%s, want %s/%s and %d", a["--service"], a["--service-port"], svc.Namespace, svc.Name, port.Port)
		}
		m, v := &admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}
		r.one(t, "", m)
		r.one(t, "", v)
		if a["--configuration-name"] != m.Name || a["--configuration-name"] != v.Name {
			t.Errorf("--configuration-name=%s, configurations %s and %s", a["--configuration-name"], m.Name, v.Name)
		}
		var configs []admissionregistrationv1.WebhookClientConfig
		for _, w := range m.Webhooks {
			configs = append(configs, w.ClientConfig)
		}
		for _, w := range v.Webhooks {
			configs = append(configs, w.ClientConfig)
		}
		for _, cc := range configs {
			s := cc.Service
			if s == nil || s.Name != svc.Name || s.Namespace != svc.Namespace || s.Port == nil || *s.Port != port.Port || len(cc.CABundle) != 0 {
				t.Errorf("client config %+v: want Service %s/%s port %d and no caBundle", cc, svc.Namespace, svc.Name, port.Port)
			}
		}
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// TestRBAC checks the generated RBAC: no wildcard anywhere, every binding names a role
// and ServiceAccount of the chart, and the names the rules allow are those the processes
// are given.
func TestRBAC(t *testing.T) {
	for _, set := range [][]string{nil, {"webhook.certManager.enabled=true", "webhook.configurationName=federation", "webhook.selfManaged.secretName=ca"}} {
		r := render(t, set...)
		roles := map[string][]rbacv1.PolicyRule{}
		for _, o := range append(r.all("ClusterRole"), r.all("Role")...) {
			var rules []rbacv1.PolicyRule
			if o.GetKind() == "ClusterRole" {
				cr := &rbacv1.ClusterRole{}
				r.one(t, o.GetName(), cr)
				rules = cr.Rules
			} else {
				role := &rbacv1.Role{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, role); err != nil {
					t.Fatal(err)
				}
				rules = role.Rules
			}
			key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
			roles[key] = rules
			for _, rule := range rules {
				for _, s := range slices.Concat(rule.Verbs, rule.Resources, rule.APIGroups, rule.ResourceNames, rule.NonResourceURLs) {
					if strings.Contains(s, "*") {
						t.Errorf("%s: wildcard %q in %+v", key, s, rule)
					}
				}
			}
		}
		sas := map[string]bool{}
		for _, o := range r.all("ServiceAccount") {
			sas[o.GetNamespace()+"/"+o.GetName()] = true
		}
		for _, o := range append(r.all("ClusterRoleBinding"), r.all("RoleBinding")...) {
			b := &rbacv1.RoleBinding{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, b); err != nil {
				t.Fatal(err)
			}
			ns := ""
			if b.RoleRef.Kind == "Role" {
				ns = o.GetNamespace()
			}
			if _, ok := roles[b.RoleRef.Kind+"/"+ns+"/"+b.RoleRef.Name]; !ok {
				t.Errorf("%s %s binds %s %s, which the chart does not make", o.GetKind(), o.GetName(), b.RoleRef.Kind, b.RoleRef.Name)
			}
			for _, s := range b.Subjects {
				if s.Kind != "ServiceAccount" || !sas[s.Namespace+"/"+s.Name] {
					t.Errorf("%s %s binds %+v, not a ServiceAccount of the chart", o.GetKind(), o.GetName(), s)
				}
			}
		}
		// The names the rules allow are the names the processes use.
		a := args(t, r, "webhook")
		named := func(role, resource string) []string {
			var out []string
			for _, rule := range roles[role] {
				if slices.Contains(rule.Resources, resource) {
					out = append(out, rule.ResourceNames...)
				}
			}
			return out
		}
		if got := named("ClusterRole//vk8s-webhook", "mutatingwebhookconfigurations"); !slices.Equal(got, []string{a["--configuration-name"]}) {
			t.Errorf("webhook configurations: RBAC names %v, --configuration-name=%s", got, a["--configuration-name"])
		}
		if ca := a["--ca-secret"]; ca != "" && !slices.Contains(named("Role/"+namespace+"/vk8s-webhook", "secrets"), strings.TrimPrefix(ca, namespace+"/")) {
			t.Errorf("--ca-secret=%s is not a name the webhook's Role allows", ca)
		}
		for _, c := range []string{"provider", "webhook"} {
			if got := args(t, r, c)["--leader-elect-namespace"]; !slices.Contains(named("Role/"+got+"/vk8s-"+c, "leases"), "vk8s-"+c) {
				t.Errorf("%s: no Role for Lease vk8s-%s in --leader-elect-namespace=%s", c, c, got)
			}
		}
		// The signer the provider approves for, and nothing else.
		if got := named("ClusterRole//vk8s-provider", "signers"); !slices.Equal(got, []string{"kubernetes.io/kubelet-serving"}) {
			t.Errorf("provider approves for signers %v, want only kubernetes.io/kubelet-serving", got)
		}
	}
}

// TestTLSModes checks the self-managed mode (the webhook writes its CA into the chart's
// configurations) and cert-manager's (a Certificate mounted into the webhook, its CA
// injected by cert-manager).
func TestTLSModes(t *testing.T) {
	r := render(t)
	a := args(t, r, "webhook")
	if a["--configurations"] != "inject-ca" || a["--ca-secret"] != namespace+"/vk8s-webhook-ca" || a["--cert-dir"] != "" {
		t.Errorf("self-managed webhook flags %v", a)
	}
	if n := len(r.all("Certificate")) + len(r.all("Issuer")); n != 0 {
		t.Errorf("%d cert-manager objects without cert-manager", n)
	}

	for _, tc := range []struct {
		name    string
		set     []string
		issuers int
		issuer  string
	}{
		{name: "the chart's CA", set: []string{"webhook.certManager.enabled=true"}, issuers: 2, issuer: "vk8s-webhook-ca"},
		{name: "the user's issuer", set: []string{"webhook.certManager.enabled=true", "webhook.certManager.issuerRef.name=corp", "webhook.certManager.issuerRef.kind=ClusterIssuer"}, issuer: "corp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.set...)
			a := args(t, r, "webhook")
			if a["--configurations"] != "none" || a["--cert-dir"] == "" || a["--ca-secret"] != "" {
				t.Errorf("cert-manager webhook flags %v", a)
			}
			if n := len(r.all("Issuer")); n != tc.issuers {
				t.Errorf("%d Issuers, want %d", n, tc.issuers)
			}
			var serving *unstructured.Unstructured
			for _, c := range r.all("Certificate") {
				if c.GetName() == "vk8s-webhook-tls" {
					serving = c
				}
			}
			if serving == nil {
				t.Fatal("no serving Certificate vk8s-webhook-tls")
			}
			dns, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
			secret, _, _ := unstructured.NestedString(serving.Object, "spec", "secretName")
			issuer, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "name")
			if !slices.Contains(dns, "vk8s-webhook."+namespace+".svc") || issuer != tc.issuer {
				t.Errorf("Certificate: dnsNames %v, issuer %s", dns, issuer)
			}
			dep := &appsv1.Deployment{}
			r.one(t, "vk8s-webhook", dep)
			mounted := false
			for _, v := range dep.Spec.Template.Spec.Volumes {
				for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
					mounted = mounted || (v.Secret != nil && v.Secret.SecretName == secret && m.Name == v.Name && m.MountPath == a["--cert-dir"])
				}
			}
			if !mounted {
				t.Errorf("the Certificate's Secret %s is not mounted at --cert-dir=%s", secret, a["--cert-dir"])
			}
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				c := r.all(kind)[0]
				if got := c.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != namespace+"/vk8s-webhook-tls" {
					t.Errorf("%s: cert-manager.io/inject-ca-from %q, want %s/vk8s-webhook-tls", kind, got, namespace)
				}
			}
		})
	}
}

// TestCRDs checks that the CRD templates are api/crds' CRDs, kept on uninstall by default,
// and that crds.enabled=false renders none.
func TestCRDs(t *testing.T) {
	want, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	r := render(t)
	for _, w := range want {
		got := &apiextensionsv1.CustomResourceDefinition{}
		r.one(t, w.Name, got)
		if !apiequality.Semantic.DeepEqual(got.Spec, w.Spec) {
			t.Errorf("CRD %s differs from api/crds: run make generate", w.Name)
		}
		if got.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s: not kept on uninstall by default", w.Name)
		}
	}
	for _, o := range render(t, "crds.keep=false").all("CustomResourceDefinition") {
		if _, ok := o.GetAnnotations()["helm.sh/resource-policy"]; ok {
			t.Errorf("CRD %s: resource policy with crds.keep=false", o.GetName())
		}
	}
	if n := len(render(t, "crds.enabled=false").all("CustomResourceDefinition")); n != 0 {
		t.Errorf("crds.enabled=false renders %d CRDs", n)
	}
}

// TestDeploymentsDisabled checks deployments.enabled=false: no Deployment nor PDB, and
// everything the processes need to run elsewhere with the chart's ServiceAccounts.
func TestDeploymentsDisabled(t *testing.T) {
	r := render(t, "deployments.enabled=false", "webhook.url=https://127.0.0.1:9443")
	for kind, want := range map[string]int{
		"Deployment": 0, "PodDisruptionBudget": 0, "CustomResourceDefinition": 5, "ServiceAccount": 2,
		"ClusterRole": 2, "ClusterRoleBinding": 2, "Role": 3, "RoleBinding": 3, "Service": 2,
		"MutatingWebhookConfiguration": 1, "ValidatingWebhookConfiguration": 1, "WorkloadFlavor": 3,
	} {
		if got := len(r.all(kind)); got != want {
			t.Errorf("%d %s, want %d", got, kind, want)
		}
	}
}

// TestSchemaRefusesWrongTypes checks that values.schema.json refuses a value of the wrong
// type with a message that names the value and the type.
func TestSchemaRefusesWrongTypes(t *testing.T) {
	for set, want := range map[string][]string{
		"webhook.replicaCount=two":      {"/webhook/replicaCount", "integer"},
		"crds.enabled=yes":              {"/crds/enabled", "boolean"},
		"webhook.timeoutSeconds=60":     {"/webhook/timeoutSeconds", "30"},
		"tenant=my-company":             {"/tenant", "[a-z0-9]{1,20}"},
		"provider.replicas=3":           {"replicas"},
		"provider.sharding.shards=5000": {"/provider/sharding/shards", "maximum"},
	} {
		out, err := helm(t, "template", release, chart, "--set", set)
		if err == nil {
			t.Errorf("--set %s: rendered, want a schema error", set)
			continue
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("--set %s: message does not say %q:\n%s", set, w, out)
			}
		}
	}
}

// TestFlavorsMatchTheCode compares the chart's WorkloadFlavors with
// overrides.BuiltinFlavors, the values admission skips.
func TestFlavorsMatchTheCode(t *testing.T) {
	r := render(t)
	for _, want := range overrides.BuiltinFlavors() {
		got := &vk8sv1.WorkloadFlavor{}
		r.one(t, want.Name, got)
		if !apiequality.Semantic.DeepEqual(got.Spec, want.Spec) {
			t.Errorf("WorkloadFlavor %s: %+v, want %+v", want.Name, got.Spec, want.Spec)
		}
	}
	if n := len(render(t, "flavors.builtin=false").all("WorkloadFlavor")); n != 0 {
		t.Errorf("flavors.builtin=false renders %d flavors", n)
	}
	for _, f := range r.all("WorkloadFlavor") {
		if a := f.GetAnnotations(); a["helm.sh/hook"] != "" {
			t.Errorf("WorkloadFlavor %s is a hook (%v) in a cluster that has the CRD: the release would not hold it", f.GetName(), a)
		}
	}
	// The first install, which creates the CRDs: Helm could not map the flavors among the
	// release's objects, so they are a post-install hook that the next upgrade adopts.
	first := renderWith(t, nil).all("WorkloadFlavor")
	if len(first) != len(overrides.BuiltinFlavors()) {
		t.Errorf("without the WorkloadFlavor CRD in the cluster, %d flavors are rendered, want %d", len(first), len(overrides.BuiltinFlavors()))
	}
	for _, f := range first {
		a, l := f.GetAnnotations(), f.GetLabels()
		if a["helm.sh/hook"] != "post-install" || a["meta.helm.sh/release-name"] != release || a["meta.helm.sh/release-namespace"] != namespace ||
			l["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("WorkloadFlavor %s of a first install: annotations %v, labels %v; want a post-install hook with the release's ownership metadata", f.GetName(), a, l)
		}
	}
}

// TestSharding checks that sharding is off by default (one elected replica acts), and that
// provider.sharding passes --shard and --shards to every replica.
func TestSharding(t *testing.T) {
	if _, ok := args(t, render(t), "provider")["--shard"]; ok {
		t.Error("default provider args have --shard, want sharding off by default")
	}
	r := render(t, "provider.sharding.enabled=true", "provider.sharding.shards=128", "provider.replicaCount=3")
	a := args(t, r, "provider")
	if _, ok := a["--shard"]; !ok || a["--shards"] != "128" {
		t.Errorf("provider args %v: want --shard and --shards=128", a)
	}
	d := &appsv1.Deployment{}
	r.one(t, release+"-provider", d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("provider replicas %v, want 3", d.Spec.Replicas)
	}
	// The sharding's Leases: a member Lease per replica and one per shard, names not
	// known ahead, so every verb on Leases in the release namespace.
	var rules []rbacv1.PolicyRule
	for _, o := range r.all("Role") {
		role := &rbacv1.Role{}
		if o.GetName() != release+"-provider" || o.GetNamespace() != namespace {
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, role); err != nil {
			t.Fatal(err)
		}
		rules = role.Rules
	}
	found := false
	for _, rule := range rules {
		if slices.Contains(rule.Resources, "leases") && len(rule.ResourceNames) == 0 &&
			slices.Contains(rule.Verbs, "list") && slices.Contains(rule.Verbs, "watch") && slices.Contains(rule.Verbs, "update") && slices.Contains(rule.Verbs, "delete") {
			found = true
		}
	}
	if !found {
		t.Errorf("provider Role in %s %+v: no rule to list, watch, update and delete any Lease", namespace, rules)
	}
}

// TestSettingsReachTheProcesses checks the installation's settings and the pods' security.
func TestSettingsReachTheProcesses(t *testing.T) {
	r := render(t, "tenant=acme", "sharedNamespace=common", "defaultWorkloadFlavor=ves-io-large", "webhook.timeoutSeconds=9")
	p, w := args(t, r, "provider"), args(t, r, "webhook")
	for flag, want := range map[string]string{"--tenant": "acme", "--leader-elect-namespace": namespace, "--node-address": "$(POD_IP)"} {
		if p[flag] != want {
			t.Errorf("provider %s=%s, want %s", flag, p[flag], want)
		}
	}
	for flag, want := range map[string]string{"--shared-namespace": "common", "--default-workload-flavor": "ves-io-large", "--timeout": "9s", "--leader-elect-namespace": namespace} {
		if w[flag] != want {
			t.Errorf("webhook %s=%s, want %s", flag, w[flag], want)
		}
	}
	for _, c := range []string{"provider", "webhook"} {
		d := &appsv1.Deployment{}
		r.one(t, release+"-"+c, d)
		pod, ctr := d.Spec.Template.Spec.SecurityContext, d.Spec.Template.Spec.Containers[0]
		sc := ctr.SecurityContext
		if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot || pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
			sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: security context %+v, container %+v", c, pod, sc)
		}
		a := args(t, r, c)
		health := strings.TrimPrefix(a["--health-probe-bind-address"], ":")
		for path, probe := range map[string]*corev1.Probe{"/healthz": ctr.LivenessProbe, "/readyz": ctr.ReadinessProbe} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool {
				return p.Name == probe.HTTPGet.Port.String() && fmt.Sprint(p.ContainerPort) == health
			}) {
				t.Errorf("%s: probe %s %+v not on --health-probe-bind-address=:%s", c, path, probe, health)
			}
		}
		if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %+v", c, ctr.Resources)
		}
	}
}

// TestFlagsExist runs the vk8s binary's help: every flag the chart passes must exist, so
// that renaming one fails here rather than in a cluster.
func TestFlagsExist(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "vk8s")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/vk8s").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, set := range [][]string{nil, {"webhook.certManager.enabled=true", "webhook.strictReplicas=true", "webhook.reservationTTL=1m",
		"provider.kubelet.nodePorts=20000-20999", "provider.kubelet.disableCSRApproval=true", "provider.hostName=h", "provider.siteHeartbeatInterval=10s",
		"provider.virtualNodeGracePeriod=1m", "provider.tenancyCleanupTimeout=1m", "provider.leaderElection.leaseDuration=15s",
		"provider.sharding.enabled=true", "provider.sharding.shards=128",
		"provider.leaderElection.renewDeadline=10s", "provider.leaderElection.retryPeriod=2s", "webhook.selfManaged.caLifetime=100h"}, {"webhook.url=https://127.0.0.1:9443"}} {
		r := render(t, set...)
		for _, c := range []string{"provider", "webhook"} {
			help, err := exec.Command(bin, c, "--help").CombinedOutput()
			if err != nil {
				t.Fatalf("vk8s %s --help: %v", c, err)
			}
			for flag := range args(t, r, c) {
				if !bytes.Contains(help, []byte("  "+flag+" ")) && !bytes.Contains(help, []byte(", "+flag+" ")) {
					t.Errorf("vk8s %s has no flag %s", c, flag)
				}
			}
		}
	}
}

// TestDashboardMetricsExist checks that every metric the Grafana dashboard reads is one
// the code registers.
func TestDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("vk8s/dashboards/vk8s.json")
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	name := regexp.MustCompile(`"(vk8s_[a-z_]+)"`)
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "e2e") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllSubmatch(src, -1) {
			registered[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`vk8s_[a-z_]+`).FindAllString(string(raw), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard reads no vk8s metric")
	}
	for _, m := range used {
		base := m
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !registered[base] {
			t.Errorf("the dashboard reads %s, which no code registers", m)
		}
	}
}

// TestValuesDocumented checks that every value of values.yaml has a comment right above
// it, or sits in an object that has one.
func TestValuesDocumented(t *testing.T) {
	f, err := os.Open("vk8s/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	key := regexp.MustCompile(`^( *)(- )?([A-Za-z0-9_]+):(.*)$`)
	type level struct {
		indent     int
		documented bool
	}
	var stack []level
	prevComment := false
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			prevComment = false
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			prevComment = true
			continue
		}
		m := key.FindStringSubmatch(line)
		if m == nil {
			prevComment = false
			continue
		}
		indent := len(m[1])
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		inherited := slices.ContainsFunc(stack, func(l level) bool { return l.documented })
		documented := prevComment || inherited
		leaf := strings.TrimSpace(m[4]) != ""
		if leaf && !documented {
			t.Errorf("values.yaml: %s has no comment", trimmed)
		}
		n++
		stack = append(stack, level{indent: indent, documented: documented})
		prevComment = false
	}
	if n < 50 {
		t.Errorf("read %d keys of values.yaml; the test's parser is off", n)
	}
}

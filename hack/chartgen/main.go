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

// Command chartgen writes the generated templates of charts/vk8s: the CRDs of api/crds,
// wrapped so that crds.enabled and crds.keep apply; the RBAC of each process that
// controller-gen collected from the +kubebuilder:rbac markers, with the chart's names; and
// the ValidatingAdmissionPolicy of webhook.KindPolicy, whose expression and message are
// made from translate.NamespaceKinds (a table, which a hand-written copy would have to
// follow kind by kind). It runs from hack/update-codegen.sh; never edit what it writes.
//
//	go run ./hack/chartgen -crds api/crds -rbac DIR -chart charts/vk8s
//
// DIR holds one folder per component (provider, webhook) with controller-gen's role.yaml.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/vk8s-io/vk8s/webhook"
)

// components are the processes whose RBAC the chart holds, by controller-gen folder.
var components = []string{"provider", "webhook"}

// markerNamespace is the namespace markers name for the release's own (the processes'
// default --leader-elect-namespace).
const markerNamespace = "vk8s-system"

// names maps the literal names of the markers to the chart's expression for them, by
// resource: a name the chart makes configurable becomes its helper; a fixed one stays. A
// name missing here is an error, so a new marker cannot slip through with a name that the
// chart does not use.
var names = map[string]map[string]string{
	"mutatingwebhookconfigurations":   {webhook.DefaultConfigurationName: `{{ include "vk8s.webhook.configurationName" . }}`},
	"validatingwebhookconfigurations": {webhook.DefaultConfigurationName: `{{ include "vk8s.webhook.configurationName" . }}`},
	"secrets":                         {webhook.DefaultCASecret: `{{ include "vk8s.webhook.caSecretName" . }}`},
	// The leader election Leases are named by the code, not by flags.
	"leases":  {"vk8s-provider": "vk8s-provider", "vk8s-webhook": "vk8s-webhook"},
	"signers": {"kubernetes.io/kubelet-serving": "kubernetes.io/kubelet-serving"},
}

func main() {
	crds := flag.String("crds", "api/crds", "folder of the generated CRDs")
	rbac := flag.String("rbac", "", "folder with controller-gen's RBAC output, one folder per component")
	chart := flag.String("chart", "charts/vk8s", "the chart")
	flag.Parse()
	if err := run(*crds, *rbac, *chart); err != nil {
		fmt.Fprintln(os.Stderr, "chartgen:", err)
		os.Exit(1)
	}
}

func run(crds, rbac, chart string) error {
	templates := filepath.Join(chart, "templates")
	// What an earlier run wrote goes first, so a CRD or Role that is gone leaves no file.
	old, err := filepath.Glob(filepath.Join(templates, "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range old {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if bytes.HasPrefix(raw, []byte(headerPrefix)) {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(crds, "*.yaml"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no CRDs in %s", crds)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		out, err := crdTemplate(filepath.ToSlash(f), raw)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if err := os.WriteFile(filepath.Join(templates, "crd-"+filepath.Base(f)), out, 0o644); err != nil {
			return err
		}
	}
	for _, c := range components {
		raw, err := os.ReadFile(filepath.Join(rbac, c, "role.yaml"))
		if err != nil {
			return err
		}
		out, err := rbacTemplates(c, raw)
		if err != nil {
			return fmt.Errorf("RBAC of the %s: %w", c, err)
		}
		for name, text := range out {
			if err := os.WriteFile(filepath.Join(templates, name), text, 0o644); err != nil {
				return err
			}
		}
	}
	policy, err := policyTemplates()
	if err != nil {
		return err
	}
	for name, text := range policy {
		if err := os.WriteFile(filepath.Join(templates, name), text, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// policyTemplates returns the kind policy and its binding (webhook.KindPolicy) under the
// chart's configuration name.
func policyTemplates() (map[string][]byte, error) {
	policy, binding := webhook.KindPolicy(webhook.Config{})
	binding.Spec.PolicyName = "POLICY"
	from := "webhook.KindPolicy"
	meta := "metadata:\n  name: {{ include \"vk8s.webhook.configurationName\" . }}\n" +
		"  labels:\n    {{- include \"vk8s.labels\" (dict \"context\" $ \"component\" \"webhook\") | nindent 4 }}\n"
	out := map[string][]byte{}
	for file, obj := range map[string]struct {
		kind string
		spec any
	}{
		"webhook-validatingadmissionpolicy.yaml":        {"ValidatingAdmissionPolicy", policy.Spec},
		"webhook-validatingadmissionpolicybinding.yaml": {"ValidatingAdmissionPolicyBinding", binding.Spec},
	} {
		raw, err := yaml.Marshal(map[string]any{"spec": obj.spec})
		if err != nil {
			return nil, err
		}
		spec := string(raw)
		if strings.Contains(spec, "{{") {
			return nil, fmt.Errorf("%s holds {{, which Helm would read as a template", obj.kind)
		}
		spec = strings.Replace(spec, "policyName: POLICY", `policyName: {{ include "vk8s.webhook.configurationName" . }}`, 1)
		out[file] = []byte(header(from) + "apiVersion: admissionregistration.k8s.io/v1\nkind: " + obj.kind + "\n" + meta + spec)
	}
	return out, nil
}

const headerPrefix = "{{- /* Generated by hack/update-codegen.sh"

// header is the first line of every generated template; chartgen removes only files that
// start with it.
func header(from string) string {
	return headerPrefix + " from " + from + "; do not edit. */}}\n"
}

// crdTemplate wraps a CRD of controller-gen: rendered when crds.enabled, kept by Helm on
// uninstall when crds.keep, labelled as the chart's.
func crdTemplate(from string, raw []byte) ([]byte, error) {
	text := strings.TrimPrefix(string(raw), "---\n")
	const head = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  annotations:\n"
	if !strings.HasPrefix(text, head) {
		return nil, errors.New("not a CustomResourceDefinition as controller-gen writes it (metadata.annotations first)")
	}
	if strings.Contains(text, "{{") {
		return nil, errors.New("holds {{, which Helm would read as a template: reword the field's comment")
	}
	rest := text[len(head):]
	end := strings.Index(rest, "\n  name: ")
	if end < 0 {
		return nil, errors.New("no metadata.name after the annotations")
	}
	var b strings.Builder
	b.WriteString(header(from))
	b.WriteString("{{- if .Values.crds.enabled }}\n")
	b.WriteString(head)
	b.WriteString(rest[:end+1])
	b.WriteString("    {{- if .Values.crds.keep }}\n    helm.sh/resource-policy: keep\n    {{- end }}\n")
	b.WriteString("  labels:\n    {{- include \"vk8s.labels\" (dict \"context\" $ \"component\" \"crds\") | nindent 4 }}\n")
	b.WriteString(strings.TrimSuffix(rest[end+1:], "\n"))
	b.WriteString("\n{{- end }}\n")
	return []byte(b.String()), nil
}

// rbacTemplates turns controller-gen's ClusterRole and Roles of component into the chart's
// <component>-clusterrole.yaml, <component>-role.yaml and <component>-rolebinding.yaml.
func rbacTemplates(component string, raw []byte) (map[string][]byte, error) {
	from := "the +kubebuilder:rbac markers of the " + component
	var cluster *rbacv1.ClusterRole
	var roles []rbacv1.Role
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		doc = strings.TrimPrefix(strings.TrimSpace(doc), "---")
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, err
		}
		switch meta.Kind {
		case "ClusterRole":
			cluster = &rbacv1.ClusterRole{}
			if err := yaml.UnmarshalStrict([]byte(doc), cluster); err != nil {
				return nil, err
			}
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				return nil, err
			}
			roles = append(roles, r)
		default:
			return nil, fmt.Errorf("unexpected kind %q", meta.Kind)
		}
	}
	if cluster == nil {
		return nil, errors.New("no ClusterRole")
	}
	labels := fmt.Sprintf("  labels:\n    {{- include \"vk8s.labels\" (dict \"context\" $ \"component\" %q) | nindent 4 }}\n", component)
	name := fmt.Sprintf("{{ include \"vk8s.fullname\" . }}-%s", component)
	out := map[string][]byte{}

	rules, err := chartRules(cluster.Rules)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(header(from))
	fmt.Fprintf(&b, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: %s\n%srules:\n%s", name, labels, rules)
	out[component+"-clusterrole.yaml"] = []byte(b.String())

	slices.SortFunc(roles, func(a, b rbacv1.Role) int { return strings.Compare(a.Namespace, b.Namespace) })
	var rb, bb strings.Builder
	rb.WriteString(header(from))
	bb.WriteString(header(from))
	for i, r := range roles {
		ns := r.Namespace
		if ns == markerNamespace {
			ns = "{{ .Release.Namespace }}"
		}
		rules, err := chartRules(r.Rules)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			rb.WriteString("---\n")
			bb.WriteString("---\n")
		}
		fmt.Fprintf(&rb, "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: %s\n  namespace: %s\n%srules:\n%s", name, ns, labels, rules)
		fmt.Fprintf(&bb, "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: %s\n  namespace: %s\n%s"+
			"roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: %s\n"+
			"subjects:\n- kind: ServiceAccount\n  name: {{ include \"vk8s.serviceAccountName\" (dict \"context\" $ \"component\" %q) }}\n  namespace: {{ .Release.Namespace }}\n",
			name, ns, labels, name, component)
	}
	if len(roles) > 0 {
		out[component+"-role.yaml"] = []byte(rb.String())
		out[component+"-rolebinding.yaml"] = []byte(bb.String())
	}
	return out, nil
}

// chartRules returns rules as YAML, their resource names replaced by the chart's (names).
func chartRules(rules []rbacv1.PolicyRule) (string, error) {
	rules = slices.Clone(rules)
	for i, r := range rules {
		if len(r.ResourceNames) == 0 {
			continue
		}
		var replaced []string
		for _, n := range r.ResourceNames {
			for _, res := range r.Resources {
				to, ok := names[res][n]
				if !ok {
					return "", fmt.Errorf("resource name %q of %v: add it to chartgen's names", n, r.Resources)
				}
				if !slices.Contains(replaced, to) {
					replaced = append(replaced, to)
				}
			}
		}
		rules[i].ResourceNames = replaced
	}
	raw, err := yaml.Marshal(rules)
	if err != nil {
		return "", err
	}
	return string(raw), nil
}

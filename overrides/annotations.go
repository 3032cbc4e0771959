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

package overrides

import (
	"fmt"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Defaults of the parameters that an installation may change.
const (
	// DefaultSharedNamespace is the namespace whose VirtualSites every workload may reference.
	DefaultSharedNamespace = "shared"
	// DefaultWorkloadFlavor is the flavor of a workload without the ves.io/workload-flavor
	// annotation.
	DefaultWorkloadFlavor = FlavorTiny
)

// Fixes shown with annotation errors: each says what a valid value looks like.
const (
	fixVirtualSites = `write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`
	fixOverrides    = `write a comma-separated list of Override names from the workload's namespace, e.g. "canary, blue"`
	fixFlavor       = `name one WorkloadFlavor, e.g. "ves-io-medium" (kubectl get workloadflavors lists them)`
)

// Short forms of the DNS-1123 rules, for messages: validation's own texts are long.
const (
	ruleLabel     = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
	ruleSubdomain = "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
)

// AnnotationError says why the value of an annotation on a workload is invalid and how to
// fix it. The webhook returns it in its denial, or as a field error (FieldError).
type AnnotationError struct {
	// Field is the path of the annotation in field.Path form:
	// metadata.annotations[ves.io/virtual-sites].
	Field string
	// Value is the annotation's value as written.
	Value string
	// Reason says what is wrong, naming the entry when the value is a list.
	Reason string
	// Fix says what to write instead.
	Fix string
	// Err, when set, classifies the error (ErrOverrideNotFound); errors.Is follows it.
	Err error
}

// Error reads metadata.annotations["ves.io/virtual-sites"]: invalid value "a,,b": entry 2 is
// empty; write a comma-separated list of ...
func (e *AnnotationError) Error() string {
	return fmt.Sprintf("%s: invalid value %q: %s; %s", quoteKey(e.Field), e.Value, e.Reason, e.Fix)
}

// Unwrap returns Err.
func (e *AnnotationError) Unwrap() error { return e.Err }

// FieldError returns the error as a field.Error, for webhooks that report field.ErrorLists.
func (e *AnnotationError) FieldError() *field.Error {
	return &field.Error{Type: field.ErrorTypeInvalid, Field: e.Field, BadValue: e.Value, Detail: e.Reason + "; " + e.Fix}
}

// quoteKey turns metadata.annotations[ves.io/x] into metadata.annotations["ves.io/x"]:
// annotation keys hold dots and slashes, which read as path separators unquoted.
func quoteKey(path string) string {
	i := strings.IndexByte(path, '[')
	if i < 0 || !strings.HasSuffix(path, "]") {
		return path
	}
	return fmt.Sprintf("%s[%q]", path[:i], path[i+1:len(path)-1])
}

func annotationField(key string) string {
	return field.NewPath("metadata", "annotations").Key(key).String()
}

// VirtualSiteRef names a VirtualSite.
type VirtualSiteRef struct {
	Namespace string
	Name      string
}

// String returns <namespace>/<name>.
func (r VirtualSiteRef) String() string { return r.Namespace + "/" + r.Name }

// ParseVirtualSites parses the ves.io/virtual-sites annotation of a workload in namespace.
// A bare name means namespace; only namespace and sharedNamespace (DefaultSharedNamespace
// when empty) may be referenced. Duplicates are dropped, keeping the first. It returns nil
// without error when the annotation is absent or empty: the namespace's default
// virtual-site applies.
func ParseVirtualSites(annotations map[string]string, namespace, sharedNamespace string) ([]VirtualSiteRef, error) {
	if sharedNamespace == "" {
		sharedNamespace = DefaultSharedNamespace
	}
	value, ok := annotations[vk8sv1.AnnotationVirtualSites]
	if !ok {
		return nil, nil
	}
	fail := func(reason, fix string) error {
		return &AnnotationError{Field: annotationField(vk8sv1.AnnotationVirtualSites), Value: value, Reason: reason, Fix: fix}
	}
	entries, reason := splitList(value)
	if reason != "" {
		return nil, fail(reason, fixVirtualSites)
	}
	var refs []VirtualSiteRef
	seen := map[VirtualSiteRef]bool{}
	for i, e := range entries {
		ref := VirtualSiteRef{Namespace: namespace, Name: e}
		if ns, name, qualified := strings.Cut(e, "/"); qualified {
			switch {
			case strings.Contains(name, "/"):
				return nil, fail(fmt.Sprintf("entry %d %q has more than one \"/\"", i+1, e), fixVirtualSites)
			case ns == "":
				return nil, fail(fmt.Sprintf("entry %d %q has an empty namespace", i+1, e), fixVirtualSites)
			case name == "":
				return nil, fail(fmt.Sprintf("entry %d %q has an empty name", i+1, e), fixVirtualSites)
			case len(validation.IsDNS1123Label(ns)) > 0:
				return nil, fail(fmt.Sprintf("entry %d %q: namespace %q is not a valid namespace name (%s)", i+1, e, ns, ruleLabel), fixVirtualSites)
			}
			ref = VirtualSiteRef{Namespace: ns, Name: name}
		}
		if len(validation.IsDNS1123Subdomain(ref.Name)) > 0 {
			return nil, fail(fmt.Sprintf("entry %d %q: name %q is not a valid VirtualSite name (%s)", i+1, e, ref.Name, ruleSubdomain), fixVirtualSites)
		}
		if ref.Namespace != namespace && ref.Namespace != sharedNamespace {
			return nil, fail(
				fmt.Sprintf("entry %d %q is in namespace %q, but a workload may only reference virtual-sites in its own namespace (%q) or the shared one (%q)", i+1, e, ref.Namespace, namespace, sharedNamespace),
				fmt.Sprintf("reference a VirtualSite in %q or %q, e.g. \"%s/%s\"", namespace, sharedNamespace, sharedNamespace, ref.Name))
		}
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

// ParseOverrides parses the ves.io/overrides annotation: the names of Overrides in the
// workload's namespace, in the order that decides which one a site takes. Duplicates are
// dropped, keeping the first. It returns nil without error when the annotation is absent
// or empty.
func ParseOverrides(annotations map[string]string) ([]string, error) {
	value, ok := annotations[vk8sv1.AnnotationOverrides]
	if !ok {
		return nil, nil
	}
	fail := func(reason string) error {
		return &AnnotationError{Field: annotationField(vk8sv1.AnnotationOverrides), Value: value, Reason: reason, Fix: fixOverrides}
	}
	entries, reason := splitList(value)
	if reason != "" {
		return nil, fail(reason)
	}
	var names []string
	seen := map[string]bool{}
	for i, e := range entries {
		if strings.Contains(e, "/") {
			return nil, fail(fmt.Sprintf("entry %d %q names a namespace, but Overrides are always taken from the workload's namespace", i+1, e))
		}
		if len(validation.IsDNS1123Subdomain(e)) > 0 {
			return nil, fail(fmt.Sprintf("entry %d %q is not a valid Override name (%s)", i+1, e, ruleSubdomain))
		}
		if !seen[e] {
			seen[e] = true
			names = append(names, e)
		}
	}
	return names, nil
}

// ParseWorkloadFlavor parses the ves.io/workload-flavor annotation. It returns
// defaultFlavor (DefaultWorkloadFlavor when empty) when the annotation is absent or empty.
// Whether the flavor exists is for the caller to check.
func ParseWorkloadFlavor(annotations map[string]string, defaultFlavor string) (string, error) {
	if defaultFlavor == "" {
		defaultFlavor = DefaultWorkloadFlavor
	}
	value, ok := annotations[vk8sv1.AnnotationWorkloadFlavor]
	if !ok {
		return defaultFlavor, nil
	}
	fail := func(reason string) error {
		return &AnnotationError{Field: annotationField(vk8sv1.AnnotationWorkloadFlavor), Value: value, Reason: reason, Fix: fixFlavor}
	}
	name := trimEntry(value)
	switch {
	case name == "":
		return defaultFlavor, nil
	case strings.Contains(name, ","):
		return "", fail("a workload has exactly one flavor")
	case strings.Contains(name, "/"):
		return "", fail(fmt.Sprintf("%q names a namespace, but WorkloadFlavors are cluster-scoped", name))
	case len(validation.IsDNS1123Subdomain(name)) > 0:
		return "", fail(fmt.Sprintf("%q is not a valid WorkloadFlavor name (%s)", name, ruleSubdomain))
	}
	return name, nil
}

// splitList splits a comma-separated annotation value into trimmed entries, or returns why
// it cannot. An empty value is an empty list.
func splitList(value string) (entries []string, reason string) {
	if trimEntry(value) == "" {
		return nil, ""
	}
	parts := strings.Split(value, ",")
	for i, p := range parts {
		e := trimEntry(p)
		if e == "" {
			if i == len(parts)-1 {
				return nil, fmt.Sprintf("entry %d is empty (the list ends with a comma)", i+1)
			}
			return nil, fmt.Sprintf("entry %d is empty", i+1)
		}
		entries = append(entries, e)
	}
	return entries, ""
}

// trimEntry drops whitespace and quotes around a value or an entry. Values pasted from
// documents arrive with typographic quotes; no name can hold a quote, so dropping them
// never changes what a value means.
func trimEntry(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || isQuote(r) })
}

func isQuote(r rune) bool {
	switch r {
	case '"', '\'', '“', '”', '‘', '’', '„', '‚', '«', '»':
		return true
	}
	return false
}

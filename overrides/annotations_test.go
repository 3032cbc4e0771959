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
	"errors"
	"reflect"
	"strings"
	"testing"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestParseVirtualSites(t *testing.T) {
	const field = `metadata.annotations["ves.io/virtual-sites"]`
	for _, tc := range []struct {
		name    string
		value   *string // nil: annotation absent
		shared  string
		want    []VirtualSiteRef
		wantErr string // the whole message
	}{
		{name: "absent", value: nil, want: nil},
		{name: "empty", value: ptr(""), want: nil},
		{name: "only whitespace and quotes", value: ptr(` “” `), want: nil},
		{name: "qualified", value: ptr("ns1/vs1, shared/vs2"), want: []VirtualSiteRef{{"ns1", "vs1"}, {"shared", "vs2"}}},
		{name: "bare name is the workload's namespace", value: ptr("edge"), want: []VirtualSiteRef{{"ns1", "edge"}}},
		{name: "no spaces", value: ptr("shared/a,b"), want: []VirtualSiteRef{{"shared", "a"}, {"ns1", "b"}}},
		{name: "surrounding whitespace and newlines", value: ptr("\n  shared/a ,\tb  \n"), want: []VirtualSiteRef{{"shared", "a"}, {"ns1", "b"}}},
		{name: "plain quotes around the value", value: ptr(`"shared/a, b"`), want: []VirtualSiteRef{{"shared", "a"}, {"ns1", "b"}}},
		{name: "single quotes around entries", value: ptr(`'shared/a', 'b'`), want: []VirtualSiteRef{{"shared", "a"}, {"ns1", "b"}}},
		{name: "typographic double quotes around the value", value: ptr("“shared/a, b”"), want: []VirtualSiteRef{{"shared", "a"}, {"ns1", "b"}}},
		{name: "typographic single quotes around entries", value: ptr("‘shared/a’, ‘b’"), want: []VirtualSiteRef{{"shared", "a"}, {"ns1", "b"}}},
		{name: "quotes around value and entries", value: ptr(`“"shared/a", "b"”`), want: []VirtualSiteRef{{"shared", "a"}, {"ns1", "b"}}},
		{name: "duplicates dropped, order kept", value: ptr("b, shared/a, ns1/b, shared/a, c"), want: []VirtualSiteRef{{"ns1", "b"}, {"shared", "a"}, {"ns1", "c"}}},
		{name: "dotted name", value: ptr("shared/eu.west"), want: []VirtualSiteRef{{"shared", "eu.west"}}},
		{name: "configured shared namespace", value: ptr("common/a"), shared: "common", want: []VirtualSiteRef{{"common", "a"}}},
		{
			name: "empty entry", value: ptr("a,,b"),
			wantErr: field + `: invalid value "a,,b": entry 2 is empty; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "blank entry", value: ptr("a, , b"),
			wantErr: field + `: invalid value "a, , b": entry 2 is empty; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "quoted empty entry", value: ptr(`a, "", b`),
			wantErr: field + `: invalid value "a, \"\", b": entry 2 is empty; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "trailing comma", value: ptr("a, b,"),
			wantErr: field + `: invalid value "a, b,": entry 3 is empty (the list ends with a comma); write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "leading comma", value: ptr(",a"),
			wantErr: field + `: invalid value ",a": entry 1 is empty; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "two slashes", value: ptr("shared/a/b"),
			wantErr: field + `: invalid value "shared/a/b": entry 1 "shared/a/b" has more than one "/"; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "empty namespace", value: ptr("a, /b"),
			wantErr: field + `: invalid value "a, /b": entry 2 "/b" has an empty namespace; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "empty name", value: ptr("shared/"),
			wantErr: field + `: invalid value "shared/": entry 1 "shared/" has an empty name; write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "namespace not DNS-1123", value: ptr("Shared/a"),
			wantErr: field + `: invalid value "Shared/a": entry 1 "Shared/a": namespace "Shared" is not a valid namespace name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters); write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "namespace with a dot", value: ptr("sha.red/a"),
			wantErr: field + `: invalid value "sha.red/a": entry 1 "sha.red/a": namespace "sha.red" is not a valid namespace name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters); write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "name not DNS-1123", value: ptr("shared/a, All_Sites"),
			wantErr: field + `: invalid value "shared/a, All_Sites": entry 2 "All_Sites": name "All_Sites" is not a valid VirtualSite name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "space inside an entry", value: ptr("shared / a"),
			wantErr: field + `: invalid value "shared / a": entry 1 "shared / a": namespace "shared " is not a valid namespace name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters); write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "quote inside an entry", value: ptr(`a"b`),
			wantErr: field + `: invalid value "a\"b": entry 1 "a\"b": name "a\"b" is not a valid VirtualSite name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); write a comma-separated list of <namespace>/<name> or <name>, e.g. "shared/all-sites, edge"`,
		},
		{
			name: "other namespace", value: ptr("a, other/vs"),
			wantErr: field + `: invalid value "a, other/vs": entry 2 "other/vs" is in namespace "other", but a workload may only reference virtual-sites in its own namespace ("ns1") or the shared one ("shared"); reference a VirtualSite in "ns1" or "shared", e.g. "shared/vs"`,
		},
		{
			name: "default shared namespace when another is configured", value: ptr("shared/a"), shared: "common",
			wantErr: field + `: invalid value "shared/a": entry 1 "shared/a" is in namespace "shared", but a workload may only reference virtual-sites in its own namespace ("ns1") or the shared one ("common"); reference a VirtualSite in "ns1" or "common", e.g. "common/a"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ann := map[string]string{"other": "x"}
			if tc.value != nil {
				ann[vk8sv1.AnnotationVirtualSites] = *tc.value
			}
			got, err := ParseVirtualSites(ann, "ns1", tc.shared)
			checkErr(t, err, tc.wantErr)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseVirtualSitesLongNames(t *testing.T) {
	ns := strings.Repeat("n", 64)
	_, err := ParseVirtualSites(map[string]string{vk8sv1.AnnotationVirtualSites: ns + "/a"}, "ns1", "")
	if err == nil || !strings.Contains(err.Error(), "is not a valid namespace name") {
		t.Errorf("64-character namespace: err = %v", err)
	}
	name := strings.Repeat("a", 254)
	_, err = ParseVirtualSites(map[string]string{vk8sv1.AnnotationVirtualSites: name}, "ns1", "")
	if err == nil || !strings.Contains(err.Error(), "is not a valid VirtualSite name") {
		t.Errorf("254-character name: err = %v", err)
	}
	ok := strings.Repeat("a", 253)
	got, err := ParseVirtualSites(map[string]string{vk8sv1.AnnotationVirtualSites: ok}, "ns1", "")
	if err != nil || len(got) != 1 {
		t.Errorf("253-character name: %v, %v", got, err)
	}
}

func TestParseOverrides(t *testing.T) {
	const field = `metadata.annotations["ves.io/overrides"]`
	const fix = `write a comma-separated list of Override names from the workload's namespace, e.g. "canary, blue"`
	for _, tc := range []struct {
		name    string
		value   *string
		want    []string
		wantErr string
	}{
		{name: "absent", value: nil},
		{name: "empty", value: ptr("  ")},
		{name: "ordered", value: ptr("o2, o1"), want: []string{"o2", "o1"}},
		{name: "dotted names", value: ptr("canary.v2,blue"), want: []string{"canary.v2", "blue"}},
		{name: "typographic quotes", value: ptr("“o1, o2”"), want: []string{"o1", "o2"}},
		{name: "quoted entries", value: ptr(`"o1", 'o2', ‘o3’`), want: []string{"o1", "o2", "o3"}},
		{name: "duplicates dropped", value: ptr("o1, o2, o1"), want: []string{"o1", "o2"}},
		{name: "empty entry", value: ptr("o1, , o2"), wantErr: field + `: invalid value "o1, , o2": entry 2 is empty; ` + fix},
		{name: "trailing comma", value: ptr("o1,"), wantErr: field + `: invalid value "o1,": entry 2 is empty (the list ends with a comma); ` + fix},
		{name: "namespace", value: ptr("ns/o1"), wantErr: field + `: invalid value "ns/o1": entry 1 "ns/o1" names a namespace, but Overrides are always taken from the workload's namespace; ` + fix},
		{
			name: "not DNS-1123", value: ptr("o1, Canary"),
			wantErr: field + `: invalid value "o1, Canary": entry 2 "Canary" is not a valid Override name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); ` + fix,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ann := map[string]string{}
			if tc.value != nil {
				ann[vk8sv1.AnnotationOverrides] = *tc.value
			}
			got, err := ParseOverrides(ann)
			checkErr(t, err, tc.wantErr)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseWorkloadFlavor(t *testing.T) {
	const field = `metadata.annotations["ves.io/workload-flavor"]`
	const fix = `name one WorkloadFlavor, e.g. "ves-io-medium" (kubectl get workloadflavors lists them)`
	for _, tc := range []struct {
		name    string
		value   *string
		def     string
		want    string
		wantErr string
	}{
		{name: "absent", want: "ves-io-tiny"},
		{name: "absent, configured default", def: "small", want: "small"},
		{name: "empty", value: ptr(""), want: "ves-io-tiny"},
		{name: "set", value: ptr("ves-io-medium"), want: "ves-io-medium"},
		{name: "quoted", value: ptr(" “ves-io-large” "), want: "ves-io-large"},
		{name: "two flavors", value: ptr("ves-io-tiny, ves-io-large"), wantErr: field + `: invalid value "ves-io-tiny, ves-io-large": a workload has exactly one flavor; ` + fix},
		{name: "namespaced", value: ptr("shared/big"), wantErr: field + `: invalid value "shared/big": "shared/big" names a namespace, but WorkloadFlavors are cluster-scoped; ` + fix},
		{
			name: "not DNS-1123", value: ptr("Medium"),
			wantErr: field + `: invalid value "Medium": "Medium" is not a valid WorkloadFlavor name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); ` + fix,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ann := map[string]string{}
			if tc.value != nil {
				ann[vk8sv1.AnnotationWorkloadFlavor] = *tc.value
			}
			got, err := ParseWorkloadFlavor(ann, tc.def)
			checkErr(t, err, tc.wantErr)
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAnnotationError(t *testing.T) {
	_, err := ParseOverrides(map[string]string{vk8sv1.AnnotationOverrides: "a,,b"})
	var ae *AnnotationError
	if !errors.As(err, &ae) {
		t.Fatalf("err %T is not an *AnnotationError", err)
	}
	if ae.Field != "metadata.annotations[ves.io/overrides]" || ae.Value != "a,,b" || ae.Reason != "entry 2 is empty" {
		t.Errorf("fields: %+v", ae)
	}
	fe := ae.FieldError()
	want := `metadata.annotations[ves.io/overrides]: Invalid value: "a,,b": entry 2 is empty; ` + fixOverrides
	if fe.Error() != want {
		t.Errorf("FieldError:\n got %s\nwant %s", fe.Error(), want)
	}
	if (&AnnotationError{Field: "spec", Value: "v", Reason: "r", Fix: "f"}).Error() != `spec: invalid value "v": r; f` {
		t.Errorf("a path without a key must stay as it is")
	}
}

func TestVirtualSiteRefString(t *testing.T) {
	if got := (VirtualSiteRef{Namespace: "shared", Name: "edge"}).String(); got != "shared/edge" {
		t.Errorf("String = %s", got)
	}
}

// checkErr fails t unless err's message is want (no error when want is empty).
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %s", want)
	case want != "" && err.Error() != want:
		t.Fatalf("error:\n got %s\nwant %s", err, want)
	}
}

func ptr[T any](v T) *T { return &v }

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

package plugin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/fleet"
)

func TestTypeAndName(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		def            string
		typ, name, err string
	}{
		{args: []string{"deployment/web"}, typ: "deployment", name: "web"},
		{args: []string{"deploy", "web"}, typ: "deploy", name: "web"},
		{args: []string{"statefulsets.apps/db"}, typ: "statefulsets.apps", name: "db"},
		{args: []string{"web-0"}, def: "pod", typ: "pod", name: "web-0"},
		{args: []string{"web"}, err: `must have a single resource and name: "web" (e.g. deployment/web)`},
		{args: []string{"deployment/"}, err: "must have a single resource and name"},
		{args: []string{"a/b/c"}, err: "must have a single resource and name"},
		{args: []string{"deployment", "deployment/web"}, err: "no need to specify a resource type as a separate argument"},
	} {
		typ, name, err := typeAndName(tc.args, tc.def)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("typeAndName(%q): error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || typ != tc.typ || name != tc.name {
			t.Errorf("typeAndName(%q) = %q, %q, %v; want %q, %q", tc.args, typ, name, err, tc.typ, tc.name)
		}
	}
}

func TestOutput(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	hb := metav1.NewTime(now.Add(-7 * time.Second))
	rows := []fleet.SiteRow{
		{Name: "site1", Type: vk8sv1.SiteTypeCustomerEdge, Mode: vk8sv1.NodeModePerNode, Connected: metav1.ConditionTrue, Ready: metav1.ConditionTrue,
			Nodes: 3, VirtualNodes: []string{"site1-node1"}, CPU: resource.MustParse("12"), Memory: resource.MustParse("96Gi"), Pods: 10, LastHeartbeatTime: &hb},
		{Name: "a-much-longer-site", Type: vk8sv1.SiteTypeRegionalEdge, Mode: vk8sv1.NodeModeAggregate, Connected: metav1.ConditionFalse, Ready: metav1.ConditionFalse,
			Reason: "Unreachable", CPU: resource.MustParse("0"), Memory: resource.MustParse("0")},
	}
	table := func() *metav1.Table { return fleet.SitesTable(rows, now) }
	for _, tc := range []struct {
		output    string
		noHeaders bool
		want      string
	}{
		{"", false, "" +
			"NAME                 TYPE           MODE        CONNECTED   READY   NODES   CPU   MEMORY   PODS   HEARTBEAT\n" +
			"site1                CustomerEdge   PerNode     True        True    3       12    96Gi     10     7s\n" +
			"a-much-longer-site   RegionalEdge   Aggregate   False       False   0       0     0        0      <unknown>\n"},
		{"", true, "" +
			"site1                CustomerEdge   PerNode     True    True    3     12    96Gi   10    7s\n" +
			"a-much-longer-site   RegionalEdge   Aggregate   False   False   0     0     0      0     <unknown>\n"},
		{"wide", false, "" +
			"NAME                 TYPE           MODE        CONNECTED   READY   NODES   CPU   MEMORY   PODS   HEARTBEAT   VIRTUAL-NODES   VERSION   REASON\n" +
			"site1                CustomerEdge   PerNode     True        True    3       12    96Gi     10     7s          1               <none>    <none>\n" +
			"a-much-longer-site   RegionalEdge   Aggregate   False       False   0       0     0        0      <unknown>   0               <none>    Unreachable\n"},
		{"yaml", false, "items:\n- connected: \"True\"\n  cpu: \"12\"\n"},
		{"json", false, "{\n    \"items\": [\n        {\n            \"name\": \"site1\",\n"},
	} {
		o := &options{output: tc.output, noHeaders: tc.noHeaders}
		var out bytes.Buffer
		if err := o.print(&out, table(), SiteList{Items: rows}); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); !strings.HasPrefix(got, tc.want) || (tc.output != "json" && tc.output != "yaml" && got != tc.want) {
			t.Errorf("-o %q --no-headers=%v:\n%s\nwant:\n%s", tc.output, tc.noHeaders, got, tc.want)
		}
	}
	o := &options{output: "jsonpath={.items}"}
	if err := o.validateOutput(tableFormats); err == nil || err.Error() != `unable to match a printer suitable for the output format "jsonpath={.items}", allowed formats are: json,wide,yaml` {
		t.Errorf("-o jsonpath: %v, want kubectl's refusal", err)
	}
}

func TestConnectionFlags(t *testing.T) {
	// kubectl's names, so that what users pass after `kubectl vk8s` means what it means
	// to kubectl.
	cmd := NewCommand("kubectl", "")
	for _, name := range []string{"kubeconfig", "context", "namespace", "cluster", "user", "server", "token", "as", "request-timeout"} {
		if cmd.PersistentFlags().Lookup(name) == nil {
			t.Errorf("no --%s", name)
		}
	}
	if f := cmd.PersistentFlags().ShorthandLookup("n"); f == nil || f.Name != "namespace" {
		t.Errorf("-n is %v, want --namespace", f)
	}
}

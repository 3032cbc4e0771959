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

package main

import (
	"bytes"
	"strings"
	"testing"

	vktrace "github.com/virtual-kubelet/virtual-kubelet/trace"
	vkotel "github.com/virtual-kubelet/virtual-kubelet/trace/opentelemetry"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || out != "vk8s "+version+"\n" {
		t.Fatalf("version: %q, %v", out, err)
	}
}

func TestLabCommandsOnALabThatIsNotUp(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"lab", "kubeconfig", "--dir", dir},
		{"lab", "kubeconfig", "--dir", dir, "--site", "site2"},
		{"lab", "status", "--dir", dir},
	} {
		_, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), "vk8s lab up --name lab") {
			t.Errorf("%v: error %v, want one that says how to bring the lab up", args, err)
		}
	}
	if _, err := run(t, "lab", "up", "--name", "Bad_Name"); err == nil || !strings.Contains(err.Error(), `lab name "Bad_Name"`) {
		t.Errorf("lab up with a bad name: %v", err)
	}
}

func TestSetupTracing(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	stop, err := setupTracing(t.Context(), "vk8s-test")
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		t.Fatal("spans are recorded without an endpoint")
	}
	// An endpoint turns the exporter on; it connects lazily, so nothing needs to listen.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	stop, err = setupTracing(t.Context(), "vk8s-test")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); !ok {
		t.Fatalf("tracer provider %T, want the SDK's", otel.GetTracerProvider())
	}
	if _, ok := vktrace.T.(vkotel.Adapter); !ok {
		t.Errorf("virtual-kubelet's tracer is %T, want the OpenTelemetry adapter", vktrace.T)
	}
}

func TestKubectlPlugin(t *testing.T) {
	for arg0, want := range map[string]bool{
		"kubectl-vk8s": true, "/usr/local/bin/kubectl-vk8s": true, "kubectl-vk8s.exe": true,
		"vk8s": false, "/bin/vk8s": false, "kubectl-vk8s-sites": false,
	} {
		if got := isKubectlPlugin(arg0); got != want {
			t.Errorf("isKubectlPlugin(%q) = %v, want %v", arg0, got, want)
		}
	}
	out, err := run(t, "kubectl", "--help")
	if err != nil || !strings.Contains(out, "vk8s kubectl [command]") || !strings.Contains(out, "explain") || !strings.Contains(out, "--context") {
		t.Errorf("vk8s kubectl --help: %v\n%s", err, out)
	}
	// Each command takes its own formats; nothing reaches a cluster here.
	t.Setenv("KUBECONFIG", t.TempDir()+"/none")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sites", "-o", "table"}, `output format "table", allowed formats are: json,wide,yaml`},
		{[]string{"explain", "web-0", "-o", "wide"}, `output format "wide", allowed formats are: json,yaml`},
		{[]string{"sites", "-o", "wide"}, "no configuration has been provided"},
		{[]string{"status", "web"}, "must have a single resource and name"},
	} {
		if _, err := run(t, append([]string{"kubectl"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vk8s kubectl %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

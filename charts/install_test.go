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
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vk8s-io/vk8s/api/crds"
	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
)

// TestInstallIntoAnEmptyCluster installs the chart as docs/install.md says, with its
// defaults, into an API server that has never seen vk8s: an etcd and a kube-apiserver of its
// own (controller-runtime's envtest with the binaries of hack/tools.sh), not the lab's host,
// which has the CRDs before its chart (e2e TestChart installs there, under the webhook).
//
// Helm cannot hold objects of CRDs that the same install creates, so the built-in
// WorkloadFlavors of a first install are a post-install hook: they must be there after the
// install, the next upgrade must adopt them as objects of the release, and uninstall must
// leave only the CRDs (crds.keep). The API server accepts every object: no webhook answers
// here, so the flavors also prove that admission lets the built-in ones through without one.
//
// Then, with the CRDs of cert-manager and the Prometheus Operator added (from their Go
// modules, thirdPartyCRDs), it installs again with every optional part on (cert-manager TLS,
// ServiceMonitors, the dashboard): the API server validates the chart's Certificates,
// Issuers and ServiceMonitors against their real schemas, and uninstall leaves none of them.
// Nothing runs cert-manager's controllers here: that its CA injector and
// certificate serve admissions is not tested.
func TestInstallIntoAnEmptyCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd and a kube-apiserver")
	}
	log.SetLogger(testr.New(t))
	env := &envtest.Environment{BinaryAssetsDirectory: filepath.Dir(helmBin(t)), ControlPlaneStartTimeout: time.Minute}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start an empty API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	admin, err := env.AddUser(envtest.User{Name: "chart-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := scheme.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	run := func(args ...string) string {
		t.Helper()
		args = append(args, "--kubeconfig", kc)
		out, err := helm(t, args...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	present := func(r rendered, when string) {
		t.Helper()
		for _, o := range r {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopy()); err != nil {
				t.Errorf("%s %s %s: %v", o.GetKind(), client.ObjectKeyFromObject(o), when, err)
			}
		}
	}
	gone := func(r rendered, when string) {
		t.Helper()
		for _, o := range r {
			if o.GetKind() == "CustomResourceDefinition" {
				continue
			}
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopy()); !apierrors.IsNotFound(err) {
				t.Errorf("%s %s %s: %v, want it gone", o.GetKind(), client.ObjectKeyFromObject(o), when, err)
			}
		}
	}
	builtin := overrides.BuiltinFlavors()
	flavors := func(when string) map[string]*vk8sv1.WorkloadFlavor {
		t.Helper()
		got := map[string]*vk8sv1.WorkloadFlavor{}
		for _, want := range builtin {
			f := &vk8sv1.WorkloadFlavor{}
			if err := c.Get(ctx, client.ObjectKey{Name: want.Name}, f); err != nil {
				t.Errorf("built-in WorkloadFlavor %s %s: %v", want.Name, when, err)
				continue
			}
			if !apiequality.Semantic.DeepEqual(f.Spec, want.Spec) {
				t.Errorf("WorkloadFlavor %s %s: %+v, want %+v", want.Name, when, f.Spec, want.Spec)
			}
			got[f.Name] = f
		}
		return got
	}

	if out := run("install", release, chart, "--namespace", namespace, "--create-namespace"); !strings.Contains(out, "STATUS: deployed") {
		t.Fatalf("helm install: %s", out)
	}
	installed := decode(t, run("get", "manifest", release, "--namespace", namespace))
	present(installed, "of the release after helm install")
	hooks := decode(t, run("get", "hooks", release, "--namespace", namespace))
	if len(hooks.all("WorkloadFlavor")) != len(builtin) || len(hooks) != len(builtin) {
		t.Errorf("%d hooks in the first install (%d flavors), want the %d built-in flavors", len(hooks), len(hooks.all("WorkloadFlavor")), len(builtin))
	}
	flavors("after helm install")

	// The upgrade finds the CRD: the flavors become objects of the release, adopted (Helm
	// refuses an object that carries another release's metadata), and no longer hooks.
	run("upgrade", release, chart, "--namespace", namespace)
	upgraded := decode(t, run("get", "manifest", release, "--namespace", namespace))
	if n := len(upgraded.all("WorkloadFlavor")); n != len(builtin) {
		t.Errorf("%d WorkloadFlavors in the release after helm upgrade, want %d", n, len(builtin))
	}
	for name, f := range flavors("after helm upgrade") {
		if hook := f.Annotations["helm.sh/hook"]; hook != "" {
			t.Errorf("WorkloadFlavor %s after helm upgrade is still a hook (%s)", name, hook)
		}
	}

	run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m")
	gone(append(installed, upgraded...), "after helm uninstall")
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range all {
		if err := c.Get(ctx, client.ObjectKey{Name: want.Name}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
			t.Errorf("CRD %s after helm uninstall (crds.keep): %v", want.Name, err)
		}
	}

	for _, crd := range thirdPartyCRDs(t) {
		if err := c.Create(ctx, crd); err != nil {
			t.Fatalf("CRD %s: %v", crd.Name, err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(crd), got); err != nil {
				return false, err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			t.Fatalf("CRD %s established: %v", crd.Name, err)
		}
	}
	run("install", release, chart, "--namespace", namespace, "--set", "webhook.certManager.enabled=true",
		"--set", "provider.serviceMonitor.enabled=true", "--set", "webhook.serviceMonitor.enabled=true", "--set", "dashboard.enabled=true")
	full := decode(t, run("get", "manifest", release, "--namespace", namespace))
	present(full, "of the release with every part on")
	// The chart's own CA (no issuerRef): a self-signed Issuer, the CA's Certificate, the CA
	// Issuer and the serving Certificate.
	for kind, n := range map[string]int{"Certificate": 2, "Issuer": 2, "ServiceMonitor": 2, "ConfigMap": 1, "WorkloadFlavor": len(builtin), "CustomResourceDefinition": len(all)} {
		if got := len(full.all(kind)); got != n {
			t.Errorf("%d %s in the release with every part on, want %d", got, kind, n)
		}
	}
	// crds.keep=false is not tried here: a CRD that Helm just updated (adopted) can stay
	// Terminating for minutes (InstanceDeletionFailed: storage is (re)initializing, an API
	// server matter), which chart_test.go's rendering covers without the wait.
	run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m")
	gone(full, "after helm uninstall")
}

// Versions of the projects whose CRDs the chart's optional parts use; their Go modules
// carry the CRDs (the Go module proxy is the one download a CI machine is sure to have).
const (
	certManagerModule        = "github.com/cert-manager/cert-manager@v1.19.1"
	prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
)

// thirdPartyCRDs returns the CRDs of cert-manager's Certificate and Issuer and of the
// Prometheus Operator's ServiceMonitor, read from their modules (go mod download).
func thirdPartyCRDs(t *testing.T) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	var out []*apiextensionsv1.CustomResourceDefinition
	for module, files := range map[string][]string{
		certManagerModule:        {"deploy/crds/cert-manager.io_certificates.yaml", "deploy/crds/cert-manager.io_issuers.yaml"},
		prometheusOperatorModule: {"example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"},
	} {
		cmd := exec.CommandContext(t.Context(), "go", "mod", "download", "-json", module)
		cmd.Dir = t.TempDir() // outside the project: not one of its modules
		js, err := cmd.Output()
		if err != nil {
			t.Fatalf("go mod download %s: %v", module, err)
		}
		var dl struct{ Dir string }
		if err := json.Unmarshal(js, &dl); err != nil || dl.Dir == "" {
			t.Fatalf("go mod download %s: %v: %s", module, err, js)
		}
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(dl.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := utilyaml.Unmarshal(data, crd); err != nil {
				t.Fatalf("%s of %s: %v", f, module, err)
			}
			out = append(out, crd)
		}
	}
	return out
}

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

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/vk8s-io/vk8s/api/crds"
	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
)

// TestChartFreshInstall installs charts/vk8s as docs/install.md says, with its defaults,
// into an API server that has never seen vk8s: an etcd and a kube-apiserver of their own
// (controller-runtime's envtest with the binaries of hack/tools.sh), not the lab's host,
// which has the CRDs before its chart. Helm cannot hold objects of CRDs that the same
// install creates, so the built-in WorkloadFlavors of a first install are a post-install
// hook; it checks that they are there after the install, that the next upgrade adopts them
// as objects of the release, and that uninstall leaves only the CRDs (crds.keep).
func TestChartFreshInstall(t *testing.T) {
	skipShort(t)
	env := &envtest.Environment{BinaryAssetsDirectory: os.Getenv("VK8S_TOOLS_DIR"), ControlPlaneStartTimeout: time.Minute}
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
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	run := func(args ...string) string {
		t.Helper()
		out, err := helmAt(ctx, kc, filepath.Join(dir, "helm"), args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	const release, ns = "vk8s", "vk8s-system"

	if out := run("install", release, "../charts/vk8s", "--namespace", ns, "--create-namespace"); !strings.Contains(out, "STATUS: deployed") {
		t.Fatalf("helm install: %s", out)
	}
	for _, o := range decodeObjects(t, run("get", "manifest", release, "--namespace", ns)) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopy()); err != nil {
			t.Errorf("%s %s of the release: %v", o.GetKind(), client.ObjectKeyFromObject(o), err)
		}
	}
	hooks := decodeObjects(t, run("get", "hooks", release, "--namespace", ns))
	if n := len(hooks); n != len(overrides.BuiltinFlavors()) {
		t.Errorf("%d hooks in the first install, want the %d built-in flavors", n, len(overrides.BuiltinFlavors()))
	}
	flavors := func(when string) map[string]*vk8sv1.WorkloadFlavor {
		t.Helper()
		got := map[string]*vk8sv1.WorkloadFlavor{}
		for _, want := range overrides.BuiltinFlavors() {
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
	flavors("after helm install")

	// The upgrade finds the CRD: the flavors become objects of the release, adopted (Helm
	// refuses an object of another owner), no longer hooks.
	run("upgrade", release, "../charts/vk8s", "--namespace", ns)
	held := 0
	for _, o := range decodeObjects(t, run("get", "manifest", release, "--namespace", ns)) {
		if o.GetKind() == "WorkloadFlavor" {
			held++
		}
	}
	if held != len(overrides.BuiltinFlavors()) {
		t.Errorf("%d WorkloadFlavors in the release after helm upgrade, want %d", held, len(overrides.BuiltinFlavors()))
	}
	for name, f := range flavors("after helm upgrade") {
		if hook := f.Annotations["helm.sh/hook"]; hook != "" {
			t.Errorf("WorkloadFlavor %s after helm upgrade is still a hook (%s)", name, hook)
		}
	}

	run("uninstall", release, "--namespace", ns, "--wait", "--timeout", "2m")
	for _, f := range overrides.BuiltinFlavors() {
		if err := c.Get(ctx, client.ObjectKey{Name: f.Name}, &vk8sv1.WorkloadFlavor{}); !apierrors.IsNotFound(err) {
			t.Errorf("WorkloadFlavor %s after helm uninstall: %v, want it gone with the release", f.Name, err)
		}
	}
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range all {
		if err := c.Get(ctx, client.ObjectKey{Name: want.Name}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
			t.Errorf("CRD %s after helm uninstall (crds.keep): %v", want.Name, err)
		}
	}
	left, err := leftOfRelease(ctx, c, release)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("left after helm uninstall: %v", left)
	}
}

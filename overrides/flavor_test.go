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
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func flavor(cpu, memory string) *vk8sv1.WorkloadFlavor {
	return &vk8sv1.WorkloadFlavor{
		ObjectMeta: metav1.ObjectMeta{Name: "f"},
		Spec:       vk8sv1.WorkloadFlavorSpec{CPU: resource.MustParse(cpu), Memory: resource.MustParse(memory)},
	}
}

func TestBuiltinFlavors(t *testing.T) {
	want := map[string][2]string{
		"ves-io-tiny":   {"100m", "256Mi"},
		"ves-io-medium": {"250m", "512Mi"},
		"ves-io-large":  {"1", "2Gi"},
	}
	got := BuiltinFlavors()
	if len(got) != len(want) {
		t.Fatalf("got %d flavors, want %d", len(got), len(want))
	}
	for _, f := range got {
		w, ok := want[f.Name]
		if !ok {
			t.Errorf("unexpected flavor %s", f.Name)
			continue
		}
		if f.Spec.CPU.String() != w[0] || f.Spec.Memory.String() != w[1] {
			t.Errorf("%s = %s/%s, want %s/%s", f.Name, f.Spec.CPU.String(), f.Spec.Memory.String(), w[0], w[1])
		}
		if f.APIVersion != "vk8s.io/v1alpha1" || f.Kind != "WorkloadFlavor" {
			t.Errorf("%s: type %s %s", f.Name, f.APIVersion, f.Kind)
		}
		if errs := ValidateFlavor(&f); len(errs) > 0 {
			t.Errorf("%s: %v", f.Name, errs)
		}
	}
	if got[0].Name != DefaultWorkloadFlavor {
		t.Errorf("the default flavor %s comes first, got %s", DefaultWorkloadFlavor, got[0].Name)
	}
	// Each call returns new objects: callers may change them.
	got[0].Spec.CPU = resource.MustParse("5")
	if BuiltinFlavors()[0].Spec.CPU.String() != "100m" {
		t.Errorf("BuiltinFlavors shares state between calls")
	}
}

func TestFlavorResources(t *testing.T) {
	for _, tc := range []struct {
		cpu, memory       string
		reqCPU, reqMemory string
	}{
		{"100m", "256Mi", "25m", "128Mi"},
		{"250m", "512Mi", "62m", "256Mi"}, // 62.5m rounds down to whole millicores
		{"1", "2Gi", "250m", "1Gi"},
		{"2", "1G", "500m", "500M"},
		{"4m", "1.5Gi", "1m", "768Mi"},
		{"0.5", "257", "125m", "128"}, // an odd byte count rounds down
		{"3", "1025", "750m", "512"},
	} {
		t.Run(tc.cpu+"/"+tc.memory, func(t *testing.T) {
			r, err := FlavorResources(flavor(tc.cpu, tc.memory))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Limits.Cpu(); got.Cmp(resource.MustParse(tc.cpu)) != 0 {
				t.Errorf("limit cpu = %s", got)
			}
			if got := r.Limits.Memory(); got.Cmp(resource.MustParse(tc.memory)) != 0 {
				t.Errorf("limit memory = %s", got)
			}
			if got := r.Requests.Cpu().String(); got != tc.reqCPU {
				t.Errorf("request cpu = %s, want %s", got, tc.reqCPU)
			}
			if got := r.Requests.Memory().String(); got != tc.reqMemory {
				t.Errorf("request memory = %s, want %s", got, tc.reqMemory)
			}
		})
	}
}

func TestValidateFlavor(t *testing.T) {
	for _, tc := range []struct {
		name, cpu, memory string
		want              []string
	}{
		{name: "valid", cpu: "4m", memory: "2"},
		{
			name: "cpu finer than millicores", cpu: "100500u", memory: "1Gi",
			want: []string{`spec.cpu: Invalid value: "100500u": must be a whole number of millicores, e.g. 100m; Kubernetes does not allow finer CPU amounts`},
		},
		{
			name: "request would be zero", cpu: "3m", memory: "1",
			want: []string{
				`spec.cpu: Invalid value: "3m": must be at least 4m: the request, 25% of it, must be at least 1m`,
				`spec.memory: Invalid value: "1": must be at least 2 bytes: the request, 50% of it, must be at least 1 byte; memory is usually written as 256Mi`,
			},
		},
		{
			name: "zero", cpu: "0", memory: "0",
			want: []string{
				`spec.cpu: Invalid value: "0": must be at least 4m: the request, 25% of it, must be at least 1m`,
				`spec.memory: Invalid value: "0": must be at least 2 bytes: the request, 50% of it, must be at least 1 byte; memory is usually written as 256Mi`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErrs(t, ValidateFlavor(flavor(tc.cpu, tc.memory)), tc.want)
		})
	}
	if _, err := FlavorResources(flavor("0", "1Gi")); err == nil ||
		err.Error() != `workload flavor f: spec.cpu: Invalid value: "0": must be at least 4m: the request, 25% of it, must be at least 1m` {
		t.Errorf("FlavorResources of an invalid flavor: %v", err)
	}
}

// manifest returns a pod spec whose containers say their own resources.
func manifest() *corev1.PodSpec {
	res := func(cpu, mem string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{
			Limits: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
				corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"),
				"example.com/gpu":               resource.MustParse("1"),
			},
			Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
				corev1.ResourceEphemeralStorage: resource.MustParse("500Mi"),
			},
			Claims: []corev1.ResourceClaim{{Name: "gpu"}},
		}
	}
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.PodSpec{
		InitContainers: []corev1.Container{
			{Name: "init", Image: "init", Resources: res("2", "4Gi")},
			{Name: "sidecar", Image: "proxy", RestartPolicy: &always},
		},
		Containers: []corev1.Container{
			{Name: "app", Image: "app", Resources: res("3", "8Gi")},
			{Name: "bare", Image: "bare"},
		},
		Resources: &corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("16Gi")},
		},
	}
}

func TestApplyFlavorRegionalEdge(t *testing.T) {
	spec := manifest()
	orig := spec.DeepCopy()
	got, err := ApplyFlavor(spec, flavor("100m", "256Mi"), vk8sv1.SiteTypeRegionalEdge)
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(spec, orig) {
		t.Errorf("ApplyFlavor modified its argument")
	}
	all := append(append([]corev1.Container{}, got.InitContainers...), got.Containers...)
	if len(all) != 4 {
		t.Fatalf("got %d containers", len(all))
	}
	for _, c := range all {
		r := c.Resources
		for _, q := range []struct {
			what string
			got  *resource.Quantity
			want string
		}{
			{"limits.cpu", r.Limits.Cpu(), "100m"},
			{"limits.memory", r.Limits.Memory(), "256Mi"},
			{"requests.cpu", r.Requests.Cpu(), "25m"},
			{"requests.memory", r.Requests.Memory(), "128Mi"},
		} {
			if q.got.String() != q.want {
				t.Errorf("%s: %s = %s, want %s", c.Name, q.what, q.got, q.want)
			}
		}
	}
	// Other resources stay as the manifest had them.
	for i, c := range []corev1.Container{got.InitContainers[0], got.Containers[0]} {
		want := []corev1.Container{orig.InitContainers[0], orig.Containers[0]}[i].Resources
		r := c.Resources
		if len(r.Limits) != 4 || len(r.Requests) != 3 {
			t.Errorf("%s: resources %v", c.Name, r)
		}
		for _, name := range []corev1.ResourceName{corev1.ResourceEphemeralStorage, "example.com/gpu"} {
			if q, w := r.Limits[name], want.Limits[name]; q.Cmp(w) != 0 {
				t.Errorf("%s: limits[%s] = %s, want %s", c.Name, name, q.String(), w.String())
			}
		}
		if q := r.Requests[corev1.ResourceEphemeralStorage]; q.String() != "500Mi" {
			t.Errorf("%s: requests.ephemeral-storage = %s", c.Name, q.String())
		}
		if len(r.Claims) != 1 {
			t.Errorf("%s: claims dropped", c.Name)
		}
	}
	if got.Resources != nil {
		t.Errorf("pod-level cpu and memory must be dropped, got %v", got.Resources)
	}
	// The quantities are not shared between containers.
	q := got.Containers[0].Resources.Limits[corev1.ResourceCPU]
	q.Add(resource.MustParse("1"))
	if got.Containers[1].Resources.Limits.Cpu().String() != "100m" {
		t.Errorf("containers share quantities")
	}
}

func TestApplyFlavorPodLevelResources(t *testing.T) {
	spec := manifest()
	spec.Resources.Limits["hugepages-2Mi"] = resource.MustParse("1Gi")
	got, err := ApplyFlavor(spec, flavor("1", "2Gi"), vk8sv1.SiteTypeRegionalEdge)
	if err != nil {
		t.Fatal(err)
	}
	want := corev1.ResourceList{"hugepages-2Mi": resource.MustParse("1Gi")}
	if got.Resources == nil || !apiequality.Semantic.DeepEqual(got.Resources.Limits, want) || got.Resources.Requests != nil {
		t.Errorf("pod-level resources = %v, want only limits %v", got.Resources, want)
	}
}

func TestApplyFlavorCustomerEdge(t *testing.T) {
	for _, siteType := range []vk8sv1.SiteType{vk8sv1.SiteTypeCustomerEdge, ""} {
		for _, f := range []*vk8sv1.WorkloadFlavor{flavor("100m", "256Mi"), nil} {
			spec := manifest()
			want, _ := json.Marshal(spec)
			got, err := ApplyFlavor(spec, f, siteType)
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(got)
			if string(gotJSON) != string(want) {
				t.Errorf("type %q: manifest changed:\n got %s\nwant %s", siteType, gotJSON, want)
			}
			if got == spec {
				t.Errorf("type %q: the result must be a copy", siteType)
			}
		}
	}
}

func TestApplyFlavorErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		flavor   *vk8sv1.WorkloadFlavor
		siteType vk8sv1.SiteType
		want     string
	}{
		{"unknown site type", flavor("1", "1Gi"), "Edge", `apply workload flavor: unknown site type "Edge"`},
		{"no flavor", nil, vk8sv1.SiteTypeRegionalEdge, `apply workload flavor: a RegionalEdge site needs a flavor`},
		{"invalid flavor", flavor("1", "1"), vk8sv1.SiteTypeRegionalEdge,
			`apply workload flavor: workload flavor f: spec.memory: Invalid value: "1": must be at least 2 bytes: the request, 50% of it, must be at least 1 byte; memory is usually written as 256Mi`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ApplyFlavor(manifest(), tc.flavor, tc.siteType)
			checkErr(t, err, tc.want)
		})
	}
}

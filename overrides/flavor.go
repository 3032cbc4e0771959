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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// The built-in flavors that the chart and the lab install.
const (
	FlavorTiny   = "ves-io-tiny"
	FlavorMedium = "ves-io-medium"
	FlavorLarge  = "ves-io-large"
)

// Requests are these shares of the flavor's limits, in percent.
const (
	cpuRequestPercent    = 25
	memoryRequestPercent = 50
)

// BuiltinFlavors returns the built-in WorkloadFlavors, ready to create: ves-io-tiny (100m,
// 256Mi), ves-io-medium (250m, 512Mi) and ves-io-large (1, 2Gi). Each call returns new
// objects.
func BuiltinFlavors() []vk8sv1.WorkloadFlavor {
	flavor := func(name, cpu, memory string) vk8sv1.WorkloadFlavor {
		return vk8sv1.WorkloadFlavor{
			TypeMeta:   metav1.TypeMeta{APIVersion: vk8sv1.GroupVersion.String(), Kind: "WorkloadFlavor"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       vk8sv1.WorkloadFlavorSpec{CPU: resource.MustParse(cpu), Memory: resource.MustParse(memory)},
		}
	}
	return []vk8sv1.WorkloadFlavor{
		flavor(FlavorTiny, "100m", "256Mi"),
		flavor(FlavorMedium, "250m", "512Mi"),
		flavor(FlavorLarge, "1", "2Gi"),
	}
}

// ValidateFlavor checks that a WorkloadFlavor's limits give every container a non-zero
// request: at least 4m of CPU in whole millicores, and at least 2 bytes of memory.
func ValidateFlavor(f *vk8sv1.WorkloadFlavor) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	cpu, mem := f.Spec.CPU, f.Spec.Memory
	switch {
	case cpu.Cmp(*resource.NewMilliQuantity(cpu.MilliValue(), resource.DecimalSI)) != 0:
		errs = append(errs, field.Invalid(spec.Child("cpu"), cpu.String(), "must be a whole number of millicores, e.g. 100m; Kubernetes does not allow finer CPU amounts"))
	case cpu.MilliValue()*cpuRequestPercent/100 < 1:
		errs = append(errs, field.Invalid(spec.Child("cpu"), cpu.String(), "must be at least 4m: the request, 25% of it, must be at least 1m"))
	}
	if mem.Value()*memoryRequestPercent/100 < 1 {
		errs = append(errs, field.Invalid(spec.Child("memory"), mem.String(), "must be at least 2 bytes: the request, 50% of it, must be at least 1 byte; memory is usually written as 256Mi"))
	}
	return errs
}

// FlavorResources returns the resources a flavor gives each container: limits are the
// flavor's, the CPU request is 25% of the CPU limit rounded down to whole millicores, and
// the memory request is 50% of the memory limit rounded down to whole bytes, written in
// the limit's format (256Mi gives 128Mi).
func FlavorResources(f *vk8sv1.WorkloadFlavor) (corev1.ResourceRequirements, error) {
	if errs := ValidateFlavor(f); len(errs) > 0 {
		return corev1.ResourceRequirements{}, fmt.Errorf("workload flavor %s: %w", f.Name, errs.ToAggregate())
	}
	cpu, mem := f.Spec.CPU, f.Spec.Memory
	return corev1.ResourceRequirements{
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    cpu.DeepCopy(),
			corev1.ResourceMemory: mem.DeepCopy(),
		},
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(cpu.MilliValue()*cpuRequestPercent/100, resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(mem.Value()*memoryRequestPercent/100, mem.Format),
		},
	}, nil
}

// ApplyFlavor returns the pod spec to run on a site of type siteType (empty means
// CustomerEdge, the API's default). It never modifies spec.
//
// On RegionalEdge sites every container and init container gets the flavor's CPU and
// memory (FlavorResources) in place of the manifest's; other resources (ephemeral-storage,
// extended resources, claims) stay as written. Pod-level CPU and memory (spec.resources)
// are dropped there, since the flavor sizes containers and a pod-level limit written for
// other sizes could not hold them. On CustomerEdge sites the result equals spec, and
// flavor may be nil.
func ApplyFlavor(spec *corev1.PodSpec, flavor *vk8sv1.WorkloadFlavor, siteType vk8sv1.SiteType) (*corev1.PodSpec, error) {
	out := spec.DeepCopy()
	switch siteType {
	case "", vk8sv1.SiteTypeCustomerEdge:
		return out, nil
	case vk8sv1.SiteTypeRegionalEdge:
	default:
		return nil, fmt.Errorf("apply workload flavor: unknown site type %q", siteType)
	}
	if flavor == nil {
		return nil, fmt.Errorf("apply workload flavor: a %s site needs a flavor", siteType)
	}
	res, err := FlavorResources(flavor)
	if err != nil {
		return nil, fmt.Errorf("apply workload flavor: %w", err)
	}
	for _, cs := range [][]corev1.Container{out.InitContainers, out.Containers} {
		for i := range cs {
			r := &cs[i].Resources
			r.Limits = withCPUMemory(r.Limits, res.Limits)
			r.Requests = withCPUMemory(r.Requests, res.Requests)
		}
	}
	if r := out.Resources; r != nil {
		r.Limits = withoutCPUMemory(r.Limits)
		r.Requests = withoutCPUMemory(r.Requests)
		if len(r.Limits) == 0 && len(r.Requests) == 0 && len(r.Claims) == 0 {
			out.Resources = nil
		}
	}
	return out, nil
}

// withCPUMemory returns l with its CPU and memory taken from from.
func withCPUMemory(l, from corev1.ResourceList) corev1.ResourceList {
	if l == nil {
		l = corev1.ResourceList{}
	}
	l[corev1.ResourceCPU] = from[corev1.ResourceCPU].DeepCopy()
	l[corev1.ResourceMemory] = from[corev1.ResourceMemory].DeepCopy()
	return l
}

// withoutCPUMemory returns l without CPU and memory; nil when nothing is left.
func withoutCPUMemory(l corev1.ResourceList) corev1.ResourceList {
	delete(l, corev1.ResourceCPU)
	delete(l, corev1.ResourceMemory)
	if len(l) == 0 {
		return nil
	}
	return l
}

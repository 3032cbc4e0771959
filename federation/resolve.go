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

package federation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/placement"
)

// Federation is what a workload (or a bare pod) runs on and with: the resolved annotations
// of SPEC §3, or its namespace's defaults.
type Federation struct {
	// VirtualKubernetes is the namespace's.
	VirtualKubernetes *vk8sv1.VirtualKubernetes
	// Sites are the selected Sites' names, sorted; SiteTypes their types.
	Sites     []string
	SiteTypes map[string]vk8sv1.SiteType
	// OverrideNames is ves.io/overrides in order; Overrides holds those that exist.
	OverrideNames []string
	Overrides     map[string]*vk8sv1.Override
	FlavorName    string
	// Flavor is nil when the flavor named does not exist.
	Flavor *vk8sv1.WorkloadFlavor
	// Warnings are references that no longer resolve, when they are not rejections.
	Warnings []string

	// replicas caches OverrideReplicas.
	replicas map[string]int32
}

// Resolver reads the objects that federate workloads (VirtualKubernetes, VirtualSites,
// Sites, Overrides, WorkloadFlavors) from a cache. Admission and the controllers share
// one, so they agree on every workload's sites.
type Resolver struct {
	cache         client.Reader
	live          client.Reader
	shared        string
	defaultFlavor string
}

// ReadMissesFrom makes r read an object its cache does not hold from live (the API server)
// before it calls it missing: `kubectl apply -f` of a VirtualSite, Override or flavor and
// the workload that names it sends the workload a moment after the object, often before
// the cache has it. It returns r.
func (r *Resolver) ReadMissesFrom(live client.Reader) *Resolver {
	r.live = live
	return r
}

// get reads key into obj from the cache, or from the live reader when the cache has no
// such object.
func (r *Resolver) get(ctx context.Context, key client.ObjectKey, obj client.Object) error {
	err := r.cache.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && r.live != nil {
		return r.live.Get(ctx, key, obj)
	}
	return err
}

// NewResolver returns a resolver over cache; sharedNamespace and defaultFlavor are the
// installation's (empty: package overrides' defaults).
func NewResolver(cache client.Reader, sharedNamespace, defaultFlavor string) *Resolver {
	return &Resolver{cache: cache, shared: sharedNamespace, defaultFlavor: defaultFlavor}
}

// Strictness says, per annotation key, whether a reference to an object that does not
// exist is a rejection (the annotation is new or changed) or a warning (an existing
// workload whose Override, say, was deleted since: its pods must still be admitted).
type Strictness func(key string) bool

// Strict rejects every reference that does not resolve.
func Strict(string) bool { return true }

// Lenient turns every reference that does not resolve into a warning.
func Lenient(string) bool { return false }

// VirtualKubernetes returns the namespace's VirtualKubernetes, or nil when it is not a
// vK8s namespace. With more than one (a race of two creations), the oldest counts.
func (r *Resolver) VirtualKubernetes(ctx context.Context, namespace string) (*vk8sv1.VirtualKubernetes, error) {
	var list vk8sv1.VirtualKubernetesList
	// Read only: no copies of the cache's objects.
	if err := r.cache.List(ctx, &list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list VirtualKubernetes in %s: %w", namespace, err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	slices.SortFunc(list.Items, func(a, b vk8sv1.VirtualKubernetes) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return &list.Items[0], nil
}

// Resolve resolves the annotations of an object in namespace. It returns nil without
// error when the namespace has no VirtualKubernetes, and a *Rejection when the annotations
// (or, under strict, the objects they name) are wrong.
func (r *Resolver) Resolve(ctx context.Context, namespace string, annotations map[string]string, strict Strictness) (*Federation, error) {
	vk, err := r.VirtualKubernetes(ctx, namespace)
	if err != nil || vk == nil {
		return nil, err
	}
	f := &Federation{VirtualKubernetes: vk, SiteTypes: map[string]vk8sv1.SiteType{}}
	if err := r.resolveSites(ctx, f, namespace, annotations, strict); err != nil {
		return nil, err
	}
	if err := r.resolveOverrides(ctx, f, namespace, annotations, strict); err != nil {
		return nil, err
	}
	if err := r.resolveFlavor(ctx, f, annotations, strict); err != nil {
		return nil, err
	}
	return f, nil
}

func (r *Resolver) resolveSites(ctx context.Context, f *Federation, namespace string, annotations map[string]string, strict Strictness) error {
	refs, err := overrides.ParseVirtualSites(annotations, namespace, r.shared)
	if err != nil {
		return Reject(ReasonAnnotation, err)
	}
	fieldPath, value := AnnotationPath(vk8sv1.AnnotationVirtualSites), annotations[vk8sv1.AnnotationVirtualSites]
	fix := "create the VirtualSite, or name an existing one (kubectl get virtualsites -A lists them)"
	isStrict := strict(vk8sv1.AnnotationVirtualSites)
	if len(refs) == 0 {
		vk := f.VirtualKubernetes
		ref, ok := overrides.ParseVirtualSiteRef(vk.Spec.VirtualSite, namespace)
		if !ok {
			return Invalid(ReasonVirtualSite, "VirtualKubernetes "+vk.Name+" spec.virtualSite", vk.Spec.VirtualSite,
				"not a virtual-site reference", "write <namespace>/<name> or <name>")
		}
		refs = []overrides.VirtualSiteRef{ref}
		fieldPath, value = fmt.Sprintf("VirtualKubernetes %s spec.virtualSite (the namespace's default virtual-site)", vk.Name), vk.Spec.VirtualSite
		fix = "create the VirtualSite, or set ves.io/virtual-sites on the workload"
	}
	var siteList vk8sv1.SiteList
	// Read only: a fleet of thousands of Sites is not copied per admission.
	if err := r.cache.List(ctx, &siteList, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list Sites: %w", err)
	}
	selected := map[string]bool{}
	for _, ref := range refs {
		vs := &vk8sv1.VirtualSite{}
		if err := r.get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, vs); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("get VirtualSite %s: %w", ref, err)
			}
			why := fmt.Sprintf("VirtualSite %s does not exist", ref)
			if isStrict {
				return Invalid(ReasonVirtualSite, fieldPath, value, why, fix)
			}
			f.Warnings = append(f.Warnings, fmt.Sprintf("%s: %s; the workload runs on the sites of the others", fieldPath, why))
			continue
		}
		rule, err := overrides.NewSiteSelector(vs)
		if err != nil {
			return Invalid(ReasonVirtualSite, fieldPath, value, fmt.Sprintf("VirtualSite %s has an invalid siteSelector: %v", ref, err), "fix the VirtualSite's spec.siteSelector")
		}
		for i := range siteList.Items {
			s := &siteList.Items[i]
			if rule.Matches(s) {
				selected[s.Name] = true
				f.SiteTypes[s.Name] = overrides.SiteType(s)
			}
		}
	}
	for s := range selected {
		f.Sites = append(f.Sites, s)
	}
	slices.Sort(f.Sites)
	return nil
}

func (r *Resolver) resolveOverrides(ctx context.Context, f *Federation, namespace string, annotations map[string]string, strict Strictness) error {
	names, err := overrides.ParseOverrides(annotations)
	if err != nil {
		return Reject(ReasonAnnotation, err)
	}
	f.OverrideNames = names
	f.Overrides = map[string]*vk8sv1.Override{}
	for _, name := range names {
		o := &vk8sv1.Override{}
		if err := r.get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, o); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("get Override %s/%s: %w", namespace, name, err)
			}
			continue
		}
		f.Overrides[name] = o
	}
	// SelectOverride rejects names that do not exist, with the message users see.
	if _, err := overrides.SelectOverride(names, f.Overrides, ""); err != nil {
		if strict(vk8sv1.AnnotationOverrides) {
			return Reject(ReasonOverride, err)
		}
		f.Warnings = append(f.Warnings, err.Error()+" (until then, pods run without it)")
	}
	return nil
}

func (r *Resolver) resolveFlavor(ctx context.Context, f *Federation, annotations map[string]string, strict Strictness) error {
	name, err := overrides.ParseWorkloadFlavor(annotations, r.defaultFlavor)
	if err != nil {
		return Reject(ReasonAnnotation, err)
	}
	f.FlavorName = name
	fl := &vk8sv1.WorkloadFlavor{}
	err = r.cache.Get(ctx, client.ObjectKey{Name: name}, fl)
	if apierrors.IsNotFound(err) {
		// A built-in flavor the host holds no object of (not created yet by the chart's
		// post-install hook, or deleted) is the chart's, with no round trip to the API
		// server: every pod of a workload without the annotation names the default one.
		for _, b := range overrides.BuiltinFlavors() {
			if b.Name == name {
				f.Flavor = &b
				return nil
			}
		}
		if r.live != nil {
			err = r.live.Get(ctx, client.ObjectKey{Name: name}, fl)
		}
	}
	switch {
	case err == nil:
		f.Flavor = fl
		return nil
	case client.IgnoreNotFound(err) != nil:
		return fmt.Errorf("get WorkloadFlavor %s: %w", name, err)
	}
	_, annotated := annotations[vk8sv1.AnnotationWorkloadFlavor]
	why := fmt.Sprintf("WorkloadFlavor %q does not exist", name)
	if !annotated {
		why = fmt.Sprintf("the default WorkloadFlavor %q does not exist", name)
	}
	fix := "create it, or name an existing one (kubectl get workloadflavors lists them)"
	if strict(vk8sv1.AnnotationWorkloadFlavor) {
		return Invalid(ReasonFlavor, AnnotationPath(vk8sv1.AnnotationWorkloadFlavor), annotations[vk8sv1.AnnotationWorkloadFlavor], why, fix)
	}
	f.Warnings = append(f.Warnings, fmt.Sprintf("%s: %s; %s", AnnotationPath(vk8sv1.AnnotationWorkloadFlavor), why, fix))
	return nil
}

// Override returns the Override that applies on site: the first existing one of the list
// whose siteList holds it.
func (f *Federation) Override(site string) *vk8sv1.Override {
	var present []string
	for _, n := range f.OverrideNames {
		if f.Overrides[n] != nil {
			present = append(present, n)
		}
	}
	o, _ := overrides.SelectOverride(present, f.Overrides, site)
	return o
}

// OverrideReplicas maps each site whose Override sets replicas to that count. It walks
// the site lists of the Overrides that set replicas, not every site: a fleet has
// thousands of sites, a canary a few.
func (f *Federation) OverrideReplicas() map[string]int32 {
	if f.replicas != nil {
		return f.replicas
	}
	f.replicas = map[string]int32{}
	for _, name := range f.OverrideNames {
		o := f.Overrides[name]
		if o == nil || o.Spec.DeploymentSpec.Replicas == nil {
			continue
		}
		for _, s := range o.Spec.SiteList {
			if _, done := f.replicas[s]; done {
				continue
			}
			if _, selected := slices.BinarySearch(f.Sites, s); selected && f.Override(s) == o {
				f.replicas[s] = *o.Spec.DeploymentSpec.Replicas
			}
		}
	}
	return f.replicas
}

// Plan spreads R replicas per site over the sites.
func (f *Federation) Plan(r int32) (placement.Plan, error) {
	return placement.PlanReplicas(f.Sites, r, f.OverrideReplicas())
}

// PerSite derives R from a total written to spec.replicas: the sites whose Override sets
// replicas keep theirs, the rest share what remains. keep is returned when every site has
// Override replicas, where R decides nothing.
func (f *Federation) PerSite(total, keep int32, strict bool) (int32, error) {
	fixed := f.OverrideReplicas()
	var fixedSum int64
	for _, n := range fixed {
		fixedSum += int64(n)
	}
	free := len(f.Sites) - len(fixed)
	if free == 0 {
		return keep, nil
	}
	rest := max(int64(total)-fixedSum, 0)
	return placement.ReplicasPerSite(int32(rest), free, strict)
}

// KeepCustomerEdge drops the RegionalEdge sites (DaemonSets run on customer sites only)
// and returns warnings naming them.
func (f *Federation) KeepCustomerEdge() []string {
	var dropped []string
	f.replicas = nil
	f.Sites = slices.DeleteFunc(f.Sites, func(s string) bool {
		re := f.SiteTypes[s] == vk8sv1.SiteTypeRegionalEdge
		if re {
			dropped = append(dropped, s)
		}
		return re
	})
	if len(dropped) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("DaemonSets run on CustomerEdge sites only: not on %s", strings.Join(dropped, ", "))}
}

package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
)

// rejection is a denied admission: its message names the field, the value and the fix,
// and reason labels vk8s_webhook_rejections_total.
type rejection struct {
	reason string
	msg    string
}

func (r *rejection) Error() string { return r.msg }

// Rejection reasons, the values of the reason label.
const (
	reasonAnnotation       = "annotation"
	reasonVirtualSite      = "virtual-site"
	reasonNoSites          = "no-sites"
	reasonOverride         = "override"
	reasonFlavor           = "flavor"
	reasonReplicas         = "replicas"
	reasonSecondVK         = "second-virtual-kubernetes"
	reasonWorkloadsRemain  = "workloads-remain"
	reasonAutoscaler       = "autoscaler"
	reasonNotVK8sNamespace = "not-vk8s-namespace"
	reasonPlacement        = "placement"
	reasonInvalidFlavor    = "invalid-flavor"
	reasonInvalidOverride  = "invalid-override"
	reasonInvalidVK        = "invalid-virtual-kubernetes"
)

// invalid returns a rejection that reads "<field>: invalid value "<value>": <why>; <fix>",
// the form of the overrides package's annotation errors.
func invalid(reason, field string, value any, why, fix string) *rejection {
	v := fmt.Sprint(value)
	if s, ok := value.(string); ok {
		v = strconv.Quote(s)
	}
	return &rejection{reason: reason, msg: fmt.Sprintf("%s: invalid value %s: %s; %s", field, v, why, fix)}
}

// annotationPath returns metadata.annotations["<key>"].
func annotationPath(key string) string { return fmt.Sprintf("metadata.annotations[%q]", key) }

// asRejection turns an error of the overrides package into a rejection.
func asRejection(reason string, err error) *rejection {
	var r *rejection
	if errors.As(err, &r) {
		return r
	}
	return &rejection{reason: reason, msg: err.Error()}
}

// federation is what a workload (or a bare pod) runs on and with: the resolved
// annotations of SPEC §3, or the namespace's defaults.
type federation struct {
	vk *vk8sv1.VirtualKubernetes
	// sites are the selected Sites' names, sorted; siteTypes their types.
	sites     []string
	siteTypes map[string]vk8sv1.SiteType
	// overrideNames is ves.io/overrides in order; overrides holds those that exist.
	overrideNames []string
	overrides     map[string]*vk8sv1.Override
	flavorName    string
	// flavor is nil when the flavor named does not exist.
	flavor *vk8sv1.WorkloadFlavor
	// warnings are references that no longer resolve, when they are not rejections.
	warnings []string
	// replicas caches overrideReplicas.
	replicas map[string]int32
}

// resolver reads the objects that federate workloads from the manager's cache.
type resolver struct {
	cache         client.Reader
	shared        string
	defaultFlavor string
}

// strictness says, per annotation key, whether a reference to an object that does not
// exist is a rejection (the annotation is new or changed) or a warning (an existing
// workload whose Override, say, was deleted since: its pods must still be admitted).
type strictness func(key string) bool

func strictAll(string) bool  { return true }
func lenientAll(string) bool { return false }

// virtualKubernetes returns the namespace's VirtualKubernetes, or nil when it is not a vK8s
// namespace. With more than one (a race of two creations), the oldest counts.
func (r *resolver) virtualKubernetes(ctx context.Context, namespace string) (*vk8sv1.VirtualKubernetes, error) {
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

// resolve resolves the annotations of an object in namespace. It returns nil without
// error when the namespace has no VirtualKubernetes.
func (r *resolver) resolve(ctx context.Context, namespace string, annotations map[string]string, strict strictness) (*federation, *rejection, error) {
	vk, err := r.virtualKubernetes(ctx, namespace)
	if err != nil || vk == nil {
		return nil, nil, err
	}
	f := &federation{vk: vk, siteTypes: map[string]vk8sv1.SiteType{}}
	if rej, err := r.resolveSites(ctx, f, namespace, annotations, strict); rej != nil || err != nil {
		return nil, rej, err
	}
	if rej, err := r.resolveOverrides(ctx, f, namespace, annotations, strict); rej != nil || err != nil {
		return nil, rej, err
	}
	if rej, err := r.resolveFlavor(ctx, f, annotations, strict); rej != nil || err != nil {
		return nil, rej, err
	}
	return f, nil, nil
}

func (r *resolver) resolveSites(ctx context.Context, f *federation, namespace string, annotations map[string]string, strict strictness) (*rejection, error) {
	refs, err := overrides.ParseVirtualSites(annotations, namespace, r.shared)
	if err != nil {
		return asRejection(reasonAnnotation, err), nil
	}
	fieldPath, value := annotationPath(vk8sv1.AnnotationVirtualSites), annotations[vk8sv1.AnnotationVirtualSites]
	fix := "create the VirtualSite, or name an existing one (kubectl get virtualsites -A lists them)"
	isStrict := strict(vk8sv1.AnnotationVirtualSites)
	if len(refs) == 0 {
		ref, ok := parseVirtualSiteRef(f.vk.Spec.VirtualSite, namespace)
		if !ok {
			return invalid(reasonVirtualSite, "VirtualKubernetes "+f.vk.Name+" spec.virtualSite", f.vk.Spec.VirtualSite,
				"not a virtual-site reference", "write <namespace>/<name> or <name>"), nil
		}
		refs = []overrides.VirtualSiteRef{ref}
		fieldPath, value = fmt.Sprintf("VirtualKubernetes %s spec.virtualSite (the namespace's default virtual-site)", f.vk.Name), f.vk.Spec.VirtualSite
		fix = "create the VirtualSite, or set ves.io/virtual-sites on the workload"
	}
	var siteList vk8sv1.SiteList
	// Read only: a fleet of thousands of Sites is not copied per admission.
	if err := r.cache.List(ctx, &siteList, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list Sites: %w", err)
	}
	selected := map[string]bool{}
	for _, ref := range refs {
		vs := &vk8sv1.VirtualSite{}
		if err := r.cache.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, vs); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return nil, fmt.Errorf("get VirtualSite %s: %w", ref, err)
			}
			why := fmt.Sprintf("VirtualSite %s does not exist", ref)
			if isStrict {
				return invalid(reasonVirtualSite, fieldPath, value, why, fix), nil
			}
			f.warnings = append(f.warnings, fmt.Sprintf("%s: %s; the workload runs on the sites of the others", fieldPath, why))
			continue
		}
		rule, err := overrides.NewSiteSelector(vs)
		if err != nil {
			return invalid(reasonVirtualSite, fieldPath, value, fmt.Sprintf("VirtualSite %s has an invalid siteSelector: %v", ref, err), "fix the VirtualSite's spec.siteSelector"), nil
		}
		for i := range siteList.Items {
			s := &siteList.Items[i]
			if rule.Matches(s) {
				selected[s.Name] = true
				f.siteTypes[s.Name] = overrides.SiteType(s)
			}
		}
	}
	for s := range selected {
		f.sites = append(f.sites, s)
	}
	slices.Sort(f.sites)
	return nil, nil
}

// parseVirtualSiteRef parses a VirtualKubernetes' spec.virtualSite: <namespace>/<name>, or
// <name> in namespace.
func parseVirtualSiteRef(v, namespace string) (overrides.VirtualSiteRef, bool) {
	return overrides.ParseVirtualSiteRef(v, namespace)
}

func (r *resolver) resolveOverrides(ctx context.Context, f *federation, namespace string, annotations map[string]string, strict strictness) (*rejection, error) {
	names, err := overrides.ParseOverrides(annotations)
	if err != nil {
		return asRejection(reasonAnnotation, err), nil
	}
	f.overrideNames = names
	f.overrides = map[string]*vk8sv1.Override{}
	for _, name := range names {
		o := &vk8sv1.Override{}
		if err := r.cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, o); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return nil, fmt.Errorf("get Override %s/%s: %w", namespace, name, err)
			}
			continue
		}
		f.overrides[name] = o
	}
	// SelectOverride rejects names that do not exist, with the message users see.
	if _, err := overrides.SelectOverride(names, f.overrides, ""); err != nil {
		if strict(vk8sv1.AnnotationOverrides) {
			return asRejection(reasonOverride, err), nil
		}
		f.warnings = append(f.warnings, err.Error()+" (until then, pods run without it)")
	}
	return nil, nil
}

func (r *resolver) resolveFlavor(ctx context.Context, f *federation, annotations map[string]string, strict strictness) (*rejection, error) {
	name, err := overrides.ParseWorkloadFlavor(annotations, r.defaultFlavor)
	if err != nil {
		return asRejection(reasonAnnotation, err), nil
	}
	f.flavorName = name
	fl := &vk8sv1.WorkloadFlavor{}
	err = r.cache.Get(ctx, client.ObjectKey{Name: name}, fl)
	switch {
	case err == nil:
		f.flavor = fl
		return nil, nil
	case client.IgnoreNotFound(err) != nil:
		return nil, fmt.Errorf("get WorkloadFlavor %s: %w", name, err)
	}
	for _, b := range overrides.BuiltinFlavors() {
		if b.Name == name {
			f.flavor = &b
			return nil, nil
		}
	}
	_, annotated := annotations[vk8sv1.AnnotationWorkloadFlavor]
	why := fmt.Sprintf("WorkloadFlavor %q does not exist", name)
	if !annotated {
		why = fmt.Sprintf("the default WorkloadFlavor %q does not exist", name)
	}
	fix := "create it, or name an existing one (kubectl get workloadflavors lists them)"
	if strict(vk8sv1.AnnotationWorkloadFlavor) {
		return invalid(reasonFlavor, annotationPath(vk8sv1.AnnotationWorkloadFlavor), annotations[vk8sv1.AnnotationWorkloadFlavor], why, fix), nil
	}
	f.warnings = append(f.warnings, fmt.Sprintf("%s: %s; %s", annotationPath(vk8sv1.AnnotationWorkloadFlavor), why, fix))
	return nil, nil
}

// override returns the Override that applies on site: the first existing one of the list
// whose siteList holds it.
func (f *federation) override(site string) *vk8sv1.Override {
	var present []string
	for _, n := range f.overrideNames {
		if f.overrides[n] != nil {
			present = append(present, n)
		}
	}
	o, _ := overrides.SelectOverride(present, f.overrides, site)
	return o
}

// overrideReplicas maps each site whose Override sets replicas to that count. It walks
// the site lists of the Overrides that set replicas, not every site: a fleet has
// thousands of sites, a canary a few.
func (f *federation) overrideReplicas() map[string]int32 {
	if f.replicas != nil {
		return f.replicas
	}
	f.replicas = map[string]int32{}
	for _, name := range f.overrideNames {
		o := f.overrides[name]
		if o == nil || o.Spec.DeploymentSpec.Replicas == nil {
			continue
		}
		for _, s := range o.Spec.SiteList {
			if _, done := f.replicas[s]; done {
				continue
			}
			if _, selected := slices.BinarySearch(f.sites, s); selected && f.override(s) == o {
				f.replicas[s] = *o.Spec.DeploymentSpec.Replicas
			}
		}
	}
	return f.replicas
}

// plan spreads R replicas per site over the sites.
func (f *federation) plan(r int32) (overrides.Plan, error) {
	return overrides.PlanReplicas(f.sites, r, f.overrideReplicas())
}

// perSite derives R from a total written to spec.replicas: the sites whose Override sets
// replicas keep theirs, the rest share what remains. keep is returned when every site has
// Override replicas, where R decides nothing.
func (f *federation) perSite(total, keep int32, strict bool) (int32, error) {
	fixed := f.overrideReplicas()
	var fixedSum int64
	for _, n := range fixed {
		fixedSum += int64(n)
	}
	free := len(f.sites) - len(fixed)
	if free == 0 {
		return keep, nil
	}
	rest := max(int64(total)-fixedSum, 0)
	return overrides.ReplicasPerSite(int32(rest), free, strict)
}

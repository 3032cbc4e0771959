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
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// SiteType returns a Site's type; the API defaults it to CustomerEdge, and a Site read
// before the default applied has none.
func SiteType(s *vk8sv1.Site) vk8sv1.SiteType {
	if s.Spec.Type == "" {
		return vk8sv1.SiteTypeCustomerEdge
	}
	return s.Spec.Type
}

// SiteSelector is a VirtualSite's rule, compiled: the label selector over Site labels and,
// when set, the site type. It is the one rule the webhook and the controllers share.
type SiteSelector struct {
	sel  labels.Selector
	kind vk8sv1.SiteType
}

// NewSiteSelector compiles the rule of vs. The error is the label selector's own
// (metav1.LabelSelectorAsSelector), for the caller to put in its message.
func NewSiteSelector(vs *vk8sv1.VirtualSite) (SiteSelector, error) {
	sel, err := metav1.LabelSelectorAsSelector(&vs.Spec.SiteSelector)
	if err != nil {
		return SiteSelector{}, err
	}
	return SiteSelector{sel: sel, kind: vs.Spec.SiteType}, nil
}

// Matches reports whether the rule selects s: its labels match the selector (an empty
// selector selects every Site) and, when the rule names a type, s is of that type.
func (r SiteSelector) Matches(s *vk8sv1.Site) bool {
	if r.sel == nil {
		return false
	}
	return r.sel.Matches(labels.Set(s.Labels)) && (r.kind == "" || r.kind == SiteType(s))
}

// SelectSites returns the sorted names of the sites vs selects. The error is
// NewSiteSelector's.
func SelectSites(vs *vk8sv1.VirtualSite, sites []vk8sv1.Site) ([]string, error) {
	r, err := NewSiteSelector(vs)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range sites {
		if r.Matches(&sites[i]) {
			out = append(out, sites[i].Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParseVirtualSiteRef parses a VirtualKubernetes' spec.virtualSite: <namespace>/<name>, or
// <name> for one in namespace. ok is false when v is not of that form.
func ParseVirtualSiteRef(v, namespace string) (ref VirtualSiteRef, ok bool) {
	ns, name, qualified := strings.Cut(v, "/")
	if !qualified {
		ns, name = namespace, v
	}
	return VirtualSiteRef{Namespace: ns, Name: name}, ns != "" && name != "" && !strings.Contains(name, "/")
}

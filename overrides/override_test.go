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
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func override(name string, sites ...string) *vk8sv1.Override {
	return &vk8sv1.Override{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo"},
		Spec:       vk8sv1.OverrideSpec{SiteList: sites, DeploymentSpec: vk8sv1.OverrideDeploymentSpec{Replicas: ptr(int32(1))}},
	}
}

func TestSelectOverride(t *testing.T) {
	objs := map[string]*vk8sv1.Override{
		"canary": override("canary", "site1"),
		"blue":   override("blue", "site1", "site2"),
		"green":  override("green", "site3"),
	}
	for _, tc := range []struct {
		name    string
		names   []string
		site    string
		want    string // "" for none
		wantErr string
	}{
		{name: "no overrides", names: nil, site: "site1"},
		{name: "first match wins", names: []string{"canary", "blue"}, site: "site1", want: "canary"},
		{name: "annotation order decides, not the map or names", names: []string{"blue", "canary"}, site: "site1", want: "blue"},
		{name: "later match", names: []string{"canary", "blue"}, site: "site2", want: "blue"},
		{name: "no match", names: []string{"canary", "blue"}, site: "site3"},
		{name: "not named", names: []string{"canary"}, site: "site3"},
		{
			name: "unknown override", names: []string{"canary", "missing"}, site: "site1",
			wantErr: `metadata.annotations["ves.io/overrides"]: invalid value "canary, missing": Override "missing" does not exist in the workload's namespace; create it, or remove it from the list (kubectl get overrides lists the namespace's Overrides)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectOverride(tc.names, objs, tc.site)
			checkErr(t, err, tc.wantErr)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrOverrideNotFound) {
					t.Errorf("errors.Is(err, ErrOverrideNotFound) = false")
				}
				var ae *AnnotationError
				if !errors.As(err, &ae) {
					t.Errorf("err %T is not an *AnnotationError", err)
				}
				return
			}
			gotName := ""
			if got != nil {
				gotName = got.Name
			}
			if gotName != tc.want {
				t.Errorf("got %q, want %q", gotName, tc.want)
			}
		})
	}
}

// template returns a pod template of workload web.
func template() *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      map[string]string{"app": "web", "tier": "front", "version": "v1"},
			Annotations: map[string]string{"note": "base"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:v1"}}},
	}
}

func selector() *metav1.LabelSelector {
	return &metav1.LabelSelector{
		MatchLabels:      map[string]string{"app": "web"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front", "edge"}}},
	}
}

// validOverride returns an Override that passes every check against selector().
func validOverride() *vk8sv1.Override {
	return &vk8sv1.Override{
		ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: "demo"},
		Spec: vk8sv1.OverrideSpec{
			SiteList: []string{"site1", "site2"},
			DeploymentSpec: vk8sv1.OverrideDeploymentSpec{
				Replicas: ptr(int32(2)),
				Selector: selector(),
				Template: &corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "edge", "track": "canary"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:v2"}}},
				},
				Strategy: &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
			},
		},
	}
}

func TestValidateOverride(t *testing.T) {
	sites := sets.New("site1", "site2", "site3")
	for _, tc := range []struct {
		name      string
		mutate    func(o *vk8sv1.Override)
		sites     sets.Set[string]
		wantErrs  []string // whole messages, in order
		wantWarns []string
	}{
		{name: "valid", mutate: func(*vk8sv1.Override) {}, sites: sites},
		{name: "sites not looked up without a site set", mutate: func(o *vk8sv1.Override) { o.Spec.SiteList = []string{"site9"} }},
		{
			name: "unknown site is a warning", sites: sites,
			mutate:    func(o *vk8sv1.Override) { o.Spec.SiteList = []string{"site1", "site9"} },
			wantWarns: []string{`spec.siteList[1]: Site "site9" does not exist; the Override takes effect there once the Site is registered`},
		},
		{
			name: "empty site list", mutate: func(o *vk8sv1.Override) { o.Spec.SiteList = nil },
			wantErrs: []string{`spec.siteList: Required value: list the names of the Sites this Override applies to`},
		},
		{
			name: "malformed and duplicate sites", mutate: func(o *vk8sv1.Override) { o.Spec.SiteList = []string{"site1", "Site 2", "site1"} },
			wantErrs: []string{
				`spec.siteList[1]: Invalid value: "Site 2": not a valid Site name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); write the name of a Site (kubectl get sites lists them)`,
				`spec.siteList[2]: Duplicate value: "site1"`,
			},
		},
		{
			name: "name too long for a label value", mutate: func(o *vk8sv1.Override) { o.Name = strings.Repeat("o", 64) },
			wantErrs: []string{`metadata.name: Invalid value: "` + strings.Repeat("o", 64) + `": the name is the value of label vk8s.io/override on the pods it applies to, so it must be a valid label value (at most 63 characters); choose a shorter name`},
		},
		{
			name: "unsupported fields",
			mutate: func(o *vk8sv1.Override) {
				s := &o.Spec.DeploymentSpec
				s.MinReadySeconds, s.RevisionHistoryLimit, s.Paused, s.ProgressDeadlineSeconds = ptr(int32(5)), ptr(int32(3)), ptr(true), ptr(int32(600))
			},
			wantErrs: []string{
				`spec.deploymentSpec.minReadySeconds: Forbidden: ` + detailUnsupported,
				`spec.deploymentSpec.revisionHistoryLimit: Forbidden: ` + detailUnsupported,
				`spec.deploymentSpec.paused: Forbidden: ` + detailUnsupported,
				`spec.deploymentSpec.progressDeadlineSeconds: Forbidden: ` + detailUnsupported,
			},
		},
		{
			name: "paused false is still set", mutate: func(o *vk8sv1.Override) { o.Spec.DeploymentSpec.Paused = ptr(false) },
			wantErrs: []string{`spec.deploymentSpec.paused: Forbidden: an Override honours only replicas, template and strategy (and a selector equal to the workload's); remove this field and set it on the workload, where it applies to every site`},
		},
		{
			name: "negative replicas", mutate: func(o *vk8sv1.Override) { o.Spec.DeploymentSpec.Replicas = ptr(int32(-1)) },
			wantErrs: []string{`spec.deploymentSpec.replicas: Invalid value: -1: must be 0 or more: the number of replicas on each of the Override's sites`},
		},
		{
			name: "template identity",
			mutate: func(o *vk8sv1.Override) {
				m := &o.Spec.DeploymentSpec.Template.ObjectMeta
				m.Name, m.GenerateName, m.Namespace, m.UID = "p", "p-", "other", "u1"
				m.OwnerReferences = []metav1.OwnerReference{{Name: "rs"}}
			},
			wantErrs: []string{
				`spec.deploymentSpec.template.metadata.name: Forbidden: ` + detailTemplateMeta,
				`spec.deploymentSpec.template.metadata.generateName: Forbidden: ` + detailTemplateMeta,
				`spec.deploymentSpec.template.metadata.namespace: Forbidden: ` + detailTemplateMeta,
				`spec.deploymentSpec.template.metadata.uid: Forbidden: ` + detailTemplateMeta,
				`spec.deploymentSpec.template.metadata.ownerReferences: Forbidden: pods take their identity from their workload; remove it from the Override's template`,
			},
		},
		{
			name: "template without containers", mutate: func(o *vk8sv1.Override) { o.Spec.DeploymentSpec.Template.Spec.Containers = nil },
			wantErrs: []string{`spec.deploymentSpec.template.spec.containers: Required value: the Override's template replaces the workload's whole pod template, so it needs containers; copy the workload's template and change what differs`},
		},
		{
			name: "template labels against the Override's own selector",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Template.Labels = map[string]string{"tier": "back"}
			},
			wantErrs: []string{`spec.deploymentSpec.template.metadata.labels: Invalid value: "tier=back": do not match its selector "app=web,tier in (edge,front)", even with its matchLabels added back; set labels that its selector accepts`},
		},
		{
			name: "invalid selector and label",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn}}}
				o.Spec.DeploymentSpec.Template.Labels["bad key!"] = "x"
			},
			wantErrs: []string{
				`spec.deploymentSpec.selector.matchExpressions[0].values: Required value: must be specified when ` + "`operator`" + ` is 'In' or 'NotIn'`,
				`spec.deploymentSpec.template.metadata.labels: Invalid value: "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
			},
		},
		{
			name: "strategy type",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Strategy = &appsv1.DeploymentStrategy{Type: "BlueGreen"}
			},
			wantErrs: []string{`spec.deploymentSpec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"`},
		},
		{
			name: "recreate with rolling update",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Strategy = &appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{}}
			},
			wantErrs: []string{`spec.deploymentSpec.strategy.rollingUpdate: Forbidden: may not be set when type is Recreate; remove it or set type RollingUpdate`},
		},
		{
			name: "rolling update bounds",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr(intstr.FromString("150%")), MaxSurge: ptr(intstr.FromString("two"))}
			},
			wantErrs: []string{
				`spec.deploymentSpec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be more than 100%`,
				`spec.deploymentSpec.strategy.rollingUpdate.maxSurge: Invalid value: "two": must be a number of pods or a percentage such as "25%"`,
			},
		},
		{
			name: "rolling update negative",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptr(intstr.FromInt32(-1))}
			},
			wantErrs: []string{`spec.deploymentSpec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be 0 or more`},
		},
		{
			name: "rolling update both zero",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr(intstr.FromString("0%")), MaxSurge: ptr(intstr.FromInt32(0))}
			},
			wantErrs: []string{`spec.deploymentSpec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when maxSurge is 0, or the rollout could never proceed; set one of them above 0`},
		},
		{
			name: "rolling update valid", sites: sites,
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr(intstr.FromInt32(0)), MaxSurge: ptr(intstr.FromString("25%"))}
			},
		},
		{
			name: "sets nothing is a warning",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec = vk8sv1.OverrideDeploymentSpec{}
			},
			wantWarns: []string{`spec.deploymentSpec sets none of replicas, template and strategy: the Override's sites run the workload's own spec and take no later Override of the workload's list`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validOverride()
			tc.mutate(o)
			orig := o.DeepCopy()
			errs, warns := ValidateOverride(o, tc.sites)
			checkErrs(t, errs, tc.wantErrs)
			checkStrings(t, "warnings", warns, tc.wantWarns)
			if !apiequality.Semantic.DeepEqual(o, orig) {
				t.Errorf("ValidateOverride modified its argument")
			}
		})
	}
}

func TestValidateOverrideForWorkload(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mutate    func(o *vk8sv1.Override)
		selector  *metav1.LabelSelector
		wantErrs  []string
		wantWarns []string
	}{
		{name: "valid", mutate: func(*vk8sv1.Override) {}, selector: selector()},
		{
			name: "same selector in other words",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Selector = &metav1.LabelSelector{
					MatchLabels:      map[string]string{"app": "web"},
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"edge", "front"}}},
				}
			},
			selector: selector(),
		},
		{name: "selector left out", mutate: func(o *vk8sv1.Override) { o.Spec.DeploymentSpec.Selector = nil }, selector: selector()},
		{
			name: "different selector",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "track": "canary"}}
			},
			selector: selector(),
			wantErrs: []string{`spec.deploymentSpec.selector: Invalid value: "app=web,track=canary": must equal the workload's selector "app=web,tier in (edge,front)"; remove it (it may be left out) or copy the workload's`},
		},
		{
			name: "selector on a workload without one", mutate: func(*vk8sv1.Override) {}, selector: nil,
			wantErrs: []string{`spec.deploymentSpec.selector: Forbidden: the workload has no selector; remove it from the Override`},
		},
		{
			name: "template fails an expression",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Selector = nil
				o.Spec.DeploymentSpec.Template.Labels = map[string]string{"app": "web", "track": "canary"}
			},
			selector: selector(),
			wantErrs: []string{`spec.deploymentSpec.template.metadata.labels: Invalid value: "app=web,track=canary": do not match the workload's selector "app=web,tier in (edge,front)", even with its matchLabels added back; set labels that the workload's selector accepts`},
		},
		{
			name: "template lacks matchLabels: added back, no warning",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Selector = nil
				o.Spec.DeploymentSpec.Template.Labels = map[string]string{"tier": "edge"}
			},
			selector: selector(),
		},
		{
			name: "template changes a matchLabels value: a warning",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Selector = nil
				o.Spec.DeploymentSpec.Template.Labels["app"] = "web-canary"
			},
			selector:  selector(),
			wantWarns: []string{`spec.deploymentSpec.template.metadata.labels[app]: "web-canary" is replaced by "web", the workload selector's value, on the Override's sites`},
		},
		{
			name: "structural checks too",
			mutate: func(o *vk8sv1.Override) {
				o.Spec.DeploymentSpec.Paused = ptr(true)
			},
			selector: selector(),
			wantErrs: []string{`spec.deploymentSpec.paused: Forbidden: ` + detailUnsupported},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validOverride()
			tc.mutate(o)
			errs, warns := ValidateOverrideForWorkload(o, tc.selector)
			checkErrs(t, errs, tc.wantErrs)
			checkStrings(t, "warnings", warns, tc.wantWarns)
		})
	}
}

func TestApplyOverride(t *testing.T) {
	for _, tc := range []struct {
		name         string
		base         func() *corev1.PodTemplateSpec
		override     func() *vk8sv1.Override
		selector     *metav1.LabelSelector
		wantLabels   map[string]string
		wantAnns     map[string]string
		wantImage    string
		wantReplicas *int32
		wantStrategy *appsv1.DeploymentStrategy
		wantErr      string
	}{
		{
			name: "no override", base: template, override: func() *vk8sv1.Override { return nil }, selector: selector(),
			wantLabels: map[string]string{"app": "web", "tier": "front", "version": "v1"}, wantAnns: map[string]string{"note": "base"}, wantImage: "web:v1",
		},
		{
			name: "no override drops a stale override label",
			base: func() *corev1.PodTemplateSpec {
				b := template()
				b.Labels[vk8sv1.LabelOverride] = "old"
				return b
			},
			override: func() *vk8sv1.Override { return nil }, selector: selector(),
			wantLabels: map[string]string{"app": "web", "tier": "front", "version": "v1"}, wantAnns: map[string]string{"note": "base"}, wantImage: "web:v1",
		},
		{
			name: "template replaces labels, annotations and spec", base: template, override: validOverride, selector: selector(),
			wantLabels:   map[string]string{"app": "web", "tier": "edge", "track": "canary", vk8sv1.LabelOverride: "canary"},
			wantImage:    "web:v2",
			wantReplicas: ptr(int32(2)),
			wantStrategy: &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
		},
		{
			name: "selector labels added back",
			base: template,
			override: func() *vk8sv1.Override {
				o := validOverride()
				o.Spec.DeploymentSpec.Template.Labels = map[string]string{"tier": "edge"}
				o.Spec.DeploymentSpec.Template.Annotations = map[string]string{"note": "canary"}
				return o
			},
			selector:     selector(),
			wantLabels:   map[string]string{"app": "web", "tier": "edge", vk8sv1.LabelOverride: "canary"},
			wantAnns:     map[string]string{"note": "canary"},
			wantImage:    "web:v2",
			wantReplicas: ptr(int32(2)),
			wantStrategy: &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
		},
		{
			name: "selector labels win over the template's values",
			base: template,
			override: func() *vk8sv1.Override {
				o := validOverride()
				o.Spec.DeploymentSpec.Template.Labels["app"] = "web-canary"
				return o
			},
			selector:     selector(),
			wantLabels:   map[string]string{"app": "web", "tier": "edge", "track": "canary", vk8sv1.LabelOverride: "canary"},
			wantImage:    "web:v2",
			wantReplicas: ptr(int32(2)),
			wantStrategy: &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
		},
		{
			name: "replicas only keeps the template",
			base: template,
			override: func() *vk8sv1.Override {
				o := override("more", "site1")
				o.Spec.DeploymentSpec.Replicas = ptr(int32(5))
				return o
			},
			selector:     selector(),
			wantLabels:   map[string]string{"app": "web", "tier": "front", "version": "v1", vk8sv1.LabelOverride: "more"},
			wantAnns:     map[string]string{"note": "base"},
			wantImage:    "web:v1",
			wantReplicas: ptr(int32(5)),
		},
		{
			name: "zero replicas",
			base: template,
			override: func() *vk8sv1.Override {
				o := override("off", "site1")
				o.Spec.DeploymentSpec.Replicas = ptr(int32(0))
				return o
			},
			selector:     selector(),
			wantLabels:   map[string]string{"app": "web", "tier": "front", "version": "v1", vk8sv1.LabelOverride: "off"},
			wantAnns:     map[string]string{"note": "base"},
			wantImage:    "web:v1",
			wantReplicas: ptr(int32(0)),
		},
		{
			name: "labels and annotations controllers own are kept",
			base: func() *corev1.PodTemplateSpec {
				b := template()
				b.Labels["pod-template-hash"] = "abc"
				b.Labels["controller-revision-hash"] = "web-5"
				b.Labels["statefulset.kubernetes.io/pod-name"] = "web-0"
				b.Labels["apps.kubernetes.io/pod-index"] = "0"
				b.Labels["app.kubernetes.io/version"] = "v1"
				b.Labels[vk8sv1.LabelSite] = "site1"
				b.Annotations["batch.kubernetes.io/job-completion-index"] = "0"
				b.Annotations["kubectl.kubernetes.io/restartedAt"] = "t1"
				b.Annotations["kubectl.kubernetes.io/default-container"] = "app"
				return b
			},
			override: func() *vk8sv1.Override {
				o := validOverride()
				o.Spec.DeploymentSpec.Template.Annotations = map[string]string{"kubectl.kubernetes.io/default-container": "sidecar"}
				return o
			},
			selector: selector(),
			wantLabels: map[string]string{
				"app": "web", "tier": "edge", "track": "canary", vk8sv1.LabelOverride: "canary",
				"pod-template-hash": "abc", "controller-revision-hash": "web-5",
				"statefulset.kubernetes.io/pod-name": "web-0", "apps.kubernetes.io/pod-index": "0",
				vk8sv1.LabelSite: "site1",
			},
			wantAnns: map[string]string{
				"batch.kubernetes.io/job-completion-index": "0",
				"kubectl.kubernetes.io/restartedAt":        "t1",
				"kubectl.kubernetes.io/default-container":  "sidecar",
			},
			wantImage:    "web:v2",
			wantReplicas: ptr(int32(2)),
			wantStrategy: &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
		},
		{
			name: "workload without selector",
			base: template,
			override: func() *vk8sv1.Override {
				o := validOverride()
				o.Spec.DeploymentSpec.Template.Labels = nil
				return o
			},
			selector:     nil,
			wantLabels:   map[string]string{vk8sv1.LabelOverride: "canary"},
			wantImage:    "web:v2",
			wantReplicas: ptr(int32(2)),
			wantStrategy: &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
		},
		{
			name: "template fails an expression",
			base: template,
			override: func() *vk8sv1.Override {
				o := validOverride()
				o.Spec.DeploymentSpec.Template.Labels = map[string]string{"track": "canary"}
				return o
			},
			selector: selector(),
			wantErr:  `apply override "canary": the resulting template labels app=web,track=canary,vk8s.io/override=canary do not match the workload selector "app=web,tier in (edge,front)"`,
		},
		{
			name: "name not a label value",
			base: template,
			override: func() *vk8sv1.Override {
				o := validOverride()
				o.Name = strings.Repeat("o", 64)
				return o
			},
			selector: selector(),
			wantErr:  `apply override "` + strings.Repeat("o", 64) + `": its name is not a valid value of label vk8s.io/override: must be no more than 63 bytes`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, o := tc.base(), tc.override()
			origBase, origO := base.DeepCopy(), o.DeepCopy()
			got, err := ApplyOverride(base, tc.selector, o)
			if !apiequality.Semantic.DeepEqual(base, origBase) || !apiequality.Semantic.DeepEqual(o, origO) {
				t.Errorf("ApplyOverride modified its arguments")
			}
			checkErr(t, err, tc.wantErr)
			if tc.wantErr != "" {
				return
			}
			if !reflect.DeepEqual(got.Template.Labels, tc.wantLabels) {
				t.Errorf("labels = %v, want %v", got.Template.Labels, tc.wantLabels)
			}
			if len(got.Template.Annotations)+len(tc.wantAnns) > 0 && !reflect.DeepEqual(got.Template.Annotations, tc.wantAnns) {
				t.Errorf("annotations = %v, want %v", got.Template.Annotations, tc.wantAnns)
			}
			if img := got.Template.Spec.Containers[0].Image; img != tc.wantImage {
				t.Errorf("image = %s, want %s", img, tc.wantImage)
			}
			if !reflect.DeepEqual(got.Replicas, tc.wantReplicas) {
				t.Errorf("replicas = %v, want %v", got.Replicas, tc.wantReplicas)
			}
			if !reflect.DeepEqual(got.Strategy, tc.wantStrategy) {
				t.Errorf("strategy = %v, want %v", got.Strategy, tc.wantStrategy)
			}
			if o != nil && o.Spec.DeploymentSpec.Replicas != nil && got.Replicas == o.Spec.DeploymentSpec.Replicas {
				t.Errorf("replicas alias the Override's")
			}
		})
	}
}

// TestApplyOverrideToPod applies an Override to a pod's metadata and spec, as the webhook
// does at pod admission: the pod keeps its identity.
func TestApplyOverrideToPod(t *testing.T) {
	base := template()
	base.ObjectMeta = metav1.ObjectMeta{
		Name: "web-abc12", GenerateName: "web-", Namespace: "demo", UID: "uid-1",
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-abc", UID: "rs-1"}},
		Labels:          map[string]string{"app": "web", "tier": "front", "pod-template-hash": "abc"},
		Finalizers:      []string{"f"},
	}
	rsSelector := selector()
	rsSelector.MatchLabels["pod-template-hash"] = "abc"
	got, err := ApplyOverride(base, rsSelector, validOverride())
	if err != nil {
		t.Fatal(err)
	}
	m := got.Template.ObjectMeta
	if m.Name != "web-abc12" || m.GenerateName != "web-" || m.Namespace != "demo" || m.UID != "uid-1" ||
		!reflect.DeepEqual(m.OwnerReferences, base.OwnerReferences) || !reflect.DeepEqual(m.Finalizers, base.Finalizers) {
		t.Errorf("pod identity changed: %+v", m)
	}
	if m.Labels["pod-template-hash"] != "abc" || m.Labels["track"] != "canary" {
		t.Errorf("labels = %v", m.Labels)
	}
}

// TestApplyOverrideProperties checks, over generated templates, Overrides and selectors,
// that an applied Override never changes selector labels, pod identity or the arguments,
// that the result always matches the selector, and that it names the Override.
func TestApplyOverrideProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"app", "tier", "track", "version", "pod-template-hash", "team.kubernetes.io/x"}
	values := []string{"a", "b", "c"}
	randLabels := func() map[string]string {
		if rng.IntN(5) == 0 {
			return nil
		}
		l := map[string]string{}
		for _, k := range keys {
			if rng.IntN(2) == 0 {
				l[k] = values[rng.IntN(len(values))]
			}
		}
		return l
	}
	for i := range 2000 {
		sel := &metav1.LabelSelector{MatchLabels: map[string]string{}}
		for _, k := range keys[:1+rng.IntN(3)] {
			sel.MatchLabels[k] = values[rng.IntN(len(values))]
		}
		base := &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("pod-%d", i), Namespace: "demo", UID: "uid",
				OwnerReferences: []metav1.OwnerReference{{Name: "owner"}},
				Labels:          withSelectorLabels(randLabels(), sel),
			},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "base"}}},
		}
		o := validOverride()
		o.Spec.DeploymentSpec.Selector = nil
		if rng.IntN(3) == 0 {
			o.Spec.DeploymentSpec.Template = nil
		} else {
			o.Spec.DeploymentSpec.Template.Labels = randLabels()
		}
		origBase, origO := base.DeepCopy(), o.DeepCopy()

		got, err := ApplyOverride(base, sel, o)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		for k, v := range sel.MatchLabels {
			if got.Template.Labels[k] != v {
				t.Fatalf("case %d: selector label %s=%s became %q", i, k, v, got.Template.Labels[k])
			}
		}
		s, _ := metav1.LabelSelectorAsSelector(sel)
		if !s.Matches(labels.Set(got.Template.Labels)) {
			t.Fatalf("case %d: result %v does not match %v", i, got.Template.Labels, s)
		}
		if got.Template.Labels[vk8sv1.LabelOverride] != o.Name {
			t.Fatalf("case %d: no %s label", i, vk8sv1.LabelOverride)
		}
		m := got.Template.ObjectMeta
		if m.Name != base.Name || m.Namespace != base.Namespace || m.UID != base.UID || !reflect.DeepEqual(m.OwnerReferences, base.OwnerReferences) {
			t.Fatalf("case %d: identity changed", i)
		}
		if !apiequality.Semantic.DeepEqual(base, origBase) || !apiequality.Semantic.DeepEqual(o, origO) {
			t.Fatalf("case %d: arguments modified", i)
		}
		// Applying again is stable: the result is a fixed point.
		again, err := ApplyOverride(&got.Template, sel, o)
		if err != nil || !apiequality.Semantic.DeepEqual(again.Template, got.Template) {
			t.Fatalf("case %d: applying twice differs: %v", i, err)
		}
	}
}

func TestIsSystemKey(t *testing.T) {
	for k, want := range map[string]bool{
		"pod-template-hash":                        true,
		"controller-revision-hash":                 true,
		"controller-uid":                           true,
		"job-name":                                 true,
		"batch.kubernetes.io/job-name":             true,
		"kubernetes.io/hostname":                   true,
		"k8s.io/x":                                 true,
		"apps.k8s.io/x":                            true,
		"vk8s.io/site":                             true,
		"app.kubernetes.io/name":                   false,
		"app":                                      false,
		"example.com/kubernetes.io":                false,
		"notkubernetes.io/x":                       false,
		"sidecar.istio.io/inject":                  false,
		"kubectl.kubernetes.io/restartedAt":        true,
		"statefulset.kubernetes.io/pod-name":       true,
		"batch.kubernetes.io/job-completion-index": true,
	} {
		if got := isSystemKey(k); got != want {
			t.Errorf("isSystemKey(%q) = %v, want %v", k, got, want)
		}
	}
}

// checkErrs fails t unless errs' messages are want, in order.
func checkErrs(t *testing.T, errs field.ErrorList, want []string) {
	t.Helper()
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	checkStrings(t, "errors", got, want)
}

func checkStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

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

package translate

import (
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestSitePodSecurity(t *testing.T) {
	for _, tc := range []struct {
		set  vk8sv1.PodSecurityLevel
		want vk8sv1.PodSecurityLevel
	}{
		{"", vk8sv1.PodSecurityBaseline},
		{vk8sv1.PodSecurityPrivileged, vk8sv1.PodSecurityPrivileged},
		{vk8sv1.PodSecurityBaseline, vk8sv1.PodSecurityBaseline},
		{vk8sv1.PodSecurityRestricted, vk8sv1.PodSecurityRestricted},
		{"Privileged", vk8sv1.PodSecurityBaseline}, // the CRD refuses it; never weaker than the default
	} {
		site := &vk8sv1.Site{Spec: vk8sv1.SiteSpec{PodSecurity: vk8sv1.PodSecurity{Enforce: tc.set}}}
		if got := SitePodSecurity(site); got != tc.want {
			t.Errorf("SitePodSecurity(%q) = %q, want %q", tc.set, got, tc.want)
		}
	}
}

func TestStrictestPodSecurity(t *testing.T) {
	const (
		p = vk8sv1.PodSecurityPrivileged
		b = vk8sv1.PodSecurityBaseline
		r = vk8sv1.PodSecurityRestricted
	)
	for _, tc := range []struct {
		levels []vk8sv1.PodSecurityLevel
		want   vk8sv1.PodSecurityLevel
	}{
		{nil, b},
		{[]vk8sv1.PodSecurityLevel{p}, p},
		{[]vk8sv1.PodSecurityLevel{p, p}, p},
		{[]vk8sv1.PodSecurityLevel{p, b}, b},
		{[]vk8sv1.PodSecurityLevel{b, p}, b},
		{[]vk8sv1.PodSecurityLevel{p, r, b}, r},
		{[]vk8sv1.PodSecurityLevel{p, "bogus"}, b},
	} {
		if got := StrictestPodSecurity(tc.levels...); got != tc.want {
			t.Errorf("StrictestPodSecurity(%v) = %q, want %q", tc.levels, got, tc.want)
		}
	}
}

func TestPodSecurityLabels(t *testing.T) {
	want := map[string]string{
		"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/warn": "baseline", "pod-security.kubernetes.io/warn-version": "latest",
		"pod-security.kubernetes.io/audit": "baseline", "pod-security.kubernetes.io/audit-version": "latest",
	}
	if got := PodSecurityLabels(vk8sv1.PodSecurityBaseline); !maps.Equal(got, want) {
		t.Errorf("PodSecurityLabels(baseline) = %v, want %v", got, want)
	}
	if got := PodSecurityLabels(""); !maps.Equal(got, want) {
		t.Errorf("PodSecurityLabels(\"\") = %v, want baseline's %v", got, want)
	}
	if got := PodSecurityLabels(vk8sv1.PodSecurityRestricted)[vk8sv1.LabelPodSecurityEnforce]; got != "restricted" {
		t.Errorf("PodSecurityLabels(restricted) enforce = %q", got)
	}
}

func TestWithPodSecurity(t *testing.T) {
	ours := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme-demo", Labels: map[string]string{
		vk8sv1.LabelTenant: "acme", vk8sv1.LabelHostNamespace: "demo", "team": "a"}}}

	// A namespace of an earlier version, without the labels, gets them; the rest stays.
	got, changed := WithPodSecurity(ours, vk8sv1.PodSecurityBaseline)
	if !changed {
		t.Fatal("WithPodSecurity of a namespace without the labels: unchanged")
	}
	want := PodSecurityLabels(vk8sv1.PodSecurityBaseline)
	maps.Copy(want, ours.Labels)
	if !maps.Equal(got.Labels, want) {
		t.Errorf("labels %v, want %v", got.Labels, want)
	}
	if _, ok := ours.Labels[vk8sv1.LabelPodSecurityEnforce]; ok {
		t.Error("WithPodSecurity modified its argument")
	}

	// At the level already: nothing to write.
	if again, changed := WithPodSecurity(got, vk8sv1.PodSecurityBaseline); changed || again != nil {
		t.Errorf("WithPodSecurity at the same level = %v, %v; want nil, false", again, changed)
	}

	// The Site's level changes: every level label follows, versions stay.
	priv, changed := WithPodSecurity(got, vk8sv1.PodSecurityPrivileged)
	if !changed {
		t.Fatal("WithPodSecurity to privileged: unchanged")
	}
	for _, k := range []string{vk8sv1.LabelPodSecurityEnforce, vk8sv1.LabelPodSecurityWarn, vk8sv1.LabelPodSecurityAudit} {
		if priv.Labels[k] != "privileged" {
			t.Errorf("label %s = %q, want privileged", k, priv.Labels[k])
		}
	}
	if priv.Labels[vk8sv1.LabelPodSecurityEnforceVersion] != "latest" || priv.Labels["team"] != "a" {
		t.Errorf("labels %v", priv.Labels)
	}

	// A version label edited on the site is put back.
	edited := priv.DeepCopy()
	edited.Labels[vk8sv1.LabelPodSecurityEnforceVersion] = "v1.30"
	if back, changed := WithPodSecurity(edited, vk8sv1.PodSecurityPrivileged); !changed || back.Labels[vk8sv1.LabelPodSecurityEnforceVersion] != "latest" {
		t.Errorf("WithPodSecurity of an edited version = %v, %v", back, changed)
	}
}

func TestPodSecurityViolation(t *testing.T) {
	for _, tc := range []struct {
		msg   string
		level string
		ok    bool
	}{
		// What a site on Kubernetes 1.35 answers.
		{`pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true)`, "baseline", true},
		{`pods "p" is forbidden: violates PodSecurity "restricted:v1.30": allowPrivilegeEscalation != false`, "restricted", true},
		{`pods "p" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1`, "", false},
		{`pods "p" is forbidden: violates PodSecurity "`, "", false},
		{`violates PodSecurity "":`, "", false},
		{"", "", false},
	} {
		level, ok := PodSecurityViolation(tc.msg)
		if level != tc.level || ok != tc.ok {
			t.Errorf("PodSecurityViolation(%q) = %q, %v; want %q, %v", tc.msg, level, ok, tc.level, tc.ok)
		}
	}
}

func TestPodSecurityRefusalHostMessage(t *testing.T) {
	const siteMsg = `pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true)`
	base := PodSecurityRefusal{Site: "site2", Namespace: "vk8s-demo", Created: true, Level: "baseline", Message: siteMsg,
		SiteLevel: vk8sv1.PodSecurityBaseline, NamespaceLevel: vk8sv1.PodSecurityBaseline}
	shared := base
	shared.SiteLevel = vk8sv1.PodSecurityPrivileged
	admin := base
	admin.Created = false
	for _, tc := range []struct {
		name     string
		r        PodSecurityRefusal
		want     []string
		dontWant []string
	}{
		{"the Site's level", base, []string{
			"site site2 refused the pod", `namespace vk8s-demo there enforces Pod Security level "baseline"`, "(Site site2 spec.podSecurity.enforce)",
			siteMsg, `change the pod to meet "baseline"`, PodSecurityDocs,
			`kubectl patch site site2 --type merge -p '{"spec":{"podSecurity":{"enforce":"privileged"}}}'`, "retries with backoff",
		}, nil},
		{"a stricter Site on the same cluster", shared, []string{
			`Site site2 asks for "privileged", but other Sites on the same cluster share the namespace`, siteMsg,
			"set spec.podSecurity.enforce of every Site on that cluster",
		}, []string{"kubectl patch"}},
		{"a site administrator's namespace", admin, []string{
			"vk8s did not create the namespace and leaves them alone", siteMsg, "ask the site's administrator",
		}, []string{"kubectl patch", "spec.podSecurity"}},
	} {
		got := tc.r.HostMessage()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: message %q\ndoes not say %q", tc.name, got, w)
			}
		}
		for _, w := range tc.dontWant {
			if strings.Contains(got, w) {
				t.Errorf("%s: message %q\nsays %q", tc.name, got, w)
			}
		}
	}
}

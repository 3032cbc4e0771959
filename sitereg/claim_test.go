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

package sitereg

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestClaim(t *testing.T) {
	site := fake.NewClientset()
	mine := &Claim{Tenant: "vk8s", HostID: "uid-a", HostName: "https://host-a:6443"}
	if err := mine.ensure(t.Context(), site, "https://site:6443"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	cm, err := site.CoreV1().ConfigMaps(ClaimNamespace).Get(t.Context(), "tenant-vk8s", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data[ClaimKeyHostID] != "uid-a" || cm.Data[ClaimKeyHostName] != "https://host-a:6443" {
		t.Errorf("claim data %v", cm.Data)
	}
	if _, err := site.CoreV1().Namespaces().Get(t.Context(), ClaimNamespace, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace %s: %v", ClaimNamespace, err)
	}
	// The same host again (a restart, another replica): its own claim.
	if err := mine.ensure(t.Context(), site, "https://site:6443"); err != nil {
		t.Errorf("own claim: %v", err)
	}
	// Another tenant on the same site: a claim of its own.
	if err := (&Claim{Tenant: "other", HostID: "uid-b"}).ensure(t.Context(), site, "https://site:6443"); err != nil {
		t.Errorf("another tenant: %v", err)
	}
	// Another host with the same tenant: refused, naming the holder and the fix.
	err = (&Claim{Tenant: "vk8s", HostID: "uid-b", HostName: "https://host-b:6443"}).ensure(t.Context(), site, "https://site:6443")
	var se *siteError
	if !errors.As(err, &se) || se.reason != ReasonTenantInUse {
		t.Fatalf("second host: %v, want reason %s", err, ReasonTenantInUse)
	}
	for _, want := range []string{`tenant "vk8s"`, "https://host-a:6443", "uid-a", "vk8s-system/tenant-vk8s", "--tenant", "delete the ConfigMap"} {
		if !strings.Contains(se.message, want) {
			t.Errorf("message %q does not name %q", se.message, want)
		}
	}
	if got := probeFailure("https://site:6443", "ns/secret", err); got != se {
		t.Errorf("probeFailure reclassified the claim error: %v", got)
	}
}

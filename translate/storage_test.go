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
	"testing"

	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/utils/ptr"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

func TestSiteStorageClass(t *testing.T) {
	vk8s := &storagev1.StorageClass{Provisioner: vk8sv1.StorageProvisioner}
	fast := &storagev1.StorageClass{Provisioner: vk8sv1.StorageProvisioner,
		Parameters: map[string]string{vk8sv1.ParameterSiteStorageClass: "local-ssd"}}
	ebs := &storagev1.StorageClass{Provisioner: "ebs.csi.aws.com"}
	for _, tc := range []struct {
		name  string
		claim *string
		class *storagev1.StorageClass
		want  *string
	}{
		{"no class stays none", nil, nil, nil},
		{"vk8s: the site's default", ptr.To("vk8s"), vk8s, nil},
		{"vk8s, unknown to the host yet: the site's default", ptr.To("vk8s"), nil, nil},
		{"a vk8s class with a site class", ptr.To("fast"), fast, ptr.To("local-ssd")},
		{"another provisioner's class stays", ptr.To("gp3"), ebs, ptr.To("gp3")},
		{"a class the host does not have stays", ptr.To("gold"), nil, ptr.To("gold")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := SiteStorageClass(tc.claim, tc.class)
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("SiteStorageClass(%v) = %v, want %v", ptr.Deref(tc.claim, "<nil>"), ptr.Deref(got, "<nil>"), ptr.Deref(tc.want, "<nil>"))
			}
		})
	}
}

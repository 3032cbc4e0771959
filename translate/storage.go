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
	storagev1 "k8s.io/api/storage/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// SiteStorageClass is the storageClassName of a claim's copy on a site, for a host claim
// of StorageClass claimClass, which class is (nil when the host has none of that name). A
// claim of a class of vk8s' provisioner gets the class's siteStorageClassName parameter,
// or the site's default StorageClass (nil); so does a claim of the class "vk8s" when the
// host does not know it (yet). Any other claim keeps its class: the sites must have one of
// that name.
func SiteStorageClass(claimClass *string, class *storagev1.StorageClass) *string {
	if claimClass == nil {
		return nil
	}
	switch {
	case class != nil && class.Provisioner == vk8sv1.StorageProvisioner:
		if s := class.Parameters[vk8sv1.ParameterSiteStorageClass]; s != "" {
			return &s
		}
		return nil
	case class == nil && *claimClass == vk8sv1.StorageClassName:
		return nil
	}
	c := *claimClass
	return &c
}

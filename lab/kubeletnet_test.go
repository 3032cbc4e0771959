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

package lab

import (
	"net"
	"testing"
)

func TestKubeletNetFor(t *testing.T) {
	_, bench, _ := net.ParseCIDR("198.18.0.0/15")
	seen := map[string]string{}
	for _, name := range []string{"vk8s", "e2e", "demo", "bench", "a", "a-very-long-lab-name-of-32-chars"} {
		k := kubeletNetFor(name)
		if k != kubeletNetFor(name) {
			t.Errorf("%s: not deterministic", name)
		}
		root, node := net.ParseIP(k.RootIP).To4(), net.ParseIP(k.NodeIP).To4()
		if root == nil || node == nil || !bench.Contains(root) || !bench.Contains(node) {
			t.Errorf("%s: %s and %s, want both in %s", name, k.RootIP, k.NodeIP, bench)
			continue
		}
		// One /30: .1 and .2 of a block of four.
		if root[3]%4 != 1 || node[3] != root[3]+1 || root[2] != node[2] {
			t.Errorf("%s: %s and %s are not the two hosts of one /30", name, k.RootIP, k.NodeIP)
		}
		for _, link := range []string{k.RootLink, k.NetnsLink} {
			if len(link) > 15 { // IFNAMSIZ - 1
				t.Errorf("%s: link name %q is longer than 15 characters", name, link)
			}
		}
		if k.Netns != "vk8s-lab-"+name || k.RootLink == k.NetnsLink {
			t.Errorf("%s: %+v", name, k)
		}
		if other, ok := seen[k.NodeIP]; ok {
			t.Errorf("%s and %s share %s", name, other, k.NodeIP)
		}
		seen[k.NodeIP] = name
	}
}

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
	"os"
	"strings"
	"testing"
)

// docs/applications.md's table names every kind a vK8s namespace holds.
func TestNamespaceKindsDocumented(t *testing.T) {
	raw, err := os.ReadFile("../docs/applications.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "## Kind by kind")
	end := strings.Index(doc[start:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal(`docs/applications.md has no section "Kind by kind"`)
	}
	table := doc[start : start+end]
	for _, k := range NamespaceKinds {
		if !strings.Contains(table, k.Kind) {
			t.Errorf("docs/applications.md, Kind by kind, does not name %s (%s)", k.Kind, k.Fate)
		}
	}
}

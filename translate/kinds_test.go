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

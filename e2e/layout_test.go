package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductDoesNotImportTests keeps the arrows pointing from tests to
// product: no package outside e2e imports e2e/... (its tests included).
func TestProductDoesNotImportTests(t *testing.T) {
	const e2ePath = "github.com/uvfsd/uvfsd/e2e"
	out, err := exec.Command("go", "list", "-f",
		`{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] == e2ePath || strings.HasPrefix(fields[0], e2ePath+"/") {
			continue
		}
		for _, imp := range fields[1:] {
			if imp == e2ePath || strings.HasPrefix(imp, e2ePath+"/") {
				t.Errorf("%s imports %s: product code must not depend on the tests", fields[0], imp)
			}
		}
	}
}

package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies pins what may import what: only cli/ imports urfave/cli
// (STYLE.md), and nothing links cgo.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}} cgo={{len .CgoFiles}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := f[0]
		if !strings.HasPrefix(pkg, "github.com/roost-containers/roost") {
			continue
		}
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, "github.com/urfave/cli") && pkg != "github.com/roost-containers/roost/cli" {
				t.Errorf("%s imports %s: only cli/ may", pkg, imp)
			}
		}
		if !strings.HasSuffix(line, "cgo=0") {
			t.Errorf("%s has cgo files", pkg)
		}
	}
}

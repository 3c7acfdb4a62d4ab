// Package arch holds the import rules of ARCHITECTURE.md as a test: an
// arrow that points the wrong way fails here, not in a review.
package arch

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/mailmove/mailmove/"

// forbidden lists, per package prefix, the imports it must not have.
var forbidden = []struct {
	pkg, imports, why string
}{
	{"internal/", "go.temporal.io/", "the engine and its helpers know nothing of Temporal"},
	{"internal/", module + "activities", "internal/ is below activities"},
	{"internal/", module + "workflows", "internal/ is below workflows"},
	{"activities", module + "workflows", "workflows call activities, not the other way"},
	{"activities", module + "worker", "the worker registers activities"},
	{"workflows", module + "worker", "the worker registers workflows"},
	{"starter", module + "activities", "the CLI talks to Temporal only"},
	{"starter", module + "internal/engine", "the CLI talks to Temporal only"},
	{"worker", module + "starter", "the CLI runs the worker, not the other way"},
}

type pkg struct {
	ImportPath  string
	Imports     []string
	TestImports []string
}

func TestImportsPointOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range append(p.Imports, p.TestImports...) {
			for _, f := range forbidden {
				if strings.HasPrefix(rel, f.pkg) && strings.HasPrefix(imp, f.imports) {
					t.Errorf("%s imports %s: %s", rel, imp, f.why)
				}
			}
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("go list listed %d packages; want the whole module", checked)
	}
}

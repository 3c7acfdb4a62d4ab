package failure

import "testing"

// Every class is usable wherever the table is read: a known kind, a rule a
// move can carry out, and a remedy for the admin's report.
func TestClassesTable(t *testing.T) {
	seen := map[Type]bool{}
	for _, c := range classes {
		if c.Type == "" || seen[c.Type] {
			t.Errorf("class %q: empty or listed twice", c.Type)
		}
		seen[c.Type] = true
		if got, ok := ClassOf(c.Type); !ok || got.Type != c.Type {
			t.Errorf("ClassOf(%q) = %v, %v", c.Type, got.Type, ok)
		}
		switch c.Kind {
		case KindActivity:
			if !c.Rule.Final && c.Rule.InitialInterval <= 0 {
				t.Errorf("class %s: a rule that waits needs a positive initialInterval: %+v", c.Type, c.Rule)
			}
		case KindMove, KindWarning:
			if c.Rule != (Rule{}) || c.Wait != "" {
				t.Errorf("class %s: only activity failures have a rule or a wait", c.Type)
			}
		default:
			t.Errorf("class %s: unknown kind %d", c.Type, c.Kind)
		}
		if c.Remedy == "" && c.Type != TypeMoveFailed {
			t.Errorf("class %s: no remedy for `batch report`", c.Type)
		}
	}
	if _, ok := ClassOf("NoSuchClass"); ok {
		t.Error(`ClassOf("NoSuchClass") found a class`)
	}
}

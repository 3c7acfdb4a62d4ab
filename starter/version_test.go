package main

import (
	"strings"
	"testing"
)

// `mailmove --version` prints the version make build stamped.
func TestVersionFlag(t *testing.T) {
	defer func(v string) { buildVersion = v }(buildVersion)
	buildVersion = "v9.9.9-test"
	f, out := testFactory(t, nil)
	root := newCmdRoot(f)
	root.SetArgs([]string{"--version"})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "mailmove version v9.9.9-test") {
		t.Fatalf("--version = %v, printed %q", err, out)
	}
}

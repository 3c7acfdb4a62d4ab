package main

import (
	"runtime/debug"
	"strings"
)

// buildVersion is set by `make build` (-ldflags -X) to `git describe`.
var buildVersion string

// version is what `mailmove --version` prints: what `make build` stamped,
// the module version when installed with `go install …@version`, else the
// commit Go stamped into a binary built inside a git checkout, marked
// "+dirty" when the checkout had changes.
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty, when string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		case "vcs.time":
			when = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	return strings.TrimSpace("devel " + rev[:min(12, len(rev))] + dirty + " " + when)
}

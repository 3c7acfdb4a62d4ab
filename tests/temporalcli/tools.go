//go:build tools

// Package temporalcli pins the Temporal CLI that `make bin/temporal`
// builds (see go.mod).
package temporalcli

import _ "github.com/temporalio/cli/cmd/temporal"

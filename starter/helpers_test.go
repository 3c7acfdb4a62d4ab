package main

import (
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// execute runs cmd, built with a runF that records its options, on args.
func execute(cmd *cobra.Command, args ...string) error {
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return cmd.Execute()
}

// squeeze makes each run of spaces in a table one space.
func squeeze(table string) string {
	lines := strings.Split(table, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

type errString string

func (e errString) Error() string { return string(e) }

package main

import (
	"io"

	"github.com/spf13/cobra"
)

// execute runs cmd, built with a runF that records its options, on args.
func execute(cmd *cobra.Command, args ...string) error {
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return cmd.Execute()
}

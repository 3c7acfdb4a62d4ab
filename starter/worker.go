package main

import (
	"github.com/spf13/cobra"

	"github.com/mailmove/mailmove/worker"
)

// newCmdWorker is `mailmove worker`: the worker package defines it, for
// mailmove-worker too; its options are worker.Options and its run is
// worker.Run, with the root's connection flags.
func newCmdWorker(f *factory, runF func(*worker.Options) error) *cobra.Command {
	return worker.NewCommand(f.Conn, runF)
}

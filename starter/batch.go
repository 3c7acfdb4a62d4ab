package main

import "github.com/spf13/cobra"

func newCmdBatch(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch",
		Short: "Start, watch and complete batches of mailbox moves",
	}
	cmd.AddCommand(newCmdBatchStart(g, nil), newCmdBatchStatus(g), newCmdBatchComplete(g), newCmdBatchReport(g), newCmdBatchRetry(g))
	return cmd
}

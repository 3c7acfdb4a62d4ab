package main

import "github.com/spf13/cobra"

func newCmdBatch(f *factory) *cobra.Command {
	return newCmdGroup("batch", "Start, watch and complete batches of mailbox moves",
		newCmdBatchStart(f, nil), newCmdBatchStatus(f, nil), newCmdBatchComplete(f, nil), newCmdBatchReport(f, nil), newCmdBatchRetry(f, nil), newCmdBatchSet(f, nil),
		newCmdBatchPause(f, true, nil), newCmdBatchPause(f, false, nil), newCmdBatchList(f, nil), newCmdBatchCancel(f, nil))
}

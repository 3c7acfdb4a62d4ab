package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

func newCmdBatch(f *factory) *cobra.Command {
	return newCmdGroup("batch", "Start, watch and complete batches of mailbox moves",
		newCmdBatchStart(f, nil), newCmdBatchStatus(f, nil), newCmdBatchComplete(f, nil), newCmdBatchReport(f, nil), newCmdBatchRetry(f, nil), newCmdBatchSet(f, nil),
		newCmdBatchPause(f, true, nil), newCmdBatchPause(f, false, nil), newCmdBatchList(f, nil), newCmdBatchCancel(f, nil), newCmdBatchAdd(f, nil))
}

// signalBatch sends a running batch one signal (batch set, pause, resume).
func signalBatch(ctx context.Context, newClient func() (client.Client, error), name, signal string, arg any) error {
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SignalWorkflow(ctx, workflows.BatchWorkflowID(name), "", signal, arg); err != nil {
		return fmt.Errorf("batch %q: %w", name, err)
	}
	return nil
}

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

type batchCompleteOptions struct {
	Name string
}

func newCmdBatchComplete(g *globalOptions) *cobra.Command {
	opts := &batchCompleteOptions{}
	return &cobra.Command{
		Use:   "complete NAME",
		Short: "Complete the moves of a batch: a last incremental pass, verification, report",
		Long: "Completes every move of the batch that has not ended. A move still in its initial sync\n" +
			"completes as soon as that sync is over.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			return batchCompleteRun(cmd.Context(), g, opts, cmd.OutOrStdout())
		},
	}
}

func batchCompleteRun(ctx context.Context, g *globalOptions, opts *batchCompleteOptions, out io.Writer) error {
	c, rep, err := dialBatch(ctx, g, opts.Name)
	if err != nil {
		return err
	}
	defer c.Close()
	completed, skipped := 0, 0
	for _, m := range rep.Moves {
		if m.Status.Terminal() || m.Status == workflows.StatusCompleting || m.Status == workflows.StatusQueued {
			fmt.Fprintf(out, "%s: %s, skipped\n", m.Mailbox, m.Status)
			skipped++
			continue
		}
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID:   workflows.MoveWorkflowID(opts.Name, m.Mailbox),
			UpdateName:   workflows.UpdateComplete,
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		if err != nil {
			fmt.Fprintf(out, "%s: not completed: %v\n", m.Mailbox, err)
			skipped++
			continue
		}
		fmt.Fprintf(out, "%s: completing\n", m.Mailbox)
		completed++
	}
	fmt.Fprintf(out, "%d moves completing, %d skipped\n", completed, skipped)
	return nil
}

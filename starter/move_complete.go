package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

type moveCompleteOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Mailbox string
	Batch   string
}

func newCmdMoveComplete(f *factory, runF func(*moveCompleteOptions) error) *cobra.Command {
	opts := &moveCompleteOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "complete EMAIL --batch NAME",
		Short: "Complete one move: a last incremental pass, verification, report",
		Long: "Completes one mailbox's move. A move still in its initial sync, or not started yet\n" +
			"(queued behind the batch's --concurrency), completes as soon as its initial sync is over.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Mailbox = args[0]
			if runF != nil {
				return runF(opts)
			}
			return moveCompleteRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Batch, "batch", "", "batch name")
	cmd.MarkFlagRequired("batch")
	return cmd
}

// moveCompleteRun sends the move the complete update, or, when the batch
// has not started it yet, tells the batch.
func moveCompleteRun(ctx context.Context, opts *moveCompleteOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	id := workflows.MoveWorkflowID(opts.Batch, opts.Mailbox)
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: workflows.UpdateComplete, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	var notFound *serviceerror.NotFound
	switch {
	case err == nil:
		fmt.Fprintf(opts.Out, "%s: completing\n", opts.Mailbox)
		return nil
	case !errors.As(err, &notFound):
		return fmt.Errorf("complete %s: %w", id, err)
	}
	if err := c.SignalWorkflow(ctx, workflows.BatchWorkflowID(opts.Batch), "", workflows.SignalCompleteMove, opts.Mailbox); err != nil {
		return fmt.Errorf("complete %s: the move has not started and batch %q did not take the request: %w", opts.Mailbox, opts.Batch, err)
	}
	fmt.Fprintf(opts.Out, "%s: not started yet, completes after its initial sync\n", opts.Mailbox)
	return nil
}

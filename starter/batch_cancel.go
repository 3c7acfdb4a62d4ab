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

type batchCancelOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Name string
	JSON bool
}

func newCmdBatchCancel(f *factory, runF func(*batchCancelOptions) error) *cobra.Command {
	opts := &batchCancelOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "cancel NAME",
		Short: "Stop a batch for good: its moves end where they are, what they copied stays",
		Long: "Cancels the batch and every move of it that has not ended: each stops its copy (what it\n" +
			"copied stays on the target), and the batch starts no other. To stop for a while instead,\n" +
			"use batch pause.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if runF != nil {
				return runF(opts)
			}
			return batchCancelRun(cmd.Context(), opts)
		},
	}
	addJSONFlag(cmd, &opts.JSON)
	return cmd
}

// batchCancelRun cancels the batch first, so that it starts no move while
// the moves it started are cancelled.
func batchCancelRun(ctx context.Context, opts *batchCancelOptions) error {
	c, rep, err := dialBatch(ctx, opts.Client, opts.Name, listAll)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.CancelWorkflow(ctx, workflows.BatchWorkflowID(opts.Name), ""); err != nil {
		return fmt.Errorf("cancel batch %q: %w", opts.Name, err)
	}
	// A gated batch cancels its moves itself too; a move cancelled twice
	// is no worse.
	type result struct{ what, detail string }
	results := eachMove(rep.Moves, func(m workflows.MoveStatus) result {
		if m.Status.Terminal() {
			return result{"ended already", string(m.Status)}
		}
		err := c.CancelWorkflow(ctx, workflows.MoveWorkflowID(opts.Name, m.Mailbox), "")
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &notFound):
			return result{"never started", ""}
		case err != nil:
			return result{"not cancelled", err.Error()}
		}
		return result{"cancelled", ""}
	})
	res := actionResult{Batch: opts.Name, Action: "cancel"}
	for i, r := range results {
		res.add(rep.Moves[i].Mailbox, r.what, r.detail)
	}
	res.Summary = fmt.Sprintf("%s: cancelled, with %d moves under way", opts.Name, res.Counts["cancelled"])
	// The moves cancelled, never started or ended are the usual: only the
	// others get a line.
	return res.print(opts.Out, opts.JSON, "cancelled", "never started", "ended already")
}

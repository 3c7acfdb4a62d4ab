package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

type batchCompleteOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Name  string
	After string // --after: a time, as --start-after takes it
	JSON  bool
}

func newCmdBatchComplete(f *factory, runF func(*batchCompleteOptions) error) *cobra.Command {
	opts := &batchCompleteOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "complete NAME [--after TIME]",
		Short: "Complete the moves of a batch: a last incremental pass, verification, report",
		Long: "Completes every move of the batch that has not ended. A move still in its initial sync,\n" +
			"or not started yet (queued behind --concurrency), completes as soon as its initial sync is over.\n" +
			"With --after, the batch does this itself at that time (the cutover weekend's Friday 18:00).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if runF != nil {
				return runF(opts)
			}
			if opts.After != "" {
				return batchCompleteAfterRun(cmd.Context(), opts, time.Now())
			}
			return batchCompleteRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.After, "after", "", `complete at this time instead of now: "18:00", "2026-12-05 18:00" or RFC 3339`)
	addJSONFlag(cmd, &opts.JSON)
	return cmd
}

// batchCompleteAfterRun tells the batch when to complete its moves.
func batchCompleteAfterRun(ctx context.Context, opts *batchCompleteOptions, now time.Time) error {
	at, err := parseTime("--after", opts.After, now)
	if err != nil {
		return usageError(err)
	}
	if err := signalBatch(ctx, opts.Client, opts.Name, workflows.SignalCompleteAt, at); err != nil {
		return err
	}
	fmt.Fprintf(opts.Out, "%s: its moves complete at %s\n", opts.Name, at.Local().Format("2006-01-02 15:04 MST"))
	return nil
}

// batchCompleteRun sends the complete update to every move that has not
// ended and is not completing already.
func batchCompleteRun(ctx context.Context, opts *batchCompleteOptions) error {
	out := opts.Out
	c, rep, err := dialBatch(ctx, opts.Client, opts.Name, listAll)
	if err != nil {
		return err
	}
	defer c.Close()
	// First the batch, so that a move it starts while this runs completes
	// too. A batch that has ended has nothing left to start.
	batchErr := c.SignalWorkflow(ctx, workflows.BatchWorkflowID(opts.Name), "", workflows.SignalCompleteAll, nil)
	type result struct{ what, detail string }
	results := eachMove(rep.Moves, func(m workflows.MoveStatus) result {
		if m.Status.Terminal() || m.Status == workflows.StatusCompleting {
			return result{"skipped", string(m.Status)}
		}
		if m.Status == workflows.StatusQueued && m.Started.IsZero() && batchErr == nil {
			return result{"completing", "not started yet, completes after its initial sync"}
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
			return result{"not completed", err.Error()}
		}
		return result{"completing", ""}
	})
	res := actionResult{Batch: opts.Name, Action: "complete"}
	for i, r := range results {
		res.add(rep.Moves[i].Mailbox, r.what, r.detail)
	}
	res.Summary = fmt.Sprintf("%d moves completing, %d skipped", res.Counts["completing"], len(results)-res.Counts["completing"])
	return res.print(out, opts.JSON)
}

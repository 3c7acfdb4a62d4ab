package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

type batchPauseOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Name  string
	Pause bool // false: resume
}

// newCmdBatchPause builds `batch pause` (pause true) or `batch resume`.
func newCmdBatchPause(f *factory, pause bool, runF func(*batchPauseOptions) error) *cobra.Command {
	opts := &batchPauseOptions{Client: f.Client, Out: f.Out, Pause: pause}
	cmd := &cobra.Command{
		Use:   "pause NAME",
		Short: "Stop a batch's copying at a safe point, holding no connection, until batch resume",
		Long: "Every move of the batch stops copying at its next safe point (the copy under way finishes\n" +
			"its chunk), gives its slot back and waits, connected to nothing, for batch resume. No\n" +
			"new move starts. Moves started before this version of mailmove are not paused.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if runF != nil {
				return runF(opts)
			}
			return batchPauseRun(cmd.Context(), opts)
		},
	}
	if !pause {
		cmd.Use = "resume NAME"
		cmd.Short = "Let a paused batch copy again"
		cmd.Long = "Ends batch pause: the moves waiting copy again, as many at once as --concurrency allows."
	}
	return cmd
}

// batchPauseRun signals the batch to pause or resume.
func batchPauseRun(ctx context.Context, opts *batchPauseOptions) error {
	if err := signalBatch(ctx, opts.Client, opts.Name, workflows.SignalPause, opts.Pause); err != nil {
		return err
	}
	if opts.Pause {
		fmt.Fprintf(opts.Out, "%s: pausing; its moves stop at their next safe point (batch status shows WaitingForBatchSlot)\n", opts.Name)
	} else {
		fmt.Fprintf(opts.Out, "%s: resuming\n", opts.Name)
	}
	return nil
}

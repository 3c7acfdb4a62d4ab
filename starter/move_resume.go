package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

type moveResumeOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Mailbox string
	Batch   string
}

func newCmdMoveResume(f *factory, runF func(*moveResumeOptions) error) *cobra.Command {
	opts := &moveResumeOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "resume EMAIL --batch NAME",
		Short: "End a move's current wait now (e.g. after raising a full target's quota); a wait for a batch slot ends only when one is free",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Mailbox = args[0]
			if runF != nil {
				return runF(opts)
			}
			return moveResumeRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Batch, "batch", "", "batch name")
	cmd.MarkFlagRequired("batch")
	return cmd
}

// moveResumeRun signals the move to end its wait.
func moveResumeRun(ctx context.Context, opts *moveResumeOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	id := workflows.MoveWorkflowID(opts.Batch, opts.Mailbox)
	if err := c.SignalWorkflow(ctx, id, "", workflows.SignalResume, nil); err != nil {
		return fmt.Errorf("resume %s: %w", id, err)
	}
	fmt.Fprintf(opts.Out, "%s: resuming\n", opts.Mailbox)
	return nil
}

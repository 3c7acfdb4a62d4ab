package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

type batchSetOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Name        string
	Concurrency int
}

func newCmdBatchSet(f *factory, runF func(*batchSetOptions) error) *cobra.Command {
	opts := &batchSetOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "set NAME --concurrency N",
		Short: "Change a running batch: how many of its moves copy at once",
		Long: "Changes --concurrency on a running batch. It bounds the moves copying at once in every\n" +
			"state: initial sync, incremental passes, the final pass, and copying again after a wait.\n" +
			"A higher number starts waiting moves at once; a lower one lets the moves copying now\n" +
			"finish their pass and starts no other until fewer copy.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if opts.Concurrency < 1 {
				return usageErrorf("--concurrency %d: must be at least 1", opts.Concurrency)
			}
			if runF != nil {
				return runF(opts)
			}
			return batchSetRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().IntVar(&opts.Concurrency, "concurrency", 0, "moves of the batch copying at once")
	cmd.MarkFlagRequired("concurrency")
	return cmd
}

// batchSetRun signals the batch its new concurrency.
func batchSetRun(ctx context.Context, opts *batchSetOptions) error {
	if err := signalBatch(ctx, opts.Client, opts.Name, workflows.SignalConcurrency, opts.Concurrency); err != nil {
		return err
	}
	fmt.Fprintf(opts.Out, "%s: at most %d moves copying at once\n", opts.Name, opts.Concurrency)
	return nil
}

package main

import (
	"flag"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/mailmove/mailmove/worker"
)

func newCmdWorker(g *globalOptions) *cobra.Command {
	opts := worker.Options{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker that executes moves (stop with SIGTERM or Ctrl-C)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := zap.NewProduction()
			if err != nil {
				return err
			}
			defer logger.Sync()
			opts.Address, opts.Namespace, opts.SecretKeyFile, opts.Logger = g.Address, g.Namespace, g.SecretKeyFile, logger
			return worker.Run(cmd.Context(), opts)
		},
	}
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	opts.AddFlags(fs)
	cmd.Flags().AddGoFlagSet(fs)
	return cmd
}

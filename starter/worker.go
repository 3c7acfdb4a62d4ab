package main

import (
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
	cmd.Flags().IntVar(&opts.MaxConnectionsPerServer, "max-connections-per-server", 0, "connections this worker holds to one IMAP server at most; copies wait for a free one (0: no cap)")
	cmd.Flags().IntVar(&opts.MaxConcurrentActivities, "max-concurrent-activities", 0, "activities run at once, each holding one source and one target connection (0: SDK default)")
	return cmd
}

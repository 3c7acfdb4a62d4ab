// Command mailmove-worker runs a mailmove worker; it is the same as
// `mailmove worker`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/worker"
)

func main() {
	opts := worker.Options{}
	flag.StringVar(&opts.Address, "address", envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	flag.StringVar(&opts.Namespace, "namespace", envOr("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	flag.StringVar(&opts.SecretKeyFile, "secret-key-file", secret.DefaultKeyFile(), "key that opens the batch passwords; the same file the CLI used")
	opts.AddFlags(flag.CommandLine)
	flag.Parse()

	logger, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer logger.Sync()
	opts.Logger = logger
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := worker.Run(ctx, opts); err != nil {
		logger.Error("worker failed", zap.Error(err))
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

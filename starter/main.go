// Command mailmove starts, watches and completes batches of mailbox moves,
// and runs a worker (`mailmove worker`).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mailmove:", err)
		os.Exit(1)
	}
}

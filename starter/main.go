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
	code := run(ctx, newFactory(os.Stdout, os.Stderr), os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes the command line args and returns mailmove's exit status.
func run(ctx context.Context, f *factory, args []string) int {
	cmd := newCmdRoot(f)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(f.ErrOut, "mailmove:", err)
	}
	return exitCode(err)
}

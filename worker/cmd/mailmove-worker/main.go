// Command mailmove-worker runs a mailmove worker; it is the same as
// `mailmove worker`, with the same flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mailmove/mailmove/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := newRootCmd(nil)
	// Exit 2 for a command line that is wrong, as mailmove does.
	usage := false
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { usage = true; return err })
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailmove-worker:", err)
		if usage {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// newRootCmd is the worker command as the root of its own tree, owning the
// connection flags that `mailmove` defines on its root. runF, when set,
// replaces the run.
func newRootCmd(runF func(*worker.Options) error) *cobra.Command {
	conn := &worker.Connection{}
	cmd := worker.NewCommand(conn, runF)
	cmd.Use = "mailmove-worker"
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	conn.AddFlags(cmd)
	return cmd
}

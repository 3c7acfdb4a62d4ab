package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

const rootLong = `mailmove moves mailboxes between IMAP servers, durably, through Temporal.
Its commands talk to Temporal only (--address, --namespace; a secured cluster
takes the temporal CLI's TLS, API key and profile settings: docs/deploy.md);
workers (` + "`mailmove worker`" + ` or mailmove-worker) log on to the servers and copy.

Exit status:
  0  success
  1  an operation failed (e.g. a batch not started, mailboxes that cannot be planned)
  2  the command line is wrong: an unknown command or flag, a missing or invalid
     flag or argument
  3  Temporal could not be reached
  4  batch status: moves are still queued or copying
  5  batch status: no move runs and some failed`

// newCmdRoot builds mailmove's command tree. Adding a verb is one file with
// its newCmdX and one AddCommand line here or in its group.
func newCmdRoot(f *factory) *cobra.Command {
	cmd := newCmdGroup("mailmove", "Move mailboxes between IMAP servers, durably, through Temporal",
		newCmdBatch(f), newCmdMove(f), newCmdKey(f), newCmdWorker(f, nil), newCmdDevServer(f, nil))
	cmd.Long = rootLong
	cmd.Version = version()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(f.Out)
	cmd.SetErr(f.ErrOut)
	f.Conn.AddFlags(cmd)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	// Cobra checks required flags after this hook and returns a plain error.
	cmd.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		return usageError(c.ValidateRequiredFlags())
	}
	markArgsErrors(cmd)
	return cmd
}

// newCmdGroup is a command that holds verbs: alone it prints its help, with
// a verb it does not have it is a usage error.
func newCmdGroup(use, short string, verbs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q; see %s --help", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(verbs...)
	return cmd
}

// markArgsErrors makes the argument checks of cmd and its subcommands
// usage errors: cobra returns them as plain errors.
func markArgsErrors(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error { return usageError(check(c, args)) }
	}
	for _, sub := range cmd.Commands() {
		markArgsErrors(sub)
	}
}

package main

import (
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/worker"
)

// globalOptions are the flags every command that reaches Temporal shares.
type globalOptions struct {
	worker.Connection
}

func (g *globalOptions) dial() (client.Client, error) {
	return g.Connection.Dial(quietLogger{})
}

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	cmd := &cobra.Command{
		Use:           "mailmove",
		Short:         "Move mailboxes between IMAP servers, durably, through Temporal",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.Connection.AddFlags(cmd)
	cmd.AddCommand(newCmdBatch(g), newCmdMove(g), worker.NewCommand(&g.Connection, nil), newCmdDevServer())
	return cmd
}

// quietLogger keeps the SDK's connection chatter out of the CLI's output.
type quietLogger struct{}

func (quietLogger) Debug(string, ...interface{}) {}
func (quietLogger) Info(string, ...interface{})  {}
func (quietLogger) Warn(string, ...interface{})  {}
func (quietLogger) Error(string, ...interface{}) {}

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/internal/secret"
)

// globalOptions are the flags every command that reaches Temporal shares.
type globalOptions struct {
	Address       string
	Namespace     string
	SecretKeyFile string
}

func (g *globalOptions) dial() (client.Client, error) {
	c, err := client.Dial(client.Options{HostPort: g.Address, Namespace: g.Namespace, Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w; is the server running? (`make dev-server` starts a local one)", g.Address, g.Namespace, err)
	}
	return c, nil
}

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	cmd := &cobra.Command{
		Use:           "mailmove",
		Short:         "Move mailboxes between IMAP servers, durably, through Temporal",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&g.Address, "address", envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	f.StringVar(&g.Namespace, "namespace", envOr("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	f.StringVar(&g.SecretKeyFile, "secret-key-file", secret.DefaultKeyFile(), "key that seals the batch passwords; workers need the same one (or env "+secret.EnvKey+")")
	cmd.AddCommand(newCmdBatch(g), newCmdMove(g), newCmdWorker(g), newCmdDevServer())
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// quietLogger keeps the SDK's connection chatter out of the CLI's output.
type quietLogger struct{}

func (quietLogger) Debug(string, ...interface{}) {}
func (quietLogger) Info(string, ...interface{})  {}
func (quietLogger) Warn(string, ...interface{})  {}
func (quietLogger) Error(string, ...interface{}) {}

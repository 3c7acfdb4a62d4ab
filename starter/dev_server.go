package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/worker"
	"github.com/mailmove/mailmove/workflows"
)

type devServerOptions struct {
	TemporalBin string
	DBFile      string
	IP          string
	Port        int
	UIPort      int
}

func newCmdDevServer() *cobra.Command {
	opts := &devServerOptions{}
	cmd := &cobra.Command{
		Use:   "dev-server",
		Short: "Run the pinned Temporal dev server with its Web UI and mailmove's search attributes",
		Long: "Runs `temporal server start-dev` in the foreground with a persistent SQLite file, so a restart\n" +
			"resumes the moves in flight, and with the search attributes mailmove's workflows set.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := exec.CommandContext(cmd.Context(), opts.TemporalBin, devServerArgs(opts)...)
			c.Stdout, c.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			// Let the server close its SQLite file cleanly on Ctrl-C or SIGTERM.
			c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
			c.WaitDelay = 20 * time.Second
			if err := os.MkdirAll(filepath.Dir(opts.DBFile), 0o755); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Temporal on %s:%d, Web UI http://%s:%d\n", opts.IP, opts.Port, opts.IP, opts.UIPort)
			if err := c.Start(); err != nil {
				return fmt.Errorf("%s: %w (build it with `make bin/temporal`)", opts.TemporalBin, err)
			}
			// start-dev registers --search-attribute only in a new database;
			// one made by an older mailmove lacks the attributes added since.
			go func() {
				addr := fmt.Sprintf("%s:%d", opts.IP, opts.Port)
				for i := 0; i < 120; i++ {
					cl, err := client.Dial(client.Options{HostPort: addr, Logger: quietLogger{}})
					if err == nil {
						err = worker.EnsureSearchAttributes(cmd.Context(), cl, "default", true)
						cl.Close()
						if err == nil {
							return
						}
					}
					time.Sleep(500 * time.Millisecond)
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "mailmove: could not register the search attributes on the dev server")
			}()
			return c.Wait()
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.TemporalBin, "temporal-bin", "bin/temporal", "the pinned Temporal CLI")
	f.StringVar(&opts.DBFile, "db-filename", ".mailmove/temporal.db", "SQLite file that keeps workflows across restarts")
	f.StringVar(&opts.IP, "ip", "127.0.0.1", "address to listen on")
	f.IntVar(&opts.Port, "port", 7233, "gRPC port")
	f.IntVar(&opts.UIPort, "ui-port", 8233, "Web UI port")
	return cmd
}

func devServerArgs(opts *devServerOptions) []string {
	args := []string{"server", "start-dev", "--ip", opts.IP, "--port", strconv.Itoa(opts.Port),
		"--ui-port", strconv.Itoa(opts.UIPort), "--db-filename", opts.DBFile, "--log-level", "warn"}
	for _, sa := range workflows.SearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	return args
}

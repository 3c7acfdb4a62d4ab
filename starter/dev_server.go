package main

import (
	"context"
	"fmt"
	"io"
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
	// Dial connects to the dev server at host:port, namespace default.
	Dial   func(hostPort string) (client.Client, error)
	Out    io.Writer
	ErrOut io.Writer

	TemporalBin string
	DBFile      string
	IP          string
	Port        int
	UIPort      int
}

func newCmdDevServer(f *factory, runF func(*devServerOptions) error) *cobra.Command {
	opts := &devServerOptions{Out: f.Out, ErrOut: f.ErrOut, Dial: func(hostPort string) (client.Client, error) {
		return f.Dial(worker.Connection{Address: hostPort, Namespace: "default"})
	}}
	cmd := &cobra.Command{
		Use:   "dev-server",
		Short: "Run the pinned Temporal dev server with its Web UI and mailmove's search attributes",
		Long: "Runs `temporal server start-dev` in the foreground with a persistent SQLite file, so a restart\n" +
			"resumes the moves in flight, and with the search attributes mailmove's workflows set.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return devServerRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.TemporalBin, "temporal-bin", "bin/temporal", "the pinned Temporal CLI")
	fl.StringVar(&opts.DBFile, "db-filename", ".mailmove/temporal.db", "SQLite file that keeps workflows across restarts")
	fl.StringVar(&opts.IP, "ip", "127.0.0.1", "address to listen on")
	fl.IntVar(&opts.Port, "port", 7233, "gRPC port")
	fl.IntVar(&opts.UIPort, "ui-port", 8233, "Web UI port")
	return cmd
}

// devServerRun runs the dev server until it exits or ctx ends, registering
// mailmove's search attributes meanwhile.
func devServerRun(ctx context.Context, opts *devServerOptions) error {
	c := exec.CommandContext(ctx, opts.TemporalBin, devServerArgs(opts)...)
	c.Stdout, c.Stderr = opts.Out, opts.ErrOut
	// Let the server close its SQLite file cleanly on Ctrl-C or SIGTERM.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 20 * time.Second
	if err := os.MkdirAll(filepath.Dir(opts.DBFile), 0o755); err != nil {
		return err
	}
	fmt.Fprintf(opts.ErrOut, "Temporal on %s:%d, Web UI http://%s:%d\n", opts.IP, opts.Port, opts.IP, opts.UIPort)
	if err := c.Start(); err != nil {
		return fmt.Errorf("%s: %w (build it with `make bin/temporal`)", opts.TemporalBin, err)
	}
	regCtx, stopRegistering := context.WithCancel(ctx)
	registered := make(chan struct{})
	go func() {
		defer close(registered)
		registerSearchAttributes(regCtx, opts)
	}()
	err := c.Wait()
	stopRegistering()
	<-registered
	return err
}

// registerSearchAttributes adds the search attributes the dev server lacks:
// start-dev registers --search-attribute only in a new database, and one
// made by an older mailmove lacks those added since.
func registerSearchAttributes(ctx context.Context, opts *devServerOptions) {
	addr := fmt.Sprintf("%s:%d", opts.IP, opts.Port)
	for i := 0; i < 120; i++ {
		cl, err := opts.Dial(addr)
		if err == nil {
			err = worker.EnsureSearchAttributes(ctx, cl, "default", true)
			cl.Close()
			if err == nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	fmt.Fprintln(opts.ErrOut, "mailmove: could not register the search attributes on the dev server")
}

func devServerArgs(opts *devServerOptions) []string {
	args := []string{"server", "start-dev", "--ip", opts.IP, "--port", strconv.Itoa(opts.Port),
		"--ui-port", strconv.Itoa(opts.UIPort), "--db-filename", opts.DBFile, "--log-level", "warn"}
	for _, sa := range workflows.SearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	return args
}

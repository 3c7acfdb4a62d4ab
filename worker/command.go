package worker

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
)

// NewCommand builds the command that runs a worker, for `mailmove worker`
// and as the root of mailmove-worker. It defines the flags that size a
// worker and runs with conn, whose flags the root of the command tree owns
// (see Connection.AddFlags). Invalid sizing flags go through the tree's
// FlagErrorFunc, as cobra's own flag errors do. runF, when set, replaces
// the run (tests use it to see the parsed options).
func NewCommand(conn *Connection, runF func(*Options) error) *cobra.Command {
	opts := &Options{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker that executes moves (stop with SIGTERM or Ctrl-C)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.Validate(); err != nil {
				return cmd.FlagErrorFunc()(cmd, err)
			}
			opts.Connection = *conn
			if opts.SessionIdle == 0 {
				opts.SessionIdle = -1
			}
			if runF != nil {
				return runF(opts)
			}
			return runLogged(cmd.Context(), *opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.MaxConcurrentActivities, "max-concurrent-activities", 0, "copies run at once, each holding one source and one target connection (0: the SDK default, 1,000)")
	f.IntVar(&opts.MaxConnectionsPerServer, "max-connections-per-server", 0, "connections this worker holds to one IMAP server at most; copies wait for a free one (0: no cap). Per process: for limits across all workers, batch start --source-max-connections and --source-connection-rate (docs/limits.md)")
	f.StringVar(&opts.MetricsAddress, "metrics-address", "", "serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9464 (docs/metrics.md lists them; empty: none)")
	f.DurationVar(&opts.SessionIdle, "session-idle", activities.DefaultSessionIdle, "how long an IMAP session of a call that ended well waits for the next call of its move on this worker, which then skips the logon (0: every call logs on)")
	f.Float64Var(&opts.ActivitiesPerSecond, "activities-per-second", 0, "copies started per second on the task queue, across all workers, e.g. to spare servers a storm of logins when a large batch starts (0: no cap)")
	return cmd
}

// Validate rejects the sizing flags no worker can run with.
func (o *Options) Validate() error {
	switch {
	case o.MaxConcurrentActivities < 0:
		return fmt.Errorf("--max-concurrent-activities %d: write 1 or more, or 0 for the SDK default", o.MaxConcurrentActivities)
	case o.MaxConnectionsPerServer < 0:
		return fmt.Errorf("--max-connections-per-server %d: write 1 or more, or 0 for no cap", o.MaxConnectionsPerServer)
	case o.SessionIdle < 0 || o.SessionIdle >= engine.DefaultIdleTimeout:
		return fmt.Errorf("--session-idle %s: write a duration below %s (firewalls drop idle connections after a few minutes, and a parked session holds its connection place meanwhile), or 0 to keep no session", o.SessionIdle, engine.DefaultIdleTimeout)
	case o.ActivitiesPerSecond < 0:
		return fmt.Errorf("--activities-per-second %g: write a rate above 0, e.g. 5, or 0 for no cap", o.ActivitiesPerSecond)
	}
	return nil
}

// runLogged runs a worker that logs to stderr as JSON.
func runLogged(ctx context.Context, opts Options) error {
	logger, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer logger.Sync()
	opts.Logger = logger
	if err := Run(ctx, opts); err != nil {
		logger.Error("worker failed", zap.Error(err))
		return err
	}
	return nil
}

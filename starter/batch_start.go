package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/csvbatch"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/policy"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

type batchStartOptions struct {
	Name               string
	CSV                string
	Source             string
	Target             string
	SourceSecurity     string
	TargetSecurity     string
	InsecureSkipVerify bool
	Complete           string
	Concurrency        int
	PolicyFile         string
	LogonAttempts      int
	LogonRetryInterval time.Duration
	Settings           workflows.Settings
}

func newCmdBatchStart(g *globalOptions) *cobra.Command {
	opts := &batchStartOptions{}
	cmd := &cobra.Command{
		Use:   "start --name NAME --csv FILE --source HOST:PORT --target HOST:PORT",
		Short: "Start a batch of moves from a CSV file (EmailAddress,UserName,Password[,TargetUserName,TargetPassword])",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return batchStartRun(cmd.Context(), g, opts, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", "", "batch name (unique; names the moves' workflow IDs)")
	f.StringVar(&opts.CSV, "csv", "", "CSV file of mailboxes")
	f.StringVar(&opts.Source, "source", "", "source IMAP server host:port")
	f.StringVar(&opts.Target, "target", "", "target IMAP server host:port")
	f.StringVar(&opts.SourceSecurity, "source-security", "tls", "tls, starttls or none")
	f.StringVar(&opts.TargetSecurity, "target-security", "tls", "tls, starttls or none")
	f.BoolVar(&opts.InsecureSkipVerify, "insecure-skip-verify", false, "accept any TLS certificate (self-signed test servers)")
	f.StringVar(&opts.Complete, "complete", "auto", "auto: finish each move after its initial sync; manual: keep syncing until `batch complete`")
	f.IntVar(&opts.Concurrency, "concurrency", workflows.DefaultConcurrency, "moves in their initial sync at once")
	f.DurationVar(&opts.Settings.IncrementalInterval, "incremental-interval", workflows.DefaultIncrementalInterval, "time between incremental passes (manual completion)")
	f.StringVar(&opts.PolicyFile, "policy", "", "YAML or JSON failure policy over the defaults (docs/failure-policy.md)")
	f.IntVar(&opts.LogonAttempts, "logon-attempts", 0, "logon attempts before a move fails (overrides the policy; default 5)")
	f.DurationVar(&opts.LogonRetryInterval, "logon-retry-interval", 0, "first wait between logon attempts, doubling up to 5m (overrides the policy; default 30s)")
	f.IntVar(&opts.Settings.FolderConcurrency, "folder-concurrency", workflows.DefaultFolderConcurrency, "folders of one mailbox copied at once (each uses one connection per side)")
	f.BoolVar(&opts.Settings.PropagateDeletes, "propagate-deletes", false, "expunge from the target what users expunge from the source during the move")
	f.IntVar(&opts.Settings.ChunkMessages, "chunk-messages", workflows.DefaultChunkMessages, "messages one activity copies before it reports progress to the workflow")
	f.DurationVar(&opts.Settings.HeartbeatTimeout, "heartbeat-timeout", workflows.DefaultHeartbeatTimeout, "how soon a copy on a dead worker is resumed elsewhere")
	for _, n := range []string{"name", "csv", "source", "target"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

// batchInput validates the options and reads the CSV; it does no network I/O.
func batchInput(opts *batchStartOptions, key *secret.Key) (workflows.BatchInput, error) {
	srcSec, err := engine.ParseSecurity(opts.SourceSecurity)
	if err != nil {
		return workflows.BatchInput{}, fmt.Errorf("--source-security: %w", err)
	}
	tgtSec, err := engine.ParseSecurity(opts.TargetSecurity)
	if err != nil {
		return workflows.BatchInput{}, fmt.Errorf("--target-security: %w", err)
	}
	switch workflows.CompleteMode(opts.Complete) {
	case workflows.CompleteAuto, workflows.CompleteManual:
		opts.Settings.Complete = workflows.CompleteMode(opts.Complete)
	default:
		return workflows.BatchInput{}, fmt.Errorf("--complete %q: use auto or manual", opts.Complete)
	}
	if opts.Concurrency < 1 {
		return workflows.BatchInput{}, fmt.Errorf("--concurrency %d: must be at least 1", opts.Concurrency)
	}
	pol := policy.Default()
	if opts.PolicyFile != "" {
		if pol, err = policy.Load(opts.PolicyFile); err != nil {
			return workflows.BatchInput{}, err
		}
	}
	logon := pol.Rule(failure.TypeLogonFailed)
	if opts.LogonAttempts < 0 {
		return workflows.BatchInput{}, fmt.Errorf("--logon-attempts %d: must be at least 1", opts.LogonAttempts)
	}
	if opts.LogonAttempts > 0 {
		logon.MaximumAttempts = opts.LogonAttempts
	}
	if opts.LogonRetryInterval > 0 {
		logon.InitialInterval = policy.Duration(opts.LogonRetryInterval)
		if logon.MaximumInterval < logon.InitialInterval {
			logon.MaximumInterval = logon.InitialInterval
		}
	}
	pol.Rules[failure.TypeLogonFailed] = logon
	opts.Settings.Policy = &pol
	f, err := os.Open(opts.CSV)
	if err != nil {
		return workflows.BatchInput{}, fmt.Errorf("--csv: %w", err)
	}
	defer f.Close()
	rows, err := csvbatch.Parse(f)
	if err != nil {
		return workflows.BatchInput{}, fmt.Errorf("%s: %w", opts.CSV, err)
	}
	in := workflows.BatchInput{Name: opts.Name, Concurrency: opts.Concurrency}
	for _, r := range rows {
		sp, err := key.Seal(r.Password)
		if err != nil {
			return in, err
		}
		tp, err := key.Seal(r.TargetPassword)
		if err != nil {
			return in, err
		}
		in.Moves = append(in.Moves, workflows.MailboxMoveInput{
			Batch: opts.Name, Mailbox: r.EmailAddress, Settings: opts.Settings,
			Source: activities.Account{Endpoint: engine.Endpoint{Addr: opts.Source, Security: srcSec, InsecureSkipVerify: opts.InsecureSkipVerify}, User: r.UserName, Password: sp},
			Target: activities.Account{Endpoint: engine.Endpoint{Addr: opts.Target, Security: tgtSec, InsecureSkipVerify: opts.InsecureSkipVerify}, User: r.TargetUserName, Password: tp},
		})
	}
	return in, nil
}

func batchStartRun(ctx context.Context, g *globalOptions, opts *batchStartOptions, out io.Writer) error {
	key, err := secret.Load(g.SecretKeyFile, true)
	if err != nil {
		return err
	}
	in, err := batchInput(opts, key)
	if err != nil {
		return err
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    workflows.BatchWorkflowID(opts.Name),
		TaskQueue:             workflows.TaskQueue,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// Without this the SDK quietly hands back the existing batch.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(workflows.SearchAttrBatch.ValueSet(opts.Name)),
	}, workflows.Batch, in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return fmt.Errorf("batch %q already exists: its moves are not started twice; pick another --name", opts.Name)
	}
	if err != nil {
		return fmt.Errorf("start batch: %w", err)
	}
	fmt.Fprintf(out, "Started batch %s: %d mailboxes, %d at a time (workflow %s, run %s)\n", opts.Name, len(in.Moves), in.Concurrency, run.GetID(), run.GetRunID())
	fmt.Fprintf(out, "Watch it with: mailmove batch status %s --watch\n", opts.Name)
	return nil
}

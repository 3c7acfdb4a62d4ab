package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/mailmove/mailmove/internal/csvbatch"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

type batchRetryOptions struct {
	Client func() (client.Client, error)
	Key    func(create bool) (*secret.Key, error)
	Out    io.Writer

	Name   string
	Failed bool
	CSV    string
	JSON   bool
}

func newCmdBatchRetry(f *factory, runF func(*batchRetryOptions) error) *cobra.Command {
	opts := &batchRetryOptions{Client: f.Client, Key: f.Key, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "retry NAME --failed",
		Short: "Start the failed moves of a batch again, keeping what they already copied",
		Long: "Starts every failed move of the batch again from where it stopped: its folder plan and\n" +
			"per-folder progress are carried over, so nothing is copied twice. Fix the cause first\n" +
			"(see `mailmove batch report`).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if !opts.Failed {
				return usageErrorf("say which moves to retry: --failed")
			}
			if runF != nil {
				return runF(opts)
			}
			return batchRetryRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Failed, "failed", false, "retry the moves that failed")
	cmd.Flags().StringVar(&opts.CSV, "csv", "", "take corrected credentials from this CSV (same columns as batch start)")
	addJSONFlag(cmd, &opts.JSON)
	return cmd
}

// batchRetryRun starts every failed move of the batch again, with the
// corrected credentials of --csv if given.
func batchRetryRun(ctx context.Context, opts *batchRetryOptions) error {
	out := opts.Out
	creds, err := correctedCredentials(opts.Key, opts.CSV)
	if err != nil {
		return err
	}
	c, rep, err := dialBatch(ctx, opts.Client, opts.Name, listAll)
	if err != nil {
		return err
	}
	defer c.Close()
	if rep.State != "" {
		// A gated batch: it takes the moves back (started again when it
		// has ended) and they wait for its slots like the others.
		if err := rejoinBatch(ctx, c, rep); err != nil {
			return err
		}
	}
	res := actionResult{Batch: opts.Name, Action: "retry"}
	var errs []error
	for _, m := range rep.Moves {
		if m.Status != workflows.StatusFailed {
			continue
		}
		if err := retryMove(ctx, c, rep, m.Mailbox, creds[strings.ToLower(m.Mailbox)]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Mailbox, err))
			res.add(m.Mailbox, "not started", err.Error())
			continue
		}
		res.add(m.Mailbox, "started again", "")
	}
	res.Summary = fmt.Sprintf("%d failed moves started again", res.Counts["started again"])
	// The errors follow on stderr, and set the exit status.
	if err := res.print(out, opts.JSON, "not started"); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// retryMove starts a failed move again under its workflow ID with the
// input it was started with and the progress it had made.
func retryMove(ctx context.Context, c client.Client, rep batchReport, mailbox string, fix *sealedRow) error {
	batch := rep.Batch
	id := workflows.MoveWorkflowID(batch, mailbox)
	in, err := startInput(ctx, c, id)
	if err != nil {
		return err
	}
	if fix != nil {
		if err := checkServers(rep.Batch, rep.Source, rep.Target, id, in); err != nil {
			return err
		}
		if err := fix.apply(&in); err != nil {
			return err
		}
	}
	v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryState)
	if err != nil {
		return fmt.Errorf("read the progress of the failed move: %w", err)
	}
	var st workflows.MoveState
	if err := v.Get(&st); err != nil {
		return err
	}
	// Keep the plan, cursors and counters; start the failure budgets and
	// the status afresh.
	st.Status, st.StatusDetail, st.Reason = workflows.StatusQueued, workflows.DetailQueued, ""
	st.Attempts, st.NextAttemptAt = nil, time.Time{}
	// It holds no slot: a gated move asks its batch before it copies; a
	// move of a batch started before gating has no batch to ask.
	st.Released = true
	in.State = &st
	_, err = c.ExecuteWorkflow(ctx, moveStartOptions(batch, mailbox), workflows.MailboxMove, in)
	return err
}

// rejoinBatch names a gated batch's failed moves to it before they start
// again, starting the batch again if it has ended, with the concurrency
// and allowed hours it had: retried moves honour them too.
func rejoinBatch(ctx context.Context, c client.Client, rep batchReport) error {
	var failed []string
	for _, m := range rep.Moves {
		if m.Status == workflows.StatusFailed {
			failed = append(failed, m.Mailbox)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	page := failed[:min(len(failed), namesPerSignal)]
	_, err := c.SignalWithStartWorkflow(ctx, workflows.BatchWorkflowID(rep.Batch), workflows.SignalAddMoves, page, client.StartWorkflowOptions{
		ID:                    workflows.BatchWorkflowID(rep.Batch),
		TaskQueue:             workflows.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.SearchAttrBatch.ValueSet(rep.Batch)),
	}, workflows.Batch, workflows.BatchInput{Name: rep.Batch, Gated: true, Concurrency: rep.Concurrency, Window: rep.Window, WindowZone: rep.WindowZone,
		Source: rep.Source, Target: rep.Target})
	if err != nil {
		return fmt.Errorf("batch %q: take the failed moves back: %w", rep.Batch, err)
	}
	return registerMoves(ctx, c, rep.Batch, failed[len(page):])
}

// sealedRow is one CSV row's corrected credentials, sealed by apply for
// the move they correct (its servers and security, the row's users).
type sealedRow struct {
	key                      *secret.Key
	user, targetUser         string
	password, targetPassword string
}

// apply puts the corrected users and their passwords, sealed for them,
// into the move's input.
func (r *sealedRow) apply(in *workflows.MailboxMoveInput) error {
	in.Source.User, in.Target.User = r.user, r.targetUser
	var err error
	if in.Source.Password, err = sealPassword(r.key, failure.SideSource, in.Source, r.password); err != nil {
		return err
	}
	in.Target.Password, err = sealPassword(r.key, failure.SideTarget, in.Target, r.targetPassword)
	return err
}

// correctedCredentials reads a CSV of corrected credentials, by lower-case
// EmailAddress; none without a file.
func correctedCredentials(loadKey func(create bool) (*secret.Key, error), file string) (map[string]*sealedRow, error) {
	if file == "" {
		return nil, nil
	}
	key, err := loadKey(true)
	if err != nil {
		return nil, err
	}
	rows, err := readCSV(file, csvbatch.BothSides)
	if err != nil {
		return nil, usageError(err)
	}
	out := make(map[string]*sealedRow, len(rows))
	for _, r := range rows {
		out[strings.ToLower(r.EmailAddress)] = &sealedRow{key: key, user: r.UserName, targetUser: r.TargetUserName, password: r.Password, targetPassword: r.TargetPassword}
	}
	return out, nil
}

// startInput reads the input a workflow was started with from its history.
func startInput(ctx context.Context, c client.Client, id string) (workflows.MailboxMoveInput, error) {
	var in workflows.MailboxMoveInput
	it := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return in, fmt.Errorf("workflow %s has no history", id)
	}
	ev, err := it.Next()
	if err != nil {
		return in, err
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil {
		return in, fmt.Errorf("workflow %s: first event is %s", id, ev.GetEventType())
	}
	if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &in); err != nil {
		return in, fmt.Errorf("workflow %s: read its input: %w", id, err)
	}
	if in.State != nil {
		// A run started by continue-as-new or an earlier retry: its
		// progress comes from the query, not from its input.
		in.State = nil
	}
	return in, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/mailmove/mailmove/internal/csvbatch"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

type batchAddOptions struct {
	Client func() (client.Client, error)
	Key    func(create bool) (*secret.Key, error)
	Out    io.Writer
	ErrOut io.Writer

	Name string
	CSV  string
	JSON bool
}

func newCmdBatchAdd(f *factory, runF func(*batchAddOptions) error) *cobra.Command {
	opts := &batchAddOptions{Client: f.Client, Key: f.Key, Out: f.Out, ErrOut: f.ErrOut}
	cmd := &cobra.Command{
		Use:   "add NAME --csv FILE",
		Short: "Add mailboxes to a running batch (same CSV columns as batch start)",
		Long: "Adds the mailboxes of the CSV to a running batch: they move with the batch's servers,\n" +
			"logon, rules and settings, and wait for its slots like the others. A mailbox already in\n" +
			"the batch is left as it is, so running the same command again after it was cut off starts\n" +
			"only the moves it had not started.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if runF != nil {
				return runF(opts)
			}
			return batchAddRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.CSV, "csv", "", "CSV file of the mailboxes to add")
	cmd.MarkFlagRequired("csv")
	addJSONFlag(cmd, &opts.JSON)
	return cmd
}

// batchAddRun starts the CSV's moves into a running gated batch, with the
// settings of a move the batch already has.
func batchAddRun(ctx context.Context, opts *batchAddOptions) error {
	key, err := opts.Key(true)
	if err != nil {
		return err
	}
	c, err := opts.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	memo, err := runningGatedBatch(ctx, c, opts.Name)
	if err != nil {
		return err
	}
	tmpl, id, err := batchTemplate(ctx, c, opts.Name)
	if err != nil {
		return err
	}
	if err := checkServers(opts.Name, memo.Source, memo.Target, id, tmpl); err != nil {
		return err
	}
	moves, err := movesFromCSV(opts.CSV, tmpl, key)
	if err != nil {
		return usageError(err)
	}
	if err := checkBatchSize(memo.Mailboxes, len(moves)); err != nil {
		return usageError(fmt.Errorf("--csv %s: %w", opts.CSV, err))
	}
	if err := registerMoves(ctx, c, opts.Name, mailboxes(moves)); err != nil {
		return err
	}
	started, already, err := startMoves(ctx, c, opts.Name, moves, opts.ErrOut)
	res := actionResult{Batch: opts.Name, Action: "add", Counts: map[string]int{"started": started, "already there": already},
		Summary: opts.Name + ": " + startedLine(started, already)}
	if perr := res.print(opts.Out, opts.JSON); perr != nil {
		return perr
	}
	return err
}

// runningGatedBatch is the memo of a running batch that takes mailboxes.
func runningGatedBatch(ctx context.Context, c client.Client, name string) (workflows.BatchMemo, error) {
	var memo workflows.BatchMemo
	desc, err := c.DescribeWorkflowExecution(ctx, workflows.BatchWorkflowID(name), "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return memo, fmt.Errorf("no batch %q: `mailmove batch list` shows the batches there are", name)
	case err != nil:
		return memo, fmt.Errorf("batch %q: %w", name, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if state := stateName(info.GetStatus()); state != "Running" {
		return memo, fmt.Errorf("batch %q has ended (%s): start a new batch for these mailboxes", name, state)
	}
	p := info.GetMemo().GetFields()[workflows.MemoBatch]
	if p == nil {
		return memo, fmt.Errorf("batch %q was started by an older mailmove, whose batches take no mailboxes once started: start a new batch for these", name)
	}
	return memo, converter.GetDefaultDataConverter().FromPayload(p, &memo)
}

// batchTemplate is the input of one of the batch's moves (and its
// workflow ID), the servers, logon and settings the mailboxes added get.
func batchTemplate(ctx context.Context, c client.Client, name string) (workflows.MailboxMoveInput, string, error) {
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1,
		Query: fmt.Sprintf("%s = %s AND WorkflowType = 'MailboxMove'", workflows.SearchAttrBatch.GetName(), quoteQuery(name))})
	if err != nil {
		return workflows.MailboxMoveInput{}, "", fmt.Errorf("batch %q: find one of its moves: %w", name, err)
	}
	if len(resp.GetExecutions()) == 0 {
		return workflows.MailboxMoveInput{}, "", fmt.Errorf("batch %q has no move to take the settings from yet: try again in a moment", name)
	}
	id := resp.GetExecutions()[0].GetExecution().GetWorkflowId()
	in, err := startInput(ctx, c, id)
	return in, id, err
}

// checkServers refuses a move whose servers are not those its batch was
// started with, before the CLI seals a password for them: a move is
// found by the batch's search attribute, which anyone who may start
// workflows can set, so one of their own would have the passwords sealed
// for their server (and the binding then lets it open there). Batches
// started before the batch kept its servers have none to compare.
func checkServers(batch string, source, target workflows.Endpoint, id string, in workflows.MailboxMoveInput) error {
	for _, s := range []struct {
		side      string
		want, got workflows.Endpoint
	}{{"source", source, in.Source.Endpoint}, {"target", target, in.Target.Endpoint}} {
		if s.want == (workflows.Endpoint{}) || s.want == s.got {
			continue
		}
		return fmt.Errorf("move %s names the %s server %s (security %s), but batch %s was started with %s (security %s): "+
			"it was not started by mailmove for this batch, and no password is sealed for it; end it in the Temporal Web UI and ask who started it",
			id, s.side, s.got.Addr, s.got.Security, batch, s.want.Addr, s.want.Security)
	}
	return nil
}

// movesFromCSV reads the CSV of mailboxes to add to a batch whose moves
// are like tmpl.
func movesFromCSV(file string, tmpl workflows.MailboxMoveInput, key *secret.Key) ([]workflows.MailboxMoveInput, error) {
	src, tgt := needsPassword(tmpl.Source), needsPassword(tmpl.Target)
	rows, err := readCSV(file, csvbatch.Passwords{Source: src, Target: tgt, Hint: " (the batch's moves log on with their own passwords)"})
	if err != nil {
		return nil, err
	}
	tmpl.State = nil
	return movesFromRows(rows, tmpl, key, src, tgt)
}

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/workflows"
)

type batchStatusOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Name     string
	JSON     bool
	Watch    bool
	Interval time.Duration
	List     listing
}

func newCmdBatchStatus(f *factory, runF func(*batchStatusOptions) error) *cobra.Command {
	opts := &batchStatusOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show every move of a batch: status, percent, messages, bytes, last error",
		Long: "Shows every move of a batch, read from Temporal's visibility store (no query to the workers).\n\n" +
			"Exit status: 0 when every move is synced or completed, 4 while moves are queued or copying,\n" +
			"5 when none is and some failed (1, 2 and 3 as for every command).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			switch opts.List {
			case listAuto, listAll, listActive:
			default:
				return usageErrorf("--list %q: write auto, all or active", opts.List)
			}
			if opts.Interval <= 0 {
				return usageErrorf("--interval %s: must be above zero, e.g. 2s", opts.Interval)
			}
			if runF != nil {
				return runF(opts)
			}
			return batchStatusRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&opts.Watch, "watch", false, "redraw until every move is Synced, Completed or Failed: one screen on a terminal (moves copying with bars, waits with their reason, throughput, ETA), a line per refresh elsewhere")
	cmd.Flags().DurationVar(&opts.Interval, "interval", 2*time.Second, "refresh interval with --watch")
	cmd.Flags().StringVar((*string)(&opts.List), "list", string(listAuto), fmt.Sprintf("moves to list: all, active (copying, waiting or failed; the others counted), or auto (all up to %d mailboxes)", listAllUpTo))
	return cmd
}

// batchReport is the JSON form of `batch status`.
type batchReport struct {
	Batch string
	// State is the batch workflow's (Running, Completed…), for a gated
	// batch.
	State string `json:",omitempty"`
	// Concurrency and Paused are the batch's own (batch set, batch pause).
	Concurrency int       `json:",omitempty"`
	Paused      bool      `json:",omitempty"`
	StartAfter  time.Time `json:",omitempty"`
	// OutsideWindow and WindowChange: the allowed hours (--window).
	OutsideWindow bool      `json:",omitempty"`
	WindowChange  time.Time `json:",omitempty"`
	Window        string    `json:",omitempty"`
	WindowZone    string    `json:",omitempty"`
	// Source and Target: the servers the batch was started with.
	Source workflows.Endpoint `json:",omitzero"`
	Target workflows.Endpoint `json:",omitzero"`
	// Listed says which moves Moves holds: "all", or, above a few
	// hundred mailboxes, "active" (copying, waiting or failed) or
	// "problems" (failed or completed with warnings); Totals counts
	// every move either way, and copied sums those listed.
	Listed listing `json:",omitempty"`
	Moves  []workflows.MoveStatus
	Totals totals
}

type totals struct {
	Mailboxes      int
	ByStatus       map[workflows.Status]int
	MessagesCopied int
	BytesCopied    int64
}

// batchStatusRun prints the batch's report, again every --interval with
// --watch. Live progress is in each move's status query.
func batchStatusRun(ctx context.Context, opts *batchStatusOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	view := newWatchView(opts.Out)
	for {
		rep, err := fetchBatch(ctx, c, opts.Name, opts.List)
		if err != nil {
			return err
		}
		switch {
		case opts.JSON:
			enc := json.NewEncoder(opts.Out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		case opts.Watch:
			view.draw(rep, time.Now())
		default:
			printBatchReport(opts.Out, rep)
		}
		if !opts.Watch || settled(rep) {
			return batchExit(rep)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(opts.Interval):
		}
	}
}

// settled: nothing is left to wait for in the batch's first phase.
func settled(rep batchReport) bool {
	for s, n := range rep.Totals.ByStatus {
		if n > 0 && s != workflows.StatusSynced && !s.Terminal() {
			return false
		}
	}
	return true
}

// dialBatch connects to Temporal and reads the batch's report, for the
// commands that act on every move of a batch. The caller closes the client.
func dialBatch(ctx context.Context, newClient func() (client.Client, error), name string, what listing) (client.Client, batchReport, error) {
	c, err := newClient()
	if err != nil {
		return nil, batchReport{}, err
	}
	rep, err := fetchBatch(ctx, c, name, what)
	if err != nil {
		c.Close()
		return nil, batchReport{}, err
	}
	return c, rep, nil
}

// fetchBatch reads a batch's report: for a gated batch from the
// visibility store (the batch's memo, then counts and a paged list of the
// moves what names: a few calls, no query to the workers); for a batch
// started before gating, by querying the batch and each move.
func fetchBatch(ctx context.Context, c client.Client, name string, what listing) (batchReport, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, workflows.BatchWorkflowID(name), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return batchReport{}, fmt.Errorf("no batch %q: `mailmove batch list` shows the batches there are", name)
	}
	if err != nil {
		return batchReport{}, fmt.Errorf("batch %q: %w", name, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if p := info.GetMemo().GetFields()[workflows.MemoBatch]; p != nil {
		var memo workflows.BatchMemo
		if err := converter.GetDefaultDataConverter().FromPayload(p, &memo); err != nil {
			return batchReport{}, fmt.Errorf("batch %q: read its memo: %w", name, err)
		}
		return visibleBatchReport(ctx, c, name, memo, stateName(info.GetStatus()), what)
	}
	return queriedBatchReport(ctx, c, name)
}

// visibleBatchReport is a gated batch's report from the visibility store:
// every move with what=listAll, else counts and the moves what names.
func visibleBatchReport(ctx context.Context, c client.Client, name string, memo workflows.BatchMemo, state string, what listing) (batchReport, error) {
	rep := batchReport{Batch: name, State: state, Concurrency: memo.Concurrency, Paused: memo.Paused, StartAfter: memo.StartAfter,
		OutsideWindow: memo.OutsideWindow, WindowChange: memo.WindowChange, Window: memo.Window, WindowZone: memo.WindowZone,
		Source: memo.Source, Target: memo.Target, Totals: totals{ByStatus: map[workflows.Status]int{}}}
	if what == listAuto || what == "" {
		what = listActive
		if memo.Mailboxes <= listAllUpTo {
			what = listAll
		}
	}
	rep.Listed = what
	if what == listAll {
		// A move's latest run counts: one continued as new, or retried,
		// has older runs.
		moves, err := listMoves(ctx, c, name, "ExecutionStatus != 'ContinuedAsNew'")
		if err != nil {
			return rep, err
		}
		rep.Moves = moves
		rep.total()
		return rep, nil
	}
	var (
		by     map[workflows.Status]int
		failed []workflows.MoveStatus
		listed []workflows.MoveStatus
		errs   = make([]error, 2)
		wg     sync.WaitGroup
	)
	wg.Go(func() { by, failed, errs[0] = countMoves(ctx, c, name) })
	wg.Go(func() {
		// Also a running move that says it failed, about to close.
		if what == listActive {
			listed, errs[1] = listMoves(ctx, c, name, "ExecutionStatus = 'Running'",
				statusIn(workflows.StatusInProgress, workflows.StatusSuspended, workflows.StatusCompleting, workflows.StatusFailed))
			return
		}
		listed, errs[1] = listMoves(ctx, c, name, "ExecutionStatus = 'Completed'", statusIn(workflows.StatusCompletedWithWarnings))
		if errs[1] == nil {
			var closing []workflows.MoveStatus
			closing, errs[1] = listMoves(ctx, c, name, "ExecutionStatus = 'Running'", statusIn(workflows.StatusCompletedWithWarnings, workflows.StatusFailed))
			listed = append(listed, closing...)
		}
	})
	wg.Wait()
	if err := joinErrs(errs); err != nil {
		return rep, err
	}
	rep.Moves = append(listed, failed...)
	sortMoves(rep.Moves)
	rep.total()
	// The counts, not the moves listed, say how many there are.
	rep.Totals.Mailboxes, rep.Totals.ByStatus = 0, by
	for _, n := range by {
		rep.Totals.Mailboxes += n
	}
	return rep, nil
}

// quoteQuery quotes a value for a visibility query.
func quoteQuery(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func (rep *batchReport) total() {
	for _, m := range rep.Moves {
		rep.Totals.Mailboxes++
		rep.Totals.ByStatus[m.Status]++
		rep.Totals.MessagesCopied += m.Copied
		rep.Totals.BytesCopied += m.Bytes
	}
}

// queriedBatchReport is the report of a batch started before gating: its
// status query lists the moves, each queried for its own.
func queriedBatchReport(ctx context.Context, c client.Client, name string) (batchReport, error) {
	var bs workflows.BatchStatus
	v, err := c.QueryWorkflow(ctx, workflows.BatchWorkflowID(name), "", workflows.QueryStatus)
	if err != nil {
		return batchReport{}, fmt.Errorf("batch %q: %w", name, err)
	}
	if err := v.Get(&bs); err != nil {
		return batchReport{}, err
	}
	rep := batchReport{Batch: name, Concurrency: bs.Concurrency, Paused: bs.Paused, StartAfter: bs.StartAfter,
		OutsideWindow: bs.OutsideWindow, WindowChange: bs.WindowChange, Moves: make([]workflows.MoveStatus, len(bs.Entries)), Totals: totals{ByStatus: map[workflows.Status]int{}}}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, e := range bs.Entries {
		rep.Moves[i] = workflows.MoveStatus{Batch: name, Mailbox: e.Mailbox, Status: workflows.StatusQueued, StatusDetail: workflows.DetailQueued}
		if !e.Started {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rep.Moves[i] = moveStatus(ctx, c, name, e)
		}()
	}
	wg.Wait()
	rep.total()
	return rep, nil
}

func moveStatus(ctx context.Context, c client.Client, batch string, e workflows.BatchEntry) workflows.MoveStatus {
	st := workflows.MoveStatus{Batch: batch, Mailbox: e.Mailbox, Status: workflows.StatusQueued, StatusDetail: workflows.DetailQueued}
	v, err := c.QueryWorkflow(ctx, e.WorkflowID, "", workflows.QueryStatus)
	if err == nil {
		err = v.Get(&st)
	}
	var notFound *serviceerror.NotFound
	switch {
	case err == nil:
	case errors.As(err, &notFound) && e.Error == "":
		// The batch has asked for the move but the server has not started
		// it yet.
	default:
		if e.Error != "" {
			st.Status, st.Reason = workflows.StatusFailed, e.Error
		} else {
			st.Reason = "status unavailable: " + err.Error()
		}
	}
	return st
}

func printBatchReport(out io.Writer, rep batchReport) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tSTATUS\tDETAIL\tPERCENT\tMESSAGES\tBYTES\tGRADE\tLAST ERROR")
	for _, m := range rep.Moves {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d%%\t%d/%d\t%s\t%s\t%s\n", m.Mailbox, m.Status, m.StatusDetail, m.PercentComplete, m.Copied+m.Matched, m.MessagesTotal, humanize.Bytes(m.Bytes), cmp.Or(string(m.Grade), "-"), oneLine(m.Reason))
	}
	tw.Flush()
	var parts []string
	for _, s := range []workflows.Status{workflows.StatusQueued, workflows.StatusInProgress, workflows.StatusSuspended, workflows.StatusSynced, workflows.StatusCompleting, workflows.StatusCompleted, workflows.StatusCompletedWithWarnings, workflows.StatusFailed} {
		if n := rep.Totals.ByStatus[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	if rep.Listed == "" || rep.Listed == listAll {
		fmt.Fprintf(out, "Total: %d mailboxes (%s), %d messages, %s copied\n", rep.Totals.Mailboxes, strings.Join(parts, ", "), rep.Totals.MessagesCopied, humanize.Bytes(rep.Totals.BytesCopied))
	} else {
		fmt.Fprintf(out, "Total: %d mailboxes (%s); listed: the %d copying, waiting or failed (`--list all` lists every move)\n", rep.Totals.Mailboxes, strings.Join(parts, ", "), len(rep.Moves))
	}
	if rep.StartAfter.After(time.Now()) {
		fmt.Fprintf(out, "Starts at %s (--start-after)\n", rep.StartAfter.Local().Format("2006-01-02 15:04 MST"))
	}
	if !rep.WindowChange.IsZero() {
		state := "inside the allowed hours (--window) until"
		if rep.OutsideWindow {
			state = "outside the allowed hours (--window): no move copies until"
		}
		fmt.Fprintf(out, "Window: %s %s\n", state, rep.WindowChange.Local().Format("2006-01-02 15:04 MST"))
	}
	if rep.Paused {
		fmt.Fprintf(out, "Paused: no move copies until `mailmove batch resume %s`\n", rep.Batch)
	}
	for _, m := range rep.Moves {
		if eta := budgetETA(m); eta != "" && m.SyncedAt.IsZero() {
			fmt.Fprintf(out, "%s: %s\n", m.Mailbox, eta)
		}
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

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
}

func newCmdBatchStatus(f *factory, runF func(*batchStatusOptions) error) *cobra.Command {
	opts := &batchStatusOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show every move of a batch: status, percent, messages, bytes, last error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
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
	cmd.Flags().BoolVar(&opts.Watch, "watch", false, "repeat until every move is Synced, Completed or Failed")
	cmd.Flags().DurationVar(&opts.Interval, "interval", 2*time.Second, "refresh interval with --watch")
	return cmd
}

// batchReport is the JSON form of `batch status`.
type batchReport struct {
	Batch string
	// Concurrency and Paused are the batch's own (batch set, batch pause).
	Concurrency int       `json:",omitempty"`
	Paused      bool      `json:",omitempty"`
	StartAfter  time.Time `json:",omitempty"`
	// OutsideWindow and WindowChange: the allowed hours (--window).
	OutsideWindow bool      `json:",omitempty"`
	WindowChange  time.Time `json:",omitempty"`
	Moves         []workflows.MoveStatus
	Totals        totals
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
	for {
		rep, err := fetchBatchReport(ctx, c, opts.Name)
		if err != nil {
			return err
		}
		if opts.JSON {
			enc := json.NewEncoder(opts.Out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else {
			printBatchReport(opts.Out, rep)
		}
		if !opts.Watch || settled(rep) {
			return nil
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
	for _, m := range rep.Moves {
		if m.Status != workflows.StatusSynced && !m.Status.Terminal() {
			return false
		}
	}
	return true
}

// dialBatch connects to Temporal and reads the batch's report, for the
// commands that act on every move of a batch. The caller closes the client.
func dialBatch(ctx context.Context, newClient func() (client.Client, error), name string) (client.Client, batchReport, error) {
	c, err := newClient()
	if err != nil {
		return nil, batchReport{}, err
	}
	rep, err := fetchBatchReport(ctx, c, name)
	if err != nil {
		c.Close()
		return nil, batchReport{}, err
	}
	return c, rep, nil
}

func fetchBatchReport(ctx context.Context, c client.Client, name string) (batchReport, error) {
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
	for _, m := range rep.Moves {
		rep.Totals.Mailboxes++
		rep.Totals.ByStatus[m.Status]++
		rep.Totals.MessagesCopied += m.Copied
		rep.Totals.BytesCopied += m.Bytes
	}
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
	fmt.Fprintf(out, "Total: %d mailboxes (%s), %d messages, %s copied\n", rep.Totals.Mailboxes, strings.Join(parts, ", "), rep.Totals.MessagesCopied, humanize.Bytes(rep.Totals.BytesCopied))
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

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/workflows"
)

type moveStatusOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Mailbox string
	Batch   string
	JSON    bool
}

func newCmdMoveStatus(f *factory, runF func(*moveStatusOptions) error) *cobra.Command {
	opts := &moveStatusOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "status EMAIL --batch NAME",
		Short: "Show one move: status and detail, progress, waits, failures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Mailbox = args[0]
			if runF != nil {
				return runF(opts)
			}
			return moveStatusRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Batch, "batch", "", "batch name")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	cmd.MarkFlagRequired("batch")
	return cmd
}

// moveStatusRun prints the move's status query, which includes the
// progress of the copies in flight.
func moveStatusRun(ctx context.Context, opts *moveStatusOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	id := workflows.MoveWorkflowID(opts.Batch, opts.Mailbox)
	v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		return fmt.Errorf("move of %s in batch %s (workflow %s): %w", opts.Mailbox, opts.Batch, id, err)
	}
	var st workflows.MoveStatus
	if err := v.Get(&st); err != nil {
		return err
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printMoveStatus(opts.Out, id, st, time.Now())
	return nil
}

func printMoveStatus(out io.Writer, id string, st workflows.MoveStatus, now time.Time) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Mailbox:\t%s (batch %s)\n", st.Mailbox, st.Batch)
	fmt.Fprintf(tw, "Status:\t%s / %s\n", st.Status, st.StatusDetail)
	if st.Reason != "" {
		fmt.Fprintf(tw, "Reason:\t%s\n", st.Reason)
	}
	if !st.NextAttemptAt.IsZero() {
		fmt.Fprintf(tw, "Next attempt:\t%s (in %s)\n", st.NextAttemptAt.Local().Format("15:04:05"), st.NextAttemptAt.Sub(now).Round(time.Second))
	}
	fmt.Fprintf(tw, "Progress:\t%d%%, %d/%d messages, %s copied, %d/%d folders\n",
		st.PercentComplete, st.Copied+st.Matched, st.MessagesTotal, humanize.Bytes(st.Bytes), st.FoldersCopied, st.FoldersTotal)
	for _, r := range st.FoldersRenamedForTarget {
		fmt.Fprintf(tw, "Renamed for the target:\t%s\n", r)
	}
	if st.Labelled > 0 {
		fmt.Fprintf(tw, "Gmail labels:\t%d given on the target by COPY (each message uploaded once)\n", st.Labelled)
	}
	if st.SourceProfile != "" || st.TargetProfile != "" {
		fmt.Fprintf(tw, "Profiles:\tsource %s, target %s\n", cmp.Or(st.SourceProfile, "generic"), cmp.Or(st.TargetProfile, "generic"))
	}
	if eta := budgetETA(st); eta != "" {
		fmt.Fprintf(tw, "Daily budget:\t%s\n", eta)
	}
	fmt.Fprintf(tw, "Incremental passes:\t%d (%d flag updates, %d deleted on the source, %d of them expunged from the target)\n", st.IncrementalPasses, st.FlagUpdates, st.DeletedOnSource, st.Expunged)
	if st.FoldersAdded+st.FoldersRenamed+st.FoldersDeleted > 0 {
		fmt.Fprintf(tw, "Folder changes:\t%d added, %d renamed, %d deleted on the source\n", st.FoldersAdded, st.FoldersRenamed, st.FoldersDeleted)
	}
	fmt.Fprintf(tw, "Bad items:\t%d\n", len(st.BadItems))
	for _, b := range st.BadItems {
		fmt.Fprintf(tw, "\t%s UID %d, %s: %s\n", b.Folder, b.UID, humanize.Bytes(b.Size), oneLine(b.Reason))
	}
	fmt.Fprintf(tw, "Logon failures:\t%d\n", st.LogonFailures)
	fmt.Fprintf(tw, "Lock relinquishes:\t%d\n", st.LockRelinquishes)
	printWaits(tw, st.StallTime)
	if f := st.LastFailure; f != nil {
		fmt.Fprintf(tw, "Last failure:\t%s on %s: %s: %q\n", f.Type, f.Side, f.Op, f.Server)
	}
	if v := st.Verify; v != nil {
		var folders []string
		for _, f := range v.Folders {
			line := fmt.Sprintf("%s %d→%d", f.Source, f.SourceMessages, f.TargetMessages)
			if f.Missing+f.Duplicated > 0 {
				line += fmt.Sprintf(" (%d missing, %d copied twice)", f.Missing, f.Duplicated)
			}
			folders = append(folders, line)
		}
		fmt.Fprintf(tw, "Verified:\t%s: %d messages compared, %d missing, %d copied twice, %d other mail on the target (%s)\n",
			st.Grade, v.Compared, v.Missing, v.Duplicated, v.Other, strings.Join(folders, ", "))
	}
	fmt.Fprintf(tw, "Workflow:\t%s\n", id)
	tw.Flush()
}

// printWaits prints the time waited, by reason, in a stable order.
func printWaits(w io.Writer, stall map[string]time.Duration) {
	keys := make([]string, 0, len(stall))
	for k := range stall {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "Waited:\t%s %s\n", k, stall[k].Round(time.Second))
	}
}

// budgetETA says how long a daily transfer budget makes the copy take,
// empty when one window is enough.
func budgetETA(st workflows.MoveStatus) string {
	if st.BudgetWindows <= 1 {
		return ""
	}
	return fmt.Sprintf("%s needs %d windows of %s at the providers' daily transfer budget (at least %s)",
		humanize.Bytes(st.BytesTotal), st.BudgetWindows, st.BudgetWindow, time.Duration(st.BudgetWindows-1)*st.BudgetWindow)
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/workflows"
)

func newCmdMove(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "move",
		Short: "Inspect and steer one mailbox's move",
	}
	cmd.AddCommand(newCmdMoveStatus(g), newCmdMoveResume(g))
	return cmd
}

type moveOptions struct {
	Mailbox string
	Batch   string
	JSON    bool
}

func newCmdMoveStatus(g *globalOptions) *cobra.Command {
	opts := &moveOptions{}
	cmd := &cobra.Command{
		Use:   "status EMAIL --batch NAME",
		Short: "Show one move: status and detail, progress, waits, failures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Mailbox = args[0]
			return moveStatusRun(cmd.Context(), g, opts, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&opts.Batch, "batch", "", "batch name")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	cmd.MarkFlagRequired("batch")
	return cmd
}

func moveStatusRun(ctx context.Context, g *globalOptions, opts *moveOptions, out io.Writer) error {
	c, err := g.dial()
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
	if st.Status == workflows.StatusInProgress && st.StatusDetail == workflows.DetailCopyingMessages {
		addLiveProgress(ctx, c, id, &st)
	}
	if opts.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printMoveStatus(out, id, st, time.Now())
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
	fmt.Fprintf(tw, "Incremental passes:\t%d (%d flag updates, %d deleted on the source, %d of them expunged from the target)\n", st.IncrementalPasses, st.FlagUpdates, st.DeletedOnSource, st.Expunged)
	if st.FoldersAdded+st.FoldersRenamed+st.FoldersDeleted > 0 {
		fmt.Fprintf(tw, "Folder changes:\t%d added, %d renamed, %d deleted on the source\n", st.FoldersAdded, st.FoldersRenamed, st.FoldersDeleted)
	}
	fmt.Fprintf(tw, "Bad items:\t%d\n", len(st.BadItems))
	fmt.Fprintf(tw, "Logon failures:\t%d\n", st.LogonFailures)
	fmt.Fprintf(tw, "Lock relinquishes:\t%d\n", st.LockRelinquishes)
	keys := make([]string, 0, len(st.StallTime))
	for k := range st.StallTime {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "Waited:\t%s %s\n", k, st.StallTime[k].Round(time.Second))
	}
	if f := st.LastFailure; f != nil {
		fmt.Fprintf(tw, "Last failure:\t%s on %s: %s: %q\n", f.Type, f.Side, f.Op, f.Server)
	}
	if v := st.Verify; v != nil {
		var folders []string
		for _, f := range v.Folders {
			folders = append(folders, fmt.Sprintf("%s %d→%d", f.Source, f.SourceMessages, f.TargetMessages))
		}
		fmt.Fprintf(tw, "Verified:\t%d missing (%s)\n", v.Missing, strings.Join(folders, ", "))
	}
	fmt.Fprintf(tw, "Workflow:\t%s\n", id)
	tw.Flush()
}

func newCmdMoveResume(g *globalOptions) *cobra.Command {
	opts := &moveOptions{}
	cmd := &cobra.Command{
		Use:   "resume EMAIL --batch NAME",
		Short: "End a move's current wait now (e.g. after raising a full target's quota)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Mailbox = args[0]
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			id := workflows.MoveWorkflowID(opts.Batch, opts.Mailbox)
			if err := c.SignalWorkflow(cmd.Context(), id, "", workflows.SignalResume, nil); err != nil {
				return fmt.Errorf("resume %s: %w", id, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: resuming\n", opts.Mailbox)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Batch, "batch", "", "batch name")
	cmd.MarkFlagRequired("batch")
	return cmd
}

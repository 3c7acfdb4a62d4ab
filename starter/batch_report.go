package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/workflows"
)

type batchReportOptions struct {
	Name   string
	Format string
}

func newCmdBatchReport(g *globalOptions) *cobra.Command {
	opts := &batchReportOptions{}
	cmd := &cobra.Command{
		Use:   "report NAME",
		Short: "The batch's error report: one line per mailbox that failed or has warnings, with a remedy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			switch opts.Format {
			case "text", "csv", "json":
			default:
				return fmt.Errorf("--format %q: use text, csv or json", opts.Format)
			}
			return batchReportRun(cmd.Context(), g, opts, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "text, csv or json")
	return cmd
}

// problem is one line of the error report.
type problem struct {
	Mailbox  string
	Status   workflows.Status
	Category string
	Side     string
	Message  string
	Remedy   string
}

// remedies say what the admin does next, per category.
var remedies = map[string]string{
	string(failure.TypeLogonFailed):       "check the user name and password in the CSV, that the account exists and is enabled, and the admin's rights for a proxy logon; then `mailmove batch retry`",
	string(failure.TypeConnectFailed):     "check host, port, --*-security and firewalls (flood protection refuses bursts of connections: lower --concurrency); then `mailmove batch retry`",
	string(failure.TypeMailboxLocked):     "find what holds the mailbox (another migration, a backup, a stuck session) and stop it; then `mailmove batch retry`",
	string(failure.TypeServerUnavailable): "the server stayed overloaded or throttling; lower --concurrency or --folder-concurrency, or move at night; then `mailmove batch retry`",
	string(failure.TypeTargetFull):        "raise the target mailbox's quota by at least the amount in the message; then `mailmove batch retry` (or start with a policy overQuota: wait)",
	string(failure.TypeNotFound):          "check that the account and folder exist on that side",
	string(failure.TypeProtocol):          "the server answered something unexpected; see the message, and the worker log",
	"BadItemLimitExceeded":                "see the refused messages with `mailmove move status EMAIL --batch NAME --json`; raise badItemLimit in the policy if they may be skipped; then `mailmove batch retry`",
	"BadItems":                            "the listed messages were refused by the target and skipped; see `mailmove move status EMAIL --batch NAME --json`",
	"VerificationMismatch":                "compare the folder counts in `mailmove move status`; run the move again with `mailmove batch retry`",
	"SecretKeyMismatch":                   "start the workers with the --secret-key-file the batch was started with",
}

func problems(rep batchReport) []problem {
	var out []problem
	for _, m := range rep.Moves {
		switch m.Status {
		case workflows.StatusFailed:
			p := problem{Mailbox: m.Mailbox, Status: m.Status, Category: strings.TrimPrefix(m.StatusDetail, workflows.DetailFailedPrefix), Message: m.Reason}
			if f := m.LastFailure; f != nil && (f.Type == p.Category || p.Category == "Error") {
				p.Category, p.Side, p.Message = f.Type, f.Side, m.Reason
			}
			p.Remedy = remedies[p.Category]
			out = append(out, p)
		case workflows.StatusCompletedWithWarnings:
			cat := "BadItems"
			if m.BadItems == 0 {
				cat = "VerificationMismatch"
			}
			out = append(out, problem{Mailbox: m.Mailbox, Status: m.Status, Category: cat, Side: "target", Message: m.Reason, Remedy: remedies[cat]})
		}
	}
	return out
}

func batchReportRun(ctx context.Context, g *globalOptions, opts *batchReportOptions, out io.Writer) error {
	c, rep, err := dialBatch(ctx, g, opts.Name)
	if err != nil {
		return err
	}
	c.Close()
	ps := problems(rep)
	switch opts.Format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if ps == nil {
			ps = []problem{}
		}
		return enc.Encode(ps)
	case "csv":
		w := csv.NewWriter(out)
		w.Write([]string{"Mailbox", "Status", "Category", "Side", "Message", "Remedy"})
		for _, p := range ps {
			w.Write([]string{p.Mailbox, string(p.Status), p.Category, p.Side, p.Message, p.Remedy})
		}
		w.Flush()
		return w.Error()
	}
	if len(ps) == 0 {
		fmt.Fprintf(out, "Batch %s: no failures or warnings among %d mailboxes.\n", opts.Name, len(rep.Moves))
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tSTATUS\tCATEGORY\tSIDE\tMESSAGE")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Mailbox, p.Status, p.Category, p.Side, oneLine(p.Message))
	}
	tw.Flush()
	fmt.Fprintln(out, "\nWhat to do:")
	seen := map[string]bool{}
	for _, p := range ps {
		if !seen[p.Category] && p.Remedy != "" {
			seen[p.Category] = true
			fmt.Fprintf(out, "  %s: %s\n", p.Category, p.Remedy)
		}
	}
	return nil
}

package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/workflows"
)

type batchReportOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	Name   string
	Format string
}

func newCmdBatchReport(f *factory, runF func(*batchReportOptions) error) *cobra.Command {
	opts := &batchReportOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "report NAME",
		Short: "The batch's error report: one line per mailbox that failed or has warnings, with a remedy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			switch opts.Format {
			case "text", "csv", "json", "html":
			default:
				return usageErrorf("--format %q: use text, csv, json or html", opts.Format)
			}
			if runF != nil {
				return runF(opts)
			}
			return batchReportRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "text, csv, json, or html (one file for management: every mailbox with its status, counts, bytes, time, waits, bad items, grade, and what to do)")
	return cmd
}

// problem is one line of the error report.
type problem struct {
	Mailbox  string
	Status   workflows.Status
	Grade    workflows.Grade `json:",omitempty"`
	Category failure.Type
	Side     failure.Side
	Message  string
	Remedy   string
}

func problems(rep batchReport) []problem {
	var out []problem
	for _, m := range rep.Moves {
		var p problem
		switch m.Status {
		case workflows.StatusFailed:
			p = problem{Mailbox: m.Mailbox, Status: m.Status, Category: failure.Type(strings.TrimPrefix(m.StatusDetail, workflows.DetailFailedPrefix)), Message: m.Reason}
			if f := m.LastFailure; f != nil && (f.Type == p.Category || p.Category == failure.TypeUnclassified) {
				p.Category, p.Side = f.Type, f.Side
			}
		case workflows.StatusCompletedWithWarnings:
			p = problem{Mailbox: m.Mailbox, Status: m.Status, Grade: m.Grade, Category: warningClass(m), Side: failure.SideTarget, Message: m.Reason}
		default:
			continue
		}
		c, _ := failure.ClassOf(p.Category)
		p.Remedy = c.Remedy
		out = append(out, p)
	}
	return out
}

// warningClass is the class of a CompletedWithWarnings: the worst of its
// warnings.
func warningClass(m workflows.MoveStatus) failure.Type {
	switch {
	case m.Grade == workflows.GradeInvestigate || m.Grade == workflows.GradePoor:
		return failure.TypeVerificationMismatch
	case len(m.BadItems) > 0:
		return failure.TypeBadItems
	}
	return failure.TypeKeywordsLeftOff
}

// batchReportRun prints a line per move that failed or has warnings and,
// as text, the remedy of each failure class from the failure table.
func batchReportRun(ctx context.Context, opts *batchReportOptions) error {
	out := opts.Out
	// Only the HTML report shows every mailbox; the others show the
	// problems.
	what := listProblems
	if opts.Format == "html" {
		what = listAll
	}
	c, rep, err := dialBatch(ctx, opts.Client, opts.Name, what)
	if err != nil {
		return err
	}
	c.Close()
	ps := problems(rep)
	switch opts.Format {
	case "html":
		return writeHTMLReport(out, rep, time.Now())
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if ps == nil {
			ps = []problem{}
		}
		return enc.Encode(ps)
	case "csv":
		w := csv.NewWriter(out)
		w.Write([]string{"Mailbox", "Status", "Grade", "Category", "Side", "Message", "Remedy"})
		for _, p := range ps {
			w.Write([]string{p.Mailbox, string(p.Status), string(p.Grade), string(p.Category), string(p.Side), p.Message, p.Remedy})
		}
		w.Flush()
		return w.Error()
	}
	if len(ps) == 0 {
		fmt.Fprintf(out, "Batch %s: no failures or warnings among %d mailboxes.\n", opts.Name, rep.Totals.Mailboxes)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tSTATUS\tCATEGORY\tSIDE\tMESSAGE")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Mailbox, p.Status, p.Category, p.Side, oneLine(p.Message))
	}
	tw.Flush()
	fmt.Fprintln(out, "\nWhat to do:")
	seen := map[failure.Type]bool{}
	for _, p := range ps {
		if !seen[p.Category] && p.Remedy != "" {
			seen[p.Category] = true
			fmt.Fprintf(out, "  %s: %s\n", p.Category, p.Remedy)
		}
	}
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/workflows"
)

// dryRun runs the DryRun workflow, in which the workers — the ones that
// must reach the servers — log on to both sides of every move and plan its
// folders, and prints the plans. Nothing is copied and no move started.
func dryRun(ctx context.Context, c client.Client, in workflows.BatchInput, opts *batchStartOptions) error {
	// In pages: a workflow's input and result are each at most 2 MB, and
	// a batch may have thousands of mailboxes.
	var planned []workflows.PlannedMove
	for page := range slices.Chunk(in.Moves, dryRunPage) {
		p := in
		p.Moves = page
		got, err := dryRunPageRun(ctx, c, p, opts, len(planned), len(in.Moves))
		if err != nil {
			return err
		}
		planned = append(planned, got...)
	}
	if opts.JSON {
		return plansJSON(opts.Out, planned, in.Concurrency)
	}
	return printPlans(opts.Out, planned, opts.Settings.Rules, in.Concurrency)
}

// plansJSON prints a dry run's plans and estimate as JSON; like printPlans
// it fails when a mailbox has no plan.
func plansJSON(out io.Writer, planned []workflows.PlannedMove, concurrency int) error {
	type mailbox struct {
		workflows.PlannedMove
		Messages        int64
		Bytes           int64
		EstimateSeconds float64
	}
	var res struct {
		Mailboxes         []mailbox
		Messages, Bytes   int64
		EstimateSeconds   float64 // the batch at Concurrency
		Concurrency       int
		CannotBePlanned   int
		MessagesPerSecond int // the planning figures of the estimates
		BytesPerSecond    int64
	}
	res.Concurrency, res.MessagesPerSecond, res.BytesPerSecond = concurrency, planMessagesPerSecond, planBytesPerSecond
	var total time.Duration
	for _, pm := range planned {
		m := mailbox{PlannedMove: pm}
		if pm.Error != "" || pm.Failure != nil {
			res.CannotBePlanned++
		}
		for _, f := range pm.Plan.Folders {
			m.Messages += int64(f.Messages)
			m.Bytes += f.Bytes
		}
		d := estimate(m.Messages, m.Bytes)
		m.EstimateSeconds = d.Seconds()
		res.Messages, res.Bytes, total = res.Messages+m.Messages, res.Bytes+m.Bytes, total+d
		res.Mailboxes = append(res.Mailboxes, m)
	}
	if n := len(planned) - res.CannotBePlanned; n > 0 {
		res.EstimateSeconds = (total / time.Duration(max(min(concurrency, n), 1))).Seconds()
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return err
	}
	if res.CannotBePlanned > 0 {
		return fmt.Errorf("%d of %d mailboxes cannot be planned; fix them before starting the batch", res.CannotBePlanned, len(planned))
	}
	return nil
}

// dryRunPage is how many mailboxes one DryRun workflow plans (their inputs
// and plans stay far below Temporal's 2 MB per payload).
const dryRunPage = 200

func dryRunPageRun(ctx context.Context, c client.Client, in workflows.BatchInput, opts *batchStartOptions, done, total int) ([]workflows.PlannedMove, error) {
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        workflows.DryRunWorkflowID(in.Name),
		TaskQueue: workflows.TaskQueue,
		// A batch is dry-run again and again until its CSV and rules are
		// right, under the one ID the Web UI shows for it. A dry run still
		// running under that ID is the stale one of an interrupted CLI,
		// whose plan nobody waits for: the new run replaces it.
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING,
	}, workflows.DryRun, in)
	if err != nil {
		return nil, fmt.Errorf("start the dry run: %w", err)
	}
	fmt.Fprintf(opts.ErrOut, "Planning mailboxes %d to %d of %d on the workers (workflow %s)...\n", done+1, done+len(in.Moves), total, run.GetID())
	var planned []workflows.PlannedMove
	if err := run.Get(ctx, &planned); err != nil {
		if ctx.Err() != nil {
			// Interrupted: end the logons nobody will see the result of.
			stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			c.TerminateWorkflow(stop, run.GetID(), run.GetRunID(), "the CLI that waited for the dry run stopped")
		}
		var terminated *temporal.TerminatedError
		if errors.As(err, &terminated) {
			return nil, fmt.Errorf("dry run %s was ended, by a newer dry run of batch %q or an operator: %w", run.GetID(), in.Name, err)
		}
		return nil, fmt.Errorf("dry run %s: %w", run.GetID(), err)
	}
	return planned, nil
}

// Planning figures of the dry run's estimate: what one move copies per
// second from a server 10–80 ms away that throttles each user, whichever
// of the two is slower. They are deliberately low; `batch status` shows a
// move's own once it runs.
const (
	planMessagesPerSecond = 100
	planBytesPerSecond    = 5 << 20
)

// approx is a duration as an estimate says it.
func approx(d time.Duration) string {
	if d < time.Second {
		return "a second"
	}
	return d.Round(time.Second).String()
}

// estimate is how long a move of msgs messages and bytes takes at the
// planning figures.
func estimate(msgs int64, bytes int64) time.Duration {
	s := max(float64(msgs)/planMessagesPerSecond, float64(bytes)/planBytesPerSecond)
	return time.Duration(s * float64(time.Second))
}

// printPlans prints each mailbox's folder plan, or why it has none; it
// fails when a mailbox has none.
func printPlans(out io.Writer, planned []workflows.PlannedMove, rules workflows.Rules, concurrency int) error {
	failed := 0
	var total time.Duration
	var msgs, bytes int64
	for _, pm := range planned {
		fmt.Fprintf(out, "%s\n", pm.Mailbox)
		if pm.Error != "" || pm.Failure != nil {
			msg := pm.Error
			if msg == "" {
				msg = string(pm.Failure.Type)
			}
			fmt.Fprintf(out, "  cannot plan: %s\n\n", strings.ReplaceAll(msg, "\n", "\n    "))
			failed++
			continue
		}
		m, b := printPlan(out, pm, rules)
		msgs, bytes, total = msgs+m, bytes+b, total+estimate(m, b)
	}
	if n := len(planned) - failed; n > 0 {
		fmt.Fprintf(out, "Total: %d mailboxes, %d messages, %s. Estimated time: about %s at --concurrency %d (%s of copying;\n"+
			"planning figures of %d messages/s and %s/s per move, whichever is slower: servers 10-80 ms away that throttle each user)\n",
			n, msgs, humanize.Bytes(bytes), approx(total/time.Duration(max(min(concurrency, n), 1))), concurrency, approx(total),
			planMessagesPerSecond, humanize.Bytes(planBytesPerSecond))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d mailboxes cannot be planned; fix them before starting the batch", failed, len(planned))
	}
	return nil
}

// printPlan prints one mailbox's folders, target by target, with counts.
func printPlan(out io.Writer, pm workflows.PlannedMove, rules workflows.Rules) (msgTotal, byteTotal int64) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SOURCE\tTARGET\tMESSAGES\tSIZE")
	var msgs uint32
	var bytes int64
	for _, p := range pm.Plan.Folders {
		target := p.Target
		switch {
		case p.Exists:
			target += " (exists)"
		default:
			target += " (new)"
		}
		if p.SpecialUse != "" {
			target += " " + string(p.SpecialUse)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", p.Source, target, p.Messages, humanize.Bytes(p.Bytes))
		msgs += p.Messages
		bytes += p.Bytes
	}
	excluded := pm.Plan.Excluded
	for _, e := range excluded {
		fmt.Fprintf(tw, "  %s\t(excluded)\t\t\n", e)
	}
	tw.Flush()
	fmt.Fprintf(out, "  %d folders, %d messages, %s", len(pm.Plan.Folders), msgs, humanize.Bytes(bytes))
	if len(excluded) > 0 {
		fmt.Fprintf(out, "; %d folders excluded", len(excluded))
	}
	if rules.MaxMessageSize > 0 || !rules.NewerThan.IsZero() || !rules.OlderThan.IsZero() {
		fmt.Fprintf(out, " (before the size and date filters)")
	}
	fmt.Fprintf(out, "; about %s\n\n", approx(estimate(int64(msgs), bytes)))
	return int64(msgs), bytes
}

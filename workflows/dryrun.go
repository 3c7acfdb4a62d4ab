package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/failure"
)

// DryRunWorkflowID is the workflow ID of a batch's dry run.
func DryRunWorkflowID(batch string) string { return "mailmove-dry-run/" + batch }

// PlannedMove is one mailbox of a dry run: its folder plan, or why it has
// none.
type PlannedMove struct {
	Mailbox string
	Plan    activities.ConnectResult
	Failure *failure.Details `json:",omitempty"`
	Error   string           `json:",omitempty"`
}

// DryRun logs on to both sides of every move of a batch, as a move's
// Connect does and from the workers, which are the ones that must reach the
// servers, and returns the folder plans; it copies and starts nothing.
// A failure is reported at once, not waited out.
func DryRun(ctx workflow.Context, in BatchInput) ([]PlannedMove, error) {
	concurrency := in.Concurrency
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	out := make([]PlannedMove, len(in.Moves))
	running := 0
	sel := workflow.NewSelector(ctx)
	for i, mv := range in.Moves {
		for running >= concurrency {
			sel.Select(ctx)
		}
		out[i].Mailbox = mv.Mailbox
		rules := mv.Settings.Rules
		fut := workflow.ExecuteActivity(ctx, a.Connect, activities.ConnectInput{Mailbox: mv.Mailbox, Source: mv.Source, Target: mv.Target, Rules: rules, MeasureSizes: true})
		running++
		sel.AddFuture(fut, func(f workflow.Future) {
			running--
			if err := f.Get(ctx, &out[i].Plan); err != nil {
				if d, _, ok := failureOf(err); ok {
					out[i].Failure = &d
				}
				out[i].Error = reason(err)
			}
		})
	}
	for running > 0 {
		sel.Select(ctx)
	}
	return out, nil
}

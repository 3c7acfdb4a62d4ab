package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/failure"
)

// How failures are carried out:
//
//   - A classified failure (an ApplicationError whose type is an activity
//     class of internal/failure) is never retried by Temporal's server: the
//     activity fails at once and the workflow looks the type up in the
//     batch's policy, shows the wait as StatusDetail, sleeps on a timer and
//     runs the activity again from its checkpoint, until the rule's budget is
//     spent. That keeps every wait visible and filterable while it happens.
//   - Everything else — a worker that died (heartbeat timeout), an
//     unexpected error — is retried by Temporal's RetryPolicy below, resuming
//     from the activity's last heartbeat.

// classifiedTypes are left to the workflow's policy table.
var classifiedTypes = func() []string {
	var out []string
	for _, c := range failure.Classes(failure.KindActivity) {
		out = append(out, string(c.Type))
	}
	return out
}()

// activityOptions leaves classified failures to the policy table and retries
// the rest with backoff up to maxInterval.
func activityOptions(ctx workflow.Context, timeout, heartbeat, maxInterval time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2.0,
			MaximumInterval:        maxInterval,
			NonRetryableErrorTypes: classifiedTypes,
		},
	})
}

// shortOptions: Connect, CreateFolders, Verify — a few commands each, or
// a few per folder. They heartbeat too, so that one on a worker that died
// is retried after HeartbeatTimeout, not after its whole timeout.
func shortOptions(ctx workflow.Context, s Settings) workflow.Context {
	return activityOptions(ctx, time.Hour, s.HeartbeatTimeout, time.Minute)
}

// syncOptions: copying runs for as long as it takes and heartbeats, so a dead
// worker is noticed within HeartbeatTimeout and the copy resumes elsewhere.
func syncOptions(ctx workflow.Context, s Settings) workflow.Context {
	return activityOptions(ctx, 24*time.Hour, s.HeartbeatTimeout, 5*time.Minute)
}

// failureOf returns the classified failure of an activity error and the
// progress a failed sync attempt made; ok is false for errors the policy
// table does not cover.
func failureOf(err error) (failure.Details, *activities.SyncResult, bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return failure.Details{}, nil, false
	}
	var d failure.Details
	var progress activities.SyncResult
	if appErr.HasDetails() {
		if appErr.Details(&d, &progress) == nil && d.Type != "" {
			if progress.Cursors == nil {
				return d, nil, true
			}
			return d, &progress, true
		}
		if appErr.Details(&d) == nil && d.Type != "" {
			return d, nil, true
		}
	}
	// Without details (recorded by older workers): the class still says
	// what to check.
	if c, ok := failure.ClassOf(failure.Type(appErr.Type())); ok && c.Kind == failure.KindActivity {
		return failure.Details{Type: c.Type, Hint: c.Hint}, nil, true
	}
	return failure.Details{}, nil, false
}

// waitDetail is the StatusDetail shown while a move waits out a failure,
// and the Status it waits in.
func waitDetail(d failure.Details, current Status) (Status, string) {
	c, _ := failure.ClassOf(d.Type)
	status := current
	if c.Suspends {
		status = StatusSuspended
	}
	if c.Wait != "" {
		return status, c.Wait
	}
	reason := d.Reason
	if reason == "" {
		reason = string(d.Type)
	}
	return status, stallDetail(d.Side, reason)
}

// stallDetail is e.g. StalledDueToTarget_Unavailable.
func stallDetail(side failure.Side, reason string) string {
	return DetailStalledPrefix + sideName(side) + "_" + reason
}

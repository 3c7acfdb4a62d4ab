package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/policy"
)

// How failures are carried out:
//
//   - A classified failure (an ApplicationError whose type is a
//     failure.Type) is never retried by Temporal's server: the activity fails
//     at once and the workflow looks the type up in the batch's policy table
//     (internal/policy), shows the wait as StatusDetail, sleeps on a timer and
//     runs the activity again from its checkpoint, until the rule's budget is
//     spent. That keeps every wait visible and filterable while it happens.
//   - Everything else — a worker that died (heartbeat timeout), an
//     unexpected error — is retried by Temporal's RetryPolicy below, resuming
//     from the activity's last heartbeat.

// classifiedTypes are left to the workflow's policy table.
var classifiedTypes = []string{
	string(failure.TypeLogonFailed), string(failure.TypeConnectFailed), string(failure.TypeMailboxLocked),
	string(failure.TypeServerUnavailable), string(failure.TypeTargetFull), string(failure.TypeNotFound),
	string(failure.TypeMessageRejected), string(failure.TypeProtocol),
	"SecretKeyMismatch",
}

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

// shortOptions: Connect, CreateFolders, Verify — a few commands each.
func shortOptions(ctx workflow.Context, s Settings) workflow.Context {
	return activityOptions(ctx, 10*time.Minute, 0, time.Minute)
}

// syncOptions: copying runs for as long as it takes and heartbeats, so a dead
// worker is noticed within HeartbeatTimeout and the copy resumes elsewhere.
func syncOptions(ctx workflow.Context, s Settings) workflow.Context {
	return activityOptions(ctx, 24*time.Hour, s.HeartbeatTimeout, 5*time.Minute)
}

// failureOf returns the classified failure of an activity error; ok is false
// for errors the policy table does not cover.
func failureOf(err error) (activities.FailureDetails, *activities.SyncResult, bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return activities.FailureDetails{}, nil, false
	}
	var d activities.FailureDetails
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
	if appErr.Type() == "SecretKeyMismatch" {
		return activities.FailureDetails{Type: "SecretKeyMismatch", Hint: "start the worker with the --secret-key-file the batch was started with"}, nil, true
	}
	return activities.FailureDetails{}, nil, false
}

// waitDetail is the StatusDetail shown while a move waits out a failure,
// and the Status it waits in.
func waitDetail(d activities.FailureDetails, current Status) (Status, string) {
	switch failure.Type(d.Type) {
	case failure.TypeLogonFailed:
		return current, DetailWaitingForLogonRetry
	case failure.TypeMailboxLocked:
		return current, DetailRelinquishedLocked
	case failure.TypeTargetFull:
		return StatusSuspended, DetailWaitingForQuota
	}
	reason := d.Reason
	if reason == "" {
		reason = d.Type
	}
	return current, stallDetail(failure.Side(d.Side), reason)
}

// stallDetail is e.g. StalledDueToTarget_Unavailable.
func stallDetail(side failure.Side, reason string) string {
	s := "Source"
	if side == failure.SideTarget {
		s = "Target"
	}
	return DetailStalledPrefix + s + "_" + reason
}

// describe is the admin-readable account of a failure: type, side, what we
// were doing, the server's own words and what to check.
func describe(d activities.FailureDetails) string {
	s := d.Type
	if d.Side != "" {
		s += fmt.Sprintf(": %s %s", d.Side, d.Op)
	}
	if d.Server != "" {
		s += fmt.Sprintf(": server said %q", d.Server)
	}
	if d.QuotaLimit > 0 {
		s += fmt.Sprintf(" (target quota: %s of %s used)", HumanBytes(d.QuotaUsed), HumanBytes(d.QuotaLimit))
	}
	if d.Hint != "" {
		s += " — " + d.Hint
	}
	return s
}

// rule returns the policy rule for a failure.
func (m *move) rule(d activities.FailureDetails) policy.Rule {
	if d.Type == "SecretKeyMismatch" {
		return policy.Rule{Final: true}
	}
	return m.settings.Policy.Rule(failure.Type(d.Type))
}

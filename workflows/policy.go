package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/internal/failure"
)

// The retry policies of a move, in one place. Temporal carries them out:
// there is no retry loop in workflow or activity code.

// finalFailures end a move at once: retrying cannot fix them without the
// admin. SecretKeyMismatch: the worker cannot open the passwords.
var finalFailures = []string{string(failure.TypeTargetFull), string(failure.TypeNotFound), "SecretKeyMismatch"}

// connectOptions: a failed logon is retried LogonAttempts times at a fixed
// interval, then the move fails with the server's words. Only this activity
// is allowed to fail on logon; later ones that meet a refused password fail
// the move at once.
func connectOptions(ctx workflow.Context, s Settings) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        s.LogonRetryInterval,
			BackoffCoefficient:     1.0,
			MaximumAttempts:        s.LogonAttempts,
			NonRetryableErrorTypes: finalFailures,
		},
	})
}

// syncOptions: copying survives anything transient — a dropped connection, a
// dead worker, a server that is briefly unavailable — by resuming from the
// last heartbeat with backoff up to five minutes, for as long as it takes.
func syncOptions(ctx workflow.Context, s Settings) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    s.HeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        5 * time.Second,
			BackoffCoefficient:     2.0,
			MaximumInterval:        5 * time.Minute,
			NonRetryableErrorTypes: append([]string{string(failure.TypeLogonFailed)}, finalFailures...),
		},
	})
}

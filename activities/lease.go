package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// errLeaseLost stops a copy whose attempt Temporal may have given to
// another worker.
var errLeaseLost = errors.New("this attempt's lease is gone: Temporal may have given the copy to another worker")

// lease fences an activity attempt (docs/exactly-once.md). Temporal
// retries an attempt whose heartbeats stop for HeartbeatTimeout on any
// worker, and does not stop the old one: a paused VM, a long GC or a
// worker cut off from Temporal would go on appending next to its
// replacement. So the attempt holds a lease, renewed by each heartbeat the
// server accepted and valid for half the heartbeat timeout after that
// heartbeat was sent — the server cannot have timed the attempt out before
// then — and the engine asks it before every write. A refused heartbeat
// ends it at once.
type lease struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	until time.Time
	err   error
}

// newLease makes a lease that is closed until a first heartbeat is
// accepted: a worker paused between taking the task and running it may
// find its task given away already.
func newLease(heartbeatTimeout time.Duration, now func() time.Time) *lease {
	return &lease{ttl: heartbeatTimeout / 2, now: now}
}

// check is the engine's Fence: nil while the lease holds.
func (l *lease) check() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.until.IsZero() {
		return fmt.Errorf("%w (no heartbeat accepted yet)", errLeaseLost)
	}
	if !l.now().Before(l.until) {
		l.err = fmt.Errorf("%w (no heartbeat accepted for %s)", errLeaseLost, l.ttl)
	}
	return l.err
}

// heartbeat sends one heartbeat with send and renews or ends the lease by
// the answer. It reports whether the attempt may go on.
func (l *lease) heartbeat(ctx context.Context, send func(context.Context) error) bool {
	sent := l.now()
	hctx, cancel := context.WithTimeout(ctx, l.ttl/2)
	defer cancel()
	err := send(hctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		if l.err == nil {
			l.until = maxTime(l.until, sent.Add(l.ttl))
		}
	case refused(err):
		l.err = fmt.Errorf("%w (heartbeat refused: %v)", errLeaseLost, err)
	}
	return l.err == nil
}

// refused reports a heartbeat the server turned down for good: the attempt
// is no longer the current one, or the copy was cancelled, paused or
// reset.
func refused(err error) bool {
	var notFound *serviceerror.NotFound
	return errors.As(err, &notFound) || temporal.IsCanceledError(err) ||
		errors.Is(err, activity.ErrActivityPaused) || errors.Is(err, activity.ErrActivityReset)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

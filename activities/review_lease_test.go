package activities

import (
	"errors"
	"testing"
	"time"
)

// Review finding 7 (a write after the task was given away). The lease is
// valid from the moment the attempt starts on the worker, before the server
// has accepted any heartbeat of it. The server's heartbeat timer started
// when it handed out the task; a worker that received the task and was
// paused (GC, VM pause, a slow start) for longer than the heartbeat timeout
// before it ran the activity finds a lease good for HeartbeatTimeout/2, and
// writes next to the attempt that already replaced it until its first
// heartbeat is refused (up to min(5s, HeartbeatTimeout/4) later, plus the
// heartbeat's round trip). The lease should start expired and be opened
// by the first accepted heartbeat, sent before the first write.
func TestReviewLeaseIsValidBeforeAnyHeartbeatWasAccepted(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := newLease(time.Minute, c.now)
	if err := l.check(); !errors.Is(err, errLeaseLost) {
		t.Fatalf("check() before any heartbeat was accepted = %v; want the lease closed until the server confirms the attempt", err)
	}
}

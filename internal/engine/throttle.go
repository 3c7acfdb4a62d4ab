package engine

import (
	"sync"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
)

// throttle slows a copy down when a server's service time — how long it
// takes per message, not counting our own pipelining — rises above a
// threshold: an overloaded server answers slowly long before it refuses, and
// backing off then keeps it from refusing at all.
type throttle struct {
	threshold time.Duration

	mu     sync.Mutex
	ewma   map[failure.Side]time.Duration
	waited map[failure.Side]time.Duration
}

func newThrottle(threshold time.Duration) *throttle {
	return &throttle{threshold: threshold, ewma: map[failure.Side]time.Duration{}, waited: map[failure.Side]time.Duration{}}
}

// observe records one service-time sample of a side.
func (t *throttle) observe(side failure.Side, d time.Duration) {
	if t == nil || t.threshold <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev, ok := t.ewma[side]; ok {
		t.ewma[side] = prev + (d-prev)/8
	} else {
		t.ewma[side] = d
	}
}

// pause returns how long to wait before the next message: as long again as
// the slow side's service time, halving our rate while it is slow.
func (t *throttle) pause() (failure.Side, time.Duration) {
	if t == nil || t.threshold <= 0 {
		return "", 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var side failure.Side
	var worst time.Duration
	for s, d := range t.ewma {
		if d > t.threshold && d > worst {
			side, worst = s, d
		}
	}
	if worst > 0 {
		// A ceiling keeps one pathological sample from parking the copy;
		// a server that stops answering is the idle timeout's business.
		worst = min(worst, 30*time.Second)
		t.waited[side] += worst
	}
	return side, worst
}

// throttled returns the time spent slowed down, by side.
func (t *throttle) throttled() map[failure.Side]time.Duration {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[failure.Side]time.Duration{}
	for s, d := range t.waited {
		if d > 0 {
			out[s] = d
		}
	}
	return out
}

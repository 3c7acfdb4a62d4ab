package engine

import (
	"context"
	"sync"
)

// Limiter caps the connections one process holds to each server (any key:
// activities use side and host:port),
// so that a worker running many moves cannot exceed a server's connection
// limit: a copy that would need one more waits for a free slot instead of
// being refused. The zero value and a nil *Limiter impose no cap.
type Limiter struct {
	max int

	mu    sync.Mutex
	slots map[string]chan struct{}
}

// NewLimiter allows max connections per server; max <= 0 means no cap.
func NewLimiter(max int) *Limiter {
	return &Limiter{max: max, slots: map[string]chan struct{}{}}
}

// Acquire waits for a free slot for addr, or for ctx to end. The returned
// function gives the slot back; call it exactly once.
func (l *Limiter) Acquire(ctx context.Context, addr string) (release func(), err error) {
	if l == nil || l.max <= 0 {
		return func() {}, nil
	}
	l.mu.Lock()
	ch, ok := l.slots[addr]
	if !ok {
		ch = make(chan struct{}, l.max)
		l.slots[addr] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-ch }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

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
	ch := l.slotsOf(addr)
	select {
	case ch <- struct{}{}:
		return releaser(ch), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TryAcquire takes a free slot for addr if there is one now, without
// waiting: for connections a copy can do without, which must never wait
// while holding others.
func (l *Limiter) TryAcquire(addr string) (release func(), ok bool) {
	if l == nil || l.max <= 0 {
		return func() {}, true
	}
	ch := l.slotsOf(addr)
	select {
	case ch <- struct{}{}:
		return releaser(ch), true
	default:
		return nil, false
	}
}

func (l *Limiter) slotsOf(addr string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.slots[addr]
	if !ok {
		ch = make(chan struct{}, l.max)
		l.slots[addr] = ch
	}
	return ch
}

func releaser(ch chan struct{}) func() {
	var once sync.Once
	return func() { once.Do(func() { <-ch }) }
}

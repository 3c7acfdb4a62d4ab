package engine

import (
	"context"
	"testing"
	"time"
)

func TestLimiterCapsConnectionsPerServer(t *testing.T) {
	l := NewLimiter(2)
	ctx := context.Background()
	r1, _ := l.Acquire(ctx, "a:993")
	r2, _ := l.Acquire(ctx, "a:993")
	// Another server has its own slots.
	if _, err := l.Acquire(ctx, "b:993"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(short, "a:993"); err == nil {
		t.Fatal("a third connection to a:993 was allowed")
	}
	got := make(chan struct{})
	go func() {
		r, err := l.Acquire(ctx, "a:993")
		if err == nil {
			r()
		}
		close(got)
	}()
	r1()
	r1() // releasing twice gives back one slot only
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatal("a released slot was not handed on")
	}
	r2()
	var none *Limiter
	if r, err := none.Acquire(ctx, "a:993"); err != nil || r == nil {
		t.Fatal("a nil Limiter must not limit")
	}
}

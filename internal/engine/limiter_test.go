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

// A caller that has to wait counts as waiting before onWait runs: a
// holder deciding whether to keep its idle slot (Waiting) cannot miss it
// between onWait and the wait.
func TestLimiterCountsAWaiterBeforeOnWait(t *testing.T) {
	l := NewLimiter(1)
	release, err := l.AcquireOr(context.Background(), "imap:993", func() { t.Fatal("onWait with a free slot") })
	if err != nil {
		t.Fatal(err)
	}
	if l.Waiting("imap:993") {
		t.Fatal("Waiting with nobody waiting")
	}
	sawWaiting := make(chan bool, 1)
	got := make(chan func(), 1)
	go func() {
		r, err := l.AcquireOr(context.Background(), "imap:993", func() { sawWaiting <- l.Waiting("imap:993") })
		if err == nil {
			got <- r
		}
	}()
	if !<-sawWaiting {
		t.Fatal("onWait ran before the caller counted as waiting")
	}
	release()
	select {
	case r := <-got:
		r()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the released slot")
	}
	if l.Waiting("imap:993") {
		t.Fatal("still Waiting after the waiter got its slot")
	}
}

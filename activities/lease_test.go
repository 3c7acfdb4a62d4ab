package activities

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// The lease opens with the first heartbeat the server accepts and holds
// for half the heartbeat timeout after the last accepted one was sent; a
// refused heartbeat ends it at once, and nothing renews it after that. A heartbeat that fails in transit neither
// renews nor ends it.
func TestLease(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := newLease(time.Minute, c.now)
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	gone := func(context.Context) error { return serviceerror.NewNotFound("activity task not found") }

	if err := l.check(); !errors.Is(err, errLeaseLost) {
		t.Fatalf("check() before any heartbeat was accepted = %v, want %v", err, errLeaseLost)
	}
	if !l.heartbeat(context.Background(), ok) || l.check() != nil {
		t.Fatal("the first accepted heartbeat did not open the lease")
	}
	c.t = c.t.Add(29 * time.Second)
	if !l.heartbeat(context.Background(), ok) {
		t.Fatal("heartbeat() accepted = false")
	}
	c.t = c.t.Add(29 * time.Second)
	if !l.heartbeat(context.Background(), down) || l.check() != nil {
		t.Fatal("a heartbeat lost in transit ended the lease early")
	}
	c.t = c.t.Add(2 * time.Second) // 31s after the last accepted one
	if err := l.check(); !errors.Is(err, errLeaseLost) {
		t.Fatalf("check() 31s after the last accepted heartbeat = %v, want %v", err, errLeaseLost)
	}
	if l.heartbeat(context.Background(), ok) || l.check() == nil {
		t.Fatal("an expired lease was renewed")
	}

	l = newLease(time.Minute, c.now)
	if l.heartbeat(context.Background(), gone) {
		t.Fatal("heartbeat() refused by the server = true")
	}
	if err := l.check(); !errors.Is(err, errLeaseLost) {
		t.Fatalf("check() after a refused heartbeat = %v, want %v", err, errLeaseLost)
	}
	var none *lease
	if none.check() != nil {
		t.Fatal("a nil lease (no Temporal client) fences")
	}
}

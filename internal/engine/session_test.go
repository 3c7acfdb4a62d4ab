package engine

import (
	"io"
	"net"
	"testing"
	"time"
)

// A peer that trickles bytes is slow, not gone: reads go on past any
// deadline go-imap sets, for as long as bytes keep coming; a silent one is
// cut after the idle time.
func TestIdleConnBoundsSilenceNotDuration(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &idleConn{Conn: a, idle: 300 * time.Millisecond}
	go func() {
		for range 10 {
			time.Sleep(100 * time.Millisecond)
			b.Write([]byte("x"))
		}
	}()
	// go-imap's "answer within" deadline, shorter than the trickle.
	c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	buf := make([]byte, 1)
	for i := range 10 {
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read %d of a trickle: %v", i, err)
		}
	}
	start := time.Now()
	if _, err := c.Read(buf); err == nil {
		t.Fatal("a read from a silent peer returned")
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("a silent peer was cut after %v, want about the idle time", d)
	}
	// A deadline in the past still interrupts at once.
	c.SetReadDeadline(time.Now().Add(-time.Second))
}

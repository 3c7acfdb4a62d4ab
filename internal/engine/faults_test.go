package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/testbed"
)

// A target that turns unavailable in the middle of the copy fails the call
// quickly with a classified failure, keeping the progress made.
func TestSyncFolderTargetUnavailableMidCopy(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	proxy := faultproxy.StartForTest(t, tgtAddr)
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, proxy.Addr())
	seed(t, src, "Work", 0, 200)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var armed bool
	cur, st, err := SyncFolder(ctx, src, tgt, Cursor{Source: "Work", Target: "Work"}, Options{
		CheckpointEvery: time.Nanosecond,
		Checkpoint: func(c Cursor, st Stats) {
			if !armed && st.Copied >= 20 {
				armed = true
				proxy.Unavailable(time.Minute, "UNAVAILABLE", "Server busy")
			}
		},
	})
	fe, ok := failure.As(err)
	if !ok || fe.Type != failure.TypeServerUnavailable || fe.Side != failure.SideTarget {
		t.Fatalf("SyncFolder() = %v, want a target ServerUnavailable", err)
	}
	if st.Copied < 20 || cur.LastUID < 20 {
		t.Fatalf("progress lost: stats %+v, cursor LastUID %d", st, cur.LastUID)
	}
}

// A source connection cut in the middle of a message is a source
// ConnectionDropped failure, never a truncated copy; resuming from the
// returned cursor completes the folder without duplicates. The target is a
// real Dovecot: the in-memory server stores a literal cut short, which no
// real server does, and that is the behaviour under test.
func TestSyncFolderSourceCutMidMessage(t *testing.T) {
	if err := testbed.EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	dovecot := testbed.StartForTest(t, testbed.Options{Name: "cut-target", Users: []testbed.User{{Name: testUser, Password: testPass}}})
	srcAddr, tgtAddr := memServer(t, "Work"), dovecot.Addr()
	if err := dial(t, failure.SideTarget, tgtAddr).Client.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	seeder := dial(t, failure.SideSource, srcAddr)
	seed(t, seeder, "Work", 0, 60)
	proxy := faultproxy.StartForTest(t, srcAddr)
	tgt := dial(t, failure.SideTarget, tgtAddr)

	proxy.CutFetchLiterals(2, 5000)
	cur := Cursor{Source: "Work", Target: "Work"}
	for attempt := 1; ; attempt++ {
		src := dial(t, failure.SideSource, proxy.Addr())
		var err error
		cur, _, err = SyncFolder(context.Background(), src, tgt, cur, Options{})
		if err == nil {
			break
		}
		fe, ok := failure.As(err)
		if !ok || fe.Type != failure.TypeServerUnavailable || fe.Side != failure.SideSource || fe.Reason != "ConnectionDropped" {
			t.Fatalf("attempt %d: SyncFolder() = %v (%+v), want a source ConnectionDropped", attempt, err, fe)
		}
		if attempt > 3 {
			t.Fatalf("still failing after %d attempts", attempt)
		}
		// A new target session too: the failed one may be mid-APPEND.
		tgt.Close()
		tgt = dial(t, failure.SideTarget, tgtAddr)
	}
	if got := proxy.Stats().Injected[faultproxy.FaultCutLiteral]; got != 2 {
		t.Fatalf("cut %d messages, want 2", got)
	}
	assertSame(t, seeder, tgt, "Work", "Work")
}

// A target that answers slower than the threshold makes the copy slow down
// by itself, and the time is reported.
func TestSyncFolderSlowsDownForASlowTarget(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	proxy := faultproxy.StartForTest(t, tgtAddr)
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, proxy.Addr())
	seed(t, src, "Work", 0, 30)
	proxy.SetLatency(30 * time.Millisecond)

	_, st, err := SyncFolder(context.Background(), src, tgt, Cursor{Source: "Work", Target: "Work"}, Options{LatencyThreshold: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("SyncFolder() = %v", err)
	}
	if st.Throttled[failure.SideTarget] <= 0 || st.Throttled[failure.SideSource] != 0 {
		t.Fatalf("throttled = %v, want time on the target side only", st.Throttled)
	}
	proxy.SetLatency(0)
	assertSame(t, src, tgt, "Work", "Work")
}

// A connection closed before the server greets is a dropped connection,
// waited out like one, not a protocol error.
func TestConnectionClosedBeforeGreetingIsADrop(t *testing.T) {
	addr := serveEach(t, listen(t), func(c net.Conn) {})
	_, err := Dial(context.Background(), failure.SideTarget, Endpoint{Addr: addr, Security: SecurityNone}, Credentials{User: "u", Password: "p"})
	if fe, ok := failure.As(err); !ok || fe.Type != failure.TypeServerUnavailable || fe.Reason != "ConnectionDropped" {
		t.Fatalf("Dial() = %v; want ServerUnavailable/ConnectionDropped", err)
	}
}

// listen opens a listener on a free local port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveEach hands every connection ln accepts to handle, each on its own
// goroutine, closes the connection after it and ln when the test ends. It
// returns ln's address.
func serveEach(t *testing.T, ln net.Listener, handle func(c net.Conn)) string {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// A server's answer is bounded before it is read: an endless line or a
// literal of 4 GB fails the logon with a clear error, and the worker's
// memory stays small.
func TestHostileAnswersAreBounded(t *testing.T) {
	for name, answer := range map[string]func(io.Writer){
		"endless line": func(w io.Writer) {
			line := bytes.Repeat([]byte("a"), 1<<20)
			io.WriteString(w, "* OK ")
			for range 200 { // 200 MiB without an end
				if _, err := w.Write(line); err != nil {
					return
				}
			}
		},
		"4 GB literal": func(w io.Writer) {
			fmt.Fprintf(w, "* LIST () \"/\" {4000000000}\r\n")
			chunk := bytes.Repeat([]byte("b"), 1<<20)
			for range 200 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			addr := faultproxy.Hostile(t, answer)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Dial(context.Background(), failure.SideSource, Endpoint{Addr: addr, Security: SecurityNone}, Credentials{User: "u", Password: "p"})
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "bytes") {
				t.Fatalf("Dial() = %v; want an error naming the bound", err)
			}
			if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 128<<20 {
				t.Fatalf("the heap grew by %d MiB reading the answer", grew>>20)
			}
		})
	}
}

package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/memserver"
)

// pairs dials connection pairs to srcAddr and tgtAddr for a Lane, counting
// them; the lane closes them.
func pairs(srcAddr, tgtAddr string, dialed *atomic.Int32) func(context.Context) (Pair, error) {
	return func(ctx context.Context) (Pair, error) {
		dialed.Add(1)
		ep := func(addr string) Endpoint { return Endpoint{Addr: addr, Security: SecurityNone} }
		cred := Credentials{User: testUser, Password: testPass}
		src, err := Dial(ctx, failure.SideSource, ep(srcAddr), cred)
		if err != nil {
			return Pair{}, err
		}
		tgt, err := Dial(ctx, failure.SideTarget, ep(tgtAddr), cred)
		if err != nil {
			src.Close()
			return Pair{}, err
		}
		return Pair{Src: src, Tgt: tgt}, nil
	}
}

func cursors(folders ...string) []Cursor {
	var out []Cursor
	for _, f := range folders {
		out = append(out, Cursor{Source: f, Target: f})
	}
	return out
}

// A lane goes through its folders and stops at its message budget; run
// again from what it returned, it finishes them, each message once.
func TestLaneResumesFromItsProgress(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work", "Archive"), memServer(t, "Work", "Archive")
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	seed(t, src, "Work", 0, 8)
	seed(t, src, "Archive", 100, 8)

	var dialed atomic.Int32
	var reported int
	lane := &Lane{Dial: pairs(srcAddr, tgtAddr, &dialed), Connections: 1, MaxMessages: 10,
		Progress: func(LaneProgress) { reported++ }}
	first, err := lane.Run(context.Background(), NewLaneProgress(cursors("Work", "Archive")))
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if !first.Done[0] || first.Done[1] || first.Copied != 10 || reported == 0 {
		t.Fatalf("first Run: done %v, copied %d, %d progress reports; want Work done, Archive not, 10 copied, reports", first.Done, first.Copied, reported)
	}
	second, err := lane.Run(context.Background(), first)
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if !second.Done[0] || !second.Done[1] || second.Copied != 16 || dialed.Load() != 2 {
		t.Fatalf("second Run: done %v, copied %d, %d pairs dialed; want both done, 16 copied, 2 pairs", second.Done, second.Copied, dialed.Load())
	}
	assertSame(t, src, tgt, "Work", "Work")
	assertSame(t, src, tgt, "Archive", "Archive")
}

// refusingSession announces no limit (APPENDLIMIT far above any message)
// but refuses messages above limit once a folder is selected, before their
// body is sent: the copy learns of the limit only from the refusal, after
// which the target connection must be cut.
type refusingSession struct {
	limitedSession
	armed atomic.Bool
}

func (s *refusingSession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.armed.Store(true)
	return s.UserSession.Select(mailbox, options)
}

func (s *refusingSession) AppendLimit() uint32 {
	if s.armed.Load() {
		return s.limit
	}
	return 1 << 30
}

func refusingServer(t *testing.T, limit uint32, folders ...string) string {
	u := memserver.NewUser(t, folders...)
	return memserver.Serve(t, func() imapserver.Session {
		return &refusingSession{limitedSession: limitedSession{user: u, limit: limit}}
	})
}

// Each refused message costs the lane a new pair; the others are copied
// once and the refused ones become bad items.
func TestLaneReconnectsAfterARefusedMessage(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), refusingServer(t, 5000, "Work")
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	seed(t, src, "Work", 0, 14)
	large := 0
	for i := 0; i < 14; i++ {
		if len(testMessage(i)) > 5000 {
			large++
		}
	}

	var dialed atomic.Int32
	lane := &Lane{Dial: pairs(srcAddr, tgtAddr, &dialed), Connections: 1}
	res, err := lane.Run(context.Background(), NewLaneProgress(cursors("Work")))
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if large == 0 || len(res.BadItems) != large || res.Copied != 14-large || !res.Done[0] || int(dialed.Load()) != 1+large {
		t.Fatalf("bad items %d, copied %d, done %v, %d pairs dialed; want %d bad items, %d copied, done, %d pairs",
			len(res.BadItems), res.Copied, res.Done, dialed.Load(), large, 14-large, 1+large)
	}
	if got := contents(t, tgt, "Work"); len(got) != 14-large {
		t.Fatalf("target holds %d messages, want %d", len(got), 14-large)
	}
}

// A lane allowed three pairs opens two spares for a large folder, only
// through TryDial, and keeps them for the next folder; allowed one, it
// opens none.
func TestLaneLendsSparePairsToALargeFolder(t *testing.T) {
	for _, tc := range []struct{ connections, spares int }{{3, 2}, {1, 0}} {
		srcAddr, tgtAddr := memServer(t, "Work", "Archive"), memServer(t, "Work", "Archive")
		src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
		seed(t, src, "Work", 0, 1600)
		seed(t, src, "Archive", 0, 1200)

		var dialed, tried atomic.Int32
		try := pairs(srcAddr, tgtAddr, &tried)
		lane := &Lane{Dial: pairs(srcAddr, tgtAddr, &dialed), Connections: tc.connections,
			TryDial: func(ctx context.Context) (Pair, bool) {
				p, err := try(ctx)
				return p, err == nil
			}}
		res, err := lane.Run(context.Background(), NewLaneProgress(cursors("Work", "Archive")))
		if err != nil {
			t.Fatalf("Run() = %v", err)
		}
		if res.Copied != 2800 || dialed.Load() != 1 || int(tried.Load()) != tc.spares {
			t.Fatalf("connections %d: copied %d over %d pairs and %d spares; want 2800 over 1 pair and %d spares",
				tc.connections, res.Copied, dialed.Load(), tried.Load(), tc.spares)
		}
		assertSame(t, src, tgt, "Work", "Work")
		assertSame(t, src, tgt, "Archive", "Archive")
	}
}

// A copy that moves no byte (the target stopped answering, well within its
// idle timeout) is cut by the watchdog and reported as a stall; what it
// confirmed before stays in its progress.
func TestLaneWatchdogCutsAStuckCopy(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src := dial(t, failure.SideSource, srcAddr)
	seed(t, src, "Work", 0, 20)
	proxy := faultproxy.StartForTest(t, tgtAddr)

	var dialed atomic.Int32
	dialVia := pairs(srcAddr, proxy.Addr(), &dialed)
	lane := &Lane{Connections: 1, NoProgressTimeout: 400 * time.Millisecond,
		Dial: func(ctx context.Context) (Pair, error) {
			p, err := dialVia(ctx)
			proxy.SetLatency(time.Hour) // every answer from now on
			return p, err
		}}
	start := time.Now()
	res, err := lane.Run(context.Background(), NewLaneProgress(cursors("Work")))
	fe, ok := failure.As(err)
	if !ok || fe.Type != failure.TypeServerUnavailable || fe.Reason != "NoProgress" || !errors.Is(err, errNoProgress) {
		t.Fatalf("Run() = %v; want a ServerUnavailable/NoProgress stall", err)
	}
	if time.Since(start) > time.Minute || res.Done[0] || res.Copied != 0 {
		t.Fatalf("cut after %v with %d copied, done %v; want cut at once, nothing confirmed", time.Since(start), res.Copied, res.Done)
	}
}

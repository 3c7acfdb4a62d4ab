package engine

import (
	"context"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/testbed"
)

// helpers lends connection pairs to SyncFolder: the first one's source
// through via, the others direct. It counts what it lent.
func helpers(t *testing.T, srcAddr, tgtAddr, via string, lent *int) func(context.Context, int) []Pair {
	return func(_ context.Context, n int) []Pair {
		var pairs []Pair
		for i := 0; i < n; i++ {
			addr := srcAddr
			if i == 0 && via != "" {
				addr = via
			}
			pairs = append(pairs, Pair{Src: dial(t, failure.SideSource, addr), Tgt: dial(t, failure.SideTarget, tgtAddr)})
		}
		*lent += len(pairs)
		return pairs
	}
}

// A large chunk of one folder is split over lent connection pairs; every
// message arrives once, duplicates included (the folder holds each message
// twice, in different blocks).
func TestSyncFolderSplitsALargeChunkOverHelpers(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	seed(t, src, "Work", 0, 800)
	seed(t, src, "Work", 0, 800)

	lent := 0
	cur, st, err := SyncFolder(context.Background(), src, tgt, Cursor{Source: "Work", Target: "Work"}, Options{Helpers: helpers(t, srcAddr, tgtAddr, "", &lent)})
	if err != nil {
		t.Fatalf("SyncFolder() = %v", err)
	}
	if lent != 2 || st.Copied != 1600 || cur.LastUID != 1600 || cur.Map.Len() != 1600 {
		t.Fatalf("lent %d pairs, copied %d, cursor at %d with %d mapped; want 2 pairs and all 1600", lent, st.Copied, cur.LastUID, cur.Map.Len())
	}
	assertSame(t, src, tgt, "Work", "Work")
}

// One block failing mid-message stops the others; the cursor covers only a
// prefix, and the next attempt finds what the stopped blocks had stored
// instead of copying it again.
func TestSyncFolderParallelFailureResumesExactly(t *testing.T) {
	// The target is a real Dovecot: the in-memory server stores an APPEND
	// cut short, which no real server does.
	if err := testbed.EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	dovecot := testbed.StartForTest(t, testbed.Options{Name: "parallel-target", Users: []testbed.User{{Name: testUser, Password: testPass}}})
	srcAddr, tgtAddr := memServer(t, "Work"), dovecot.Addr()
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	if err := tgt.Client.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	seed(t, src, "Work", 0, 800)
	seed(t, src, "Work", 0, 800)
	proxy := faultproxy.StartForTest(t, srcAddr)
	proxy.CutFetchLiterals(1, 4000)

	cur := Cursor{Source: "Work", Target: "Work"}
	lent, total := 0, 0
	for attempt := 1; ; attempt++ {
		next, st, err := SyncFolder(context.Background(), src, tgt, cur, Options{Helpers: helpers(t, srcAddr, tgtAddr, proxy.Addr(), &lent)})
		if next.LastUID < cur.LastUID {
			t.Fatalf("attempt %d moved the cursor back from %d to %d", attempt, cur.LastUID, next.LastUID)
		}
		cur = next
		total += st.Copied + st.Matched
		if err == nil {
			break
		}
		if attempt == 1 && proxy.Stats().Injected[faultproxy.FaultCutLiteral] != 1 {
			t.Fatalf("attempt 1 failed without the cut: %v", err)
		}
		if attempt > 2 {
			t.Fatalf("attempt %d: SyncFolder() = %v", attempt, err)
		}
		src.Close()
		tgt.Close()
		src, tgt = dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	}
	if proxy.Stats().Injected[faultproxy.FaultCutLiteral] != 1 {
		t.Fatal("no helper's message was cut: the copy did not run in parallel")
	}
	if total != 1600 || cur.LastUID != 1600 {
		t.Fatalf("copied or found %d messages, cursor at %d; want 1600", total, cur.LastUID)
	}
	assertSame(t, src, tgt, "Work", "Work")
}

// A target message the cursor's map accounts for is never claimed by
// another source message of the same identity, even above TargetUIDNext
// (where a failed parallel copy leaves it).
func TestSyncFolderMappedMessagesAreNotClaimedAgain(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	seed(t, src, "Work", 7, 1)
	seed(t, src, "Work", 7, 1) // the same message again
	ctx := context.Background()
	cur, _, err := SyncFolder(ctx, src, tgt, Cursor{Source: "Work", Target: "Work"}, Options{MaxMessages: 1})
	if err != nil || cur.LastUID != 1 {
		t.Fatalf("SyncFolder() = %v, cursor at %d; want the first message copied", err, cur.LastUID)
	}
	cur.TargetUIDNext = 1
	if _, _, err := SyncFolder(ctx, src, tgt, cur, Options{}); err != nil {
		t.Fatalf("SyncFolder() = %v", err)
	}
	assertSame(t, src, tgt, "Work", "Work")
}

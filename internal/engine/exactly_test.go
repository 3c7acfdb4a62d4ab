package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

// The reproductions of the exactly-once issue: each ended with duplicates
// or wrong deletions before the cursor's promises (Cursor) held.

var errLeaseLost = errors.New("lease lost")

// pair dials a fresh source and target session, as every attempt does.
func pair(t *testing.T, srcAddr, tgtAddr string) (*Session, *Session) {
	return dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
}

func fresh(folder string) Cursor { return Cursor{Source: folder, Target: folder} }

// syncAll runs SyncFolder until the folder is done.
func syncAll(t *testing.T, srcAddr, tgtAddr string, cur Cursor, opts Options) (Cursor, Stats) {
	t.Helper()
	var total Stats
	for {
		src, tgt := pair(t, srcAddr, tgtAddr)
		next, st, err := SyncFolder(context.Background(), src, tgt, cur, opts)
		if err != nil {
			t.Fatalf("SyncFolder() = %v", err)
		}
		total.Add(st.Counters)
		cur = next
		if !st.More {
			return cur, total
		}
	}
}

// A copy resumed from its last saved cursor fails again before it copies
// anything; the attempt after it finds what the first one stored beyond
// that cursor instead of copying it a second time.
func TestResumedCopyThatFailsAgainCopiesNothingTwice(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 60)

	saved, _, err := SyncFolder(context.Background(), src, tgt, fresh("Work"), Options{MaxMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	// The attempt goes on, stores 30 more, and dies before recording them.
	s2, t2 := pair(t, srcAddr, tgtAddr)
	if _, _, err := SyncFolder(context.Background(), s2, t2, saved, Options{MaxMessages: 30}); err != nil {
		t.Fatal(err)
	}
	// The next attempt resumes from the saved cursor and fails before it
	// writes.
	s3, t3 := pair(t, srcAddr, tgtAddr)
	second, st, err := SyncFolder(context.Background(), s3, t3, saved, Options{Fence: func() error { return errLeaseLost }})
	if !errors.Is(err, errLeaseLost) || st.Copied != 0 {
		t.Fatalf("second attempt = %v, copied %d; want %v before any copy", err, st.Copied, errLeaseLost)
	}
	final, last := syncAll(t, srcAddr, tgtAddr, second, Options{})
	st.Add(last.Counters)
	if st.Copied != 20 || st.Matched != 30 || final.LastUID != 60 || len(final.Claims) != 0 {
		t.Fatalf("after the second attempt: copied %d, matched %d, cursor at %d with claims %v; want 20, 30, 60, none", st.Copied, st.Matched, final.LastUID, final.Claims)
	}
	assertSame(t, src, tgt, "Work", "Work")
}

// The same users again in a new batch: a fresh cursor, a target that holds
// every message already, small chunks. Every chunk matches; none copies.
func TestRerunIntoAPopulatedTargetCopiesNothing(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 30)
	syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})

	_, st := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{MaxMessages: 10})
	if st.Copied != 0 || st.Matched != 30 {
		t.Fatalf("re-run copied %d, matched %d; want 0 and 30", st.Copied, st.Matched)
	}
	assertSame(t, src, tgt, "Work", "Work")
}

// An attempt Temporal gave away keeps writing (its worker was paused while
// the next attempt ran the whole copy). Fenced, it writes nothing; not
// fenced, the final pass removes every copy it added.
func TestZombieAttemptLeavesNoDuplicate(t *testing.T) {
	for _, fenced := range []bool{true, false} {
		t.Run(fmt.Sprintf("fenced=%v", fenced), func(t *testing.T) {
			srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
			src, tgt := pair(t, srcAddr, tgtAddr)
			seed(t, src, "Work", 0, 300)

			var replacement Cursor
			ran := false
			zombie := func() error {
				if !ran {
					ran = true
					// The replacement attempt runs the whole copy from the
					// same cursor while this one is paused.
					replacement, _ = syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
				}
				if fenced {
					return errLeaseLost
				}
				return nil
			}
			zs, zt := pair(t, srcAddr, tgtAddr)
			_, _, err := SyncFolder(context.Background(), zs, zt, fresh("Work"), Options{Fence: zombie})
			if fenced != errors.Is(err, errLeaseLost) {
				t.Fatalf("zombie attempt = %v", err)
			}
			_, st := syncAll(t, srcAddr, tgtAddr, replacement, Options{Reconcile: true})
			if want := map[bool]int{true: 0, false: 300}[fenced]; st.DuplicatesRemoved != want || st.Copied != 0 {
				t.Fatalf("final pass removed %d, copied %d; want %d removed, none copied", st.DuplicatesRemoved, st.Copied, want)
			}
			assertSame(t, src, tgt, "Work", "Work")
		})
	}
}

// renumber gives the folder a new UIDVALIDITY and its messages new UIDs, in
// another order, as Exchange does after internal moves.
func renumber(t testing.TB, s *Session, folder string) {
	t.Helper()
	sel, err := s.Client.Select(folder, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	var bufs []*imapclient.FetchMessageBuffer
	if sel.NumMessages > 0 {
		var all imap.SeqSet
		all.AddRange(1, 0)
		if bufs, err = s.Client.Fetch(all, &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Client.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.Delete(folder).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, b := range slices.Backward(bufs) {
		raw := b.BodySection[0].Bytes
		cmd := s.Client.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: slices.DeleteFunc(b.Flags, isRecent), Time: b.InternalDate})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// After the target renumbered its folder, flags are not stored and
// deletions not expunged by the old UIDs (they now name other messages):
// the copies are found again by identity, and the next pass stores the flag
// change on the right message. The user's own message on the target, marked
// \Deleted, stays.
func TestTargetUIDValidityChangeTouchesNoWrongMessage(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 1, 20)
	cur, _ := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{PropagateDeletes: true})

	renumber(t, tgt, "Work")
	own := []byte("From: me@example.com\r\nSubject: mine\r\n\r\nkeep me\r\n")
	cmd := tgt.Client.Append("Work", int64(len(own)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDeleted}})
	cmd.Write(own)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Client.Select("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := src.Client.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	expungeOnSource(t, src, "Work", 5)

	cur, st := syncAll(t, srcAddr, tgtAddr, cur, Options{PropagateDeletes: true})
	if st.Copied != 0 || st.Expunged != 0 || st.FlagUpdates != 0 || st.Matched != 19 {
		t.Fatalf("pass after the renumbering: %+v; want every message found again by identity, nothing copied, stored or expunged", st.Counters)
	}
	_, st = syncAll(t, srcAddr, tgtAddr, cur, Options{PropagateDeletes: true})
	if st.Copied != 0 || st.Expunged != 0 || st.FlagUpdates != 1 {
		t.Fatalf("next pass: %+v; want the flag change stored on the right message", st.Counters)
	}
	// The copy of the message deleted while the target renumbered is no
	// longer known as ours: it stays, like the user's own message.
	got := contents(t, tgt, "Work")
	want := contents(t, src, "Work")
	if len(got) != len(want)+2 {
		t.Fatalf("target holds %d messages, want the source's %d, the deleted one's copy and the user's own", len(got), len(want))
	}
	for _, m := range want {
		if !slices.Contains(got, m) {
			t.Fatalf("source message %+v not on the target as it is on the source", m)
		}
	}
}

// emptySearch is a source whose UID SEARCH answers nothing once armed, as
// a server under stress or a proxy cutting the reply may.
type emptySearch struct {
	memserver.Session
	armed *bool
}

func (s *emptySearch) Search(kind imapserver.NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, error) {
	if *s.armed {
		return &imap.SearchData{}, nil
	}
	return s.Session.Search(kind, c, o)
}

// An empty answer to the listing of a non-empty folder is not "every
// message deleted": the pass fails and expunges nothing.
func TestEmptySearchReplyDeletesNothing(t *testing.T) {
	u := memserver.NewUser(t, "Work")
	memserver.Fill(t, u, "Work", 0, 10)
	armed := false
	srcAddr := memserver.Serve(t, func() imapserver.Session {
		return &emptySearch{Session: *memserver.Sessions(u)().(*memserver.Session), armed: &armed}
	})
	tgtAddr := memServer(t, "Work")
	cur, _ := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{PropagateDeletes: true})

	armed = true
	src, tgt := pair(t, srcAddr, tgtAddr)
	_, st, err := SyncFolder(context.Background(), src, tgt, cur, Options{PropagateDeletes: true})
	if err == nil || st.DeletedOnSource != 0 || st.Expunged != 0 {
		t.Fatalf("SyncFolder() = %v with %d deleted, %d expunged; want an error and nothing deleted", err, st.DeletedOnSource, st.Expunged)
	}
	if n := len(contents(t, tgt, "Work")); n != 10 {
		t.Fatalf("target holds %d messages, want 10", n)
	}
}

// A target that rewrites what it stores (other size, an added header) is
// still recognised: an interrupted copy resumed from an old cursor leaves
// no duplicate.
func TestRewritingTargetStillMatches(t *testing.T) {
	srcAddr := memServer(t, "Work")
	u := memserver.NewUser(t, "Work")
	tgtAddr := memserver.Serve(t, func() imapserver.Session {
		s := memserver.Sessions(u)().(*memserver.Session)
		s.Rewrite = func(b []byte) []byte { return append([]byte("X-Scanned: clean\r\n"), b...) }
		return s
	})
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 40)
	saved, _, err := SyncFolder(context.Background(), src, tgt, fresh("Work"), Options{MaxMessages: 5})
	if err != nil {
		t.Fatal(err)
	}
	syncAll(t, srcAddr, tgtAddr, saved, Options{MaxMessages: 20}) // its cursors are lost
	_, st := syncAll(t, srcAddr, tgtAddr, saved, Options{})
	if st.Copied != 0 || st.Matched != 35 {
		t.Fatalf("resumed from the old cursor: copied %d, matched %d; want 0 and 35", st.Copied, st.Matched)
	}
	if n := len(contents(t, tgt, "Work")); n != 40 {
		t.Fatalf("target holds %d messages, want 40", n)
	}
}

// A different message with the same Message-ID, size and arrival second as
// one already on the target is copied, not taken for it; two copies of
// one message in the source stay two on the target.
func TestIdentityTellsMessagesApart(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := pair(t, srcAddr, tgtAddr)
	when := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	msg := func(subject string) []byte {
		return []byte(fmt.Sprintf("Message-ID: <same@example.com>\r\nFrom: a@example.com\r\nSubject: %s\r\n\r\nbody\r\n", subject))
	}
	put := func(s *Session, raw []byte) {
		cmd := s.Client.Append("Work", int64(len(raw)), &imap.AppendOptions{Time: when})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	put(src, msg("list copy"))
	put(src, msg("direct cc")) // same size as the list copy
	put(src, msg("dup!"))
	put(src, msg("dup!"))
	put(tgt, msg("list copy")) // from an earlier run
	put(tgt, msg("dup!"))

	_, st := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	if st.Matched != 2 || st.Copied != 2 {
		t.Fatalf("matched %d, copied %d; want 2 matched (list copy, one dup!) and 2 copied", st.Matched, st.Copied)
	}
	assertSame(t, src, tgt, "Work", "Work")
	if !bytes.Equal(msg("list copy")[:20], msg("direct cc")[:20]) || len(msg("list copy")) != len(msg("direct cc")) {
		t.Fatal("test messages must share Message-ID and size")
	}
}

// The verification sees a missing message, an extra copy, other mail and
// a copy the user deleted, and leaves out what the copy skipped by design.
func TestCompareFolderSeesMissingAndDuplicated(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 10)
	cur, _ := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	// The copy of UID 3 is lost (the cursor does not know it); the user
	// deleted the copy of UID 7.
	expungeOnSource(t, tgt, "Work", cur.Map[0].Tgt+2, cur.Map[0].Tgt+6)
	cur.Map = cur.Map.Remove(map[imap.UID]bool{3: true})
	raw := testMessage(4) // UID 5, twice
	cmd := tgt.Client.Append("Work", int64(len(raw)), &imap.AppendOptions{Time: time.Date(2020, 1, 1, 0, 0, 4, 0, time.UTC)})
	cmd.Write(raw)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	own := []byte("Subject: mine\r\n\r\nhi\r\n")
	cmd = tgt.Client.Append("Work", int64(len(own)), nil)
	cmd.Write(own)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s2, t2 := pair(t, srcAddr, tgtAddr)
	got, err := CompareFolder(context.Background(), s2, t2, cur, CompareOptions{Skip: func(uid imap.UID, _ int64, _ time.Time) bool { return uid == 9 }})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Comparison{SourceMessages: 9, TargetMessages: 10, Missing: 1, Duplicated: 1, Other: 2, DeletedOnTarget: 1}); got != want {
		t.Fatalf("CompareFolder() = %+v, want %+v (UID 9 skipped: its copy counts as other mail)", got, want)
	}
}

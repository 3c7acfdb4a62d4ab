package engine

// Adversarial review of the exactly-once guarantee (branch review). Each
// test here FAILS on the code under review and shows one finding; see the
// comment on each test for the mechanism.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

// hostile is an in-memory session whose SEARCH answers and stored dates a
// test can change.
type hostile struct {
	*memserver.Session
	search func(kind imapserver.NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, bool)
	date   func(time.Time) time.Time
}

func (s *hostile) Search(kind imapserver.NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, error) {
	if s.search != nil {
		if d, ok := s.search(kind, c, o); ok {
			return d, nil
		}
	}
	return s.Session.Search(kind, c, o)
}

func (s *hostile) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if s.date != nil {
		o := *options
		o.Time = s.date(o.Time)
		options = &o
	}
	return s.Session.Append(mailbox, r, options)
}

// uidCriteria reports a UID SEARCH of the shape reconcile sends: only a UID
// set. searchUIDs asks for "n:*", presentUIDs for the recorded copies.
func uidCriteria(c *imap.SearchCriteria) (star bool, ok bool) {
	if len(c.UID) != 1 {
		return false, false
	}
	set := c.UID[0]
	_, finite := set.Nums()
	return !finite, true
}

func countTarget(t *testing.T, addr, folder string) int {
	t.Helper()
	s := dial(t, failure.SideTarget, addr)
	return len(contents(t, s, folder))
}

// Finding 1 (duplicate). reconcile's UID SEARCH of the target (searchUIDs)
// is not checked against the folder: a short or empty answer — the very
// fault listUIDs guards the source against ("a truncated or empty UID
// SEARCH answer", docs/exactly-once.md) — raises TargetUIDNext to the
// folder's UIDNEXT over messages nobody examined. What an earlier attempt
// stored and did not record is then never claimed: it is copied again,
// and no later pass (the final one included) looks below TargetUIDNext.
func TestReviewShortTargetSearchInReconcileCopiesTwice(t *testing.T) {
	srcAddr := memServer(t, "Work")
	u := memserver.NewUser(t, "Work")
	var armed atomic.Bool
	tgtAddr := memserver.Serve(t, func() imapserver.Session {
		return &hostile{Session: memserver.Sessions(u)().(*memserver.Session), search: func(_ imapserver.NumKind, c *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, bool) {
			if star, ok := uidCriteria(c); armed.Load() && ok && star {
				return &imap.SearchData{All: imap.UIDSet{}}, true // "nothing from n on"
			}
			return nil, false
		}}
	})
	src, _ := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 30)

	// Attempt 1 saves a cursor after 10 messages.
	s1, t1 := pair(t, srcAddr, tgtAddr)
	saved, _, err := SyncFolder(context.Background(), s1, t1, fresh("Work"), Options{MaxMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	// Attempt 2 stores the other 20 and dies before its result is saved.
	s2, t2 := pair(t, srcAddr, tgtAddr)
	if _, _, err := SyncFolder(context.Background(), s2, t2, saved, Options{}); err != nil {
		t.Fatal(err)
	}
	// Attempt 3 resumes from the saved cursor; the target answers its
	// reconcile SEARCH with nothing once.
	armed.Store(true)
	s3, t3 := pair(t, srcAddr, tgtAddr)
	cur, st, err := SyncFolder(context.Background(), s3, t3, saved, Options{})
	armed.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	// The faults are over: the final pass.
	_, fin := syncAll(t, srcAddr, tgtAddr, cur, Options{Reconcile: true})
	if n := countTarget(t, tgtAddr, "Work"); n != 30 {
		t.Fatalf("target holds %d messages for 30 (attempt 3 copied %d, matched %d; final pass removed %d): "+
			"the empty SEARCH answer raised TargetUIDNext over 20 unrecorded copies", n, st.Copied, st.Matched, fin.DuplicatesRemoved)
	}
}

// Finding 1b (duplicate). The same for presentUIDs: a short answer to "which
// of the recorded copies are still there" drops a recorded copy from its
// group, the source message is given the unrecorded copy instead, and the
// recorded one — below TargetUIDNext, out of the map — stays for good.
func TestReviewShortPresentSearchLeavesADuplicate(t *testing.T) {
	srcAddr := memServer(t, "Work")
	u := memserver.NewUser(t, "Work")
	var armed atomic.Bool
	tgtAddr := memserver.Serve(t, func() imapserver.Session {
		return &hostile{Session: memserver.Sessions(u)().(*memserver.Session), search: func(_ imapserver.NumKind, c *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, bool) {
			if star, ok := uidCriteria(c); armed.Load() && ok && !star {
				return &imap.SearchData{All: imap.UIDSet{}}, true
			}
			return nil, false
		}}
	})
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 10)
	cur, _ := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	// A late writer (a zombie past its fence check) stores message 3 again.
	raw := testMessage(3)
	cmd := tgt.Client.Append("Work", int64(len(raw)), &imap.AppendOptions{Time: time.Date(2020, 1, 1, 0, 0, 3, 0, time.UTC)})
	cmd.Write(raw)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	s2, t2 := pair(t, srcAddr, tgtAddr)
	cur, st, err := SyncFolder(context.Background(), s2, t2, cur, Options{Reconcile: true})
	armed.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	_, fin := syncAll(t, srcAddr, tgtAddr, cur, Options{Reconcile: true})
	if n := countTarget(t, tgtAddr, "Work"); n != 10 {
		t.Fatalf("target holds %d messages for 10 (removed %d, then %d in the final pass)", n, st.DuplicatesRemoved, fin.DuplicatesRemoved)
	}
}

// Finding 2 (a write after the fence closed). The fence is asked after a
// message's literal is sent and before the command's closing CRLF; a
// command it stops is abandoned on the assumption that the server then
// discards it. go-imap's own server (imapserver.handleAppend calls
// Session.Append as soon as the literal is read, before the CRLF), and any
// server built the same way, has stored the message by then: the attempt
// writes after Fence returned an error. Dovecot (one transaction committed
// at the CRLF) does discard it.
func TestReviewFencedAppendIsStoredByAServerThatCommitsAtTheLiteral(t *testing.T) {
	stored := 0
	// Whether the literal's last bytes leave the client's buffer before the
	// command is abandoned depends on how the copy's writes fall: several
	// sizes make at least one of them do.
	for i := range 16 {
		size := 65536*(1+i%5) + 4093*i
		srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
		src, _ := pair(t, srcAddr, tgtAddr)
		raw := []byte(fmt.Sprintf("From: a@example.com\r\nSubject: big %d\r\nMessage-ID: <big%d@example.com>\r\n\r\n%s\r\n", size, size, strings.Repeat("x", size)))
		cmd := src.Client.Append("Work", int64(len(raw)), &imap.AppendOptions{Time: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		calls := 0
		fence := func() error {
			// 1: before the message is written; 2: before its command is ended.
			if calls++; calls >= 2 {
				return errLeaseLost
			}
			return nil
		}
		s, tg := pair(t, srcAddr, tgtAddr)
		_, _, err := SyncFolder(context.Background(), s, tg, fresh("Work"), Options{Fence: fence})
		if !errors.Is(err, errLeaseLost) {
			t.Fatalf("SyncFolder() = %v, want the lease error", err)
		}
		time.Sleep(100 * time.Millisecond)
		n := countTarget(t, tgtAddr, "Work")
		t.Logf("message of %d bytes: fence closed before its APPEND was ended; the target holds %d", len(raw), n)
		stored += n
	}
	if stored > 0 {
		t.Fatalf("%d message(s) stored after the fence returned an error", stored)
	}
}

// eightBitRewrite turns raw 8-bit header bytes (Latin-1) into RFC 2047
// encoded words, as a server that must serve 7-bit headers (Exchange's
// MIME conversion) does with old mail.
func eightBitRewrite(b []byte) []byte {
	head, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	var out []string
	for _, line := range strings.Split(string(head), "\r\n") {
		name, value, _ := strings.Cut(line, ": ")
		if !hasHigh(value) {
			out = append(out, line)
			continue
		}
		var words []string
		for _, w := range strings.Fields(value) {
			if !hasHigh(w) {
				words = append(words, w)
				continue
			}
			var q strings.Builder
			for i := 0; i < len(w); i++ {
				if c := w[i]; c >= 0x80 || c == '=' || c == '?' || c == '_' || c == '"' {
					fmt.Fprintf(&q, "=%02X", c)
				} else {
					q.WriteByte(c)
				}
			}
			words = append(words, "=?iso-8859-1?Q?"+q.String()+"?=")
		}
		out = append(out, name+": "+strings.Join(words, " "))
	}
	return []byte(strings.Join(out, "\r\n") + "\r\n\r\n" + string(body))
}

func hasHigh(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// latin1Message is old mail with raw 8-bit (Latin-1) headers.
func latin1Message(i int) []byte {
	return []byte(fmt.Sprintf("From: J\xfcrgen M\xfcller <j%d@example.de>\r\nTo: b@example.com\r\nSubject: Gr\xfc\xdfe %d\r\nMessage-ID: <%d@example.de>\r\n\r\nHallo %d\r\n", i, i, i, i))
}

// Finding 3 (duplicate, and the repair pass doubles the folder). Identity
// digests the header values as the server returns them when they do not
// parse: an address list or a subject with raw 8-bit bytes (common in old
// mail) is digested byte for byte. A target that re-encodes such headers
// (7-bit MIME, RFC 2047) never matches: every resume copies again what an
// earlier attempt stored, the verification reports every such message
// missing (and the copies as other mail), and the repair pass — a sync
// from an empty cursor — copies all of them once more.
func TestReviewReencodedEightBitHeadersNeverMatch(t *testing.T) {
	testIdentityBreaker(t, func(s *hostile) { s.Rewrite = eightBitRewrite }, latin1Message)
}

// Finding 3b. The same with a target that keeps INTERNALDATE with another
// offset than APPEND gave (a server storing the local wall-clock time and
// ignoring the zone): identity compares INTERNALDATE to the second.
func TestReviewShiftedInternalDateNeverMatches(t *testing.T) {
	testIdentityBreaker(t, func(s *hostile) {
		s.date = func(d time.Time) time.Time {
			_, off := d.Zone()
			// 12:00 -0500 kept as 12:00 in the server's zone (+0100).
			return time.Date(d.Year(), d.Month(), d.Day(), d.Hour(), d.Minute(), d.Second(), 0, time.FixedZone("", off+3600))
		}
	}, testMessage)
}

func testIdentityBreaker(t *testing.T, target func(*hostile), message func(int) []byte) {
	srcAddr := memServer(t, "Work")
	u := memserver.NewUser(t, "Work")
	tgtAddr := memserver.Serve(t, func() imapserver.Session {
		s := &hostile{Session: memserver.Sessions(u)().(*memserver.Session)}
		target(s)
		return s
	})
	src, _ := pair(t, srcAddr, tgtAddr)
	for i := range 20 {
		raw := message(i)
		cmd := src.Client.Append("Work", int64(len(raw)), &imap.AppendOptions{Time: time.Date(2020, 1, 1, 12, 0, i, 0, time.FixedZone("", -5*3600))})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	s1, t1 := pair(t, srcAddr, tgtAddr)
	saved, _, err := SyncFolder(context.Background(), s1, t1, fresh("Work"), Options{MaxMessages: 5})
	if err != nil {
		t.Fatal(err)
	}
	syncAll(t, srcAddr, tgtAddr, saved, Options{}) // its result is lost
	cur, st := syncAll(t, srcAddr, tgtAddr, saved, Options{})
	s4, t4 := pair(t, srcAddr, tgtAddr)
	cmp, err := CompareFolder(context.Background(), s4, t4, cur, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What the workflow's repair pass does with a folder that does not add
	// up: sync it again from an empty cursor.
	_, rep := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	n := countTarget(t, tgtAddr, "Work")
	if n != 20 || st.Copied != 0 || cmp.Missing != 0 {
		t.Fatalf("resume from the saved cursor copied %d again (matched %d); verification: %+v; the repair pass copied %d more; target holds %d messages for 20",
			st.Copied, st.Matched, cmp, rep.Copied, n)
	}
}

// Finding 4 (worker out of memory). A UID SEARCH answer is expanded to one
// entry per UID before it is checked (listUIDs, searchUIDs): a compact
// ESEARCH answer of a few bytes, "ALL 1:4000000000", costs 16 GB. Here a
// smaller range shows that the memory follows the range, not the answer.
func TestReviewCompactSearchAnswerIsExpanded(t *testing.T) {
	srcAddr := memServer(t, "Work")
	u := memserver.NewUser(t, "Work")
	memserver.Fill(t, u, "Work", 0, 3)
	const huge = 20_000_000
	srcHostile := memserver.Serve(t, func() imapserver.Session {
		return &hostile{Session: memserver.Sessions(u)().(*memserver.Session), search: func(_ imapserver.NumKind, c *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, bool) {
			var all imap.UIDSet
			all.AddRange(1, huge)
			return &imap.SearchData{All: all}, true
		}}
	})
	_ = srcAddr
	tgtAddr := memServer(t, "Work")
	s, tg := pair(t, srcHostile, tgtAddr)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := SyncFolder(context.Background(), s, tg, fresh("Work"), Options{})
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("SyncFolder() = %v; allocated %d MB", err, alloc>>20)
	if alloc > 16<<20 {
		t.Fatalf("a UID SEARCH answer of a few bytes made SyncFolder allocate %d MB (%d UIDs expanded)", alloc>>20, huge)
	}
}

// omitting is a source that leaves one message out of every FETCH answer
// that asks for its content (the body, or header fields), and answers OK: a
// server that cannot read one stored message (a corrupt item) and skips it.
type omitting struct {
	*memserver.Session
	uid imap.UID
}

func (s *omitting) Fetch(w *imapserver.FetchWriter, n imap.NumSet, o *imap.FetchOptions) error {
	if set, ok := n.(imap.UIDSet); ok && len(o.BodySection) > 0 {
		if uids, finite := set.Nums(); finite {
			var keep []imap.UID
			for _, u := range uids {
				if u != s.uid {
					keep = append(keep, u)
				}
			}
			if len(keep) == 0 {
				return nil
			}
			n = imap.UIDSetNum(keep...)
		}
	}
	return s.Session.Fetch(w, n, o)
}

// Finding 5 (loss, verified Perfect). The copy takes a message missing from
// its body FETCH answer for one expunged since it was listed (flushUpTo) and
// passes it without a bad item; the verification leaves out of the count a
// source message whose header FETCH returns nothing (eachIdentity). A
// source that silently skips a message it cannot read in both loses it
// with LastUID past it, no bad item, and a Perfect verification.
func TestReviewUnreadableSourceMessageIsLostAndVerifiedPerfect(t *testing.T) {
	u := memserver.NewUser(t, "Work")
	memserver.Fill(t, u, "Work", 0, 10)
	srcAddr := memserver.Serve(t, func() imapserver.Session {
		return &omitting{Session: memserver.Sessions(u)().(*memserver.Session), uid: 5}
	})
	tgtAddr := memServer(t, "Work")
	cur, st := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	s, tg := pair(t, srcAddr, tgtAddr)
	cmp, err := CompareFolder(context.Background(), s, tg, cur, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The server never sends it: it cannot be copied, but it must not pass
	// for expunged — a bad item, and missing in the verification.
	n := countTarget(t, tgtAddr, "Work")
	if n != 10 && (len(st.BadItems) != 1 || cmp.Missing != 1 || cmp.Unreadable != 1) {
		t.Fatalf("the source holds 10 messages, the target %d; the copy passed UID 5 (cursor at %d) with %d bad items, and the verification says %+v",
			n, cur.LastUID, len(st.BadItems), cmp)
	}
}

// Finding 3c. A target that gives a message without Message-ID one of its
// own (servers that must have one for every item do).
func TestReviewSynthesizedMessageIDNeverMatches(t *testing.T) {
	var n atomic.Int64
	testIdentityBreaker(t, func(s *hostile) {
		s.Rewrite = func(b []byte) []byte {
			return append([]byte(fmt.Sprintf("Message-ID: <gen%d@target.example>\r\n", n.Add(1))), b...)
		}
	}, func(i int) []byte {
		return []byte(fmt.Sprintf("From: cron@example.com\r\nTo: admin@example.com\r\nSubject: nightly report %d\r\n\r\nall good\r\n", i))
	})
}

// Finding 6 (touches the user's mail on the target). During the move the
// user already works in the target mailbox. A copy the user deletes there
// (or moves to another folder) is reported missing by the verification,
// and the repair pass — a sync from an empty cursor — copies it again:
// the user's deletion is undone. (The same pass removes, as an extra copy,
// a copy the user made inside the folder.)
func TestReviewRepairPassUndoesTheUsersDeletionOnTheTarget(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 10)
	cur, _ := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	// The user deletes the copy of message 3 on the target.
	expungeOnSource(t, tgt, "Work", cur.Map[0].Tgt+2)
	cur, _ = syncAll(t, srcAddr, tgtAddr, cur, Options{Reconcile: true}) // the final pass
	s, tg := pair(t, srcAddr, tgtAddr)
	cmp, err := CompareFolder(context.Background(), s, tg, cur, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cmp.Missing > 0 { // workflows/folders.go: verify's repair
		_, st := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
		if n := countTarget(t, tgtAddr, "Work"); n != 9 {
			t.Fatalf("the user deleted one of the 10 copies on the target; the verification reported %+v, the repair pass copied %d, and the target holds %d again",
				cmp, st.Copied, n)
		}
	}
}

// Finding 8 (loss, verified Perfect). Two messages of one folder that share
// the six identity headers and the INTERNALDATE second but differ in body
// (a script's reports APPENDed without Message-ID and Date; alerts sent
// twice in one second) are one identity. Reconcile gives a copy of either
// to whichever source message comes first: here the target already holds
// B (an earlier run), reconcile claims it for A, and B is copied — the
// target ends with B twice and A nowhere, and the verification, which
// counts identities, says every message is there exactly once.
func TestReviewSameIdentityDifferentBodyLosesOne(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := pair(t, srcAddr, tgtAddr)
	when := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	msg := func(body string) []byte {
		return []byte("From: backup@example.com\r\nTo: admin@example.com\r\nSubject: backup report\r\n\r\n" + body + "\r\n")
	}
	put := func(s *Session, raw []byte) {
		cmd := s.Client.Append("Work", int64(len(raw)), &imap.AppendOptions{Time: when})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	a, b := msg("server1: FAILED"), msg("server2: ok")
	put(src, a)
	put(src, b)
	put(tgt, b) // from an earlier run that got as far as B
	cur, st := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	s, tg := pair(t, srcAddr, tgtAddr)
	cmp, err := CompareFolder(context.Background(), s, tg, cur, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := contents(t, tgt, "Work")
	want := contents(t, src, "Work")
	for i := range want {
		if i >= len(got) || got[i].hash != want[i].hash {
			t.Fatalf("matched %d, copied %d; the target holds %d messages but not the source's two (A lost, B twice); the verification says %+v", st.Matched, st.Copied, len(got), cmp)
		}
	}
}

// Finding 11 (two cursors on one target folder). PlanFolders sends the
// first source folder of a special use to the target's folder of that use
// and a second one to its own name — which can be that same folder: a
// source with "Sent" and "Sent Items", a target whose \Sent is "Sent
// Items". Two cursors (possibly in two lanes at once) then reconcile one
// target folder: a message present in both source folders is kept once
// (one folder claims or removes the other's copy), and each folder's
// verification, comparing against the whole target folder, finds it.
func TestReviewTwoSourceFoldersPlannedIntoOneTarget(t *testing.T) {
	src := []Folder{{Name: "INBOX"}, {Name: "Sent"}, {Name: "Sent Items"}}
	tgt := []Folder{{Name: "INBOX"}, {Name: "Sent Items", SpecialUse: imap.MailboxAttrSent}}
	plans, _ := PlanFolders(src, Namespace{Delim: '/'}, tgt, Namespace{Delim: '/'}, Rules{})
	seen := map[string]string{}
	for _, p := range plans {
		if other, ok := seen[p.Target]; ok {
			t.Fatalf("source folders %q and %q are both planned into target %q", other, p.Source, p.Target)
		}
		seen[p.Target] = p.Source
	}
}

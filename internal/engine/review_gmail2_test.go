package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

// rg2Label gives message i of a gmailMailbox the label (a user label, or a
// system one as `\Inbox`), as Gmail does: the label keyword on every copy
// of the message the imitation holds, and a new copy (a new UID) in the
// label's folder, made if it does not exist yet.
func rg2Label(t *testing.T, srcAddr string, i int, label, folder string) {
	t.Helper()
	s := dial(t, failure.SideSource, srcAddr)
	kw := imap.Flag(imapmemserverLabel(label))
	list, err := s.ListFolders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	var flags []imap.Flag
	want := labelHash(i)
	exists := false
	for _, f := range list {
		if f.Name == folder {
			exists = true
		}
		if f.NoSelect {
			continue
		}
		if _, err := s.Client.Select(f.Name, nil).Wait(); err != nil {
			t.Fatal(err)
		}
		var all imap.SeqSet
		all.AddRange(1, 0)
		bufs, err := s.Client.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, GmailLabels: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bufs {
			if hashOf(b.BodySection[0].Bytes) != want {
				continue
			}
			if err := s.Client.Store(imap.UIDSetNum(b.UID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{kw}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			labels, flags = b.GmailLabels, b.Flags
		}
	}
	if !exists {
		if err := s.Client.Create(folder, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	flags = append(flags, kw)
	for _, l := range labels {
		flags = append(flags, imap.Flag(imapmemserverLabel(l)))
	}
	raw := memserver.Message(7000 + i)
	cmd := s.Client.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: flags, Time: time.Date(2022, 5, 1, 0, 0, i, 0, time.UTC)})
	cmd.Write(raw)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// rg2GmailTarget is an empty Gmail imitation that also announces UIDPLUS,
// as Gmail does: extra copies found by reconcile are removed (UID EXPUNGE).
func rg2GmailTarget(t *testing.T) string {
	t.Helper()
	u := imapmemserver.NewUser(memserver.User, memserver.Password)
	for name, use := range map[string][]imap.MailboxAttr{
		"INBOX": nil, "[Gmail]/All Mail": {imap.MailboxAttrAll}, "[Gmail]/Important": {"\\Important"},
		"[Gmail]/Starred": {imap.MailboxAttrFlagged}, "[Gmail]/Sent Mail": {imap.MailboxAttrSent}, "[Gmail]/Drafts": {imap.MailboxAttrDrafts},
	} {
		if err := u.Create(name, &imap.CreateOptions{SpecialUse: use}); err != nil {
			t.Fatal(err)
		}
	}
	return memserver.ServeCaps(t, memserver.Sessions(u), imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapSpecialUse: {}, imap.CapUIDPlus: {}, "X-GM-EXT-1": {}})
}

func imapmemserverLabel(l string) string {
	if rest, ok := strings.CutPrefix(l, `\`); ok {
		return "$X-GM-SYS:" + rest
	}
	return "$X-GM-LABEL:" + l
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return fmt.Sprintf("%x", h[:8])
}

// rg2Passes plans and syncs every folder of a Gmail-to-Gmail move (or any
// move) until nothing changes, then, when final, a final pass
// (Options.Reconcile) of each. It returns the cursors and the counters.
func rg2Passes(t *testing.T, srcAddr, tgtAddr string, rules Rules, curs map[string]Cursor, opts Options, final bool) (map[string]Cursor, GmailRanking, Counters) {
	t.Helper()
	src, tgt := pair(t, srcAddr, tgtAddr)
	plans, _, err := Plan(context.Background(), src, tgt, rules)
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.CreateFolders(context.Background(), plans); err != nil {
		t.Fatal(err)
	}
	g := GmailRankingOf(plans, rules)
	out := map[string]Cursor{}
	for _, p := range plans {
		if c, ok := curs[p.Source]; ok {
			out[p.Source] = c
		} else {
			out[p.Source] = p.Cursor()
		}
	}
	var total Counters
	for pass := 0; pass < 100; pass++ {
		changed := false
		for _, p := range plans {
			o := opts
			o.Rules, o.Gmail = rules, g
			next, st, err := SyncFolder(context.Background(), src, tgt, out[p.Source], o)
			if err != nil {
				t.Fatalf("SyncFolder(%s) = %v", p.Source, err)
			}
			total.Add(st.Counters)
			if fmt.Sprint(next) != fmt.Sprint(out[p.Source]) {
				out[p.Source], changed = next, true
			}
		}
		if !changed {
			break
		}
	}
	if final {
		for _, p := range plans {
			next, st, err := SyncFolder(context.Background(), src, tgt, out[p.Source], Options{Rules: rules, Gmail: g, Reconcile: true})
			if err != nil {
				t.Fatalf("final SyncFolder(%s) = %v", p.Source, err)
			}
			total.Add(st.Counters)
			out[p.Source] = next
		}
	}
	return out, g, total
}

// rg2Verify sums CompareFolder over the cursors with the given ranking.
func rg2Verify(t *testing.T, srcAddr, tgtAddr string, curs map[string]Cursor, g GmailRanking) Comparison {
	t.Helper()
	src, tgt := pair(t, srcAddr, tgtAddr)
	var sum Comparison
	for _, cur := range curs {
		c, err := CompareFolder(context.Background(), src, tgt, cur, CompareOptions{Gmail: g})
		if err != nil {
			t.Fatalf("CompareFolder(%s) = %v", cur.Source, err)
		}
		sum.Missing += c.Missing
		sum.Duplicated += c.Duplicated
		sum.Other += c.Other
	}
	return sum
}

// Priority rule, a label folder added mid-move (GmailRanking.Planned
// grows): message 0, in INBOX only, is copied to INBOX; then the user
// gives it a new label "Work" (a new folder), which outranks INBOX. Found
// at first as two copies with the verification silent; now the message
// has moved to Work, as a message moved between folders on any server:
// with --propagate-deletes its INBOX copy is expunged, without it the copy
// stays and counts as other mail (deleted on the source), as for a moved
// message.
func TestReviewGmail2PriorityLabelAddedMidMoveDuplicatesSilently(t *testing.T) {
	for _, propagate := range []bool{true, false} {
		srcAddr := gmailMailbox(t, []string{`\Inbox`}, []string{`\Inbox`})
		tgtAddr := memServer(t, "Archive")
		rules := Rules{GmailLabels: GmailLabelPriority}
		opts := Options{PropagateDeletes: propagate}
		_, curs := gmailMove(t, srcAddr, tgtAddr, rules, nil, opts)
		rg2Label(t, srcAddr, 0, "Work", "Work")
		_, curs = gmailMove(t, srcAddr, tgtAddr, rules, curs, opts)
		_, curs = gmailMove(t, srcAddr, tgtAddr, rules, curs, opts)
		folders, _ := placed(t, tgtAddr)
		cmp := gmailVerify(t, srcAddr, tgtAddr, curs)
		want, other := "Work", 0
		if !propagate {
			want, other = "INBOX,Work", 1
		}
		if got := strings.Join(folders[labelHash(0)], ","); got != want || cmp.Missing+cmp.Duplicated > 0 || cmp.Other != other {
			t.Errorf("propagate %v: message 0 (labels Inbox, then Inbox+Work) is in %q on the target, want %q (verification: %+v)", propagate, got, want, cmp)
		}
	}
}

// Priority rule, a lost result across a ranking change: an attempt on
// INBOX made with the ranking of a plan that did not have Work yet copies
// message 0 (labels Inbox, Work) into INBOX and its result is lost; the
// next attempts run with the whole ranking. INBOX's reconcile no longer
// takes that copy for message 0's (outranked: "not here") and leaves it
// as other mail; Work copies message 0 too.
func TestReviewGmail2PriorityLostResultAcrossRankingChangeDuplicates(t *testing.T) {
	srcAddr := gmailMailbox(t, []string{`\Inbox`, "Work"}, []string{`\Inbox`}, []string{"Work"})
	tgtAddr := memServer(t, "Archive")
	rules := Rules{GmailLabels: GmailLabelPriority}
	src, tgt := pair(t, srcAddr, tgtAddr)
	plans, _, err := Plan(context.Background(), src, tgt, rules)
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.CreateFolders(context.Background(), plans); err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if p.Source == "INBOX" {
			// The older plan's ranking: INBOX and the system folders only.
			old := GmailRanking{Planned: []string{`\Inbox`, `\Sent`, `\Draft`}}
			if _, _, err := SyncFolder(context.Background(), src, tgt, p.Cursor(), Options{Rules: rules, Gmail: old}); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, curs := gmailMove(t, srcAddr, tgtAddr, rules, nil, Options{})
	_, curs = gmailMove(t, srcAddr, tgtAddr, rules, curs, Options{})
	folders, _ := placed(t, tgtAddr)
	cmp := gmailVerify(t, srcAddr, tgtAddr, curs)
	if got := folders[labelHash(0)]; len(got) != 1 {
		t.Errorf("message 0 (labels Inbox, Work) is in %v on the target, want exactly one folder (verification: %+v)", got, cmp)
	}
}

// Gmail to Gmail, a better-ranked label added mid-move: message 0 (INBOX
// only) is uploaded into INBOX; then the user labels it Work. Work's pass
// takes Work for its home and uploads it a second time (and COPYs that
// into INBOX, whose final pass removes the extra copy). On Gmail that is
// two messages in All Mail: one upload per message is broken. The
// verification of every folder passes.
//
// Left as a known limit (docs/providers.md, "Gmail: known limits"): the
// test holds what is kept, every label folder equal to the source's and a
// clean verification, and logs the uploads.
func TestReviewGmail2GmailTargetLabelAddedMidMoveUploadsTwice(t *testing.T) {
	srcAddr := gmailMailbox(t, []string{`\Inbox`}, []string{"Work"})
	tgtAddr := rg2GmailTarget(t)
	curs, _, first := rg2Passes(t, srcAddr, tgtAddr, Rules{}, nil, Options{}, false)
	rg2Label(t, srcAddr, 0, "Work", "Work")
	curs, g, second := rg2Passes(t, srcAddr, tgtAddr, Rules{}, curs, Options{}, true)
	cmp := rg2Verify(t, srcAddr, tgtAddr, curs, g)
	tgt := dial(t, failure.SideTarget, tgtAddr)
	inbox, work := len(contents(t, tgt, "INBOX")), len(contents(t, tgt, "Work"))
	t.Logf("%d uploads for 2 messages (known limit: 3)", first.Copied+second.Copied)
	if up := first.Copied + second.Copied; up > 3 || inbox != 1 || work != 2 || cmp.Missing+cmp.Duplicated+cmp.Other > 0 {
		t.Errorf("%d uploads for 2 messages (%d, then %d after the label was added); target INBOX %d (want 1), Work %d (want 2); verification %+v",
			up, first.Copied, second.Copied, inbox, work, cmp)
	}
}

// Gmail to Gmail under compound faults: a fence that closes after a random
// number of calls (between an APPEND and the COPYs that label it, or
// between two COPYs), after which the attempt's result is lost or kept at
// random, chunks. Every label folder ends equal to the source's, each
// message is uploaded once, and verification is clean.
func TestReviewGmail2GmailTargetFenceFailsMidWay(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		r := rand.New(rand.NewPCG(seed, 23))
		pool := []string{`\Inbox`, `\Sent`, `\Important`, `\Starred`, "Work", "Travel", "Büro", "a.b"}
		var labels [][]string
		for i := 0; i < 15+r.IntN(25); i++ {
			var l []string
			for _, p := range pool {
				if r.IntN(3) == 0 {
					l = append(l, p)
				}
			}
			labels = append(labels, l)
		}
		rules := Rules{}
		if seed%2 == 0 {
			rules = Rules{GmailLabels: GmailLabelPriority, GmailLabelOrder: []string{"Büro"}}
		}
		srcAddr := gmailMailbox(t, labels...)
		tgtAddr := memserver.Gmail(t, nil)
		if seed > 3 {
			tgtAddr = rg2GmailTarget(t) // with UIDPLUS: extra copies are removed
		}
		src, tgt := pair(t, srcAddr, tgtAddr)
		plans, _, err := Plan(context.Background(), src, tgt, rules)
		if err != nil {
			t.Fatal(err)
		}
		if err := tgt.CreateFolders(context.Background(), plans); err != nil {
			t.Fatal(err)
		}
		g := GmailRankingOf(plans, rules)
		curs := map[string]Cursor{}
		for _, p := range plans {
			curs[p.Source] = p.Cursor()
		}
		uploads, fenced, labelled := 0, 0, 0
		errFence := errors.New("lease lost")
		for pass := 0; pass < 300; pass++ {
			changed := false
			for _, p := range plans {
				calls, limit := 0, 1+r.IntN(6)
				o := Options{Rules: rules, Gmail: g, MaxMessages: 1 + r.IntN(8)}
				faulty := r.IntN(2) == 0
				if faulty {
					o.Fence = func() error {
						if calls++; calls > limit {
							return errFence
						}
						return nil
					}
				}
				s, d := pair(t, srcAddr, tgtAddr)
				next, st, err := SyncFolder(context.Background(), s, d, curs[p.Source], o)
				s.Close()
				d.Close()
				uploads += st.Copied
				labelled += st.Labelled
				if err != nil {
					fenced++
				}
				if err != nil && !errors.Is(err, errFence) {
					t.Fatalf("seed %d pass %d faulty %v limit %d: SyncFolder(%s) = %v", seed, pass, faulty, limit, p.Source, err)
				}
				if err != nil && r.IntN(2) == 0 || r.IntN(5) == 0 {
					changed = true
					continue // the result is lost
				}
				if fmt.Sprint(next) != fmt.Sprint(curs[p.Source]) || err != nil {
					curs[p.Source], changed = next, true
				}
			}
			if !changed {
				break
			}
		}
		// The final passes fail mid-way too (in labelMissing's COPYs) and
		// are tried again, from the returned cursor or the older one.
		for _, p := range plans {
			for try := 0; ; try++ {
				calls, limit := 0, 1+r.IntN(4)
				o := Options{Rules: rules, Gmail: g, Reconcile: true}
				if try < 10 {
					o.Fence = func() error {
						if calls++; calls > limit {
							return errFence
						}
						return nil
					}
				}
				s, d := pair(t, srcAddr, tgtAddr)
				next, st, err := SyncFolder(context.Background(), s, d, curs[p.Source], o)
				s.Close()
				d.Close()
				uploads += st.Copied
				if err != nil && !errors.Is(err, errFence) {
					t.Fatalf("seed %d: final SyncFolder(%s) = %v", seed, p.Source, err)
				}
				if err == nil || r.IntN(2) == 0 {
					curs[p.Source] = next
				}
				if err == nil {
					break
				}
			}
		}
		if cmp := rg2Verify(t, srcAddr, tgtAddr, curs, g); cmp.Missing+cmp.Duplicated > 0 {
			t.Errorf("seed %d: verification %+v", seed, cmp)
		}
		for _, f := range append(gmailFolders, "Work", "Travel", "Büro", "a.b") {
			if _, err := src.Client.Select(f, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
				continue
			}
			assertSame(t, src, tgt, f, f)
		}
		if fenced == 0 || labelled == 0 {
			t.Errorf("seed %d: %d attempts fenced, %d labels given: the faults were not exercised", seed, fenced, labelled)
		}
		if uploads != len(labels) {
			t.Errorf("seed %d (rules %+v): %d uploads for %d messages", seed, rules, uploads, len(labels))
		}
	}
}

// Gmail to Gmail, a label folder missing on the target when the home
// folder's pass labels into it (the user deleted it before anything was
// copied there): message 0 (Travel, Work) is uploaded to Travel, whose
// COPY into Work finds no folder. The
// copy goes on, Work's pass makes the folder again, and its final pass
// gives the label; every folder ends equal to the source's, one upload
// per message.
func TestReviewGmail2GmailTargetLabelFolderMissingAtCopy(t *testing.T) {
	srcAddr := gmailMailbox(t, []string{"Travel", "Work"}, []string{"Work"}, []string{`\Inbox`, "Travel"})
	tgtAddr := rg2GmailTarget(t)
	src, tgt := pair(t, srcAddr, tgtAddr)
	plans, _, err := Plan(context.Background(), src, tgt, Rules{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.CreateFolders(context.Background(), plans); err != nil {
		t.Fatal(err)
	}
	g := GmailRankingOf(plans, Rules{})
	curs := map[string]Cursor{}
	uploads := 0
	// The target lacks Work (the user deleted it) when Travel's pass
	// labels message 0.
	order := []string{"Travel"}
	for _, p := range plans {
		curs[p.Source] = p.Cursor()
		if !slices.Contains(order, p.Source) {
			order = append(order, p.Source)
		}
	}
	for i, f := range order {
		if i == 0 {
			if err := tgt.Client.Delete("Work").Wait(); err != nil {
				t.Fatal(err)
			}
		}
		s, d := pair(t, srcAddr, tgtAddr)
		next, st, err := SyncFolder(context.Background(), s, d, curs[f], Options{Gmail: g})
		if err != nil {
			t.Fatalf("SyncFolder(%s) = %v", f, err)
		}
		uploads += st.Copied
		curs[f] = next
	}
	curs, _, total := rg2Passes(t, srcAddr, tgtAddr, Rules{}, curs, Options{}, true)
	uploads += total.Copied
	if cmp := rg2Verify(t, srcAddr, tgtAddr, curs, g); cmp.Missing+cmp.Duplicated > 0 {
		t.Errorf("verification %+v", cmp)
	}
	src, tgt = pair(t, srcAddr, tgtAddr)
	for _, f := range []string{"INBOX", "Travel", "Work"} {
		assertSame(t, src, tgt, f, f)
	}
	if uploads != 3 {
		t.Errorf("%d uploads for 3 messages", uploads)
	}
}

// Priority rule, identical twins (the same raw message twice, as Gmail
// keeps an imported or resent one) with different labels: A (Inbox) goes
// to INBOX, B (Inbox, Work) to Work with keyword inbox. The first attempt
// of every folder writes and its result is lost; the next attempts resume
// into the populated target, then a repair pass. One copy in each folder,
// the verification clean.
func TestReviewGmail2PriorityTwinsWithLostResults(t *testing.T) {
	raw := memserver.Message(5151)
	date := time.Date(2022, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, order := range [][]string{nil, {"INBOX"}} {
		msgs := []memserver.GmailMessage{{Raw: raw, Date: date, Labels: []string{`\Inbox`}}, {Raw: raw, Date: date, Labels: []string{`\Inbox`, "Work"}},
			{Raw: raw, Date: date, Labels: []string{"Work"}}, {Raw: raw, Date: date}}
		srcAddr := memserver.Gmail(t, msgs)
		tgtAddr := memServer(t, "Archive")
		rules := Rules{GmailLabels: GmailLabelPriority, GmailLabelOrder: order}
		gmailMove(t, srcAddr, tgtAddr, rules, nil, Options{}) // lost
		_, curs := gmailMove(t, srcAddr, tgtAddr, rules, nil, Options{})
		_, curs = gmailMove(t, srcAddr, tgtAddr, rules, curs, Options{})
		for k, c := range curs {
			curs[k] = c.ForRepair()
		}
		_, curs = gmailMove(t, srcAddr, tgtAddr, rules, curs, Options{})
		tgt := dial(t, failure.SideTarget, tgtAddr)
		got := map[string]int{}
		for _, f := range []string{"INBOX", "Work", "Archive"} {
			got[f] = len(contents(t, tgt, f))
		}
		want := map[string]int{"INBOX": 1, "Work": 2, "Archive": 1}
		if order != nil {
			want = map[string]int{"INBOX": 2, "Work": 1, "Archive": 1}
		}
		cmp := gmailVerify(t, srcAddr, tgtAddr, curs, order...)
		if fmt.Sprint(got) != fmt.Sprint(want) || cmp.Missing+cmp.Duplicated > 0 {
			t.Errorf("order %v: target holds %v, want %v; verification %+v", order, got, want, cmp)
		}
	}
}

// Gmail to Gmail with a TargetPrefix ("Old"): label folders go to
// Old/<label>, archived mail to Old/Archive; the COPYs that label go to
// the prefixed folders. Each prefixed folder equals its source folder.
func TestReviewGmail2GmailTargetWithPrefix(t *testing.T) {
	srcAddr := gmailMailbox(t, []string{`\Inbox`, "Work"}, []string{"Work", "Travel"}, []string{}, []string{`\Sent`, `\Inbox`}, []string{"Travel"})
	tgtAddr := rg2GmailTarget(t)
	rules := Rules{TargetPrefix: "Old"}
	curs, g, total := rg2Passes(t, srcAddr, tgtAddr, rules, nil, Options{MaxMessages: 2}, true)
	if cmp := rg2Verify(t, srcAddr, tgtAddr, curs, g); cmp.Missing+cmp.Duplicated > 0 {
		t.Errorf("verification %+v", cmp)
	}
	src, tgt := pair(t, srcAddr, tgtAddr)
	for _, cur := range curs {
		if cur.GmailArchive {
			if n := len(contents(t, tgt, cur.Target)); n != 1 {
				t.Errorf("archive %s holds %d, want 1", cur.Target, n)
			}
			continue
		}
		assertSame(t, src, tgt, cur.Source, cur.Target)
	}
	if total.Copied != 5 {
		t.Errorf("%d uploads for 5 messages", total.Copied)
	}
}

// Gmail to Gmail, a message the target refuses (larger than the limit,
// Options.MaxMessageBytes): message 6 (Travel, Work) is a bad item of
// Travel, its home. Work passed it as outranked. The verification, with
// the bad items of each folder skipped as the Verify activity does (by
// folder), compares Work whole and reports it missing, and no repair pass
// can copy it: a breach that is none, and that never clears.
func TestReviewGmail2GmailTargetBadItemOfHomeIsMissingInOtherLabels(t *testing.T) {
	labels := [][]string{{`\Inbox`}, {"Work"}, {"Travel"}, {}, {`\Inbox`}, {"Work"}, {"Travel", "Work"}}
	srcAddr := gmailMailbox(t, labels...)
	tgtAddr := rg2GmailTarget(t)
	limit := int64(len(memserver.Message(7006)) - 1)
	src, tgt := pair(t, srcAddr, tgtAddr)
	plans, _, err := Plan(context.Background(), src, tgt, Rules{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.CreateFolders(context.Background(), plans); err != nil {
		t.Fatal(err)
	}
	g := GmailRankingOf(plans, Rules{})
	var bad []BadItem
	curs := map[string]Cursor{}
	for i, final := range []bool{false, true, true} {
		if i == 2 {
			// What the workflow does with a folder that does not add up.
			for k, c := range curs {
				curs[k] = c.ForRepair()
			}
		}
		for _, p := range plans {
			cur, ok := curs[p.Source]
			if !ok {
				cur = p.Cursor()
			}
			next, st, err := SyncFolder(context.Background(), src, tgt, cur, Options{Gmail: g, MaxMessageBytes: limit, Reconcile: final})
			if err != nil {
				t.Fatalf("SyncFolder(%s) = %v", p.Source, err)
			}
			bad = append(bad, st.BadItems...)
			curs[p.Source] = next
		}
	}
	// Message 6 is a bad item of Travel, its home, and of Work, where a
	// Gmail target would show it (reported there too since the review).
	folders := map[string]bool{}
	for _, b := range bad {
		folders[b.Folder] = true
	}
	if len(folders) != 2 || !folders["Travel"] || !folders["Work"] {
		t.Fatalf("bad items %+v, want message 6 in Travel and in Work", bad)
	}
	var sum Comparison
	for _, cur := range curs {
		skip := func(uid imap.UID, size int64, date time.Time) bool {
			return slices.ContainsFunc(bad, func(b BadItem) bool { return b.Folder == cur.Source && b.UID == uid })
		}
		c, err := CompareFolder(context.Background(), src, tgt, cur, CompareOptions{Skip: skip, Gmail: g})
		if err != nil {
			t.Fatal(err)
		}
		if c.Missing+c.Duplicated > 0 {
			t.Logf("%s: %+v", cur.Source, c)
		}
		sum.Missing += c.Missing
		sum.Duplicated += c.Duplicated
	}
	if sum.Missing+sum.Duplicated > 0 {
		t.Errorf("verification reports %d missing, %d duplicated after repair passes; the only difference is a bad item of Travel", sum.Missing, sum.Duplicated)
	}
}

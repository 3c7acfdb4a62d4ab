package engine

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

// A Gmail source shows each label as a folder and every message again in
// All Mail (and in Starred and Important). Each message lands in the
// folder of each of its labels once, archived mail (no label of its own
// folder) in the target's archive, and nothing a second time: not All
// Mail's copies of labelled mail, not Starred, not Important.
func TestGmailSourceCopiesEachLabelOnceAndArchivedMailToTheArchive(t *testing.T) {
	labels := [][]string{
		{"\\Inbox"}, {"Work"}, {"\\Inbox", "Work", "\\Important"}, {}, {"\\Starred"}, {"\\Sent"},
		{"\\Important"}, {"Work", "Travel", "\\Starred"}, {"Travel"}, {},
	}
	var msgs []memserver.GmailMessage
	for i, l := range labels {
		msgs = append(msgs, memserver.GmailMessage{Raw: memserver.Message(900 + i), Date: time.Date(2021, 3, 1, 0, 0, i, 0, time.UTC), Labels: l})
	}
	srcAddr := memserver.Gmail(t, msgs)
	tgtAddr := memServer(t, "Archive")
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	plans, excluded, err := Plan(context.Background(), src, tgt, Rules{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range plans {
		got[p.Source] = p.Target
	}
	want := map[string]string{"INBOX": "INBOX", "Work": "Work", "Travel": "Travel", "[Gmail]/Sent Mail": "[Gmail]/Sent Mail",
		"[Gmail]/Drafts": "[Gmail]/Drafts", "[Gmail]/All Mail": "Archive"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("plan = %v, want %v", got, want)
	}
	if slices.Sort(excluded); strings.Join(excluded, ",") != "[Gmail]/Important,[Gmail]/Starred" {
		t.Fatalf("excluded = %v, want Important and Starred", excluded)
	}
	if err := tgt.CreateFolders(context.Background(), plans); err != nil {
		t.Fatal(err)
	}
	var total Counters
	for _, p := range plans {
		cur, st, err := SyncFolder(context.Background(), src, tgt, p.Cursor(), Options{})
		if err != nil {
			t.Fatalf("SyncFolder(%s) = %v", p.Source, err)
		}
		total.Add(st.Counters)
		cmp, err := CompareFolder(context.Background(), src, tgt, cur, CompareOptions{})
		if err != nil || cmp.Missing+cmp.Duplicated+cmp.Other > 0 {
			t.Fatalf("CompareFolder(%s) = %+v, %v; want every message once", p.Source, cmp, err)
		}
	}
	// One copy per label of a folder: 2 in INBOX, 3 in Work, 2 in Travel,
	// 1 sent; 4 archived (two with no label, one starred, one important).
	for folder, n := range map[string]int{"INBOX": 2, "Work": 3, "Travel": 2, "[Gmail]/Sent Mail": 1, "Archive": 4} {
		if c := len(contents(t, tgt, folder)); c != n {
			t.Errorf("target %s holds %d messages, want %d", folder, c, n)
		}
	}
	if total.Copied != 12 {
		t.Errorf("copied %d messages, want 12 (one per label folder, archived mail once)", total.Copied)
	}
	// The starred archived message keeps its star.
	flagged := 0
	for _, m := range contents(t, tgt, "Archive") {
		if strings.Contains(m.flags, `\flagged`) {
			flagged++
		}
	}
	if flagged != 1 {
		t.Errorf("%d flagged messages in the archive, want the starred one", flagged)
	}
}

// labelHash is the contents() hash of the i-th message of gmailMailbox.
func labelHash(i int) string {
	h := sha256.Sum256(memserver.Message(7000 + i))
	return fmt.Sprintf("%x", h[:8])
}

// placed is where each message of the target is, by hash: its folders
// and the flags of its last copy.
func placed(t *testing.T, tgtAddr string) (folders map[string][]string, flags map[string]string) {
	t.Helper()
	tgt := dial(t, failure.SideTarget, tgtAddr)
	list, err := tgt.ListFolders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	folders, flags = map[string][]string{}, map[string]string{}
	for _, f := range list {
		if f.NoSelect {
			continue
		}
		for _, m := range contents(t, tgt, f.Name) {
			folders[m.hash] = append(folders[m.hash], f.Name)
			flags[m.hash] = m.flags
		}
	}
	return folders, flags
}

// Under the priority rule a message is copied once, into the folder of
// its first label: the admin's order first (Travel), then Trash and Spam,
// the user's labels by name, INBOX, Sent, Drafts. Its other labels become
// keywords (not Starred: that is \Flagged). A label left out by the rules
// takes no message away from a folder that is copied.
func TestGmailPriorityRuleCopiesOnceAndKeepsTheOtherLabelsAsKeywords(t *testing.T) {
	labels := [][]string{
		{"\\Inbox", "Work"},                     // Work, keyword Inbox
		{"Work", "Travel"},                      // Travel: listed first
		{"\\Inbox"},                             // INBOX
		{"Travel", "\\Sent"},                    // Travel, keyword Sent
		{},                                      // the archive
		{"Private", "Work"},                     // Work: Private is left out
		{"Private"},                             // nowhere: the admin left it out
		{"\\Inbox", "\\Starred", "\\Important"}, // INBOX, keyword Important
		{"Büro", "\\Inbox"},                     // Büro, keyword Inbox
		{"Work", "Büro", "\\Important"},         // Büro: before Work by name
		{"\\Sent", "\\Inbox"},                   // INBOX: before Sent
	}
	srcAddr := gmailMailbox(t, labels...)
	tgtAddr := memServer(t, "Archive")
	rules := Rules{GmailLabels: GmailLabelPriority, GmailLabelOrder: []string{"travel"}, Exclude: []string{"Private"}}
	plans, curs := gmailMove(t, srcAddr, tgtAddr, rules, nil, Options{})
	for _, p := range plans {
		if !p.GmailKeywords {
			t.Fatalf("plan %+v does not record the priority rule", p)
		}
	}
	want := []struct{ folder, keywords string }{
		{"Work", "inbox"}, {"Travel", "work"}, {"INBOX", ""}, {"Travel", "sent"}, {"Archive", ""}, {"Work", "private"}, {"", ""},
		{"INBOX", `\flagged important`}, {"Büro", "inbox"}, {"Büro", "important work"}, {"INBOX", "sent"},
	}
	check := func(when string) {
		t.Helper()
		folders, flags := placed(t, tgtAddr)
		for i, w := range want {
			h := labelHash(i)
			got := strings.Join(folders[h], ",")
			kw := strings.Join(slices.DeleteFunc(strings.Fields(flags[h]), func(f string) bool { return f == `\seen` }), " ")
			if got != w.folder || w.folder != "" && kw != w.keywords {
				t.Errorf("%s: message %d (labels %v) is in %q with %q, want %q with %q", when, i, labels[i], got, kw, w.folder, w.keywords)
			}
		}
		if cmp := gmailVerify(t, srcAddr, tgtAddr, curs, rules.GmailLabelOrder...); cmp.Missing+cmp.Duplicated+cmp.Other > 0 {
			t.Errorf("%s: verification %+v, want every message where the rule puts it", when, cmp)
		}
	}
	check("after the copy")

	// A label added on the source reaches the copy as a keyword at the
	// next pass; one removed leaves it.
	src := dial(t, failure.SideSource, srcAddr)
	if _, err := src.Client.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	store := func(op imap.StoreFlagsOp, label string) {
		if err := src.Client.Store(all, &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.Flag(label)}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
	store(imap.StoreFlagsAdd, "$X-GM-LABEL:Urgent") // no folder: a keyword only
	store(imap.StoreFlagsDel, "$X-GM-SYS:Important")
	_, curs = gmailMove(t, srcAddr, tgtAddr, rules, curs, Options{})
	want[2].keywords, want[7].keywords, want[10].keywords = "urgent", `\flagged urgent`, "sent urgent"
	check("after labels changed")
}

// LabelKeyword makes any label a keyword an IMAP server takes.
func TestLabelKeyword(t *testing.T) {
	for label, want := range map[string]imap.Flag{
		"Work": "Work", `\Inbox`: "Inbox", "Work/2024": "Work/2024", "Two words": "Two_words",
		`a(b)c{d}%*"e\]`: "a_b_c_d}___e__", "Büro": "B&APw-ro", "R&D": "R&-D", "日本語": "&ZeVnLIqe-", "": "_",
	} {
		if got := LabelKeyword(label); got != want {
			t.Errorf("LabelKeyword(%q) = %q, want %q", label, got, want)
		}
	}
}

// Randomized priority rule under compound faults: attempts whose results
// are lost after they wrote (the next one resumes into a populated
// target), chunks, a parallel copy, a repair pass. Every message ends in
// exactly one folder, the one its labels and the order choose (told by
// the keywords its copy carries), and the verification agrees.
func TestGmailPriorityRuleRandomizedFaults(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		n := 20 + r.IntN(40)
		if seed == 6 {
			n = 1100 // enough for Options.Helpers to split the chunk
		}
		pool := []string{"\\Inbox", "\\Sent", "\\Draft", "\\Important", "\\Starred", "Work", "Work/Sub", "Travel", "Archive", "a.b", "Ünïcode"}
		var labels [][]string
		for i := 0; i < n; i++ {
			var l []string
			for _, p := range pool {
				if r.IntN(4) == 0 {
					l = append(l, p)
				}
			}
			labels = append(labels, l)
		}
		var order []string
		for _, i := range r.Perm(len(pool))[:r.IntN(4)] {
			order = append(order, strings.TrimPrefix(pool[i], "\\"))
		}
		rules := Rules{GmailLabels: GmailLabelPriority, GmailLabelOrder: order}
		srcAddr := gmailMailbox(t, labels...)
		tgtAddr := memServer(t, "Archive")
		opts := Options{MaxMessages: 1 + r.IntN(15)}
		if seed == 6 {
			lent := 0
			opts = Options{Helpers: helpers(t, srcAddr, tgtAddr, "", &lent)}
		}
		// Lost results: a first pass writes everything and its cursors are
		// thrown away; then chunked passes, some of whose results are lost
		// too, until nothing changes.
		_, _ = gmailMove(t, srcAddr, tgtAddr, rules, nil, opts)
		var curs map[string]Cursor
		for pass := 0; pass < 200; pass++ {
			_, next := gmailMove(t, srcAddr, tgtAddr, rules, curs, opts)
			if r.IntN(3) == 0 {
				continue // this attempt's result never reached the workflow
			}
			if fmt.Sprint(next) == fmt.Sprint(curs) {
				break
			}
			curs = next
		}
		for s, c := range curs {
			curs[s] = c.ForRepair()
		}
		_, curs = gmailMove(t, srcAddr, tgtAddr, rules, curs, Options{})

		folders, flags := placed(t, tgtAddr)
		for i, l := range labels {
			h := labelHash(i)
			if len(folders[h]) != 1 {
				t.Fatalf("seed %d: message %d (labels %v, order %v) is in %v, want exactly one folder", seed, i, l, order, folders[h])
			}
			// The copy's keywords are its labels but the one whose folder
			// holds it (and Starred, Draft).
			home := priorityHome(l, order)
			var want []string
			for _, x := range l {
				if x != home && x != "\\Starred" && x != "\\Draft" {
					// The imitation keeps labels lower-cased.
					want = append(want, strings.ToLower(string(LabelKeyword(strings.ToLower(x)))))
				}
			}
			if slices.Contains(l, "\\Starred") {
				want = append(want, `\flagged`)
			}
			want = append(want, `\seen`)
			slices.Sort(want)
			if got := flags[h]; got != strings.Join(want, " ") {
				t.Fatalf("seed %d: message %d (labels %v, order %v) has flags %q in %v, want %q (home %q)", seed, i, l, order, got, folders[h], strings.Join(want, " "), home)
			}
		}
		if cmp := gmailVerify(t, srcAddr, tgtAddr, curs, order...); cmp.Missing+cmp.Duplicated+cmp.Other > 0 {
			t.Fatalf("seed %d: verification %+v", seed, cmp)
		}
	}
}

// priorityHome is the rule, written out again for the test: the first
// label the order names, else Trash/Spam, user labels by name, INBOX,
// Sent, Drafts; Important and Starred are no folders.
func priorityHome(labels, order []string) string {
	var folders []string
	for _, l := range labels {
		if l != "\\Important" && l != "\\Starred" {
			folders = append(folders, l)
		}
	}
	for _, o := range order {
		for _, l := range folders {
			if strings.EqualFold(strings.TrimPrefix(l, "\\"), o) {
				return l
			}
		}
	}
	class := map[string]int{"\\Inbox": 2, "\\Sent": 3, "\\Draft": 4}
	slices.SortFunc(folders, func(a, b string) int {
		return cmp.Or(cmp.Compare(class[a]+1, class[b]+1), strings.Compare(strings.ToLower(a), strings.ToLower(b)))
	})
	if len(folders) == 0 {
		return ""
	}
	return folders[0]
}

// gmailToGmail moves a Gmail imitation to another: every folder synced,
// then a final pass (Options.Reconcile) of each. lose, when set, is asked
// per sync call whether its result is lost (the cursor stays) and whether
// its labelling is lost too (no COPY: the attempt died right after its
// APPENDs were confirmed).
func gmailToGmail(t *testing.T, srcAddr, tgtAddr string, rules Rules, opts Options, lose func() (result, labels bool)) (map[string]Cursor, Counters) {
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
	curs := map[string]Cursor{}
	for _, p := range plans {
		curs[p.Source] = p.Cursor()
	}
	var total Counters
	for pass := 0; pass < 100; pass++ {
		changed := false
		for _, p := range plans {
			o := opts
			o.Rules, o.Gmail = rules, g
			lostResult, lostLabels := false, false
			if lose != nil {
				lostResult, lostLabels = lose()
			}
			if lostLabels {
				o.Gmail.Targets = nil // no label folder known: no COPY
			}
			next, st, err := SyncFolder(context.Background(), src, tgt, curs[p.Source], o)
			if err != nil {
				t.Fatalf("SyncFolder(%s) = %v", p.Source, err)
			}
			total.Add(st.Counters)
			if !lostResult && fmt.Sprint(next) != fmt.Sprint(curs[p.Source]) {
				curs[p.Source], changed = next, true
			}
		}
		if !changed {
			break
		}
	}
	for _, p := range plans {
		next, st, err := SyncFolder(context.Background(), src, tgt, curs[p.Source], Options{Rules: rules, Gmail: g, Reconcile: true})
		if err != nil {
			t.Fatalf("final SyncFolder(%s) = %v", p.Source, err)
		}
		total.Add(st.Counters)
		curs[p.Source] = next
	}
	for _, cur := range curs {
		cmp, err := CompareFolder(context.Background(), src, tgt, cur, CompareOptions{Gmail: g})
		if err != nil || cmp.Missing+cmp.Duplicated+cmp.Other > 0 {
			t.Fatalf("CompareFolder(%s) = %+v, %v; want every message of the label once", cur.Source, cmp, err)
		}
	}
	return curs, total
}

// gmailFolders are the folders a Gmail imitation shows as labels.
var gmailFolders = []string{"INBOX", "[Gmail]/Sent Mail", "[Gmail]/Drafts"}

// From Gmail to Gmail a message is uploaded once, into the folder of its
// first label, and copied into the folders of its other labels (a label
// on Gmail, not a new message): each label's folder on the target shows
// exactly the messages it shows on the source.
func TestGmailTargetUploadsOnceAndLabelsTheRest(t *testing.T) {
	labels := [][]string{
		{"\\Inbox", "Work"}, {"Work", "Travel", "\\Starred"}, {"\\Inbox"}, {"Travel", "\\Sent"}, {}, {"\\Important"},
		{"\\Inbox", "Work", "Travel", "\\Sent"},
	}
	srcAddr := gmailMailbox(t, labels...)
	tgtAddr := memserver.Gmail(t, nil)
	_, total := gmailToGmail(t, srcAddr, tgtAddr, Rules{}, Options{}, nil)
	src, tgt := pair(t, srcAddr, tgtAddr)
	for _, f := range append(gmailFolders, "Work", "Travel") {
		assertSame(t, src, tgt, f, f)
	}
	if n := len(contents(t, tgt, "[Gmail]/All Mail")); n != 2 {
		t.Errorf("the target's All Mail got %d messages, want the 2 archived ones (Gmail shows the others there by itself)", n)
	}
	// 7 messages, 7 uploads; 1+1+0+1+0+0+3 labels given by COPY.
	if total.Copied != 7 || total.Labelled != 6 {
		t.Errorf("uploaded %d and labelled %d, want 7 and 6", total.Copied, total.Labelled)
	}
}

// Randomized Gmail-to-Gmail moves under compound faults: results lost
// after the attempt wrote, attempts that died before labelling what they
// uploaded, chunks, and (seed 7) a parallel copy, whose blocks append
// over helper connections that have no folder selected. The final pass
// labels what is missing, and every label's folder on the target ends
// equal to the source's.
func TestGmailTargetRandomizedFaults(t *testing.T) {
	for seed := uint64(1); seed <= 7; seed++ {
		r := rand.New(rand.NewPCG(seed, 11))
		pool := []string{"\\Inbox", "\\Sent", "\\Draft", "\\Important", "\\Starred", "Work", "Work/Sub", "Travel", "a.b"}
		var labels [][]string
		n := 15 + r.IntN(40)
		if seed == 7 {
			n = 1100 // enough for Options.Helpers to split the chunk
		}
		for i := 0; i < n; i++ {
			var l []string
			for _, p := range pool {
				if r.IntN(4) == 0 {
					l = append(l, p)
				}
			}
			labels = append(labels, l)
		}
		rules := Rules{}
		if r.IntN(2) == 0 {
			rules = Rules{GmailLabels: GmailLabelPriority, GmailLabelOrder: []string{"Travel", "Sent"}[:r.IntN(3)]}
		}
		if seed == 7 {
			// Every message in INBOX, ranked first: one large folder.
			for i := range labels {
				labels[i] = append(slices.DeleteFunc(labels[i], func(l string) bool { return l == "\\Inbox" }), "\\Inbox")
			}
			rules = Rules{GmailLabelOrder: []string{"INBOX"}}
		}
		srcAddr := gmailMailbox(t, labels...)
		tgtAddr := memserver.Gmail(t, nil)
		lose := func() (bool, bool) { return r.IntN(3) == 0, r.IntN(3) == 0 }
		opts := Options{MaxMessages: 1 + r.IntN(10)}
		if seed == 7 {
			lent := 0
			opts, lose = Options{Helpers: helpers(t, srcAddr, tgtAddr, "", &lent)}, nil
		}
		_, total := gmailToGmail(t, srcAddr, tgtAddr, rules, opts, lose)
		if seed == 7 && total.Labelled == 0 {
			t.Errorf("seed 7: no label given by COPY")
		}
		src, tgt := pair(t, srcAddr, tgtAddr)
		for _, f := range append(gmailFolders, "Work", "Work/Sub", "Travel", "a.b") {
			assertSame(t, src, tgt, f, f)
		}
		if total.Copied > len(labels) {
			t.Errorf("seed %d: %d uploads for %d messages", seed, total.Copied, len(labels))
		}
	}
}

package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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
		cmp, err := CompareFolder(context.Background(), src, tgt, cur, nil)
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

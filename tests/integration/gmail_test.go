package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/memserver"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// A Gmail account (an imitation speaking X-GM-EXT-1: labels as folders,
// every message again in All Mail, Starred and Important) moved to Dovecot
// through the real CLI, workers and Temporal: each message once in the
// folder of each of its labels, archived mail once in the archive, no
// Starred or Important folder, nothing doubled; the profile is detected.
func TestGmailSourceNoMessageDoubled(t *testing.T) {
	labels := [][]string{
		{"\\Inbox"}, {"Work"}, {"\\Inbox", "Work", "\\Important"}, {}, {"\\Starred"}, {"\\Sent"},
		{"\\Important"}, {"Work", "Travel", "\\Starred"}, {"Travel"}, {}, {"\\Inbox", "\\Starred"},
	}
	var msgs []memserver.GmailMessage
	for i, l := range labels {
		msgs = append(msgs, memserver.GmailMessage{Raw: memserver.Message(2400 + i), Date: time.Date(2022, 5, 1, 0, 0, i, 0, time.UTC), Labels: l})
	}
	gmail := memserver.Gmail(t, msgs)
	target := account{user: "gmail-imitation@example.com", password: "pw-gmail-target"}
	if err := env.target.AddUser(testbed.User{Name: target.user, Password: target.password}); err != nil {
		t.Fatal(err)
	}
	csv := filepath.Join(t.TempDir(), "gmail.csv")
	row := fmt.Sprintf("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n%s,%s,%s,%s,%s\n",
		target.user, memserver.User, memserver.Password, target.user, target.password)
	if err := os.WriteFile(csv, []byte(row), 0o600); err != nil {
		t.Fatal(err)
	}
	startBatchTo(t, "default", "gmail", csv, gmail, env.target.Addr())
	m := onlyMove(t, waitTerminal(t, "default", "gmail", 3*time.Minute))
	if m.Status != workflows.StatusCompleted || m.Grade != workflows.GradePerfect {
		t.Fatalf("%s (%s), grade %s; want Completed and Perfect", m.Status, m.Reason, m.Grade)
	}
	if m.SourceProfile != "gmail" {
		t.Errorf("source profile %q, want gmail (detected from X-GM-EXT-1)", m.SourceProfile)
	}
	snap, err := testbed.TakeSnapshot(env.target.Addr(), target.user, target.password)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"INBOX": 3, "Work": 3, "Travel": 2, "Sent Items": 1, "Archive": 4}
	total := 0
	for folder, msgs := range snap {
		total += len(msgs)
		seen := map[string]bool{}
		for _, mi := range msgs {
			if seen[mi.SHA256] {
				t.Errorf("%s holds %s twice", folder, mi.MessageID)
			}
			seen[mi.SHA256] = true
		}
		if strings.Contains(folder, "Important") || strings.Contains(folder, "Starred") || strings.Contains(folder, "All Mail") {
			t.Errorf("target has a folder %s (%d messages)", folder, len(msgs))
		}
	}
	for folder, n := range want {
		if len(snap[folder]) != n {
			t.Errorf("target %s holds %d messages, want %d", folder, len(snap[folder]), n)
		}
	}
	if total != 13 || m.Copied != 13 {
		t.Errorf("target holds %d messages, %d copied; want 13 (one per label folder, archived mail once)", total, m.Copied)
	}
}

// gmailAccount is a Gmail imitation holding one message per label list.
func gmailAccount(t *testing.T, first int, labels ...[]string) string {
	var msgs []memserver.GmailMessage
	for i, l := range labels {
		msgs = append(msgs, memserver.GmailMessage{Raw: memserver.Message(first + i), Date: time.Date(2022, 6, 1, 0, 0, i, 0, time.UTC), Labels: l})
	}
	return memserver.Gmail(t, msgs)
}

// gmailCSV writes a one-row CSV from a Gmail imitation to the target user.
func gmailCSV(t *testing.T, targetUser, targetPassword string) string {
	csv := filepath.Join(t.TempDir(), "gmail.csv")
	row := fmt.Sprintf("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n%s,%s,%s,%s,%s\n",
		targetUser, memserver.User, memserver.Password, targetUser, targetPassword)
	if err := os.WriteFile(csv, []byte(row), 0o600); err != nil {
		t.Fatal(err)
	}
	return csv
}

// --gmail-labels priority to Dovecot through the real CLI, workers and
// Temporal: each message in exactly one folder, the one of its first label
// by --gmail-label-order, with its other labels as keywords Dovecot keeps
// (a non-ASCII one too), and the move verified Perfect.
func TestGmailPriorityRuleToDovecot(t *testing.T) {
	labels := [][]string{
		{"\\Inbox", "Work"}, {"Work", "Travel"}, {"\\Inbox"}, {"Travel", "\\Sent"}, {}, {"Büro", "\\Inbox", "\\Starred"}, {"\\Important"},
	}
	gmail := gmailAccount(t, 2600, labels...)
	target := account{user: "gmail-priority@example.com", password: "pw-gmail-priority"}
	if err := env.target.AddUser(testbed.User{Name: target.user, Password: target.password}); err != nil {
		t.Fatal(err)
	}
	startBatchTo(t, "default", "gmail-priority", gmailCSV(t, target.user, target.password), gmail, env.target.Addr(),
		"--gmail-labels", "priority", "--gmail-label-order", "Travel")
	m := onlyMove(t, waitTerminal(t, "default", "gmail-priority", 3*time.Minute))
	if m.Status != workflows.StatusCompleted || m.Grade != workflows.GradePerfect {
		t.Fatalf("%s (%s), grade %s; want Completed and Perfect", m.Status, m.Reason, m.Grade)
	}
	snap, err := testbed.TakeSnapshot(env.target.Addr(), target.user, target.password)
	if err != nil {
		t.Fatal(err)
	}
	where := map[string]string{}
	for folder, msgs := range snap {
		for _, mi := range msgs {
			if prev, ok := where[mi.MessageID]; ok {
				t.Errorf("%s is in %s and in %s", mi.MessageID, prev, folder)
			}
			where[mi.MessageID] = folder + " " + strings.Join(mi.Flags, " ")
		}
	}
	// The imitation keeps labels lower-cased.
	want := []string{"Work \\Seen inbox", "Travel \\Seen work", "INBOX \\Seen", "Travel \\Seen sent", "Archive \\Seen",
		"Büro \\Flagged \\Seen inbox", "Archive \\Seen important"}
	for i, w := range want {
		id := fmt.Sprintf("<%d@example.com>", 2600+i)
		if got := where[id]; !keywordsMatch(got, w) {
			t.Errorf("message %d (labels %v): %q, want %q", i, labels[i], got, w)
		}
	}
}

// keywordsMatch compares "folder flag flag…" ignoring order and case.
func keywordsMatch(a, b string) bool {
	fa, fb := strings.Fields(strings.ToLower(a)), strings.Fields(strings.ToLower(b))
	if len(fa) != len(fb) || len(fa) == 0 || fa[0] != fb[0] {
		return false
	}
	set := map[string]int{}
	for _, f := range fa[1:] {
		set[f]++
	}
	for _, f := range fb[1:] {
		set[f]--
	}
	for _, n := range set {
		if n != 0 {
			return false
		}
	}
	return true
}

// Gmail to Gmail (two imitations) through Temporal: each message uploaded
// once and labelled with the rest, each label's folder on the target equal
// to the source's.
func TestGmailToGmailUploadsOnce(t *testing.T) {
	labels := [][]string{{"\\Inbox", "Work"}, {"Work", "Travel"}, {"\\Inbox"}, {}, {"\\Inbox", "Work", "Travel", "\\Sent"}}
	src := gmailAccount(t, 2700, labels...)
	tgt := memserver.Gmail(t, nil)
	startBatchTo(t, "default", "gmail-to-gmail", gmailCSV(t, memserver.User, memserver.Password), src, tgt)
	m := onlyMove(t, waitTerminal(t, "default", "gmail-to-gmail", 3*time.Minute))
	if m.Status != workflows.StatusCompleted || m.Grade != workflows.GradePerfect {
		t.Fatalf("%s (%s), grade %s; want Completed and Perfect", m.Status, m.Reason, m.Grade)
	}
	if m.Copied != 5 || m.Labelled != 5 {
		t.Errorf("%d uploaded, %d labelled; want 5 messages uploaded once and 5 labels given", m.Copied, m.Labelled)
	}
	a, err := testbed.TakeSnapshot(src, memserver.User, memserver.Password)
	if err != nil {
		t.Fatal(err)
	}
	b, err := testbed.TakeSnapshot(tgt, memserver.User, memserver.Password)
	if err != nil {
		t.Fatal(err)
	}
	labelled := func(s testbed.Snapshot) testbed.Snapshot {
		out := testbed.Snapshot{}
		for _, f := range []string{"INBOX", "Work", "Travel", "[Gmail]/Sent Mail"} {
			out[f] = s[f]
		}
		return out
	}
	for _, d := range testbed.Diff(labelled(a), labelled(b), nil) {
		t.Error(d)
	}
	if n := len(b["[Gmail]/All Mail"]); n != 1 {
		t.Errorf("the target's All Mail got %d messages, want the archived one", n)
	}
}

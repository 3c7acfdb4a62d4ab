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

package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// moveStatus reads one move's status through the CLI.
func moveStatus(t *testing.T, batch, mailbox string) workflows.MoveStatus {
	t.Helper()
	var st workflows.MoveStatus
	out := mailmove(t, "default", "move", "status", mailbox, "--batch", batch, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("move status --json: %v\n%s", err, out)
	}
	return st
}

// waitPasses waits until the move has run n incremental passes, counting
// from now, so every pass counted saw the changes made before the call.
func waitPasses(t *testing.T, batch, mailbox string, n int) workflows.MoveStatus {
	t.Helper()
	start := moveStatus(t, batch, mailbox).IncrementalPasses
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := moveStatus(t, batch, mailbox)
		if st.IncrementalPasses >= start+n {
			return st
		}
		if st.Status.Terminal() || time.Now().After(deadline) {
			t.Fatalf("%s: %s/%s (%s) after %d passes, want %d more passes", mailbox, st.Status, st.StatusDetail, st.Reason, st.IncrementalPasses, n)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func waitSynced(t *testing.T, batch, mailbox string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	// The batch starts its moves after `batch start` returns.
	for len(batchStatus(t, "default", batch).Moves) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("batch %s started no move", batch)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		st := moveStatus(t, batch, mailbox)
		if !st.SyncedAt.IsZero() {
			return
		}
		if st.Status.Terminal() || time.Now().After(deadline) {
			t.Fatalf("%s: %s/%s (%s), want it synced", mailbox, st.Status, st.StatusDetail, st.Reason)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// changeSource makes the changes users make during a move: new mail, read
// and starred messages, deletions, a new folder, a renamed folder.
func changeSource(t *testing.T, c *imapclient.Client, sep string, seed int64) (deleted int) {
	t.Helper()
	name := func(n string) string { return strings.ReplaceAll(n, "/", sep) }
	extra := testbed.SampleMailbox(seed, 40)
	var fresh []testbed.Message
	for _, f := range extra {
		fresh = append(fresh, f.Messages...)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	appendTo := func(folder string, msgs []testbed.Message) {
		for _, m := range msgs {
			flags := make([]imap.Flag, len(m.Flags))
			for i, f := range m.Flags {
				flags[i] = imap.Flag(f)
			}
			cmd := c.Append(folder, int64(len(m.Raw)), &imap.AppendOptions{Flags: flags, Time: m.InternalDate})
			cmd.Write(m.Raw)
			must(cmd.Close())
			_, err := cmd.Wait()
			must(err)
		}
	}
	appendTo("INBOX", fresh[:5])
	appendTo(name("Archive/2024/Q1 Reports"), fresh[5:7])

	_, err := c.Select("INBOX", nil).Wait()
	must(err)
	must(c.Store(imap.SeqSetNum(1, 2, 3, 4, 5), &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: []imap.Flag{imap.FlagFlagged, "$Forwarded"}}, nil).Close())
	must(c.Store(imap.SeqSetNum(6, 7, 8), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close())
	_, err = c.Expunge().Collect()
	must(err)

	must(c.Create(name("Projects/New Stuff"), nil).Wait())
	appendTo(name("Projects/New Stuff"), fresh[7:11])
	must(c.Rename(name("Projets/Été 2026"), name("Projets/Été 2027"), nil).Wait())
	return 3
}

// recreateFolder deletes a source folder and creates it again with the same
// messages: its UIDVALIDITY changes, its content does not.
func recreateFolder(t *testing.T, c *imapclient.Client, folder string) int {
	t.Helper()
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(folder).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		raw := m.BodySection[0].Bytes
		var flags []imap.Flag
		for _, f := range m.Flags {
			if f != "\\Recent" {
				flags = append(flags, f)
			}
		}
		cmd := c.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: flags, Time: m.InternalDate})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	return len(msgs)
}

func TestIncrementalPassesCarryChanges(t *testing.T) {
	// A source that separates levels with '.', as Courier and many Dovecot
	// installations do; the target separates with '.' too but names its
	// special folders differently.
	keep := account{user: "keep@example.com", password: "pw-keep"}
	prop := account{user: "prop@example.com", password: "pw-prop"}
	src := testbed.StartForTest(t, testbed.Options{Name: "dotsource", Separator: ".", SpecialUse: testbed.StandardSpecialUse(),
		Users: []testbed.User{{Name: keep.user, Password: keep.password}, {Name: prop.user, Password: prop.password}}})
	for i, a := range []account{keep, prop} {
		if err := env.target.AddUser(testbed.User{Name: a.user, Password: a.password}); err != nil {
			t.Fatal(err)
		}
		if err := testbed.Seed(src.Addr(), a.user, a.password, testbed.SampleMailbox(1000+int64(i), 150)); err != nil {
			t.Fatal(err)
		}
	}
	opts := []string{"--complete", "manual", "--incremental-interval", "1s"}
	startBatchTo(t, "default", "inc-keep", writeCSV(t, []account{keep}, func(a account) string { return a.password }), src.Addr(), env.target.Addr(), opts...)
	startBatchTo(t, "default", "inc-prop", writeCSV(t, []account{prop}, func(a account) string { return a.password }), src.Addr(), env.target.Addr(), append(opts, "--propagate-deletes")...)
	waitSynced(t, "inc-keep", keep.user)
	waitSynced(t, "inc-prop", prop.user)

	compare := func(a account) []string {
		t.Helper()
		s, g := snapshots(t, src.Addr(), env.target.Addr(), a)
		return testbed.Diff(s, g, testbed.OutlookName)
	}
	if d := compare(prop); len(d) > 0 {
		t.Fatalf("after the initial sync:\n%s", strings.Join(d, "\n"))
	}

	// Three rounds of changes, each followed by passes that must carry them.
	for round := 0; round < 3; round++ {
		for _, a := range []account{keep, prop} {
			c, err := testbed.Dial(src.Addr(), a.user, a.password)
			if err != nil {
				t.Fatal(err)
			}
			if round == 0 {
				changeSource(t, c, ".", 2000+int64(round))
			} else {
				// New mail and flag changes again, with deletions.
				name := fmt.Sprintf("Projects.Round %d", round)
				if err := c.Create(name, nil).Wait(); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Select("INBOX", nil).Wait(); err != nil {
					t.Fatal(err)
				}
				c.Store(imap.SeqSetNum(10, 11), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
				c.Store(imap.SeqSetNum(12), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
				c.Expunge().Collect()
			}
			c.Logout().Wait()
			c.Close()
		}
		waitPasses(t, "inc-prop", prop.user, 2)
		waitPasses(t, "inc-keep", keep.user, 2)
		if d := compare(prop); len(d) > 0 {
			t.Fatalf("round %d, with --propagate-deletes:\n%s", round, strings.Join(d, "\n"))
		}
		// Without propagation, the deleted messages stay on the target,
		// and nothing else differs.
		for _, line := range compare(keep) {
			if !strings.Contains(line, "unexpected message") {
				t.Fatalf("round %d, without --propagate-deletes: %s", round, line)
			}
		}
	}
	st := moveStatus(t, "inc-keep", keep.user)
	if st.DeletedOnSource != 5 || st.Expunged != 0 || st.FoldersAdded != 3 || st.FoldersRenamed != 1 {
		t.Fatalf("keep: %d deleted, %d expunged, %d folders added, %d renamed; want 5, 0, 3, 1", st.DeletedOnSource, st.Expunged, st.FoldersAdded, st.FoldersRenamed)
	}
	if d := compare(keep); len(d) != 5 {
		t.Fatalf("keep: %d differences, want the 5 messages deleted on the source:\n%s", len(d), strings.Join(d, "\n"))
	}
	if st := moveStatus(t, "inc-prop", prop.user); st.Expunged != 5 {
		t.Fatalf("prop: %d expunged from the target, want 5", st.Expunged)
	}

	// The source folder is deleted and created again with the same
	// messages: new UIDVALIDITY, nothing copied twice.
	c, err := testbed.Dial(src.Addr(), prop.user, prop.password)
	if err != nil {
		t.Fatal(err)
	}
	n := recreateFolder(t, c, "Kunden.Müller & Söhne")
	c.Close()
	waitPasses(t, "inc-prop", prop.user, 2)
	if d := compare(prop); len(d) > 0 {
		t.Fatalf("after the UIDVALIDITY reset of a folder of %d messages:\n%s", n, strings.Join(d, "\n"))
	}

	mailmove(t, "default", "batch", "complete", "inc-prop")
	mailmove(t, "default", "batch", "complete", "inc-keep")
	for _, b := range []string{"inc-prop", "inc-keep"} {
		for _, m := range waitTerminal(t, "default", b, 3*time.Minute).Moves {
			if m.Status != workflows.StatusCompleted {
				t.Fatalf("%s: %s/%s (%s), want Completed", m.Mailbox, m.Status, m.StatusDetail, m.Reason)
			}
		}
	}
	if d := compare(prop); len(d) > 0 {
		t.Fatalf("after completion:\n%s", strings.Join(d, "\n"))
	}
}

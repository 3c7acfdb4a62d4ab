package testbed

import (
	"bytes"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

var alice = User{Name: "alice@example.com", Password: "secret-alice"}

func TestSampleMailbox(t *testing.T) {
	const n = 200
	folders := SampleMailbox(7, n)
	again := SampleMailbox(7, n)
	other := SampleMailbox(8, n)

	total := 0
	ids := map[string]bool{}
	byName := map[string]Folder{}
	for i, f := range folders {
		byName[f.Name] = f
		total += len(f.Messages)
		for j, m := range f.Messages {
			if !bytes.Equal(m.Raw, again[i].Messages[j].Raw) || !slices.Equal(m.Flags, again[i].Messages[j].Flags) ||
				!m.InternalDate.Equal(again[i].Messages[j].InternalDate) {
				t.Fatalf("SampleMailbox(7) not deterministic in %q message %d", f.Name, j)
			}
			if bytes.Contains(bytes.ReplaceAll(m.Raw, []byte("\r\n"), nil), []byte("\n")) || !bytes.HasSuffix(m.Raw, []byte("\r\n")) {
				t.Errorf("%q message %d has bare LF or no final CRLF", f.Name, j)
			}
			if m.InternalDate.Location() != time.UTC || m.InternalDate.Nanosecond() != 0 || !m.InternalDate.Before(corpusEpoch) {
				t.Errorf("%q message %d: internal date %v not past UTC seconds", f.Name, j, m.InternalDate)
			}
			if j > 0 && m.InternalDate.Before(f.Messages[j-1].InternalDate) {
				t.Errorf("%q message %d out of date order", f.Name, j)
			}
			id := messageIDOf(m.Raw)
			if id == "" || ids[id] {
				t.Errorf("%q message %d: Message-ID %q empty or duplicate", f.Name, j, id)
			}
			ids[id] = true
		}
	}
	if total != n {
		t.Fatalf("SampleMailbox(7, %d) has %d messages", n, total)
	}
	if bytes.Equal(folders[0].Messages[0].Raw, other[0].Messages[0].Raw) {
		t.Errorf("seeds 7 and 8 produce the same first message")
	}
	for _, name := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive/2024/Q1 Reports", "Projets/Été 2026", "Kunden/Müller & Söhne", "日本語"} {
		if len(byName[name].Messages) == 0 {
			t.Errorf("folder %q missing or empty", name)
		}
	}
	if f, ok := byName["Empty"]; !ok || len(f.Messages) != 0 {
		t.Errorf("folder Empty missing or not empty")
	}
	for _, m := range byName["Drafts"].Messages {
		if !slices.Contains(m.Flags, `\Draft`) {
			t.Errorf("draft without \\Draft: %v", m.Flags)
		}
	}
}

func TestLargeMessage(t *testing.T) {
	for _, size := range []int{2_000, 100_000, 1_000_001, 5 << 20} {
		m := LargeMessage(3, size)
		if len(m.Raw) != size {
			t.Errorf("LargeMessage(3, %d) is %d bytes", size, len(m.Raw))
		}
		if bytes.Contains(bytes.ReplaceAll(m.Raw, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("LargeMessage(3, %d) has bare LF", size)
		}
	}
	if !bytes.Equal(LargeMessage(3, 50_000).Raw, LargeMessage(3, 50_000).Raw) {
		t.Errorf("LargeMessage not deterministic")
	}
}

// TestSeedSnapshotDiff seeds the same corpus into a "/" server and a "."
// server: both must match the corpus and each other once names are
// normalised, and an empty account must not.
func TestSeedSnapshotDiff(t *testing.T) {
	t.Parallel()
	corpus := SampleMailbox(1, 60)
	// A message far above go-imap's and Dovecot's buffer sizes checks that
	// seeding and hashing stream.
	corpus[0].Messages = append(corpus[0].Messages, LargeMessage(9, 8<<20))
	src := StartForTest(t, Options{Name: "source", Users: []User{alice}})
	tgt := StartForTest(t, Options{Name: "target", Users: []User{alice}, Separator: "."})
	if src.Addr() == tgt.Addr() {
		t.Fatalf("both servers on %s", src.Addr())
	}

	if err := Seed(src.Addr(), alice.Name, alice.Password, corpus); err != nil {
		t.Fatal(err)
	}
	srcSnap, err := TakeSnapshot(src.Addr(), alice.Name, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(srcSnap, srcSnap, nil); len(d) != 0 {
		t.Fatalf("Diff(snapshot, snapshot) = %q, want none", d)
	}
	if d := Diff(SnapshotOf(corpus), srcSnap, nil); len(d) != 0 {
		t.Fatalf("Diff(corpus, source) = %q, want none", d)
	}
	var wantSubs []string
	for _, f := range corpus {
		if f.Subscribed {
			wantSubs = append(wantSubs, f.Name)
		}
	}
	slices.Sort(wantSubs)
	if subs, err := Subscriptions(src.Addr(), alice.Name, alice.Password); err != nil || !slices.Equal(subs, wantSubs) {
		t.Errorf("Subscriptions(source) = %q, %v; want %q", subs, err, wantSubs)
	}
	if _, ok := srcSnap["Empty"]; !ok {
		t.Errorf("snapshot lacks the empty folder: %v", slices.Sorted(maps.Keys(srcSnap)))
	}

	emptySnap, err := TakeSnapshot(tgt.Addr(), alice.Name, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	d := Diff(srcSnap, emptySnap, nil)
	if !slices.ContainsFunc(d, func(s string) bool { return strings.Contains(s, `missing folder "Kunden/Müller & Söhne"`) }) ||
		!slices.ContainsFunc(d, func(s string) bool { return strings.Contains(s, `folder "INBOX": missing message`) }) {
		t.Fatalf("Diff(source, empty target) = %q, want missing folders and messages", d)
	}

	if err := Seed(tgt.Addr(), alice.Name, alice.Password, corpus); err != nil {
		t.Fatal(err)
	}
	tgtSnap, err := TakeSnapshot(tgt.Addr(), alice.Name, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(srcSnap, tgtSnap, nil); len(d) != 0 {
		t.Fatalf("Diff(source, target with separator .) = %q, want none", d)
	}
	if subs, err := Subscriptions(tgt.Addr(), alice.Name, alice.Password); err != nil || !slices.Equal(subs, wantSubs) {
		t.Errorf("Subscriptions(target) = %q, %v; want %q", subs, err, wantSubs)
	}
}

func TestDiffReportsChanges(t *testing.T) {
	want := SnapshotOf(SampleMailbox(2, 30))
	got := SnapshotOf(SampleMailbox(2, 30))
	inbox := slices.Clone(got["INBOX"])
	inbox[0].Flags = append(slices.Clone(inbox[0].Flags), "$Changed")
	inbox[1].InternalDate = inbox[1].InternalDate.Add(time.Hour)
	got["INBOX"] = append(inbox, inbox[2])
	got["Sent"] = got["Sent"][1:]
	delete(got, "Junk")
	got["Unexpected"] = got["Trash"]

	d := Diff(want, got, nil)
	for _, sub := range []string{
		`folder "INBOX": flags of`,
		`folder "INBOX": internal date of`,
		`folder "INBOX": duplicate message`,
		`folder "Sent": missing message`,
		`missing folder "Junk"`,
		`unexpected folder "Unexpected"`,
	} {
		if !slices.ContainsFunc(d, func(s string) bool { return strings.Contains(s, sub) }) {
			t.Errorf("Diff() lacks %q; got:\n%s", sub, strings.Join(d, "\n"))
		}
	}

	// Merging two source folders into one target folder compares the union.
	merged := SnapshotOf(SampleMailbox(2, 30))
	merged["Archive"] = append(merged["Archive"], merged["Archive/2023"]...)
	delete(merged, "Archive/2023")
	toArchive := func(name string) string {
		if name == "Archive/2023" {
			return "Archive"
		}
		return name
	}
	if d := Diff(want, merged, toArchive); len(d) != 0 {
		t.Errorf("Diff(merged) = %q, want none", d)
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	t.Parallel()
	s := StartForTest(t, Options{Name: "stop", Users: []User{alice}})
	pid := s.PID()
	if len(s.SessionProcesses()) == 0 {
		t.Fatalf("no dovecot processes in session %d", pid)
	}
	// A logged-in client keeps an imap process alive until shutdown.
	c, err := Dial(s.Addr(), alice.Name, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := sessionProcesses(pid); len(pids) != 0 {
		t.Fatalf("processes %v left after Stop", pids)
	}
	if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Stop", s.Addr())
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop() = %v", err)
	}
}

func TestAttachAndAddUser(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := StartForTest(t, Options{Name: "attach", Dir: dir})
	bob := User{Name: "bob@example.com", Password: "secret-bob"}
	if err := s.AddUser(bob); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(s.Addr(), bob.Name, bob.Password)
	if err != nil {
		t.Fatalf("login as added user: %v\n%s", err, s.LogTail())
	}
	c.Close()

	a, err := Attach(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr() != s.Addr() || a.PID() != s.PID() {
		t.Fatalf("Attach() = %s pid %d, want %s pid %d", a.Addr(), a.PID(), s.Addr(), s.PID())
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := sessionProcesses(s.PID()); len(pids) != 0 {
		t.Fatalf("processes %v left after Stop", pids)
	}
	if _, err := Attach(dir); err != ErrNotRunning {
		t.Fatalf("Attach() after Stop = %v, want ErrNotRunning", err)
	}
}

func TestSpecialUseAndQuota(t *testing.T) {
	t.Parallel()
	s := StartForTest(t, Options{
		Name:       "quota",
		Users:      []User{alice},
		Separator:  ".",
		SpecialUse: OutlookSpecialUse(),
		QuotaBytes: 200_000,
	})
	c, err := Dial(s.Addr(), alice.Name, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var sent []imap.MailboxAttr
	for _, mbox := range list {
		if mbox.Mailbox == "Sent Items" {
			sent = mbox.Attrs
		}
	}
	if !slices.Contains(sent, imap.MailboxAttrSent) {
		t.Errorf("LIST attributes of \"Sent Items\" = %v, want \\Sent", sent)
	}

	if err := Seed(s.Addr(), alice.Name, alice.Password, []Folder{{Name: "INBOX", Messages: []Message{LargeMessage(1, 150_000)}}}); err != nil {
		t.Fatalf("Seed() under quota = %v", err)
	}
	err = Seed(s.Addr(), alice.Name, alice.Password, []Folder{{Name: "INBOX", Messages: []Message{LargeMessage(2, 150_000)}}})
	if !isCode(err, imap.ResponseCodeOverQuota) {
		t.Fatalf("Seed() over quota = %v, want OVERQUOTA", err)
	}
}

func messageIDOf(raw []byte) string {
	hc := &headerCapture{}
	hc.Write(raw)
	return hc.messageID()
}

func TestRestartKeepsMail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := StartForTest(t, Options{Name: "restart", Dir: dir, Users: []User{alice}, Separator: "."})
	corpus := SampleMailbox(4, 20)
	if err := Seed(s.Addr(), alice.Name, alice.Password, corpus); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s = StartForTest(t, Options{Name: "restart", Dir: dir, Port: s.Port(), Users: []User{alice}, Separator: "."})
	snap, err := TakeSnapshot(s.Addr(), alice.Name, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(SnapshotOf(corpus), snap, nil); len(d) != 0 {
		t.Fatalf("Diff(corpus, restarted server) = %q, want none", d)
	}
}

package engine

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

const testUser, testPass = memserver.User, memserver.Password

// memServer starts an in-memory IMAP server with one user and the given
// folders, and returns its address.
func memServer(t *testing.T, folders ...string) string { return memserver.Start(t, folders...) }

func dial(t *testing.T, side failure.Side, addr string) *Session {
	t.Helper()
	s, err := Dial(context.Background(), side, Endpoint{Addr: addr, Security: SecurityNone}, Credentials{User: testUser, Password: testPass})
	if err != nil {
		t.Fatalf("Dial(%s) = %v", addr, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var testMessage = memserver.Message

func seed(t *testing.T, s *Session, folder string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		raw := testMessage(i)
		flags := []imap.Flag{}
		if i%2 == 0 {
			flags = append(flags, imap.FlagSeen)
		}
		if i%5 == 0 {
			flags = append(flags, imap.FlagFlagged, "$Forwarded")
		}
		cmd := s.Client.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: flags, Time: time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC)})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("seed append: %v", err)
		}
	}
}

type msgInfo struct {
	hash  string
	flags string
	date  time.Time
}

func contents(t *testing.T, s *Session, folder string) []msgInfo {
	t.Helper()
	if _, err := s.Client.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatalf("select %s: %v", folder, err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	bufs, err := s.Client.Fetch(all, &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatalf("fetch %s: %v", folder, err)
	}
	var out []msgInfo
	for _, b := range bufs {
		h := sha256.Sum256(b.BodySection[0].Bytes)
		out = append(out, msgInfo{hash: fmt.Sprintf("%x", h[:8]), flags: flagKey(b.Flags), date: b.InternalDate.UTC()})
	}
	slices.SortFunc(out, func(a, b msgInfo) int { return strings.Compare(a.hash, b.hash) })
	return out
}

func assertSame(t *testing.T, src, tgt *Session, srcFolder, tgtFolder string) {
	t.Helper()
	a, b := contents(t, src, srcFolder), contents(t, tgt, tgtFolder)
	if len(a) != len(b) {
		t.Fatalf("%s: source has %d messages, target %d", srcFolder, len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("%s: message %d differs: source %+v, target %+v", srcFolder, i, a[i], b[i])
		}
	}
}

func TestSyncFolderCopiesAndResumes(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	seed(t, src, "Work", 0, 30)
	ctx := context.Background()

	// A first call bounded to 10 messages, as one activity chunk.
	cur := Cursor{Source: "Work", Target: "Work"}
	var checkpoints int
	cur1, st, err := SyncFolder(ctx, src, tgt, cur, Options{MaxMessages: 10, Window: 4, Checkpoint: func(Cursor, Stats) { checkpoints++ }})
	if err != nil {
		t.Fatalf("SyncFolder() = %v", err)
	}
	if st.Copied != 10 || !st.More || st.Remaining != 20 || checkpoints == 0 {
		t.Fatalf("SyncFolder() stats = %+v (checkpoints %d), want 10 copied, 20 remaining", st, checkpoints)
	}
	// A second chunk whose result is lost, as when a worker dies after the
	// target stored the messages but before the checkpoint was recorded.
	if _, _, err := SyncFolder(ctx, src, tgt, cur1, Options{MaxMessages: 10}); err != nil {
		t.Fatalf("SyncFolder() = %v", err)
	}
	// Resuming from the older cursor must recognise those 10 messages.
	cur3, st, err := SyncFolder(ctx, src, tgt, cur1, Options{})
	if err != nil {
		t.Fatalf("SyncFolder() resumed = %v", err)
	}
	if st.Matched != 10 || st.Copied != 10 || st.More {
		t.Fatalf("SyncFolder() resumed stats = %+v, want 10 matched, 10 copied", st)
	}
	assertSame(t, src, tgt, "Work", "Work")
	if cur3.LastUID != 30 || cur3.Map.Len() != 30 {
		t.Fatalf("cursor = %+v, want LastUID 30 and 30 mapped", cur3)
	}

	// Nothing new: no copy.
	cur4, st, err := SyncFolder(ctx, src, tgt, cur3, Options{})
	if err != nil || st.Copied != 0 || st.Matched != 0 || st.FlagUpdates != 0 {
		t.Fatalf("SyncFolder() unchanged = %+v, %v; want no work", st, err)
	}

	// New messages and flag changes are carried by the next pass.
	seed(t, src, "Work", 100, 3)
	if _, err := src.Client.Select("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := src.Client.Store(imap.UIDSetNum(1, 2, 3), &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: []imap.Flag{imap.FlagAnswered, "Custom"}}, nil)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	_, st, err = SyncFolder(ctx, src, tgt, cur4, Options{})
	if err != nil {
		t.Fatalf("SyncFolder() incremental = %v", err)
	}
	if st.Copied != 3 || st.FlagUpdates != 3 {
		t.Fatalf("SyncFolder() incremental stats = %+v, want 3 copied and 3 flag updates", st)
	}
	assertSame(t, src, tgt, "Work", "Work")
}

func TestSyncFolderUIDValidityChangeCopiesNothingTwice(t *testing.T) {
	srcAddr, tgtAddr := memServer(t), memServer(t)
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	seed(t, src, "INBOX", 0, 5)
	cur, _, err := SyncFolder(context.Background(), src, tgt, Cursor{Source: "INBOX", Target: "INBOX"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cur.UIDValidity++ // as if the source folder had been recreated
	_, st, err := SyncFolder(context.Background(), src, tgt, cur, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Copied != 0 || st.Matched != 5 {
		t.Fatalf("stats = %+v, want 5 matched, 0 copied", st)
	}
	assertSame(t, src, tgt, "INBOX", "INBOX")
}

func TestUIDMap(t *testing.T) {
	var m UIDMap
	for _, p := range [][2]imap.UID{{1, 10}, {2, 11}, {3, 12}, {5, 13}, {6, 14}, {9, 30}} {
		m.Add(p[0], p[1])
	}
	if len(m) != 3 {
		t.Fatalf("runs = %v, want 3", m)
	}
	for src, want := range map[imap.UID]imap.UID{1: 10, 3: 12, 5: 13, 6: 14, 9: 30, 4: 0, 7: 0, 100: 0} {
		got, ok := m.Lookup(src)
		if (want == 0) == ok || got != want {
			t.Errorf("Lookup(%d) = %d, %v; want %d", src, got, ok, want)
		}
	}
}

func TestPlanFolders(t *testing.T) {
	src := []Folder{
		{Name: "INBOX"}, {Name: "Sent"}, {Name: "Drafts", SpecialUse: imap.MailboxAttrDrafts},
		{Name: "Archive/2024/Q1 Reports"}, {Name: "Archive", NoSelect: true}, {Name: "Projets/Été 2026"}, {Name: "a.b"},
	}
	tgt := []Folder{{Name: "INBOX"}, {Name: "Sent Items", SpecialUse: imap.MailboxAttrSent}, {Name: "Brouillons", SpecialUse: imap.MailboxAttrDrafts}}
	got := map[string]string{}
	plans, _ := PlanFolders(src, Namespace{Delim: '/'}, tgt, Namespace{Delim: '.'}, Rules{})
	for _, p := range plans {
		got[p.Source] = p.Target
	}
	want := map[string]string{
		"INBOX": "INBOX", "Sent": "Sent Items", "Drafts": "Brouillons",
		"Archive/2024/Q1 Reports": "Archive.2024.Q1 Reports", "Projets/Été 2026": "Projets.Été 2026", "a.b": "a_b",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("PlanFolders() maps %q to %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["Archive"]; ok {
		t.Errorf("PlanFolders() planned the \\Noselect folder Archive")
	}
}

// Names the target cannot hold are renamed predictably and say why; two
// source folders never merge into one target folder, whatever the order
// the source lists them in.
func TestPlanFoldersNamesTheTargetCannotHold(t *testing.T) {
	src := []Folder{{Name: "INBOX"}, {Name: "a.b"}, {Name: "a_b"}, {Name: "Work"}, {Name: "work"}, {Name: "Stars*"}, {Name: "100%"}, {Name: "Lists/x.y"}}
	want := map[string]string{"INBOX": "INBOX", "a_b": "a_b", "a.b": "a_b (2)", "Work": "Work", "work": "work (2)",
		"Stars*": "Stars_", "100%": "100_", "Lists/x.y": "Lists.x_y"}
	why := map[string]string{"a.b": "'.' separates levels on the target; another source folder has the name", "work": "another source folder has the name",
		"Stars*": "IMAP wildcards", "100%": "IMAP wildcards", "Lists/x.y": "'.' separates levels on the target"}
	reversed := slices.Clone(src)
	slices.Reverse(reversed)
	for _, order := range [][]Folder{src, reversed} {
		plans, _ := PlanFolders(order, Namespace{Delim: '/'}, []Folder{{Name: "INBOX"}}, Namespace{Delim: '.'}, Rules{})
		for _, p := range plans {
			if p.Target != want[p.Source] {
				t.Errorf("%q planned as %q, want %q", p.Source, p.Target, want[p.Source])
			}
			if w := why[p.Source]; w == "" && p.Renamed != "" || w != "" && !strings.Contains(p.Renamed, w) {
				t.Errorf("%q renamed %q because %q, want %q", p.Source, p.Target, p.Renamed, w)
			}
		}
		targets := map[string]bool{}
		for _, p := range plans {
			if targets[strings.ToLower(p.Target)] {
				t.Errorf("two source folders planned into %q", p.Target)
			}
			targets[strings.ToLower(p.Target)] = true
		}
	}
}

func TestPlanFoldersRules(t *testing.T) {
	src := []Folder{{Name: "INBOX"}, {Name: "Sent Items"}, {Name: "Archive"}, {Name: "Archive/2019"}, {Name: "Archive/2024"},
		{Name: "Junk E-mail"}, {Name: "Projects"}, {Name: "Projects/Old"}}
	tgt := []Folder{{Name: "INBOX"}, {Name: "Sent", SpecialUse: imap.MailboxAttrSent}}
	for _, tc := range []struct {
		name     string
		rules    Rules
		want     map[string]string
		excluded []string
	}{
		{"exclude subtree and junk", Rules{Exclude: []string{"archive/*", "Junk*"}},
			map[string]string{"INBOX": "INBOX", "Sent Items": "Sent", "Projects": "Projects", "Projects/Old": "Projects/Old"}, []string{"Archive", "Archive/2019", "Archive/2024", "Junk E-mail"}},
		{"include only", Rules{IncludeOnly: []string{"INBOX", "Archive/20*"}},
			map[string]string{"INBOX": "INBOX", "Archive/2019": "Archive/2019", "Archive/2024": "Archive/2024"}, nil},
		{"rename a tree", Rules{Renames: map[string]string{"Projects": "Work/Projects", "Sent Items": "Sent Mail"}, Exclude: []string{"Archive/*", "Junk*"}},
			map[string]string{"INBOX": "INBOX", "Sent Items": "Sent Mail", "Projects": "Work/Projects", "Projects/Old": "Work/Projects/Old"}, nil},
		{"target prefix", Rules{TargetPrefix: "Migrated/", Exclude: []string{"Archive/*", "Junk*", "Projects/*"}},
			map[string]string{"INBOX": "Migrated/INBOX", "Sent Items": "Migrated/Sent Items"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plans, excluded := PlanFolders(src, Namespace{Delim: '/'}, tgt, Namespace{Delim: '/'}, tc.rules)
			got := map[string]string{}
			for _, p := range plans {
				got[p.Source] = p.Target
			}
			if len(got) != len(tc.want) {
				t.Fatalf("PlanFolders() = %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("PlanFolders() maps %q to %q, want %q", k, got[k], v)
				}
			}
			if tc.excluded != nil && strings.Join(excluded, ",") != strings.Join(tc.excluded, ",") {
				t.Errorf("excluded = %v, want %v", excluded, tc.excluded)
			}
		})
	}
}

func TestSyncFolderFilters(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
	seed(t, src, "Work", 0, 20) // dates 2020-01-01 00:00:00+i s, sizes growing with i%7
	rules := Rules{NewerThan: time.Date(2020, 1, 1, 0, 0, 5, 0, time.UTC), MaxMessageSize: 5000}
	cur, st, err := SyncFolder(context.Background(), src, tgt, Cursor{Source: "Work", Target: "Work"}, Options{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := 0; i < 20; i++ {
		if i >= 5 && len(testMessage(i)) <= 5000 {
			want++
		}
	}
	if st.Copied != want || st.Filtered != 20-want || cur.LastUID != 20 {
		t.Fatalf("stats %+v, LastUID %d; want %d copied, %d filtered, all passed", st, cur.LastUID, want, 20-want)
	}
}

func TestDialWrongPassword(t *testing.T) {
	addr := memServer(t)
	_, err := Dial(context.Background(), failure.SideTarget, Endpoint{Addr: addr, Security: SecurityNone}, Credentials{User: testUser, Password: "wrong"})
	fe, ok := failure.As(err)
	if !ok || fe.Type != failure.TypeLogonFailed || fe.Side != failure.SideTarget {
		t.Fatalf("Dial() = %v, want a target LogonFailed", err)
	}
}

func expungeOnSource(t *testing.T, s *Session, folder string, uids ...imap.UID) {
	t.Helper()
	if _, err := s.Client.Select(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	set := imap.UIDSetNum(uids...)
	if err := s.Client.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.UIDExpunge(set).Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncFolderDeletions(t *testing.T) {
	for _, propagate := range []bool{false, true} {
		srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
		src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
		seed(t, src, "Work", 0, 10)
		cur, _, err := SyncFolder(context.Background(), src, tgt, Cursor{Source: "Work", Target: "Work"}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		expungeOnSource(t, src, "Work", 2, 3, 7)
		cur, st, err := SyncFolder(context.Background(), src, tgt, cur, Options{PropagateDeletes: propagate})
		if err != nil {
			t.Fatal(err)
		}
		wantExpunged, wantLeft := 0, 10
		if propagate {
			wantExpunged, wantLeft = 3, 7
		}
		if st.DeletedOnSource != 3 || st.Expunged != wantExpunged || cur.Map.Len() != 7 {
			t.Fatalf("propagate=%v: stats %+v, %d mapped; want 3 deleted, %d expunged, 7 mapped", propagate, st, cur.Map.Len(), wantExpunged)
		}
		if got := len(contents(t, tgt, "Work")); got != wantLeft {
			t.Fatalf("propagate=%v: target has %d messages, want %d", propagate, got, wantLeft)
		}
		// Counted once.
		if _, st, _ = SyncFolder(context.Background(), src, tgt, cur, Options{PropagateDeletes: propagate}); st.DeletedOnSource != 0 {
			t.Fatalf("propagate=%v: deletions counted again: %+v", propagate, st)
		}
		if propagate {
			assertSame(t, src, tgt, "Work", "Work")
		}
	}
}

func TestFlagFilter(t *testing.T) {
	flags := []imap.Flag{imap.FlagSeen, "$Forwarded", "ProjectX"}
	var st Stats
	if got := newFlagFilter([]imap.Flag{imap.FlagSeen, imap.FlagWildcard}).keep(flags, &st); len(got) != 3 || st.RefusedKeywords != nil {
		t.Fatalf(`keep() with \* = %v, %v; want everything kept`, got, st.RefusedKeywords)
	}
	got := newFlagFilter([]imap.Flag{imap.FlagSeen, "$forwarded"}).keep(flags, &st)
	if len(got) != 2 || st.RefusedKeywords["ProjectX"] != 1 {
		t.Fatalf("keep() = %v, refused %v; want ProjectX refused and counted", got, st.RefusedKeywords)
	}
}

// limitedSession is an in-memory server session that announces APPENDLIMIT.
type limitedSession struct {
	*imapmemserver.UserSession
	user  *imapmemserver.User
	limit uint32
}

func (s *limitedSession) Login(username, password string) error {
	if err := s.user.Login(username, password); err != nil {
		return err
	}
	s.UserSession = imapmemserver.NewUserSession(s.user)
	return nil
}

func (s *limitedSession) AppendLimit() uint32 { return s.limit }

func TestSyncFolderHonoursAppendLimit(t *testing.T) {
	u := memserver.NewUser(t, "Work")
	addr := memserver.Serve(t, func() imapserver.Session { return &limitedSession{user: u, limit: 5000} })
	src, tgt := dial(t, failure.SideSource, memServer(t, "Work")), dial(t, failure.SideTarget, addr)
	if tgt.AppendLimit() != 5000 {
		t.Fatalf("AppendLimit() = %d, want 5000 (caps %v)", tgt.AppendLimit(), tgt.Caps)
	}
	seed(t, src, "Work", 0, 14)
	cur, st, err := SyncFolder(context.Background(), src, tgt, Cursor{Source: "Work", Target: "Work"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	large := 0
	for i := 0; i < 14; i++ {
		if len(testMessage(i)) > 5000 {
			large++
		}
	}
	if len(st.BadItems) != large || st.Copied != 14-large || cur.LastUID != 14 || large == 0 {
		t.Fatalf("stats %+v; want %d bad items above the APPENDLIMIT and the rest copied", st, large)
	}
}

// Courier, cPanel and Cyrus put personal folders below "INBOX.": the prefix
// is a namespace's, not part of the folder's path, both ways.
func TestPlanFoldersTranslatesNamespacePrefixes(t *testing.T) {
	courier := Namespace{Prefix: "INBOX.", Delim: '.'}
	dovecot := Namespace{Delim: '/'}
	for _, tc := range []struct {
		name     string
		src      []Folder
		srcNS    Namespace
		tgtNS    Namespace
		rules    Rules
		want     map[string]string
		excluded []string
	}{
		{"from Courier", []Folder{{Name: "INBOX"}, {Name: "INBOX.Work"}, {Name: "INBOX.Work.2024"}, {Name: "INBOX.Old"}},
			courier, dovecot, Rules{Exclude: []string{"Old"}},
			map[string]string{"INBOX": "INBOX", "INBOX.Work": "Work", "INBOX.Work.2024": "Work/2024"}, []string{"INBOX.Old"}},
		{"to Courier", []Folder{{Name: "INBOX"}, {Name: "Work"}, {Name: "Work/2024"}},
			dovecot, courier, Rules{},
			map[string]string{"INBOX": "INBOX", "Work": "INBOX.Work", "Work/2024": "INBOX.Work.2024"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plans, excluded := PlanFolders(tc.src, tc.srcNS, []Folder{{Name: "INBOX"}}, tc.tgtNS, tc.rules)
			got := map[string]string{}
			for _, p := range plans {
				got[p.Source] = p.Target
			}
			if !maps.Equal(got, tc.want) || !slices.Equal(excluded, tc.excluded) {
				t.Fatalf("PlanFolders() = %v, excluded %v; want %v, excluded %v", got, excluded, tc.want, tc.excluded)
			}
		})
	}
}

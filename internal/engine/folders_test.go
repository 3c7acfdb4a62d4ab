package engine

import (
	"context"
	"slices"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/testbed"
)

// What users do to their folders during a move ends in a move that
// reflects it, never a failure.

// A folder the user made on the source whose name is, on a '.'-separated
// target, only the implied parent of an existing folder is created and
// subscribed like any other.
func TestFolderThatIsOnlyAParentOnTheTarget(t *testing.T) {
	if err := testbed.EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	dovecot := testbed.StartForTest(t, testbed.Options{Name: "parent-target", Separator: ".", Users: []testbed.User{{Name: testUser, Password: testPass}}})
	srcAddr := memServer(t, "Projects", "Projects/Q1 Plans")
	src, tgt := pair(t, srcAddr, dovecot.Addr())
	if err := tgt.Client.Create("Projects.Q1 Plans", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	seed(t, src, "Projects", 0, 3)
	if err := src.Client.Subscribe("Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	plans, _, err := Plan(context.Background(), src, tgt, Rules{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.CreateFolders(context.Background(), plans); err != nil {
		t.Fatalf("CreateFolders() = %v", err)
	}
	syncAll(t, srcAddr, dovecot.Addr(), Cursor{Source: "Projects", Target: "Projects"}, Options{})
	assertSame(t, src, tgt, "Projects", "Projects")
}

// A source folder deleted during the move is not a failure: the pass says
// it is gone, and the copy stays on the target.
func TestSourceFolderDeletedDuringTheMove(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, _ := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 5)
	cur, _ := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	if err := src.Client.Delete("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	s2, t2 := pair(t, srcAddr, tgtAddr)
	got, _, err := SyncFolder(context.Background(), s2, t2, cur, Options{Reconcile: true})
	if err != nil || !got.SourceGone {
		t.Fatalf("SyncFolder() = %v, gone %v; want no error and the folder gone", err, got.SourceGone)
	}
	if n := len(contents(t, t2, "Work")); n != 5 {
		t.Fatalf("target holds %d messages, want the 5 copied", n)
	}
}

// A target folder the user deleted during the move is made again and
// filled again from the start, each message once.
func TestTargetFolderDeletedDuringTheMove(t *testing.T) {
	srcAddr, tgtAddr := memServer(t, "Work"), memServer(t, "Work")
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 5)
	cur, _ := syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{})
	if err := tgt.Client.Delete("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	seed(t, src, "Work", 5, 2)
	_, st := syncAll(t, srcAddr, tgtAddr, cur, Options{})
	if st.Copied != 7 {
		t.Fatalf("copied %d after the target folder was deleted, want all 7 again", st.Copied)
	}
	assertSame(t, src, dial(t, failure.SideTarget, tgtAddr), "Work", "Work")
}

// Shared and public folders are another's, left out unless the batch
// asks for them (--include-shared); asked for, they are copied under
// their own path.
func TestSharedFoldersOnlyWhenAskedFor(t *testing.T) {
	if err := testbed.EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	dovecot := testbed.StartForTest(t, testbed.Options{Name: "public-source", PublicPrefix: "Public/", Users: []testbed.User{{Name: testUser, Password: testPass}}})
	src := dial(t, failure.SideSource, dovecot.Addr())
	if err := src.Client.Create("Public/News", nil).Wait(); err != nil {
		t.Fatalf("create Public/News: %v\n%s", err, dovecot.LogTail())
	}
	seed(t, src, "Public/News", 0, 3)
	seed(t, src, "INBOX", 10, 2)
	if len(src.Others) == 0 {
		t.Fatalf("NAMESPACE lists no shared namespace: %+v", src.Others)
	}
	for _, shared := range []bool{false, true} {
		tgtAddr := memServer(t)
		tgt := dial(t, failure.SideTarget, tgtAddr)
		plans, _, err := Plan(context.Background(), src, tgt, Rules{IncludeShared: shared})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range plans {
			names = append(names, p.Target)
		}
		if has := slices.Contains(names, "Public/News"); has != shared {
			t.Fatalf("IncludeShared %v: planned %v", shared, names)
		}
		if !shared {
			continue
		}
		if err := tgt.CreateFolders(context.Background(), plans); err != nil {
			t.Fatal(err)
		}
		syncAll(t, dovecot.Addr(), tgtAddr, Cursor{Source: "Public/News", Target: "Public/News"}, Options{})
		assertSame(t, src, tgt, "Public/News", "Public/News")
	}
}

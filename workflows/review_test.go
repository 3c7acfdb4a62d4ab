package workflows

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/stretchr/testify/mock"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
)

// Review finding 9 (loss). replan takes a source folder that vanished
// while one with the same UIDVALIDITY appeared for a rename, and gives the
// new folder the old one's cursor. UIDVALIDITY is only unique per mailbox
// name (RFC 3501 2.3.1.1); servers that use one value for every folder (or
// a creation timestamp in seconds) give unrelated folders equal values.
// Then a user who deletes "Projects" and creates "Archive" between passes
// has "Archive" resumed at Projects' LastUID: its messages up to there are
// never copied (and Projects' copies are renamed "Archive" on the target).
func TestReviewReplanTakesANewFolderForARenameByUIDValidity(t *testing.T) {
	env := newEnv(t)
	var mu sync.Mutex
	connects := 0
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(context.Context, activities.ConnectInput) (activities.ConnectResult, error) {
		mu.Lock()
		defer mu.Unlock()
		connects++
		if connects == 1 {
			return activities.ConnectResult{Folders: []engine.FolderPlan{
				{Source: "INBOX", Target: "INBOX", Messages: 10, UIDValidity: 1},
				{Source: "Projects", Target: "Projects", Messages: 10, UIDValidity: 1},
			}}, nil
		}
		return activities.ConnectResult{Folders: []engine.FolderPlan{
			{Source: "INBOX", Target: "INBOX", Messages: 10, UIDValidity: 1},
			{Source: "Archive", Target: "Archive", Messages: 7, UIDValidity: 1},
		}}, nil
	})
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	// The engine sets each cursor's UIDVALIDITY to its source folder's.
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		res, err := syncAllDone(ctx, in)
		for i := range res.Cursors {
			res.Cursors[i].UIDValidity = 1
		}
		return res, err
	})
	var archive *engine.Cursor
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		mu.Lock()
		for _, c := range in.Cursors {
			if c.Source == "Archive" && archive == nil {
				c := c
				archive = &c
			}
		}
		mu.Unlock()
		return syncAllDone(ctx, in)
	})
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{}))
	if env.GetWorkflowError() != nil {
		t.Fatal(env.GetWorkflowError())
	}
	if archive == nil {
		t.Fatal("Archive was never synced")
	}
	if archive.LastUID != 0 {
		t.Fatalf("the new folder Archive is synced from Projects' cursor (LastUID %d, UIDVALIDITY %d): its messages up to UID %d are never copied", archive.LastUID, archive.UIDValidity, archive.LastUID)
	}
}

// Review finding 10 (a move failed at its very end; bad items reported
// twice). Bad items are appended to the move's state at every sync call
// that meets them, with no regard to whether they were reported before. A
// sync that walks a folder from the start again — the verification's
// repair pass, or the engine after the target renumbered the folder
// (resetTarget, which Exchange causes) — meets the same refused messages
// again: here 6 bad items (under the limit of 10) become 12, and a move
// whose only fault was one duplicate copy fails BadItemLimitExceeded after
// everything was copied.
func TestReviewRepairPassCountsBadItemsTwice(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	// Every walk of INBOX from the start meets the same 6 refused messages.
	walk := func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		from := slices.Clone(in.Cursors)
		res, err := syncAllDone(ctx, in)
		for _, c := range from {
			if c.Source == "INBOX" && c.LastUID == 0 {
				for uid := range 6 {
					res.BadItems = append(res.BadItems, engine.BadItem{Folder: "INBOX", UID: imap.UID(uid + 1), Size: 10, Reason: "message too large"})
				}
			}
		}
		return res, err
	}
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(walk)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(walk)
	verifies := 0
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VerifyInput) (activities.VerifyResult, error) {
		verifies++
		res := activities.VerifyResult{Compared: 15}
		for _, f := range in.Folders {
			fc := activities.FolderCount{Source: f.Source, Target: f.Target}
			if f.Source == "INBOX" && verifies == 1 {
				fc.Duplicated = 1 // one extra copy: the repair pass mends it
				res.Duplicated++
			}
			res.Folders = append(res.Folders, fc)
		}
		return res, nil
	})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{ConnectionsPerMove: 1}))
	st := queryStatus(t, env)
	if st.Status == StatusFailed || len(st.BadItems) != 6 {
		t.Fatalf("%s (%s) with %d bad items reported; want the 6 refused messages once and the move completed", st.Status, st.Reason, len(st.BadItems))
	}
}

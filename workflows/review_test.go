package workflows

import (
	"context"
	"sync"
	"testing"

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

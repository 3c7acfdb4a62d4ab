package workflows

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
)

// Under Gmail's priority rule every sync call and the verification rank a
// message's labels among the labels of all the move's folders, not only
// those of the folders in the call's lane: a label folder in another lane
// still takes its messages away from this one.
func TestGmailPriorityRankingReachesEveryCallAndTheVerification(t *testing.T) {
	env := newEnv(t)
	plans := activities.ConnectResult{Folders: []engine.FolderPlan{
		{Source: "INBOX", Target: "INBOX", Messages: 3, GmailKeywords: true, GmailOwn: `\Inbox`},
		{Source: "Work", Target: "Work", Messages: 3, GmailKeywords: true, GmailOwn: "Work"},
		{Source: "Travel", Target: "Travel", Messages: 3, GmailKeywords: true, GmailOwn: "Travel"},
		{Source: "[Gmail]/All Mail", Target: "Archive", Messages: 9, GmailArchive: true, GmailKeywords: true,
			GmailLabels: []string{`\Inbox`, "Travel", "Work"}},
	}}
	var mu sync.Mutex
	var seen []string
	record := func(call string, g engine.GmailRanking) {
		mu.Lock()
		defer mu.Unlock()
		p := slices.Clone(g.Planned)
		slices.Sort(p)
		seen = append(seen, fmt.Sprintf("%s %v %v", call, g.Order, p))
	}
	sync := func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		record("sync", in.Gmail)
		return syncAllDone(ctx, in)
	}
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(plans, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(sync)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(sync)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VerifyInput) (activities.VerifyResult, error) {
		record("verify", in.Gmail)
		return activities.VerifyResult{}, nil
	})
	s := Settings{ConnectionsPerMove: 2}
	s.Rules.GmailLabels, s.Rules.GmailLabelOrder = engine.GmailLabelPriority, []string{"Travel"}
	env.ExecuteWorkflow(MailboxMove, testInput(s))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	verified := false
	for _, c := range seen {
		if c != "sync [Travel] [Travel Work \\Inbox]" && c != "verify [Travel] [Travel Work \\Inbox]" {
			t.Errorf("a call ranked %q, want every label folder of the move", c)
		}
		verified = verified || c[:6] == "verify"
	}
	if len(seen) < 3 || !verified {
		t.Errorf("calls %v: want sync calls of two lanes and the verification", seen)
	}
}

package workflows

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/policy"
)

func testInput(s Settings) MailboxMoveInput {
	return MailboxMoveInput{Batch: "b1", Mailbox: "alice@example.com", Settings: s}
}

var twoFolders = activities.ConnectResult{Folders: []engine.FolderPlan{
	{Source: "INBOX", Target: "INBOX", Messages: 10, Bytes: 1000},
	{Source: "Sent", Target: "Sent Items", Messages: 5, Bytes: 500},
}}

// syncAllDone answers a sync activity call as if every folder were copied.
func syncAllDone(_ context.Context, in activities.SyncInput) (activities.SyncResult, error) {
	res := activities.SyncResult{Cursors: in.Cursors, Done: make([]bool, len(in.Cursors))}
	for i := range in.Cursors {
		res.Done[i] = true
		res.Cursors[i].LastUID = 10
		res.Copied++
		res.Bytes += 100
	}
	return res, nil
}

// failed builds the ApplicationError an activity returns for a classified
// failure, with the partial progress of a sync activity when given.
func failed(typ failure.Type, side failure.Side, reason, server string, progress *activities.SyncResult) error {
	d := failure.Details{Type: typ, Reason: reason, Side: side, Op: "op", Server: server, Hint: "hint"}
	details := []interface{}{d}
	if progress != nil {
		details = append(details, *progress)
	}
	return temporal.NewApplicationErrorWithOptions(server, string(typ), temporal.ApplicationErrorOptions{Details: details})
}

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(MailboxMove)
	env.RegisterWorkflow(Batch)
	env.RegisterActivity(&activities.Activities{})
	return env
}

// mockHappy mocks every activity as succeeding, InitialSync with initial
// when given (a function or the values to return).
func mockHappy(env *testsuite.TestWorkflowEnvironment, initial ...interface{}) {
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	if len(initial) == 0 {
		initial = []interface{}{syncAllDone}
	}
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(initial...)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
}

func queryStatus(t *testing.T, env *testsuite.TestWorkflowEnvironment) MoveStatus {
	t.Helper()
	v, err := env.QueryWorkflow(QueryStatus)
	if err != nil {
		t.Fatalf("QueryWorkflow() = %v", err)
	}
	var st MoveStatus
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// withRule returns the default policy with one rule replaced.
func withRule(t failure.Type, r failure.Rule) *policy.Policy {
	p := policy.Default()
	p.Rules[t] = r
	return &p
}

func minutes(n int) failure.Duration { return failure.Duration(time.Duration(n) * time.Minute) }

func TestMailboxMoveAutoComplete(t *testing.T) {
	env := newEnv(t)
	mockHappy(env)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{}))

	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow error = %v", env.GetWorkflowError())
	}
	var rep MoveReport
	env.GetWorkflowResult(&rep)
	if rep.Status != StatusCompleted || rep.StatusDetail != DetailCompleted || rep.PercentComplete != 100 || rep.FoldersCopied != 2 || rep.MessagesTotal != 15 {
		t.Fatalf("report = %+v, want Completed, 100%%, 2 folders, 15 messages", rep.MoveStatus)
	}
	// Two passes (initial, final), each one activity per lane.
	env.AssertNumberOfCalls(t, "InitialSync", 2)
	env.AssertNumberOfCalls(t, "IncrementalSync", 2)
}

func TestMailboxMoveManualCompleteRunsIncrementalPasses(t *testing.T) {
	env := newEnv(t)
	mockHappy(env)
	var before MoveStatus
	// After three incremental intervals, the admin completes the move.
	env.RegisterDelayedCallback(func() {
		before = queryStatus(t, env)
		env.UpdateWorkflow(UpdateComplete, "u1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("complete rejected: %v", err) },
			OnAccept: func() {}, OnComplete: func(interface{}, error) {},
		})
	}, 3*time.Hour+time.Minute)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Complete: CompleteManual, IncrementalInterval: time.Hour}))

	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	if before.Status != StatusSynced || before.StatusDetail != DetailSynced || before.IncrementalPasses != 3 {
		t.Fatalf("status before complete = %s/%s with %d passes, want Synced/Synced with 3", before.Status, before.StatusDetail, before.IncrementalPasses)
	}
	if st := queryStatus(t, env); st.Status != StatusCompleted {
		t.Fatalf("status = %s, want Completed", st.Status)
	}
}

func TestWrongPasswordWaitsVisiblyThenFails(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(activities.ConnectResult{},
		failed(failure.TypeLogonFailed, failure.SideSource, "LogonFailed", "Authentication failed.", nil))
	var during MoveStatus
	env.RegisterDelayedCallback(func() { during = queryStatus(t, env) }, 30*time.Second)
	pol := withRule(failure.TypeLogonFailed, failure.Rule{InitialInterval: minutes(1), BackoffCoefficient: 2, MaximumAttempts: 3, Consecutive: true})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Policy: pol}))

	if env.GetWorkflowError() == nil {
		t.Fatal("workflow succeeded, want it failed")
	}
	env.AssertNumberOfCalls(t, "Connect", 3)
	if during.StatusDetail != DetailWaitingForLogonRetry || !strings.Contains(during.Reason, "attempt 1/3, next at") || during.NextAttemptAt.IsZero() {
		t.Fatalf("during the wait: %s %q (next %v); want WaitingForLogonRetry, attempt 1/3 and the next attempt's time", during.StatusDetail, during.Reason, during.NextAttemptAt)
	}
	st := queryStatus(t, env)
	if st.Status != StatusFailed || st.StatusDetail != "Failed_LogonFailed" || !strings.Contains(st.Reason, "source op") || !strings.Contains(st.Reason, "Authentication failed.") {
		t.Fatalf("status = %s/%s, reason %q; want Failed naming side and the server's words", st.Status, st.StatusDetail, st.Reason)
	}
	// Waits of 1m then 2m: two waits for three attempts.
	if st.LogonFailures != 3 || st.StallTime[DetailWaitingForLogonRetry] != 3*time.Minute {
		t.Fatalf("logon failures %d, waited %v; want 3 and 3m", st.LogonFailures, st.StallTime[DetailWaitingForLogonRetry])
	}
}

func TestMailboxLockedRelinquishesAndResumesFromProgress(t *testing.T) {
	env := newEnv(t)
	calls := 0
	var resumedFrom imap.UID
	mockHappy(env, func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		calls++
		if calls <= 2 {
			// Some progress, then the lock.
			p := activities.SyncResult{Cursors: in.Cursors, Done: make([]bool, len(in.Cursors)), Counters: engine.Counters{Copied: 2}}
			p.Cursors[0].LastUID += 2
			return activities.SyncResult{}, failed(failure.TypeMailboxLocked, failure.SideSource, "MailboxLocked", "Mailbox is locked", &p)
		}
		resumedFrom = in.Cursors[0].LastUID
		return syncAllDone(ctx, in)
	})
	var during MoveStatus
	env.RegisterDelayedCallback(func() { during = queryStatus(t, env) }, time.Minute)
	pol := withRule(failure.TypeMailboxLocked, failure.Rule{InitialInterval: minutes(5), MaximumAttempts: 5})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Policy: pol, ConnectionsPerMove: 1}))

	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	if during.StatusDetail != DetailRelinquishedLocked || during.Status != StatusInProgress {
		t.Fatalf("during the lock: %s/%s, want InProgress/Relinquished_MailboxLocked", during.Status, during.StatusDetail)
	}
	st := queryStatus(t, env)
	if st.LockRelinquishes != 2 || st.StallTime[DetailRelinquishedLocked] != 10*time.Minute || resumedFrom != 4 {
		t.Fatalf("relinquishes %d, waited %v, resumed from uid %d; want 2, 10m, 4", st.LockRelinquishes, st.StallTime[DetailRelinquishedLocked], resumedFrom)
	}
	if st.Status != StatusCompleted || st.Copied < 4 {
		t.Fatalf("status %s with %d copied; want Completed keeping the 4 copied before the locks", st.Status, st.Copied)
	}
}

func TestMailboxLockedBudgetSpentFails(t *testing.T) {
	env := newEnv(t)
	mockHappy(env, activities.SyncResult{},
		failed(failure.TypeMailboxLocked, failure.SideSource, "MailboxLocked", "Mailbox is locked", nil))
	pol := withRule(failure.TypeMailboxLocked, failure.Rule{InitialInterval: minutes(5), MaximumAttempts: 3})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Policy: pol, ConnectionsPerMove: 1}))

	st := queryStatus(t, env)
	if env.GetWorkflowError() == nil || st.StatusDetail != "Failed_MailboxLocked" || !strings.Contains(st.Reason, "gave up after 3 attempts") {
		t.Fatalf("status %s/%s %q; want Failed_MailboxLocked after 3 attempts", st.Status, st.StatusDetail, st.Reason)
	}
	env.AssertNumberOfCalls(t, "InitialSync", 3)
}

func TestStallBacksOffAndResumes(t *testing.T) {
	env := newEnv(t)
	calls := 0
	mockHappy(env, func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		calls++
		if calls <= 3 {
			return activities.SyncResult{}, failed(failure.TypeServerUnavailable, failure.SideTarget, "Unavailable", "Server busy", nil)
		}
		return syncAllDone(ctx, in)
	})
	var during MoveStatus
	env.RegisterDelayedCallback(func() { during = queryStatus(t, env) }, 10*time.Second)
	pol := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: failure.Duration(15 * time.Second), BackoffCoefficient: 2, MaximumInterval: minutes(10)})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Policy: pol, ConnectionsPerMove: 1}))

	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	if during.StatusDetail != "StalledDueToTarget_Unavailable" {
		t.Fatalf("during the stall: %s, want StalledDueToTarget_Unavailable", during.StatusDetail)
	}
	// 15s, 30s, 60s.
	if got := queryStatus(t, env).StallTime["StalledDueToTarget_Unavailable"]; got != 105*time.Second {
		t.Fatalf("stall time = %v, want 1m45s", got)
	}
}

// A server that says how long to back off is taken at its word.
func TestStallWaitsTheSuggestedBackoff(t *testing.T) {
	env := newEnv(t)
	calls := 0
	mockHappy(env, func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		calls++
		if calls <= 2 {
			d := failure.Details{Type: failure.TypeServerUnavailable, Reason: "Throttled", Side: failure.SideTarget, Op: "append",
				Server: "Request is throttled. Suggested Backoff Time: 63796 milliseconds", RetryAfter: failure.Duration(63796 * time.Millisecond)}
			return activities.SyncResult{}, temporal.NewApplicationErrorWithOptions(d.Server, string(d.Type), temporal.ApplicationErrorOptions{Details: []interface{}{d}})
		}
		return syncAllDone(ctx, in)
	})
	pol := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: failure.Duration(15 * time.Second), BackoffCoefficient: 2, MaximumInterval: minutes(10)})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Policy: pol, ConnectionsPerMove: 1}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	if got := queryStatus(t, env).StallTime["StalledDueToTarget_Throttled"]; got != 2*63796*time.Millisecond {
		t.Fatalf("stall time = %v, want twice the suggested 63.796s", got)
	}
}

func TestTargetFullFailsWithTheSpaceNeeded(t *testing.T) {
	env := newEnv(t)
	full := temporal.NewApplicationErrorWithOptions("full", string(failure.TypeTargetFull), temporal.ApplicationErrorOptions{Details: []interface{}{
		failure.Details{Type: failure.TypeTargetFull, Side: failure.SideTarget, Op: "append INBOX uid 3", Server: "Quota exceeded", QuotaUsed: 900 << 10, QuotaLimit: 1 << 20},
	}})
	mockHappy(env, activities.SyncResult{}, full)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{ConnectionsPerMove: 1}))

	st := queryStatus(t, env)
	if env.GetWorkflowError() == nil || st.StatusDetail != "Failed_TargetFull" ||
		!strings.Contains(st.Reason, "target quota: 900.0 KiB of 1.0 MiB used") || !strings.Contains(st.Reason, "about 1.5 KiB of the source mailbox is still to copy") {
		t.Fatalf("status %s/%s %q; want Failed_TargetFull with quota and space still needed", st.Status, st.StatusDetail, st.Reason)
	}
	env.AssertNumberOfCalls(t, "InitialSync", 1)
}

func TestTargetFullWaitSuspendsUntilResumed(t *testing.T) {
	env := newEnv(t)
	calls := 0
	mockHappy(env, func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		calls++
		if calls == 1 {
			return activities.SyncResult{}, failed(failure.TypeTargetFull, failure.SideTarget, "TargetFull", "Quota exceeded", nil)
		}
		return syncAllDone(ctx, in)
	})
	var during MoveStatus
	env.RegisterDelayedCallback(func() {
		during = queryStatus(t, env)
		env.SignalWorkflow(SignalResume, nil) // the admin raised the quota
	}, time.Minute)
	pol := policy.Default()
	pol.OverQuota = policy.OverQuotaWait
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Policy: &pol, ConnectionsPerMove: 1}))

	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	if during.Status != StatusSuspended || during.StatusDetail != DetailWaitingForQuota {
		t.Fatalf("while full: %s/%s, want Suspended/WaitingForQuota", during.Status, during.StatusDetail)
	}
	// Resumed by the signal after 1m, not after the rule's 10m.
	if got := queryStatus(t, env).StallTime[DetailWaitingForQuota]; got != time.Minute {
		t.Fatalf("waited %v for quota, want 1m", got)
	}
}

func TestBadItems(t *testing.T) {
	for _, tc := range []struct {
		limit, bad int
		want       Status
	}{
		{limit: 10, bad: 2, want: StatusCompletedWithWarnings},
		{limit: 1, bad: 2, want: StatusFailed},
	} {
		env := newEnv(t)
		mockHappy(env, func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
			res, _ := syncAllDone(ctx, in)
			for i := 0; i < tc.bad; i++ {
				res.BadItems = append(res.BadItems, engine.BadItem{Folder: "INBOX", UID: imap.UID(i + 1), Size: 10, Reason: "message too large"})
			}
			return res, nil
		})
		pol := policy.Default()
		pol.BadItemLimit = tc.limit
		env.ExecuteWorkflow(MailboxMove, testInput(Settings{Policy: &pol, ConnectionsPerMove: 1}))
		st := queryStatus(t, env)
		if st.Status != tc.want || len(st.BadItems) != tc.bad || !strings.Contains(st.Reason, "bad item") && !strings.Contains(st.Reason, "BadItemLimitExceeded") {
			t.Errorf("limit %d, %d bad: %s %q; want %s", tc.limit, tc.bad, st.Status, st.Reason, tc.want)
		}
	}
}

func TestBatchDoesNotWaitForAMoveThatCannotLogOn(t *testing.T) {
	env := newEnv(t)
	var bobStarted time.Time
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ConnectInput) (activities.ConnectResult, error) {
		if in.Mailbox == "alice@example.com" {
			return activities.ConnectResult{}, failed(failure.TypeLogonFailed, failure.SideSource, "LogonFailed", "Authentication failed.", nil)
		}
		bobStarted = env.Now()
		return twoFolders, nil
	})
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	pol := withRule(failure.TypeLogonFailed, failure.Rule{InitialInterval: minutes(60), MaximumAttempts: 3, Consecutive: true})
	start := env.Now()
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, Moves: []MailboxMoveInput{
		{Mailbox: "alice@example.com", Settings: Settings{Policy: pol}},
		{Mailbox: "bob@example.com", Settings: Settings{Policy: pol}},
	}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("batch error = %v", err)
	}
	var st BatchStatus
	env.GetWorkflowResult(&st)
	if st.Entries[0].Error == "" || st.Entries[1].Error != "" {
		t.Fatalf("entries = %+v, want alice failed and bob completed", st.Entries)
	}
	if bobStarted.IsZero() || bobStarted.Sub(start) > time.Minute {
		t.Fatalf("bob started %v after the batch, want at once although alice waits hours for a logon retry", bobStarted.Sub(start))
	}
}

func TestMoveWorkflowIDIsStable(t *testing.T) {
	if MoveWorkflowID("b", "Alice@Example.com") != MoveWorkflowID("b", "alice@example.com") {
		t.Fatal("MoveWorkflowID depends on case")
	}
}

// mockReplan answers the first Connect with first and the later ones with
// later, and records the CreateFolders calls; InitialSync copies all.
func mockReplan(env *testsuite.TestWorkflowEnvironment, first, later activities.ConnectResult) *[]activities.CreateFoldersInput {
	connects := 0
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(context.Context, activities.ConnectInput) (activities.ConnectResult, error) {
		if connects++; connects == 1 {
			return first, nil
		}
		return later, nil
	})
	var creates []activities.CreateFoldersInput
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CreateFoldersInput) error {
		creates = append(creates, in)
		return nil
	})
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(syncAllDone)
	return &creates
}

func TestIncrementalPassFollowsFolderChanges(t *testing.T) {
	env := newEnv(t)
	first := activities.ConnectResult{Folders: []engine.FolderPlan{
		{Source: "INBOX", Target: "INBOX", Messages: 10, UIDValidity: 1},
		{Source: "Old", Target: "Old", Messages: 5, UIDValidity: 2},
		{Source: "Doomed", Target: "Doomed", Messages: 5, UIDValidity: 3},
	}}
	later := activities.ConnectResult{Folders: []engine.FolderPlan{
		{Source: "INBOX", Target: "INBOX", Messages: 10, UIDValidity: 1},
		{Source: "Renamed", Target: "Renamed", Messages: 5, UIDValidity: 2},
		{Source: "Fresh", Target: "Fresh", Messages: 1, UIDValidity: 4},
	}}
	creates := mockReplan(env, first, later)
	var finalCursors []engine.Cursor
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		finalCursors = append(finalCursors, in.Cursors...)
		return syncAllDone(ctx, in)
	})
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{ConnectionsPerMove: 1}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(*creates) != 2 || len((*creates)[1].Renames) != 1 || (*creates)[1].Renames[0] != (activities.FolderRename{From: "Old", To: "Renamed"}) ||
		len((*creates)[1].Folders) != 1 || (*creates)[1].Folders[0].Source != "Fresh" {
		t.Fatalf("CreateFolders calls = %+v; want the rename Old→Renamed and the new folder Fresh", *creates)
	}
	st := queryStatus(t, env)
	if st.FoldersRenamed != 1 || st.FoldersAdded != 1 || st.FoldersDeleted != 1 {
		t.Fatalf("renamed %d, added %d, deleted %d; want 1 each", st.FoldersRenamed, st.FoldersAdded, st.FoldersDeleted)
	}
	// The final pass syncs INBOX, Renamed (with the progress of Old) and Fresh, not Doomed.
	var names []string
	for _, c := range finalCursors {
		names = append(names, c.Source)
		if c.Source == "Renamed" && c.LastUID != 10 {
			t.Errorf("Renamed starts at uid %d, want the 10 of Old", c.LastUID)
		}
	}
	if strings.Join(names, ",") != "INBOX,Renamed,Fresh" {
		t.Fatalf("final pass synced %v", names)
	}
}

func TestMailboxMoveContinuesAsNewAfterPassesPerRun(t *testing.T) {
	env := newEnv(t)
	mockHappy(env)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, PassesPerRun: 2}))
	err := env.GetWorkflowError()
	if !workflow.IsContinueAsNewError(err) {
		t.Fatalf("workflow error = %v, want continue-as-new after 2 passes", err)
	}
	var can *workflow.ContinueAsNewError
	errors.As(err, &can)
	var next MailboxMoveInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.State == nil || next.State.IncrementalPasses != 2 || next.State.PassesThisRun != 0 || next.State.SyncedAt.IsZero() || len(next.State.Folders) != 2 {
		t.Fatalf("next run's state = %+v, want the whole progress carried", next.State)
	}
}

// A lane that has finished lends its connection to the lanes still copying:
// with two folders and three connections per side, the large folder's lane
// gets all three once the other lane is done.
func TestFinishedLanesLendTheirConnections(t *testing.T) {
	env := newEnv(t)
	var mu sync.Mutex
	calls := map[string][]int{}
	mockHappy(env, func(_ context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		mu.Lock()
		defer mu.Unlock()
		src := in.Cursors[0].Source
		calls[src] = append(calls[src], in.Connections)
		res, _ := syncAllDone(context.Background(), in)
		if src == "INBOX" && in.Connections < 3 && len(calls[src]) < 100 {
			// A large folder: more chunks to come, until the Sent lane's
			// end (whenever the test environment delivers it) frees its
			// connection.
			res.Done[0] = false
		}
		return res, nil
	})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{ConnectionsPerMove: 3}))
	if env.GetWorkflowError() != nil {
		t.Fatal(env.GetWorkflowError())
	}
	if got := calls["INBOX"]; len(got) < 2 || got[0] != 1 || got[len(got)-1] != 3 {
		t.Fatalf("INBOX lane's calls had %v connection pairs, want 1 at first and 3 once the Sent lane was done", got)
	}
	if got := calls["Sent"]; len(got) != 1 || got[0] != 1 {
		t.Fatalf("Sent lane's calls had %v connection pairs, want one call with 1", got)
	}
}

func TestDryRunPlansEveryMoveAndReportsFailures(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(DryRun)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ConnectInput) (activities.ConnectResult, error) {
		if in.Mailbox == "bad@example.com" {
			return activities.ConnectResult{}, failed(failure.TypeLogonFailed, failure.SideSource, "LogonFailed", "Authentication failed.", nil)
		}
		return twoFolders, nil
	})
	env.ExecuteWorkflow(DryRun, BatchInput{Name: "b1", Moves: []MailboxMoveInput{{Mailbox: "good@example.com"}, {Mailbox: "bad@example.com"}}})
	var got []PlannedMove
	if err := env.GetWorkflowResult(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0].Plan.Folders) != 2 || got[0].Error != "" ||
		got[1].Failure == nil || got[1].Failure.Type != failure.TypeLogonFailed || got[1].Error == "" {
		t.Fatalf("DryRun() = %+v; want the good mailbox planned and the bad one's logon failure", got)
	}
}

// What a running sync call signals shows in the status at once, and is
// replaced by the call's result when it returns: never counted twice. A
// late report of a call that has ended is dropped.
func TestLiveProgressOfARunningCall(t *testing.T) {
	env := newEnv(t)
	var during []int
	calls := 0
	sync := func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		calls++
		if in.Call == 0 {
			t.Error("sync call without a call number")
		}
		if calls == 1 {
			env.SignalWorkflow(activities.SignalSyncProgress, activities.SyncProgressSignal{Call: in.Call, Counters: engine.Counters{Copied: 7, Bytes: 700}})
			env.SignalWorkflow(activities.SignalSyncProgress, activities.SyncProgressSignal{Call: in.Call + 100, Counters: engine.Counters{Copied: 1000}})
		}
		if calls == 2 {
			// The first call's report arrives after its result.
			env.SignalWorkflow(activities.SignalSyncProgress, activities.SyncProgressSignal{Call: in.Call - 1, Counters: engine.Counters{Copied: 1000}})
		}
		time.Sleep(50 * time.Millisecond)
		during = append(during, queryStatus(t, env).Copied)
		return syncAllDone(ctx, in)
	}
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(sync)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(sync)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{ConnectionsPerMove: 1}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// Two passes (initial and final) of two folders, one copy each.
	if st := queryStatus(t, env); st.Copied != 4 || st.Bytes != 400 || !slices.Equal(during, []int{7, 2}) {
		t.Fatalf("copied %d (%d bytes) in the end, %v during the calls; want 4 (400) and [7 2]", st.Copied, st.Bytes, during)
	}
}

// A verification that finds a message missing syncs the folder again from
// scratch once; when that mends it the move is Perfect, when it does not
// the move is not Completed and says why.
func TestVerificationRepairsOnceThenGrades(t *testing.T) {
	for _, tc := range []struct {
		name         string
		stillMissing bool
		status       Status
		grade        Grade
	}{{"mended", false, StatusCompleted, GradePerfect}, {"not mended", true, StatusCompletedWithWarnings, GradeInvestigate}} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			var finalCursors [][]engine.Cursor
			env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
			env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
			env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(syncAllDone)
			env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
				finalCursors = append(finalCursors, slices.Clone(in.Cursors))
				return syncAllDone(ctx, in)
			})
			verifies := 0
			env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VerifyInput) (activities.VerifyResult, error) {
				verifies++
				res := activities.VerifyResult{Compared: 150}
				for _, f := range in.Folders {
					fc := activities.FolderCount{Source: f.Source, Target: f.Target}
					if f.Source == "Sent" && (verifies == 1 || tc.stillMissing) {
						fc.Missing = 1
						res.Missing++
					}
					res.Folders = append(res.Folders, fc)
				}
				return res, nil
			})
			env.ExecuteWorkflow(MailboxMove, testInput(Settings{ConnectionsPerMove: 1}))
			st := queryStatus(t, env)
			if st.Status != tc.status || st.Grade != tc.grade || st.Repairs != 1 || verifies != 2 {
				t.Fatalf("%s (%s), grade %s, %d repairs, %d verifications; want %s, grade %s, 1 repair, 2 verifications", st.Status, st.Reason, st.Grade, st.Repairs, verifies, tc.status, tc.grade)
			}
			// The final pass, then the repair: only Sent starts from scratch.
			repair := finalCursors[len(finalCursors)-1]
			for _, c := range repair {
				if (c.Source == "Sent") != (c.LastUID == 0) {
					t.Fatalf("repair pass cursors %+v; want only Sent from scratch", repair)
				}
			}
			if tc.stillMissing && !strings.Contains(st.Reason, "1 messages missing") {
				t.Fatalf("reason %q does not say what is missing", st.Reason)
			}
		})
	}
}

// A link that drops now and then, with progress in between, waits the
// first interval after each drop, not ever longer ones.
func TestStallWaitStartsAgainAfterProgress(t *testing.T) {
	env := newEnv(t)
	calls := 0
	mockHappy(env, func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		calls++
		if calls <= 3 {
			p := activities.SyncResult{Cursors: in.Cursors, Done: make([]bool, len(in.Cursors)), Counters: engine.Counters{Copied: 1}}
			return activities.SyncResult{}, failed(failure.TypeServerUnavailable, failure.SideTarget, "ConnectionDropped", "", &p)
		}
		return syncAllDone(ctx, in)
	})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{ConnectionsPerMove: 1}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// 15s three times, not 15s, 30s, 60s.
	if got := queryStatus(t, env).StallTime["StalledDueToTarget_ConnectionDropped"]; got != 45*time.Second {
		t.Fatalf("stall time = %v, want 45s", got)
	}
}

// A folder that appears on the source later never takes the target
// folder of an earlier one: "a.b" went to "a_b" on a '.'-separated
// target; a new source folder "a_b", which a fresh plan would give that
// name, goes to "a_b (2)" and the move says why.
func TestNewFolderNeverMergesIntoAnother(t *testing.T) {
	env := newEnv(t)
	first := activities.ConnectResult{Folders: []engine.FolderPlan{
		{Source: "INBOX", Target: "INBOX", Messages: 1, UIDValidity: 1},
		{Source: "a.b", Target: "a_b", Messages: 1, UIDValidity: 2, Renamed: "'.' separates levels on the target"},
	}}
	later := activities.ConnectResult{Folders: []engine.FolderPlan{
		{Source: "INBOX", Target: "INBOX", Messages: 1, UIDValidity: 1},
		{Source: "a.b", Target: "a_b (2)", Messages: 1, UIDValidity: 2, Renamed: "'.' separates levels on the target; " + engine.CollisionNote},
		{Source: "a_b", Target: "a_b", Messages: 1, UIDValidity: 3},
	}}
	creates := mockReplan(env, first, later)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{ConnectionsPerMove: 1}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if c := *creates; len(c) != 2 || len(c[1].Folders) != 1 || c[1].Folders[0].Target != "a_b (2)" || len(c[1].Renames) != 0 {
		t.Fatalf("CreateFolders calls = %+v; want a_b created as a_b (2), a.b left in a_b", c)
	}
	st := queryStatus(t, env)
	if !slices.Contains(st.FoldersRenamedForTarget, "a_b → a_b (2): "+engine.CollisionNote) ||
		!slices.Contains(st.FoldersRenamedForTarget, "a.b → a_b: '.' separates levels on the target") {
		t.Fatalf("FoldersRenamedForTarget = %q", st.FoldersRenamedForTarget)
	}
}

// `batch complete` reaches the moves the batch has not started yet: one
// queued behind --concurrency when the batch is told starts with
// completion after its initial sync, not with manual completion that
// would keep it syncing.
func TestBatchCompleteReachesMovesNotStartedYet(t *testing.T) {
	for _, signal := range []string{SignalCompleteAll, SignalCompleteMove} {
		env := newEnv(t)
		env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
		env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
		// Alice's copy takes an hour: the request comes while bob waits for
		// her slot.
		env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(time.Hour).Return(syncAllDone)
		passes := 0
		env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
			if passes++; passes > 50 {
				env.CancelWorkflow() // bob kept syncing: it was never told to complete
			}
			return syncAllDone(ctx, in)
		})
		env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
		// batch complete tells the batch; move complete names the mailbox
		// (in any case).
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(signal, "Bob@Example.com") }, time.Minute)
		env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, Moves: []MailboxMoveInput{
			{Mailbox: "alice@example.com", Settings: Settings{Complete: CompleteAuto}},
			{Mailbox: "bob@example.com", Settings: Settings{Complete: CompleteManual}},
		}})
		if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
			t.Fatalf("%s: batch did not end: %v", signal, env.GetWorkflowError())
		}
		var st BatchStatus
		env.GetWorkflowResult(&st)
		if !st.Entries[1].Closed || st.Entries[1].Error != "" {
			t.Fatalf("%s: status = %+v, want bob started after the request and completed", signal, st)
		}
	}
}

// --concurrency holds in every state: synced moves doing incremental
// passes ask the batch for a slot before each pass, so no more than the
// batch allows copy at once, and a `batch set` raises the bound on the
// running batch.
func TestBatchConcurrencyHoldsForIncrementalPasses(t *testing.T) {
	env := newEnv(t)
	type span struct {
		mailbox    string
		start, end time.Time
	}
	var mu sync.Mutex
	var spans []span
	passes := 0
	copyFor := func(d time.Duration) func(context.Context, activities.SyncInput) (activities.SyncResult, error) {
		return func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
			mu.Lock()
			spans = append(spans, span{in.Mailbox, env.Now(), env.Now().Add(d)})
			passes++
			if passes > 200 {
				env.CancelWorkflow()
			}
			mu.Unlock()
			return syncAllDone(ctx, in)
		}
	}
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(10 * time.Minute).Return(copyFor(10 * time.Minute))
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).After(10 * time.Minute).Return(copyFor(10 * time.Minute))
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	raisedAt := 2 * time.Hour
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalConcurrency, 3) }, raisedAt)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, PassesPerRun: 1000}
	var moves []MailboxMoveInput
	for _, name := range []string{"a@x", "b@x", "c@x", "d@x", "e@x"} {
		moves = append(moves, MailboxMoveInput{Mailbox: name, Settings: s})
	}
	start := env.Now()
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Moves: moves})
	// The most mailboxes copying at once, before and after the raise.
	most := func(from, to time.Time) int {
		peak := 0
		for _, x := range spans {
			if x.start.Before(from) || !x.start.Before(to) {
				continue
			}
			at := map[string]bool{}
			for _, y := range spans {
				if !y.start.After(x.start) && y.end.After(x.start) {
					at[y.mailbox] = true
				}
			}
			peak = max(peak, len(at))
		}
		return peak
	}
	before, after := most(start, start.Add(raisedAt)), most(start.Add(raisedAt+time.Minute), start.Add(1000*time.Hour))
	copied := map[string]int{}
	for _, x := range spans {
		copied[x.mailbox]++
	}
	if before != 2 || after != 3 || len(copied) != 5 {
		t.Fatalf("at most %d mailboxes copied at once with --concurrency 2, %d after it was raised to 3 (want 2 and 3); calls per mailbox %v", before, after, copied)
	}
}

// batch pause stops every move at its next safe point (between two
// activity calls: the calls under way finish), holding no slot and no
// connection, until batch resume; then all complete.
func TestBatchPauseStopsMovesBetweenCallsUntilResume(t *testing.T) {
	env := newEnv(t)
	var mu sync.Mutex
	calls := map[string]int{}
	var starts []time.Time
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(10 * time.Minute).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		mu.Lock()
		defer mu.Unlock()
		starts = append(starts, env.Now().Add(-10*time.Minute)) // the mock runs when its delay is over
		calls[in.Mailbox]++
		res, err := syncAllDone(ctx, in)
		if calls[in.Mailbox] < 12 {
			res.Done = make([]bool, len(in.Cursors)) // more to copy
		}
		return res, err
	})
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	pauseAt, resumeAt := 25*time.Minute, 3*time.Hour
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPause, true) }, pauseAt)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPause, false) }, resumeAt)
	start := env.Now()
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Moves: []MailboxMoveInput{
		{Mailbox: "a@x"}, {Mailbox: "b@x"}, {Mailbox: "c@x"},
	}})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("batch did not end: %v", env.GetWorkflowError())
	}
	var st BatchStatus
	env.GetWorkflowResult(&st)
	for _, e := range st.Entries {
		if e.Error != "" || !e.Closed {
			t.Fatalf("entries %+v, want every move completed", st.Entries)
		}
	}
	for _, s := range starts {
		if d := s.Sub(start); d > pauseAt && d < resumeAt {
			t.Fatalf("a sync call started at +%s, while the batch was paused (+%s to +%s)", d, pauseAt, resumeAt)
		}
	}
}

// --start-after: the batch starts no move before it, and answers its
// status query meanwhile.
func TestBatchStartsNoMoveBeforeStartAfter(t *testing.T) {
	env := newEnv(t)
	var first time.Time
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(context.Context, activities.ConnectInput) (activities.ConnectResult, error) {
		if first.IsZero() {
			first = env.Now()
		}
		return twoFolders, nil
	})
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	start := env.Now()
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		var st BatchStatus
		if err == nil {
			err = v.Get(&st)
		}
		if err != nil || st.StartAfter.IsZero() || len(st.Entries) != 1 || st.Entries[0].Started {
			t.Errorf("status before the start = %+v, %v", st, err)
		}
	}, time.Hour)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, StartAfter: start.Add(3 * time.Hour), Moves: []MailboxMoveInput{{Mailbox: "a@x"}}})
	if env.GetWorkflowError() != nil || first.Sub(start) < 3*time.Hour {
		t.Fatalf("first move connected %s after the batch began, want not before 3h (error %v)", first.Sub(start), env.GetWorkflowError())
	}
}

// --window: outside the allowed hours no sync call starts (one under way
// finishes its chunk), and the moves go on in the next window.
func TestBatchCopiesOnlyInsideItsWindow(t *testing.T) {
	env := newEnv(t)
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	env.SetStartTime(day)
	var mu sync.Mutex
	calls := map[string]int{}
	var starts []time.Time
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(10 * time.Minute).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		mu.Lock()
		defer mu.Unlock()
		starts = append(starts, env.Now().Add(-10*time.Minute))
		calls[in.Mailbox]++
		res, err := syncAllDone(ctx, in)
		if calls[in.Mailbox] < 30 {
			res.Done = make([]bool, len(in.Cursors)) // more to copy
		}
		return res, err
	})
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Window: "Mon-Sun 02:00-04:00", WindowZone: "UTC",
		Moves: []MailboxMoveInput{{Mailbox: "a@x"}, {Mailbox: "b@x"}}})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("batch did not end: %v", env.GetWorkflowError())
	}
	days := map[int]bool{}
	for _, s := range starts {
		if h := s.Hour(); h < 2 || h >= 4 {
			t.Fatalf("a sync call started at %s, outside 02:00-04:00", s.Format(time.RFC3339))
		}
		days[s.YearDay()] = true
	}
	if len(days) < 2 {
		t.Errorf("calls on %d days, want the copy spread over several windows", len(days))
	}
}

// batch cancel ends the batch at once, whatever it waits for (here a
// slot), and its moves with it; it starts no other.
func TestBatchCancelEndsTheBatchAndItsMoves(t *testing.T) {
	env := newEnv(t)
	var mu sync.Mutex
	started := map[string]bool{}
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ConnectInput) (activities.ConnectResult, error) {
		mu.Lock()
		started[in.Mailbox] = true
		mu.Unlock()
		return twoFolders, nil
	})
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(10 * time.Hour).Return(syncAllDone)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Hour)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, Moves: []MailboxMoveInput{{Mailbox: "a@x"}, {Mailbox: "b@x"}}})
	if !env.IsWorkflowCompleted() || !temporal.IsCanceledError(env.GetWorkflowError()) {
		t.Fatalf("batch error = %v, want cancelled", env.GetWorkflowError())
	}
	if !started["a@x"] || started["b@x"] {
		t.Errorf("moves started: %v, want a only", started)
	}
}

// batch complete --after: at that time the batch completes every move,
// those synced and doing incremental passes, and one still queued.
func TestBatchCompletesItsMovesAtTheTimeGiven(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(syncAllDone)
	var mu sync.Mutex
	passes := 0
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		mu.Lock()
		defer mu.Unlock()
		if passes++; passes > 200 {
			// Never completed: end the moves rather than pass forever.
			return activities.SyncResult{}, temporal.NewNonRetryableApplicationError("never completed", "Test", nil)
		}
		return syncAllDone(ctx, in)
	})
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	var completeAt time.Time
	env.RegisterDelayedCallback(func() {
		completeAt = env.Now().Add(3 * time.Hour)
		env.SignalWorkflow(SignalCompleteAt, completeAt)
	}, time.Minute)
	s := Settings{Complete: CompleteManual, IncrementalInterval: 30 * time.Minute}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Moves: []MailboxMoveInput{
		{Mailbox: "a@x", Settings: s}, {Mailbox: "b@x", Settings: s}, {Mailbox: "c@x", Settings: s},
	}})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("batch did not end: %v", env.GetWorkflowError())
	}
	if env.Now().Before(completeAt) {
		t.Fatalf("the batch ended at %s, before the completion time %s", env.Now(), completeAt)
	}
	var st BatchStatus
	env.GetWorkflowResult(&st)
	for _, e := range st.Entries {
		if !e.Closed || e.Error != "" {
			t.Fatalf("entries %+v, want every move completed", st.Entries)
		}
	}
}

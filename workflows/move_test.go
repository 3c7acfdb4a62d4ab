package workflows

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
)

func testInput(s Settings) MailboxMoveInput {
	return MailboxMoveInput{Batch: "b1", Mailbox: "alice@example.com", Settings: s}
}

var twoFolders = activities.ConnectResult{Folders: []engine.FolderPlan{
	{Source: "INBOX", Target: "INBOX", Messages: 10},
	{Source: "Sent", Target: "Sent Items", Messages: 5},
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

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(MailboxMove)
	env.RegisterActivity(&activities.Activities{})
	return env
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

func TestMailboxMoveAutoComplete(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil).Once()
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil).Once()
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{}))

	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow error = %v", env.GetWorkflowError())
	}
	var rep MoveReport
	env.GetWorkflowResult(&rep)
	if rep.Status != StatusCompleted || rep.PercentComplete != 100 || rep.FoldersCopied != 2 || rep.MessagesTotal != 15 {
		t.Fatalf("report = %+v, want Completed, 100%%, 2 folders, 15 messages", rep.MoveStatus)
	}
	// Two passes (initial, final), each one activity per lane.
	env.AssertNumberOfCalls(t, "InitialSync", 2)
	env.AssertNumberOfCalls(t, "IncrementalSync", 2)
}

func TestMailboxMoveManualCompleteRunsIncrementalPasses(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)

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
	if before.Status != StatusSynced || before.IncrementalPasses != 3 {
		t.Fatalf("status before complete = %s with %d passes, want Synced with 3", before.Status, before.IncrementalPasses)
	}
	st := queryStatus(t, env)
	if st.Status != StatusCompleted {
		t.Fatalf("status = %s, want Completed", st.Status)
	}
}

func TestMailboxMoveWrongPasswordFailsAfterLogonAttempts(t *testing.T) {
	env := newEnv(t)
	logonFailed := temporal.NewApplicationErrorWithOptions("source: login alice: imap: NO [AUTHENTICATIONFAILED] Authentication failed.", "LogonFailed",
		temporal.ApplicationErrorOptions{Details: []interface{}{activities.FailureDetails{
			Type: "LogonFailed", Side: "source", Op: "login alice", Server: "Authentication failed.", Hint: "check the user name and password",
		}}})
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(activities.ConnectResult{}, logonFailed)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{LogonAttempts: 3, LogonRetryInterval: time.Minute}))

	err := env.GetWorkflowError()
	if err == nil {
		t.Fatal("workflow succeeded, want it failed")
	}
	env.AssertNumberOfCalls(t, "Connect", 3)
	st := queryStatus(t, env)
	if st.Status != StatusFailed || !strings.Contains(st.Reason, "LogonFailed: source login alice") || !strings.Contains(st.Reason, "Authentication failed.") {
		t.Fatalf("status = %s, reason %q; want Failed naming side, account and the server's words", st.Status, st.Reason)
	}
}

func TestMailboxMoveResumesChunks(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	calls := 0
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		calls++
		if calls == 1 {
			// A chunk: progress, not done.
			return activities.SyncResult{Cursors: in.Cursors, Done: make([]bool, len(in.Cursors)), Copied: 3}, nil
		}
		if calls == 2 {
			return activities.SyncResult{}, temporal.NewApplicationError("connection dropped", "ServerUnavailable")
		}
		return syncAllDone(ctx, in)
	})
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{FolderConcurrency: 1}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	// chunk, transient failure retried, rest of the initial sync.
	if calls != 3 {
		t.Fatalf("InitialSync calls = %d, want 3", calls)
	}
}

func TestMoveWorkflowIDIsStable(t *testing.T) {
	if MoveWorkflowID("b", "Alice@Example.com") != MoveWorkflowID("b", "alice@example.com") {
		t.Fatal("MoveWorkflowID depends on case")
	}
}

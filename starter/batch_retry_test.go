package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/workflows"
)

func TestBatchRetryArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *batchRetryOptions
	cmd := newCmdBatchRetry(f, func(o *batchRetryOptions) error { got = o; return nil })
	if err := execute(cmd, "w1", "--failed", "--csv", "fixed.csv"); err != nil || got.Name != "w1" || !got.Failed || got.CSV != "fixed.csv" {
		t.Fatalf("retry w1 --failed --csv fixed.csv: %v, options %+v", err, got)
	}
	cmd = newCmdBatchRetry(f, func(*batchRetryOptions) error { t.Fatal("ran without --failed"); return nil })
	if err := execute(cmd, "w1"); err == nil || !strings.Contains(err.Error(), "--failed") || exitCode(err) != exitUsage {
		t.Fatalf("retry w1 = %v, want a usage error asking for --failed", err)
	}
}

// failedMove makes bad@x of batch w1 a failed move with progress, started
// with alice's old password; ok@x completed.
func failedMove(c *fakeClient) workflows.MoveState {
	c.addBatch("w1", []workflows.MoveStatus{{Mailbox: "ok@x", Status: workflows.StatusCompleted}, {Mailbox: "bad@x", Status: workflows.StatusFailed}})
	bad := workflows.MoveWorkflowID("w1", "bad@x")
	st := workflows.MoveState{Status: workflows.StatusFailed, StatusDetail: "Failed_LogonFailed", Reason: "LogonFailed: source login",
		FoldersCreated: true, MessagesTotal: 50, Attempts: map[failure.Type]int{failure.TypeLogonFailed: 3}, NextAttemptAt: time.Now()}
	st.Copied = 20
	c.queries[bad+" "+workflows.QueryState] = st
	in := workflows.MailboxMoveInput{Batch: "w1", Mailbox: "bad@x", State: &workflows.MoveState{Status: workflows.StatusInProgress}}
	in.Source.User, in.Source.Password = "bad", "mmsec1:old"
	c.inputs[bad] = in
	return st
}

func TestBatchRetryRestartsOnlyFailedMovesWithTheirState(t *testing.T) {
	c := newFakeClient()
	failedMove(c)
	f, out := testFactory(t, c)
	fixed := writeFile(t, "fixed.csv", "EmailAddress,UserName,Password\nBAD@x,bad2,newpw\n")
	if err := batchRetryRun(context.Background(), &batchRetryOptions{Client: f.Client, Key: f.Key, Out: f.Out, Name: "w1", Failed: true, CSV: fixed}); err != nil {
		t.Fatal(err)
	}
	if len(c.started) != 1 {
		t.Fatalf("started %d moves, want bad@x only", len(c.started))
	}
	o, in := c.started[0].Options, c.started[0].Arg.(workflows.MailboxMoveInput)
	if o.ID != workflows.MoveWorkflowID("w1", "bad@x") || o.WorkflowIDReusePolicy != enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY || o.TaskQueue != workflows.TaskQueue {
		t.Fatalf("ExecuteWorkflow options = %+v", o)
	}
	st := in.State
	if st == nil || st.Copied != 20 || !st.FoldersCreated || st.MessagesTotal != 50 || st.Status != workflows.StatusQueued || st.Reason != "" ||
		st.Attempts != nil || !st.NextAttemptAt.IsZero() || !st.Released {
		t.Fatalf("retried state = %+v, want the progress of the state query and the failure budgets afresh", st)
	}
	if in.Source.User != "bad2" || in.Source.Password == "mmsec1:old" || !strings.HasPrefix(string(in.Source.Password), "mmsec2:") {
		t.Fatalf("retried source = %+v, want the corrected credentials, sealed", in.Source)
	}
	if !strings.Contains(out.String(), "bad@x: started again\n1 failed moves started again") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestBatchRetryWithoutCorrections(t *testing.T) {
	c := newFakeClient()
	failedMove(c)
	f, _ := testFactory(t, c)
	if err := batchRetryRun(context.Background(), &batchRetryOptions{Client: f.Client, Key: f.Key, Out: f.Out, Name: "w1", Failed: true}); err != nil {
		t.Fatal(err)
	}
	if in := c.started[0].Arg.(workflows.MailboxMoveInput); in.Source.User != "bad" || in.Source.Password != "mmsec1:old" {
		t.Fatalf("retried source = %+v, want the one the move started with", in.Source)
	}
}

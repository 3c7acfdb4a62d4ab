package main

import (
	"context"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/mailmove/mailmove/workflows"
)

func withMemo(t *testing.T, e *workflowpb.WorkflowExecutionInfo, key string, v any) *workflowpb.WorkflowExecutionInfo {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	if err != nil {
		t.Fatal(err)
	}
	e.Memo = &commonpb.Memo{Fields: map[string]*commonpb.Payload{key: p}}
	return e
}

// A gated batch's status comes from the visibility store: the batch's
// memo and one paged list of its moves' latest runs with their memos; no
// query reaches the workers.
func TestBatchStatusOfAGatedBatchReadsOnlyTheVisibilityStore(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	running, failed, terminated := enums.WORKFLOW_EXECUTION_STATUS_RUNNING, enums.WORKFLOW_EXECUTION_STATUS_FAILED, enums.WORKFLOW_EXECUTION_STATUS_TERMINATED
	move := func(mailbox string, state enums.WorkflowExecutionStatus, started time.Time, st workflows.MoveStatus) *workflowpb.WorkflowExecutionInfo {
		st.Batch, st.Mailbox = "w'1", mailbox
		e := info(t, workflows.MoveWorkflowID("w'1", mailbox), state, started, map[string]string{"MailmoveBatch": "w'1", "MailmoveMailbox": mailbox})
		return withMemo(t, e, workflows.MemoMove, st)
	}
	noMemo := info(t, workflows.MoveWorkflowID("w'1", "e@x"), running, t0, map[string]string{"MailmoveBatch": "w'1", "MailmoveMailbox": "e@x", "MailmoveStatus": "Queued"})
	c := &listClient{fakeClient: newFakeClient(), lists: map[string][]*workflowpb.WorkflowExecutionInfo{
		`MailmoveBatch = 'w\'1' AND WorkflowType = 'MailboxMove' AND ExecutionStatus != 'ContinuedAsNew'`: {
			move("b@x", failed, t0, workflows.MoveStatus{Status: workflows.StatusFailed, Reason: "wrong password"}),
			move("a@x", running, t0, workflows.MoveStatus{Status: workflows.StatusInProgress, StatusDetail: "CopyingMessages", PercentComplete: 40,
				MessagesTotal: 100, Counters: workflows.Counters{Copied: 40, Bytes: 4096}}),
			move("b@x", running, t0.Add(time.Hour), workflows.MoveStatus{Status: workflows.StatusQueued, StatusDetail: "WaitingForBatchSlot"}), // retried
			move("c@x", terminated, t0, workflows.MoveStatus{Status: workflows.StatusInProgress}),
			move("d@x", running, t0, workflows.MoveStatus{Status: workflows.StatusSynced, PercentComplete: 100}),
			noMemo,
		},
	}}
	batchInfo := withMemo(t, &workflowpb.WorkflowExecutionInfo{Status: running}, workflows.MemoBatch,
		workflows.BatchMemo{Concurrency: 7, Mailboxes: 5, Paused: true})
	c.describe[workflows.BatchWorkflowID("w'1")] = &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: batchInfo}
	var out strings.Builder
	opts := &batchStatusOptions{Client: func() (client.Client, error) { return c, nil }, Out: &out, Name: "w'1", Interval: time.Second}
	if err := batchStatusRun(context.Background(), opts); exitCode(err) != exitStillRunning {
		t.Fatalf("batch status = %v, want exit status %d (moves queued)", err, exitStillRunning)
	}
	for _, want := range []string{
		"a@x InProgress CopyingMessages 40% 40/100 4.0 KiB",
		"b@x Queued WaitingForBatchSlot",
		"c@x Failed", "the move's workflow was terminated",
		"d@x Synced",
		"e@x Queued",
		"Total: 5 mailboxes (2 Queued, 1 InProgress, 1 Synced, 1 Failed)",
		"Paused: no move copies until `mailmove batch resume w'1`",
	} {
		if !strings.Contains(squeeze(out.String()), want) {
			t.Errorf("batch status lacks %q:\n%s", want, out.String())
		}
	}
	if q := c.callsOf("QueryWorkflow"); len(q) != 0 {
		t.Errorf("queries sent: %q", q)
	}
	if c.pages != 3 {
		t.Errorf("%d list pages, want 3 (6 runs, 2 a page)", c.pages)
	}
}

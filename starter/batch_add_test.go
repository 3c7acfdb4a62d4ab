package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

// batch add starts the CSV's moves with the settings of a move the batch
// has, names them to the batch first, and starts none twice.
func TestBatchAddStartsMovesLikeTheBatchsOwn(t *testing.T) {
	c := &listClient{fakeClient: newFakeClient(), lists: map[string][]*workflowpb.WorkflowExecutionInfo{}}
	running := enums.WORKFLOW_EXECUTION_STATUS_RUNNING
	c.lists[`MailmoveBatch = 'w1' AND WorkflowType = 'MailboxMove'`] = []*workflowpb.WorkflowExecutionInfo{
		info(t, workflows.MoveWorkflowID("w1", "a@x"), running, time.Now(), nil)}
	tmpl := workflows.MailboxMoveInput{Batch: "w1", Mailbox: "a@x", Gated: true, Settings: workflows.Settings{ChunkMessages: 77}}
	tmpl.Source.User, tmpl.Source.Password, tmpl.Source.Endpoint.Addr = "a", "sealed-a", "src.example:993"
	tmpl.Target.Admin, tmpl.Target.AdminPassword = "admin", "sealed-admin"
	c.inputs[workflows.MoveWorkflowID("w1", "a@x")] = tmpl
	c.describe[workflows.BatchWorkflowID("w1")] = &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: withMemo(t, &workflowpb.WorkflowExecutionInfo{Status: running}, workflows.MemoBatch, workflows.BatchMemo{Mailboxes: 1})}
	c.errs["ExecuteWorkflow "+workflows.MoveWorkflowID("w1", "c@x")] = serviceerror.NewWorkflowExecutionAlreadyStarted("started", "", "run-0")
	f, out := testFactory(t, c.fakeClient)
	csv := writeFile(t, "add.csv", "EmailAddress,UserName,Password\nb@x,b,pw\nc@x,c,pw\n")
	opts := &batchAddOptions{Client: func() (client.Client, error) { return c, nil }, Key: f.Key, Out: out, ErrOut: io.Discard, Name: "w1", CSV: csv}
	if err := batchAddRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if got := c.callsOf("SignalWorkflow"); len(got) != 1 || got[0] != workflows.BatchWorkflowID("w1")+" "+workflows.SignalAddMoves {
		t.Fatalf("signals %q", got)
	}
	if len(c.started) != 1 {
		t.Fatalf("started %d moves, want b@x only (c@x is there)", len(c.started))
	}
	mv := c.started[0].Arg.(workflows.MailboxMoveInput)
	if mv.Mailbox != "b@x" || mv.Source.User != "b" || mv.Source.Password == "" || mv.Source.Password == "sealed-a" || mv.Source.Endpoint.Addr != "src.example:993" ||
		mv.Target.Admin != "admin" || mv.Target.Password != "" || mv.Settings.ChunkMessages != 77 || !mv.Gated {
		t.Fatalf("added move %+v", mv)
	}
	if !strings.Contains(out.String(), "w1: 1 moves started, 1 already there") {
		t.Fatalf("output %q", out)
	}
	// An ended batch, or one from before gating, takes none.
	c.describe[workflows.BatchWorkflowID("w1")].WorkflowExecutionInfo.Status = enums.WORKFLOW_EXECUTION_STATUS_COMPLETED
	if err := batchAddRun(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "has ended (Completed)") {
		t.Fatalf("add to an ended batch: %v", err)
	}
	c.describe[workflows.BatchWorkflowID("w1")] = &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: running}}
	if err := batchAddRun(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "older mailmove") {
		t.Fatalf("add to an old batch: %v", err)
	}
	_ = fmt.Sprint
}

// batch retry --failed of a gated batch names the failed moves to the
// batch (starting it again if it ended, with its concurrency) before they
// start: they wait for its slots like the others.
func TestBatchRetryOfAGatedBatchRejoinsItFirst(t *testing.T) {
	c := &listClient{fakeClient: newFakeClient(), lists: map[string][]*workflowpb.WorkflowExecutionInfo{}}
	failedState := enums.WORKFLOW_EXECUTION_STATUS_FAILED
	id := workflows.MoveWorkflowID("w1", "b@x")
	c.lists[`MailmoveBatch = 'w1' AND WorkflowType = 'MailboxMove' AND ExecutionStatus != 'ContinuedAsNew'`] = []*workflowpb.WorkflowExecutionInfo{
		withMemo(t, info(t, id, failedState, time.Now(), nil), workflows.MemoMove, workflows.MoveStatus{Batch: "w1", Mailbox: "b@x", Status: workflows.StatusFailed})}
	c.describe[workflows.BatchWorkflowID("w1")] = &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: withMemo(t, &workflowpb.WorkflowExecutionInfo{Status: enums.WORKFLOW_EXECUTION_STATUS_COMPLETED}, workflows.MemoBatch, workflows.BatchMemo{Concurrency: 6})}
	c.inputs[id] = workflows.MailboxMoveInput{Batch: "w1", Mailbox: "b@x", Gated: true}
	c.queries[id+" "+workflows.QueryState] = workflows.MoveState{Status: workflows.StatusFailed, Released: false}
	f, out := testFactory(t, c.fakeClient)
	opts := &batchRetryOptions{Client: func() (client.Client, error) { return c, nil }, Key: f.Key, Out: out, Name: "w1", Failed: true}
	if err := batchRetryRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.started) != 2 {
		t.Fatalf("started %d, want the batch again and the move", len(c.started))
	}
	if in := c.started[0].Arg.(workflows.BatchInput); !in.Gated || in.Concurrency != 6 || c.calls[len(c.calls)-4] != "SignalWithStartWorkflow "+workflows.BatchWorkflowID("w1")+" "+workflows.SignalAddMoves {
		t.Fatalf("batch started again with %+v; calls %q", in, c.calls)
	}
	mv := c.started[1].Arg.(workflows.MailboxMoveInput)
	if !mv.Gated || mv.State == nil || !mv.State.Released || mv.State.Status != workflows.StatusQueued {
		t.Fatalf("move started again with %+v", mv)
	}
}

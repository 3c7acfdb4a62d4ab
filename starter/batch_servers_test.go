package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

// A move that names the batch but not its servers (started by hand by
// someone who may start workflows) gets no password sealed for its
// servers: batch add and batch retry --csv refuse it, naming it.
func TestPasswordsAreSealedOnlyForTheBatchsServers(t *testing.T) {
	real := workflows.Endpoint{Addr: "imap.example.com:993", Security: "tls"}
	planted := workflows.Endpoint{Addr: "evil.example.net:143", Security: "none"}
	running, failed := enums.WORKFLOW_EXECUTION_STATUS_RUNNING, enums.WORKFLOW_EXECUTION_STATUS_FAILED
	setup := func() (*listClient, string) {
		c := &listClient{fakeClient: newFakeClient(), lists: map[string][]*workflowpb.WorkflowExecutionInfo{}}
		id := workflows.MoveWorkflowID("w1", "a@x")
		c.lists[`MailmoveBatch = 'w1' AND WorkflowType = 'MailboxMove'`] = []*workflowpb.WorkflowExecutionInfo{info(t, id, running, time.Now(), nil)}
		c.lists[`MailmoveBatch = 'w1' AND WorkflowType = 'MailboxMove' AND ExecutionStatus != 'ContinuedAsNew'`] = []*workflowpb.WorkflowExecutionInfo{
			withMemo(t, info(t, id, failed, time.Now(), nil), workflows.MemoMove, workflows.MoveStatus{Batch: "w1", Mailbox: "a@x", Status: workflows.StatusFailed})}
		in := workflows.MailboxMoveInput{Batch: "w1", Mailbox: "a@x", Gated: true}
		in.Source.User, in.Source.Endpoint = "a", planted
		in.Target.User, in.Target.Endpoint = "a", real
		c.inputs[id] = in
		c.queries[id+" "+workflows.QueryState] = workflows.MoveState{Status: workflows.StatusFailed}
		c.describe[workflows.BatchWorkflowID("w1")] = &workflowservice.DescribeWorkflowExecutionResponse{
			WorkflowExecutionInfo: withMemo(t, &workflowpb.WorkflowExecutionInfo{Status: running}, workflows.MemoBatch,
				workflows.BatchMemo{Mailboxes: 1, Concurrency: 2, Source: real, Target: real})}
		return c, id
	}

	c, id := setup()
	f, out := testFactory(t, c.fakeClient)
	add := &batchAddOptions{Client: func() (client.Client, error) { return c, nil }, Key: f.Key, Out: out, ErrOut: io.Discard, Name: "w1",
		CSV: writeFile(t, "add.csv", "EmailAddress,UserName,Password\nb@x,b,secret-b\n")}
	err := batchAddRun(context.Background(), add)
	if err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "evil.example.net:143") || !strings.Contains(err.Error(), "no password is sealed") {
		t.Fatalf("batch add from a planted move: %v", err)
	}
	if len(c.started) != 0 {
		t.Fatalf("batch add started %d moves", len(c.started))
	}

	c, id = setup()
	f, out = testFactory(t, c.fakeClient)
	retry := &batchRetryOptions{Client: func() (client.Client, error) { return c, nil }, Key: f.Key, Out: out, Name: "w1", Failed: true,
		CSV: writeFile(t, "fix.csv", "EmailAddress,UserName,Password,TargetUserName,TargetPassword\na@x,a,secret-a,a,secret-t\n")}
	err = batchRetryRun(context.Background(), retry)
	if err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "no password is sealed") {
		t.Fatalf("batch retry --csv of a planted move: %v", err)
	}
	for _, s := range c.started {
		if mv, ok := s.Arg.(workflows.MailboxMoveInput); ok {
			t.Fatalf("batch retry started the planted move again: %+v", mv)
		}
	}
}

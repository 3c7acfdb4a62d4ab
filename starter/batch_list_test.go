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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailmove/mailmove/workflows"
)

// listClient answers ListWorkflow from canned executions by query, in
// pages of two.
// listClient answers list calls from lists, by exact query, or else from
// store, and count calls from store; in pages of two.
type listClient struct {
	*fakeClient
	lists  map[string][]*workflowpb.WorkflowExecutionInfo
	store  visibility
	pages  int
	counts int
}

func (c *listClient) ListWorkflow(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	c.mu.Lock()
	c.pages++
	c.mu.Unlock()
	all, ok := c.lists[req.Query]
	if !ok {
		var err error
		if all, err = c.store.match(req.Query); err != nil {
			return nil, err
		}
	}
	from := 0
	if len(req.NextPageToken) > 0 {
		from = int(req.NextPageToken[0])
	}
	to := min(from+2, len(all))
	resp := &workflowservice.ListWorkflowExecutionsResponse{Executions: all[from:to]}
	if to < len(all) {
		resp.NextPageToken = []byte{byte(to)}
	}
	return resp, nil
}

func info(t *testing.T, id string, status enums.WorkflowExecutionStatus, started time.Time, attrs map[string]string) *workflowpb.WorkflowExecutionInfo {
	fields := map[string]*commonpb.Payload{}
	for k, v := range attrs {
		p, err := converter.GetDefaultDataConverter().ToPayload(v)
		if err != nil {
			t.Fatal(err)
		}
		fields[k] = p
	}
	return &workflowpb.WorkflowExecutionInfo{Execution: &commonpb.WorkflowExecution{WorkflowId: id}, Status: status,
		StartTime: timestamppb.New(started), SearchAttributes: &commonpb.SearchAttributes{IndexedFields: fields}}
}

// Every batch with its moves counted by status, from count calls on the
// visibility store, not a list of the moves: a retried move counts once,
// by its latest run.
func TestBatchListCountsMovesByStatusFromVisibility(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	running, completed, failed := enums.WORKFLOW_EXECUTION_STATUS_RUNNING, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, enums.WORKFLOW_EXECUTION_STATUS_FAILED
	move := func(batch, mailbox string, state enums.WorkflowExecutionStatus, status workflows.Status, started time.Time) *workflowpb.WorkflowExecutionInfo {
		return typed(info(t, workflows.MoveWorkflowID(batch, mailbox), state, started, map[string]string{"MailmoveBatch": batch, "MailmoveStatus": string(status)}), "MailboxMove")
	}
	c := &listClient{fakeClient: newFakeClient(), lists: map[string][]*workflowpb.WorkflowExecutionInfo{
		"WorkflowType = 'Batch'": {
			info(t, workflows.BatchWorkflowID("wave1"), running, t0, map[string]string{"MailmoveBatch": "wave1"}),
			info(t, workflows.BatchWorkflowID("wave0"), completed, t0.Add(-24*time.Hour), map[string]string{"MailmoveBatch": "wave0"}),
		},
	}, store: visibility{
		move("wave1", "a@x", running, workflows.StatusSynced, t0),
		move("wave1", "b@x", failed, workflows.StatusFailed, t0),
		move("wave1", "b@x", running, workflows.StatusInProgress, t0.Add(time.Hour)), // retried
		move("wave1", "c@x", running, workflows.StatusSynced, t0),
		move("wave1", "e@x", failed, workflows.StatusFailed, t0),
		move("wave0", "d@x", completed, workflows.StatusCompleted, t0.Add(-24*time.Hour)),
	}}
	var out strings.Builder
	opts := &batchListOptions{Client: func() (client.Client, error) { return c, nil }, Out: &out}
	if err := batchListRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	got := squeeze(out.String())
	for _, want := range []string{"wave1 Running", "4 1 InProgress, 2 Synced, 1 Failed", "wave0 Completed", "1 1 Completed"} {
		if !strings.Contains(got, want) {
			t.Errorf("batch list lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "wave1") > strings.Index(got, "wave0") {
		t.Errorf("batches not newest first:\n%s", got)
	}
	if c.counts == 0 {
		t.Error("no count calls")
	}
}

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/mailmove/mailmove/workflows"
)

func TestBatchStatusArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *batchStatusOptions
	cmd := newCmdBatchStatus(f, func(o *batchStatusOptions) error { got = o; return nil })
	if err := execute(cmd, "w1", "--json", "--watch", "--interval", "5s"); err != nil {
		t.Fatal(err)
	}
	if got.Name != "w1" || !got.JSON || !got.Watch || got.Interval != 5*time.Second {
		t.Fatalf("options = %+v", got)
	}
	cmd = newCmdBatchStatus(f, func(*batchStatusOptions) error { t.Fatal("ran with --interval 0"); return nil })
	if err := execute(cmd, "w1", "--watch", "--interval", "0s"); err == nil || !strings.Contains(err.Error(), "--interval 0s") || exitCode(err) != exitUsage {
		t.Fatalf("status --interval 0s = %v, want a usage error naming --interval", err)
	}
}

// threeMoves is a batch of a completed move, one copying and one the batch
// has not started.
func threeMoves(c *fakeClient) {
	var copying workflows.MoveStatus
	copying.Mailbox, copying.Status, copying.StatusDetail = "b@x", workflows.StatusInProgress, workflows.DetailCopyingMessages
	copying.PercentComplete, copying.MessagesTotal, copying.Copied, copying.Bytes = 40, 100, 40, 4096
	var done workflows.MoveStatus
	done.Mailbox, done.Status, done.StatusDetail, done.MessagesTotal, done.Copied, done.Bytes = "a@x", workflows.StatusCompleted, workflows.DetailCompleted, 110, 110, 1<<20
	c.addBatch("w1", []workflows.MoveStatus{done, copying}, "c@x")
}

func TestBatchStatusPrintsMovesAndTotalsFromTheStatusQuery(t *testing.T) {
	c := newFakeClient()
	threeMoves(c)
	f, out := testFactory(t, c)
	if err := batchStatusRun(context.Background(), &batchStatusOptions{Client: f.Client, Out: f.Out, Name: "w1", Interval: time.Second}); exitCode(err) != exitStillRunning {
		t.Fatalf("batch status of a batch with moves running = %v, want exit status %d", err, exitStillRunning)
	}
	for _, want := range []string{
		"a@x Completed Completed 0% 110/110 1.0 MiB", "b@x InProgress CopyingMessages 40% 40/100 4.0 KiB", "c@x Queued Queued 0% 0/0 0 B",
		"Total: 3 mailboxes (1 Queued, 1 InProgress, 1 Completed), 150 messages, 1.0 MiB copied",
	} {
		if !strings.Contains(squeeze(out.String()), want) {
			t.Errorf("batch status lacks %q:\n%s", want, out)
		}
	}
	// A batch started before gating (no memo): live progress is the
	// status query's; nothing else is asked.
	if got := len(c.calls); got != 4 || len(c.callsOf("QueryWorkflow")) != 3 || len(c.callsOf("DescribeWorkflowExecution")) != 1 {
		t.Errorf("calls = %q, want the batch described, then the three status queries only", c.calls)
	}
}

func TestBatchStatusJSONAndMovesNotStartedYet(t *testing.T) {
	c := newFakeClient()
	threeMoves(c)
	// The batch started b@x, but the server does not know it yet.
	c.queries[workflows.MoveWorkflowID("w1", "b@x")+" "+workflows.QueryStatus] = serviceerror.NewNotFound("not found")
	f, out := testFactory(t, c)
	if err := batchStatusRun(context.Background(), &batchStatusOptions{Client: f.Client, Out: f.Out, Name: "w1", JSON: true, Interval: time.Second}); exitCode(err) != exitStillRunning {
		t.Fatalf("batch status of a batch with moves running = %v, want exit status %d", err, exitStillRunning)
	}
	var rep batchReport
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Mailboxes != 3 || rep.Totals.ByStatus[workflows.StatusQueued] != 2 || rep.Moves[1].Mailbox != "b@x" || rep.Moves[1].Reason != "" {
		t.Fatalf("batch status --json = %+v", rep)
	}
}

func TestBatchStatusOfAnUnknownBatch(t *testing.T) {
	f, _ := testFactory(t, newFakeClient())
	err := batchStatusRun(context.Background(), &batchStatusOptions{Client: f.Client, Out: f.Out, Name: "nope", Interval: time.Second})
	if err == nil || !strings.Contains(err.Error(), `batch "nope"`) {
		t.Fatalf("batchStatusRun(nope) = %v", err)
	}
}

// A paused batch says so, with the command that resumes it.
func TestBatchStatusShowsAPausedBatch(t *testing.T) {
	c := newFakeClient()
	threeMoves(c)
	id := workflows.BatchWorkflowID("w1") + " " + workflows.QueryStatus
	bs := c.queries[id].(workflows.BatchStatus)
	bs.Paused, bs.Concurrency = true, 5
	c.queries[id] = bs
	f, out := testFactory(t, c)
	if err := batchStatusRun(context.Background(), &batchStatusOptions{Client: f.Client, Out: f.Out, Name: "w1", Interval: time.Second}); exitCode(err) != exitStillRunning {
		t.Fatalf("batch status of a batch with moves running = %v, want exit status %d", err, exitStillRunning)
	}
	if !strings.Contains(out.String(), "Paused: no move copies until `mailmove batch resume w1`") {
		t.Errorf("batch status of a paused batch:\n%s", out)
	}
}

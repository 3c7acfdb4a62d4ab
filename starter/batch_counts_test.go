package main

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
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

// randomBatch is a batch of n moves with random histories as the server
// keeps them: runs continued as new, runs that failed, were terminated,
// cancelled or timed out and then retried, moves that ended well, and
// running moves in every status, also the moment between a move saying
// it ended and its run closing.
func randomBatch(t *testing.T, r *rand.Rand, batch string, n int) visibility {
	t.Helper()
	t0 := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	badly := []enums.WorkflowExecutionStatus{enums.WORKFLOW_EXECUTION_STATUS_FAILED, enums.WORKFLOW_EXECUTION_STATUS_TERMINATED,
		enums.WORKFLOW_EXECUTION_STATUS_CANCELED, enums.WORKFLOW_EXECUTION_STATUS_TIMED_OUT}
	var runs visibility
	run := func(mailbox string, at time.Time, state enums.WorkflowExecutionStatus, st workflows.Status) {
		e := info(t, workflows.MoveWorkflowID(batch, mailbox), state, at,
			map[string]string{"MailmoveBatch": batch, "MailmoveMailbox": mailbox, "MailmoveStatus": string(st)})
		runs = append(runs, withMemo(t, typed(e, "MailboxMove"), workflows.MemoMove,
			workflows.MoveStatus{Batch: batch, Mailbox: mailbox, Status: st, Counters: workflows.Counters{Copied: 1}}))
	}
	for i := range n {
		mb := fmt.Sprintf("u%04d@x", i)
		at := t0.Add(time.Duration(r.IntN(1000)) * time.Second)
		for range r.IntN(3) { // runs that ended badly, each retried
			for range r.IntN(2) {
				run(mb, at, enums.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW, workflows.StatusInProgress)
				at = at.Add(time.Minute)
			}
			st := workflows.StatusFailed
			if r.IntN(2) == 0 {
				st = statusOrder[r.IntN(5)] // ended from outside
			}
			run(mb, at, badly[r.IntN(len(badly))], st)
			at = at.Add(time.Hour)
		}
		switch k := r.IntN(10); {
		case k < 5:
			run(mb, at, enums.WORKFLOW_EXECUTION_STATUS_RUNNING, statusOrder[r.IntN(len(statusOrder))])
		case k < 8:
			st := []workflows.Status{workflows.StatusCompleted, workflows.StatusCompletedWithWarnings, workflows.StatusFailed}[r.IntN(3)]
			run(mb, at, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, st)
		default:
			run(mb, at, badly[r.IntN(len(badly))], workflows.StatusFailed)
		}
	}
	r.Shuffle(len(runs), func(i, j int) { runs[i], runs[j] = runs[j], runs[i] })
	return runs
}

// The counts that `batch status` shows for a large batch, from count
// calls and the list of failed runs, are the counts of every move's
// latest run, which the full listing gives: for random histories.
func TestCountedStatusEqualsListedStatus(t *testing.T) {
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 14))
		c := &listClient{fakeClient: newFakeClient(), store: randomBatch(t, r, "w'1", 1+r.IntN(40))}
		ctx := context.Background()
		memo := workflows.BatchMemo{Mailboxes: 10000}
		all, err := visibleBatchReport(ctx, c, "w'1", memo, "Running", listAll)
		if err != nil {
			t.Fatal(err)
		}
		for _, what := range []listing{listActive, listProblems} {
			got, err := visibleBatchReport(ctx, c, "w'1", memo, "Running", what)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got.Totals.ByStatus, all.Totals.ByStatus) || got.Totals.Mailboxes != all.Totals.Mailboxes {
				t.Fatalf("seed %d, %s: counted %d %v, listed %d %v", seed, what, got.Totals.Mailboxes, got.Totals.ByStatus, all.Totals.Mailboxes, all.Totals.ByStatus)
			}
			// Listed: exactly the moves the admin must see, each as its
			// latest run says.
			want := map[string]workflows.Status{}
			for _, m := range all.Moves {
				show := m.Status == workflows.StatusFailed
				if what == listActive {
					show = show || m.Status == workflows.StatusInProgress || m.Status == workflows.StatusSuspended || m.Status == workflows.StatusCompleting
				} else {
					show = show || m.Status == workflows.StatusCompletedWithWarnings
				}
				if show {
					want[m.Mailbox] = m.Status
				}
			}
			gotMoves := map[string]workflows.Status{}
			for _, m := range got.Moves {
				gotMoves[m.Mailbox] = m.Status
			}
			if !maps.Equal(gotMoves, want) {
				t.Fatalf("seed %d, %s: listed %v, want %v", seed, what, gotMoves, want)
			}
		}
	}
}

// A large batch's status lists only the moves copying, waiting or
// failed: the calls do not grow with the moves queued or done.
func TestBatchStatusOfALargeBatchCountsInsteadOfListing(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	var store visibility
	for i := range 3000 {
		st, state := workflows.StatusQueued, enums.WORKFLOW_EXECUTION_STATUS_RUNNING
		switch {
		case i < 3:
			st = workflows.StatusInProgress
		case i < 1000:
			st, state = workflows.StatusCompleted, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED
		case i == 1000:
			st, state = workflows.StatusFailed, enums.WORKFLOW_EXECUTION_STATUS_FAILED
		}
		mb := fmt.Sprintf("u%04d@x", i)
		e := info(t, workflows.MoveWorkflowID("big", mb), state, t0, map[string]string{"MailmoveBatch": "big", "MailmoveStatus": string(st)})
		store = append(store, withMemo(t, typed(e, "MailboxMove"), workflows.MemoMove, workflows.MoveStatus{Batch: "big", Mailbox: mb, Status: st, Reason: "r"}))
	}
	c := &listClient{fakeClient: newFakeClient(), store: store}
	c.describe[workflows.BatchWorkflowID("big")] = &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: withMemo(t, &workflowpb.WorkflowExecutionInfo{Status: enums.WORKFLOW_EXECUTION_STATUS_RUNNING}, workflows.MemoBatch, workflows.BatchMemo{Mailboxes: 3000, Concurrency: 3})}
	var out strings.Builder
	opts := &batchStatusOptions{Client: func() (client.Client, error) { return c, nil }, Out: &out, Name: "big", Interval: time.Second, List: listAuto}
	if err := batchStatusRun(context.Background(), opts); exitCode(err) != exitStillRunning {
		t.Fatalf("batch status = %v, want exit status %d", err, exitStillRunning)
	}
	got := squeeze(out.String())
	for _, want := range []string{"u0000@x InProgress", "u1000@x Failed", "Total: 3000 mailboxes (1999 Queued, 3 InProgress, 997 Completed, 1 Failed); listed: the 4 copying, waiting or failed"} {
		if !strings.Contains(got, want) {
			t.Errorf("batch status lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "u0004@x") {
		t.Errorf("batch status lists a completed move:\n%s", got)
	}
	// Pages of two: 2 for the copying moves, 1 each for the failed runs,
	// the completed runs that say failed, and the newer runs of the failed.
	if c.pages > 6 {
		t.Errorf("%d list pages for 4 moves listed", c.pages)
	}
}

// slowClient times out list calls of more than max executions, as a busy
// server does.
type slowClient struct {
	*listClient
	max   int32
	sizes []int32
}

func (c *slowClient) ListWorkflow(ctx context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	c.sizes = append(c.sizes, req.PageSize)
	if req.PageSize > c.max {
		return nil, serviceerror.NewDeadlineExceeded("context deadline exceeded")
	}
	return c.listClient.ListWorkflow(ctx, req)
}

// A page the server cannot serve in time is asked again smaller, and
// every execution is read once.
func TestListingShrinksPagesTheServerServesTooSlowly(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := &slowClient{listClient: &listClient{fakeClient: newFakeClient(), store: randomBatch(t, r, "b", 30)}, max: 100}
	n := 0
	err := eachExecution(context.Background(), c, moveQuery("b"), func(execution) { n++ })
	if err != nil {
		t.Fatal(err)
	}
	if want := len(c.store); n != want {
		t.Fatalf("read %d executions, want %d", n, want)
	}
	if !slices.Equal(c.sizes[:3], []int32{1000, 250, 62}) {
		t.Fatalf("page sizes %v, want 1000, 250, then 62", c.sizes)
	}
}

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

// listing is how much of a gated batch a command reads from the
// visibility store. Listing every move costs a page per 1,000 moves, and
// a busy dev server's SQLite serves a page in seconds; counting costs one
// call per status at any size. So the commands that only look (status,
// --watch, list, report) count, and list only the moves an admin must
// see; the commands that act on every move list them all.
type listing string

const (
	// listAll: every move's latest run.
	listAll listing = "all"
	// listActive: counts by status, and the moves copying, waiting or
	// failed.
	listActive listing = "active"
	// listProblems: counts by status, and the moves failed or completed
	// with warnings.
	listProblems listing = "problems"
	// listAuto: listAll up to listAllUpTo mailboxes, listActive above.
	listAuto listing = "auto"
)

// listAllUpTo is the largest batch `batch status` lists in full by
// default: one page of the visibility store.
const listAllUpTo = 500

// failedBatchSize is how many workflow IDs one visibility query names.
const failedBatchSize = 200

// moveQuery is the visibility query of a batch's moves with extra
// conditions.
func moveQuery(batch string, conds ...string) string {
	return strings.Join(append([]string{workflows.SearchAttrBatch.GetName() + " = " + quoteQuery(batch), "WorkflowType = 'MailboxMove'"}, conds...), " AND ")
}

// statusIn is a condition on MailmoveStatus.
func statusIn(ss ...workflows.Status) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quoteQuery(string(s))
	}
	if len(q) == 1 {
		return workflows.SearchAttrStatus.GetName() + " = " + q[0]
	}
	return workflows.SearchAttrStatus.GetName() + " IN (" + strings.Join(q, ", ") + ")"
}

// endedBadly: a run that ended so that `batch retry` may start the move
// again, which gives its ID a newer run.
const endedBadly = "ExecutionStatus IN ('Failed', 'Terminated', 'Canceled', 'TimedOut')"

// countMoves counts a batch's moves by status, each move by its latest
// run, without listing them: a count call per status, and a list of the
// moves that ended badly (few, in a batch that goes well). The counts are
// exact: one run of a move ID runs at a time, a completed move is never
// started again (its ID allows a new run only after a failure), and the
// runs that ended badly are read one by one to keep only the latest.
// failed gets those latest failed runs.
func countMoves(ctx context.Context, c client.Client, batch string) (by map[workflows.Status]int, failed []workflows.MoveStatus, err error) {
	by = map[workflows.Status]int{}
	type count struct {
		status  workflows.Status
		running bool
		query   string
		n       int
	}
	var counts []*count
	// A running move is counted by its status (one that says it ended is
	// about to close); one whose status is not set yet is Queued.
	for _, s := range statusOrder {
		counts = append(counts, &count{status: s, running: true, query: moveQuery(batch, "ExecutionStatus = 'Running'", statusIn(s))})
	}
	all := &count{query: moveQuery(batch, "ExecutionStatus = 'Running'")}
	counts = append(counts, all)
	// A move that ended well.
	for _, s := range []workflows.Status{workflows.StatusCompleted, workflows.StatusCompletedWithWarnings} {
		counts = append(counts, &count{status: s, query: moveQuery(batch, "ExecutionStatus = 'Completed'", statusIn(s))})
	}
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(counts)+1)
	)
	for i, q := range counts {
		wg.Go(func() {
			resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q.query})
			// A busy server may not count within the SDK's 10 s a call:
			// asked twice more.
			var slow *serviceerror.DeadlineExceeded
			for try := 0; errors.As(err, &slow) && try < 2 && ctx.Err() == nil; try++ {
				resp, err = c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q.query})
			}
			if err != nil {
				errs[i] = fmt.Errorf("count workflows (%s): %w", q.query, err)
				return
			}
			q.n = int(resp.GetCount())
		})
	}
	wg.Go(func() {
		failed, errs[len(counts)] = latestFailed(ctx, c, batch)
	})
	wg.Wait()
	if err := joinErrs(errs); err != nil {
		return nil, nil, err
	}
	unset := all.n
	for _, q := range counts {
		if q == all {
			continue
		}
		by[q.status] += q.n
		if q.running {
			unset -= q.n
		}
	}
	by[workflows.StatusQueued] += max(unset, 0)
	by[workflows.StatusFailed] += len(failed)
	for s, n := range by {
		if n == 0 {
			delete(by, s)
		}
	}
	return by, failed, nil
}

// latestFailed lists a batch's moves whose latest run failed: the runs
// that ended badly, less those of a move that has a newer run (retried),
// and the runs that completed with status Failed.
func latestFailed(ctx context.Context, c client.Client, batch string) ([]workflows.MoveStatus, error) {
	latest := map[string]execution{}
	keep := func(e execution) {
		if l, ok := latest[e.id]; !ok || e.started.After(l.started) {
			latest[e.id] = e
		}
	}
	if err := eachExecution(ctx, c, moveQuery(batch, endedBadly), keep); err != nil {
		return nil, err
	}
	if err := eachExecution(ctx, c, moveQuery(batch, "ExecutionStatus = 'Completed'", statusIn(workflows.StatusFailed)), keep); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(latest))
	for id := range latest {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// A newer run of the same move, running or ended, replaces it.
	for chunk := range slices.Chunk(ids, failedBatchSize) {
		quoted := make([]string, len(chunk))
		for i, id := range chunk {
			quoted[i] = quoteQuery(id)
		}
		q := moveQuery(batch, "WorkflowId IN ("+strings.Join(quoted, ", ")+")", "ExecutionStatus != 'ContinuedAsNew'")
		err := eachExecution(ctx, c, q, func(e execution) {
			if l, ok := latest[e.id]; ok && e.started.After(l.started) {
				delete(latest, e.id)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]workflows.MoveStatus, 0, len(latest))
	for _, e := range latest {
		out = append(out, moveOf(batch, e))
	}
	sortMoves(out)
	return out, nil
}

// listMoves lists the latest runs of a batch's moves that match conds,
// each with its status from its memo.
func listMoves(ctx context.Context, c client.Client, batch string, conds ...string) ([]workflows.MoveStatus, error) {
	latest := map[string]execution{}
	err := eachExecution(ctx, c, moveQuery(batch, conds...), func(e execution) {
		if l, ok := latest[e.id]; !ok || e.started.After(l.started) {
			latest[e.id] = e
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]workflows.MoveStatus, 0, len(latest))
	for _, e := range latest {
		out = append(out, moveOf(batch, e))
	}
	sortMoves(out)
	return out, nil
}

// moveOf is a move's status as its run shows it: from its memo, else
// from its search attributes; a run ended from outside is Failed.
func moveOf(batch string, e execution) workflows.MoveStatus {
	var m workflows.MoveStatus
	if !e.memoOf(workflows.MemoMove, &m) {
		m = workflows.MoveStatus{Batch: batch, Mailbox: e.attr(workflows.SearchAttrMailbox.GetName()),
			Status:       workflows.Status(cmp.Or(e.attr(workflows.SearchAttrStatus.GetName()), string(workflows.StatusQueued))),
			StatusDetail: e.attr(workflows.SearchAttrStatusDetail.GetName())}
	}
	switch e.state {
	case "Terminated", "Canceled", "Timed_out":
		// Ended from outside: its memo still shows where it was.
		if !m.Status.Terminal() {
			m.Status, m.Reason = workflows.StatusFailed, "the move's workflow was "+strings.ToLower(e.state)+" ("+string(m.Status)+" then)"
		}
	}
	return m
}

func sortMoves(ms []workflows.MoveStatus) {
	slices.SortFunc(ms, func(a, b workflows.MoveStatus) int { return cmp.Compare(a.Mailbox, b.Mailbox) })
}

// joinErrs is the first error of errs, if any: the others are most often
// the same cause.
func joinErrs(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

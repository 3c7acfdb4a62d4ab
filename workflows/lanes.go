package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"go.temporal.io/sdk/workflow"
)

// syncActivity is InitialSync or IncrementalSync.
type syncActivity func(context.Context, activities.SyncInput) (activities.SyncResult, error)

// A pass is what syncPass runs.
type pass struct {
	// initial: the initial copy. A run that continued as new in its middle
	// leaves out the folders it finished (Copied).
	initial bool
	// cut: the pass may stop for continue-as-new when the run's history
	// grows long (cutDue); it then returns errCut. Only the initial copy
	// keeps a pass's progress across the cut; the next run takes any
	// other pass up from its start, so such a pass is cut only in a run
	// that made sync calls before it: the run that takes it up again
	// runs it to its end, and the move cannot go round in cuts.
	cut bool
}

// errCut is what a pass returns when its lanes stopped for continue-as-new:
// every call the pass started has finished and its result is in the state.
var errCut = errors.New("the run's history is long: continue as new")

// Where a run's history is long enough to continue as new in the middle of
// a pass: below Temporal's warning (10,240 events, 10 MB), with room for the
// results of the calls still under way when the cut becomes due, each of
// which carries its folders' cursors.
const (
	cutEvents = 10_000
	cutBytes  = 8 << 20
)

// historyLong says that the run should continue as new at its next safe
// point: Temporal suggests it, or the history passed cutEvents or
// cutBytes. During a replay it reads what the recorded workflow tasks
// said, so it is deterministic. A variable so that tests can force it:
// the test environment records no history.
var historyLong = func(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > cutEvents || info.GetCurrentHistorySize() > cutBytes
}

// syncAll runs a pass over every folder that is never cut: verify's
// repair pass (a cut would take the move back to its final pass, and to a
// second repair).
func (m *move) syncAll(ctx workflow.Context, act syncActivity) error {
	return m.syncPass(ctx, act, pass{})
}

// syncPass runs one pass over the folders: ConnectionsPerMove lanes, each
// running one sync activity at a time over its own connections, folders
// balanced across lanes by message count.
//
// A pass that may be cut stops once the history is long (cutDue): each
// lane stops before its next call; a call under way finishes and its
// result is applied; a failure's wait under way runs its course (its delay
// is the policy's, the next run does not repeat it) and the lane stops
// before the attempt that follows. The pass then returns errCut, and
// everything the next run needs is in MoveState: cursors, Copied flags,
// counters, failure budgets, the quota ledger, Released. A lane's failure
// outranks the cut: the move fails as it would have.
func (m *move) syncPass(ctx workflow.Context, act syncActivity, p pass) error {
	m.cuttable, m.cutting = p.cut && (p.initial || m.calls > 0), false
	defer func() { m.cuttable = false }()
	var firstErr error
	wg := workflow.NewWaitGroup(ctx)
	lanes := m.lanes(ctx, p.initial)
	pool := &connPool{spare: m.connections() - len(lanes), running: len(lanes)}
	for _, lane := range lanes {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			defer pool.release()
			if err := m.syncLane(ctx, act, lane, pool); err != nil && (firstErr == nil || errors.Is(firstErr, errCut)) {
				firstErr = err
			}
			// The last lane copying is done while others wait: their
			// waits kept the slot for it.
			if m.busy == 0 && len(m.waits) > 0 && !m.state.Released &&
				workflow.GetVersion(ctx, "batch-slots", workflow.DefaultVersion, 1) == 1 {
				m.release(ctx)
			}
		})
	}
	wg.Wait(ctx)
	return firstErr
}

// cutDue is a cut pass's safe point, before a lane's next call: it says
// that the lane stops there. Once due, it stays due until the pass ends,
// so that every lane stops. A run cuts only once it has made a sync call
// of its own: one whose history starts long (a large state carried in its
// input) still copies before it continues as new, rather than never.
// Moves whose history was recorded before the cut (replayed with the
// marker missing) never cut (docs/evolving-workflows.md).
func (m *move) cutDue(ctx workflow.Context) bool {
	if m.cuttable && !m.cutting && m.calls > 0 && historyLong(ctx) &&
		workflow.GetVersion(ctx, "initial-sync-cut", workflow.DefaultVersion, 1) == 1 {
		m.cutting = true
	}
	return m.cutting
}

// lanes splits the pass's folders among the lanes. An initial copy leaves
// out the folders already copied (its run continued as new in its middle,
// or `batch retry` started it again): their new mail waits for the next
// pass. Moves recorded before the cut took them again.
func (m *move) lanes(ctx workflow.Context, initial bool) [][]int {
	n := min(m.connections(), len(m.state.Folders))
	if n == 0 {
		return nil
	}
	resumed := initial && slices.ContainsFunc(m.state.Folders, func(f FolderState) bool { return f.Copied && !f.Gone }) &&
		workflow.GetVersion(ctx, "initial-sync-cut", workflow.DefaultVersion, 1) == 1
	var idx []int
	for i, f := range m.state.Folders {
		if !f.Gone && !(resumed && f.Copied) {
			idx = append(idx, i)
		}
	}
	n = min(n, len(idx))
	// Largest folders first, each to the least loaded lane.
	sort.SliceStable(idx, func(x, y int) bool {
		return m.state.Folders[idx[x]].Plan.Messages > m.state.Folders[idx[y]].Plan.Messages
	})
	lanes := make([][]int, n)
	load := make([]int, n)
	for _, i := range idx {
		l := 0
		for j := range load {
			if load[j] < load[l] {
				l = j
			}
		}
		lanes[l] = append(lanes[l], i)
		load[l] += int(m.state.Folders[i].Plan.Messages) + 1
	}
	return lanes
}

// connPool shares a move's ConnectionsPerMove connections (per side) among
// its lanes: a lane that finished gives its connection to the others, whose
// next sync call copies chunks of a large folder over several pairs.
type connPool struct {
	spare, running int
}

func (p *connPool) release() { p.running--; p.spare++ }

// share is how many connection pairs a running lane's next call may use.
func (p *connPool) share() int { return 1 + p.spare/max(p.running, 1) }

func (m *move) syncLane(ctx workflow.Context, act syncActivity, lane []int, pool *connPool) error {
	pending := lane
	call := 0 // the sync call under way, whose live progress the status shows
	defer func() { m.endCall(call) }()
	// The daily transfer budget's grant of the attempt under way, and what
	// the lane needs free before it calls again.
	var granted, need int64
	var whole bool
	defer func() { m.granted -= granted }()
	apply := func(res activities.SyncResult) {
		m.settle(granted, max(res.Bytes, res.Downloaded))
		need = 0
		if res.BudgetReached {
			need = granted
		}
		granted = 0
		m.endCall(call)
		var next []int
		for k, i := range pending {
			if k >= len(res.Cursors) {
				next = append(next, i)
				continue
			}
			m.state.Folders[i].Cursor = res.Cursors[k]
			if res.Done[k] {
				m.state.Folders[i].Copied = true
			} else {
				next = append(next, i)
			}
		}
		m.state.Add(res.Counters)
		m.updateDetails(ctx)
		pending = next
	}
	in := func() interface{} {
		in := activities.SyncInput{Mailbox: m.in.Mailbox, Source: m.in.Source, Target: m.in.Target, MaxMessages: m.settings.ChunkMessages,
			LatencyThreshold: time.Duration(m.settings.Policy.LatencyThreshold), PropagateDeletes: m.settings.PropagateDeletes, Rules: m.settings.Rules,
			Connections: pool.share(), Reconcile: m.final}
		// An attempt that reported nothing keeps its grant spent.
		m.granted -= granted
		granted, whole = m.grant(ctx, pool.running, need > 0)
		in.MaxBytes, in.WholeBudget, in.MaxMessageBytes = granted, whole, m.maxMessageBytes()
		m.endCall(call)
		call = m.startCall()
		in.Call = call
		for _, i := range pending {
			in.Cursors = append(in.Cursors, m.state.Folders[i].Cursor)
		}
		in.Gmail = m.gmailRanking()
		return in
	}
	actx := syncOptions(ctx, m.settings)
	for len(pending) > 0 {
		// A cut stops the lane before a budget wait: the next run's lane
		// finds the budget spent at its first call and waits then.
		if m.cutDue(ctx) {
			return errCut
		}
		// Only a lane stopped by the budget waits: a pass with nothing to
		// copy (flags, deletions) runs on an exhausted budget.
		if need > 0 {
			if err := m.awaitBudget(ctx, need); err != nil {
				return err
			}
		}
		var res activities.SyncResult
		if err := m.call(ctx, actx, act, in, &res, apply); err != nil {
			return err
		}
		apply(res)
		if limit := m.settings.Policy.BadItemLimit; len(m.state.BadItems) > limit {
			return &moveError{typ: failure.TypeBadItemLimitExceeded,
				reason: fmt.Sprintf("%s: the target refused %d messages, more than the bad-item limit of %d (see `mailmove batch report`)", failure.TypeBadItemLimitExceeded, len(m.state.BadItems), limit)}
		}
	}
	return nil
}

// liveCall is what a running sync call reported so far (SignalSyncProgress):
// a chunk holds thousands of messages, and an admin watching a large
// mailbox wants to see them move before the call returns.
type liveCall struct {
	call int
	engine.Counters
}

// startCall numbers a new sync call and starts its live progress.
func (m *move) startCall() int {
	m.calls++
	m.live = append(m.live, liveCall{call: m.calls})
	return m.calls
}

// endCall drops a call's live progress: its result, or the progress its
// failure carried, now counts instead.
func (m *move) endCall(call int) {
	m.live = slices.DeleteFunc(m.live, func(l liveCall) bool { return l.call == call })
}

// receiveProgress keeps the live progress of running sync calls; reports
// of calls that have ended are late and dropped.
func (m *move) receiveProgress(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, activities.SignalSyncProgress)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var p activities.SyncProgressSignal
			ch.Receive(ctx, &p)
			if i := slices.IndexFunc(m.live, func(l liveCall) bool { return l.call == p.Call }); i >= 0 {
				m.live[i].Counters = p.Counters
				m.updateMemo(ctx, m.status())
			}
		}
	})
}

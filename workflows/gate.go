package workflows

import (
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"
)

// batchEventsPerRun is the history length at which a gated batch continues
// as new: each move adds a few events per slot it takes (ask, grant,
// release), and a batch of 10,000 moves synced every half hour would
// otherwise reach Temporal's limits within a day. Half of Temporal's
// 10,000 signals per run leaves room for a burst that comes while the
// batch waits for its own signals to be delivered before the cut.
const batchEventsPerRun = 5000

// maxInFlight bounds the signals and cancel requests a gated batch has
// under way: Temporal refuses more than 2,000 of each by default, and
// `batch complete --after` or a cancel reaches every move of the batch.
const maxInFlight = 500

// batchRunFull says when a gated batch continues as new (a variable for
// tests: the test environment counts no history).
var batchRunFull = func(info *workflow.Info) bool {
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > batchEventsPerRun
}

// gate is what only a gated batch does: its moves, started by the CLI,
// join it by name (SignalAddMoves, or their first SignalMoveAcquire), tell
// it when they end (SignalMoveClosed), and its state goes on across
// continue-as-new as lists of names (BatchCarry). It holds no move's
// input: no payload of the batch grows with its moves' settings.
type gate struct {
	in        *BatchInput
	st        *BatchStatus
	byMailbox map[string]int
	closed    int // entries ended
	sending   int // signals to moves under way
	sel       workflow.Selector
	// memo is the memo last written, at memoAt; flushing: a timer will
	// write the counts that changed since.
	memo     BatchMemo
	memoAt   time.Time
	flushing bool
}

// key is how a batch finds a mailbox's entry: gated moves are found by
// address whatever its case, as MoveWorkflowID does.
func (g *gate) key(mailbox string) string {
	if g.in.Gated {
		return strings.ToLower(mailbox)
	}
	return mailbox
}

func (g *gate) workflowID(e *BatchEntry) string {
	if e.WorkflowID != "" {
		return e.WorkflowID
	}
	return MoveWorkflowID(g.in.Name, e.Mailbox)
}

// add has mailboxes join the batch, named by the CLI before their moves
// start (SignalAddMoves), or asking for a slot (running: a move the batch
// does not know, or knows as ended, was started since: `batch add` cut
// off and run again, `batch retry`). A name opens an ended entry again
// only if its move failed or was cancelled (a completed move is never
// started again: the batch would wait for it forever); only a running
// move joins beyond MaxBatchMailboxes (the CLI refuses more first; a move
// that runs is served).
func (g *gate) add(mailboxes []string, running bool) {
	for _, mb := range mailboxes {
		k := g.key(mb)
		if i, ok := g.byMailbox[k]; ok {
			// A move that failed or was cancelled is named again by
			// `batch retry` before it starts again; one that completed
			// never runs again.
			if e := &g.st.Entries[i]; e.Closed && (running || e.Error != "") {
				e.Closed, e.Error, e.Released = false, "", true
				g.closed--
			}
			continue
		}
		if len(g.st.Entries) >= MaxBatchMailboxes && !running {
			continue
		}
		g.byMailbox[k] = len(g.st.Entries)
		g.st.Entries = append(g.st.Entries, BatchEntry{Mailbox: mb, Started: true, Released: true})
	}
}

// restore takes up the state a previous run carried.
func (g *gate) restore() {
	c := g.in.Carry
	if c == nil {
		return
	}
	g.in.Concurrency = c.Concurrency
	g.st.Concurrency, g.st.Paused, g.st.CompleteRequested = c.Concurrency, c.Paused, c.CompleteRequested
	g.add(c.Open, true)
	g.add(c.Holding, true)
	for _, mb := range c.Holding {
		g.st.Entries[g.byMailbox[g.key(mb)]].Released = false
	}
	g.add(c.Closed, true)
	for _, mb := range c.Closed {
		e := &g.st.Entries[g.byMailbox[g.key(mb)]]
		e.Closed = true
		g.closed++
	}
	for _, mb := range c.Failed {
		if i, ok := g.byMailbox[g.key(mb)]; ok {
			g.st.Entries[i].Error = "failed"
		}
	}
	for _, mb := range c.Complete {
		if i, ok := g.byMailbox[g.key(mb)]; ok {
			g.st.Entries[i].CompleteRequested = true
		}
	}
}

// holding counts the moves holding a slot.
func (g *gate) holding() int {
	n := 0
	for _, e := range g.st.Entries {
		if e.Started && !e.Released && !e.Closed {
			n++
		}
	}
	return n
}

// asking is the queue of moves asking for a slot a previous run carried.
func (g *gate) asking() []int {
	var q []int
	if g.in.Carry != nil {
		for _, mb := range g.in.Carry.Asking {
			if i, ok := g.byMailbox[g.key(mb)]; ok {
				q = append(q, i)
			}
		}
	}
	return q
}

// carry is the state the next run takes up.
func (g *gate) carry(asking []int) *BatchCarry {
	c := &BatchCarry{Concurrency: g.in.Concurrency, Paused: g.st.Paused, CompleteRequested: g.st.CompleteRequested, CompleteAt: g.st.CompleteAt}
	for _, e := range g.st.Entries {
		switch {
		case e.Closed:
			c.Closed = append(c.Closed, e.Mailbox)
			if e.Error != "" {
				c.Failed = append(c.Failed, e.Mailbox)
			}
		case e.Released:
			c.Open = append(c.Open, e.Mailbox)
		default:
			c.Holding = append(c.Holding, e.Mailbox)
		}
		if e.CompleteRequested {
			c.Complete = append(c.Complete, e.Mailbox)
		}
	}
	for _, i := range asking {
		c.Asking = append(c.Asking, g.st.Entries[i].Mailbox)
	}
	return c
}

// run is a gated batch after its setup: it grants slots to the moves that
// ask, in order, until every move it knows has ended.
func (g *gate) run(ctx workflow.Context, sel workflow.Selector, cancelled, before *bool, active *int, asking *[]int,
	grant func(), completeAt func(time.Time)) (BatchStatus, error) {
	st := g.st
	g.sel = sel
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalAddMoves), func(c workflow.ReceiveChannel, _ bool) {
		var mailboxes []string
		c.Receive(ctx, &mailboxes)
		g.add(mailboxes, false)
	})
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalMoveClosed), func(c workflow.ReceiveChannel, _ bool) {
		var mc MoveClosed
		c.Receive(ctx, &mc)
		i, ok := g.byMailbox[g.key(mc.Mailbox)]
		if !ok || st.Entries[i].Closed {
			return
		}
		e := &st.Entries[i]
		e.Closed, e.Error = true, mc.Error
		g.closed++
		if !e.Released {
			e.Released = true
			*active--
		}
		grant()
	})
	if c := g.in.Carry; c != nil && !c.CompleteAt.IsZero() {
		completeAt(c.CompleteAt)
	}
	if *before {
		sel.AddFuture(workflow.NewTimer(ctx, g.in.StartAfter.Sub(workflow.Now(ctx))), func(workflow.Future) {
			*before = false
			grant()
		})
	}
	grant()
	for {
		g.writeMemo(ctx, *active, len(*asking))
		if *cancelled {
			return *st, g.cancelMoves(ctx)
		}
		if g.closed == len(st.Entries) && !sel.HasPending() {
			return *st, nil
		}
		if batchRunFull(workflow.GetInfo(ctx)) {
			// Signals sent are delivered and signals received are taken
			// first: none may be lost between two runs.
			if err := workflow.Await(ctx, func() bool { return g.sending == 0 }); err != nil {
				*cancelled = true
				continue
			}
			if !sel.HasPending() {
				next := *g.in
				next.Mailboxes, next.Carry = nil, g.carry(*asking)
				return *st, workflow.NewContinueAsNewError(ctx, Batch, next)
			}
		}
		sel.Select(ctx)
	}
}

// cancelMoves cancels the moves of a cancelled gated batch that have not
// ended (they are not its children, which Temporal would cancel with it).
func (g *gate) cancelMoves(ctx workflow.Context) error {
	err := ctx.Err()
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var futures []workflow.Future
	wait := func() {
		for _, f := range futures {
			// A move that ended meanwhile has nothing to cancel.
			_ = f.Get(dctx, nil)
		}
		futures = futures[:0]
	}
	for i := range g.st.Entries {
		if e := &g.st.Entries[i]; !e.Closed {
			futures = append(futures, workflow.RequestCancelExternalWorkflow(dctx, g.workflowID(e), ""))
		}
		// Temporal caps the requests a workflow has under way.
		if len(futures) == maxInFlight {
			wait()
		}
	}
	wait()
	return err
}

// writeMemo keeps the batch's memo current, for `batch status` and `batch
// list` to read from the visibility store.
func (g *gate) writeMemo(ctx workflow.Context, active, asking int) {
	m := BatchMemo{Concurrency: g.in.Concurrency, Mailboxes: len(g.st.Entries), Closed: g.closed, Active: active, Asking: asking,
		Paused: g.st.Paused, CompleteRequested: g.st.CompleteRequested, StartAfter: g.in.StartAfter, CompleteAt: g.st.CompleteAt,
		OutsideWindow: g.st.OutsideWindow, WindowChange: g.st.WindowChange, Window: g.in.Window, WindowZone: g.in.WindowZone,
		Source: g.in.Source, Target: g.in.Target}
	if m == g.memo {
		return
	}
	// Counts change with every move that asks or ends: written at most
	// every memoEvery, and once more after the last change.
	now := workflow.Now(ctx)
	counts := g.memo
	counts.Mailboxes, counts.Closed, counts.Active, counts.Asking = m.Mailboxes, m.Closed, m.Active, m.Asking
	if counts == m && now.Sub(g.memoAt) < memoEvery {
		if !g.flushing {
			g.flushing = true
			g.sel.AddFuture(workflow.NewTimer(ctx, memoEvery-now.Sub(g.memoAt)), func(workflow.Future) { g.flushing = false })
		}
		return
	}
	g.memo, g.memoAt = m, now
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoBatch: m}); err != nil {
		workflow.GetLogger(ctx).Warn("memo not updated", "error", err)
	}
}

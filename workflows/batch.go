package workflows

import (
	"errors"
	"slices"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/window"
)

// DefaultConcurrency is the number of moves of a batch in their initial sync
// at once when the batch does not say.
const DefaultConcurrency = 10

// Batch starts the moves of a batch as child workflows and waits for all
// of them, with at most Concurrency moves copying at once in every state.
// A move holds a slot while it copies and gives it back when it waits: for
// its next incremental pass (a manual-complete batch would otherwise stall
// after the first Concurrency moves), or out a failure (a mailbox that
// cannot log on or is locked never delays the others). Before it copies
// again it asks for one (SignalMoveAcquire); the batch grants the moves
// that ask before it starts new ones. `batch set` changes Concurrency,
// `batch pause` (and the hours outside --window) has the moves yield at
// their next safe point, `batch cancel` ends it and its moves. After
// `batch complete` (SignalCompleteAll), the moves it starts complete after
// their initial sync.
func Batch(ctx workflow.Context, in BatchInput) (BatchStatus, error) {
	if in.Concurrency <= 0 {
		in.Concurrency = DefaultConcurrency
	}
	st := BatchStatus{Name: in.Name, Concurrency: in.Concurrency, StartAfter: in.StartAfter}
	byMailbox := make(map[string]int, len(in.Moves))
	for i, mv := range in.Moves {
		st.Entries = append(st.Entries, BatchEntry{Mailbox: mv.Mailbox, WorkflowID: MoveWorkflowID(in.Name, mv.Mailbox)})
		byMailbox[mv.Mailbox] = i
	}
	g := &gate{in: &in, st: &st, byMailbox: byMailbox}
	if in.Gated {
		g.restore()
		g.add(in.Mailboxes, false)
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (BatchStatus, error) { return st, nil }); err != nil {
		return st, err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrBatch.ValueSet(in.Name)); err != nil {
		workflow.GetLogger(ctx).Warn("search attributes not updated", "error", err)
	}

	active := g.holding() // moves started and neither released nor closed
	asking := g.asking()  // moves asking for a slot again, in order
	// before: --start-after is not reached; gated moves that ask wait.
	before := in.Gated && in.StartAfter.After(workflow.Now(ctx))
	// signal sends to a move. Not waited for: a move that is gone needs
	// no slot. A gated batch counts the signals under way, to continue as
	// new only once none is.
	// A grant that cannot be delivered went to a move that is gone
	// (terminated, or never started): its entry ends, and its slot is free.
	gone := workflow.NewChannel(ctx)
	signal := func(e *BatchEntry, name string, arg any) {
		if in.Gated {
			// Temporal caps the signals a workflow has under way.
			_ = workflow.Await(ctx, func() bool { return g.sending < maxInFlight })
		}
		mailbox := e.Mailbox
		f := workflow.SignalExternalWorkflow(ctx, g.workflowID(e), "", name, arg)
		if in.Gated {
			g.sending++
			workflow.Go(ctx, func(ctx workflow.Context) {
				err := f.Get(ctx, nil)
				g.sending--
				if err != nil && name == SignalSlotGranted {
					gone.Send(ctx, mailbox)
				}
			})
		}
	}
	// grant gives free slots to the moves asking for one, before any new
	// move starts: a move under way is finished before another begins.
	grant := func() {
		for !before && !st.Paused && !st.OutsideWindow && active < in.Concurrency && len(asking) > 0 {
			e := &st.Entries[asking[0]]
			asking = asking[1:]
			if e.Closed || !e.Released {
				continue
			}
			e.Released = false
			active++
			signal(e, SignalSlotGranted, nil)
			if in.Gated && (st.CompleteRequested || e.CompleteRequested) {
				// Added after `batch complete`: it completes after its
				// initial sync.
				signal(e, SignalComplete, nil)
			}
		}
	}
	// yieldAll has the moves copying stop at their next safe point
	// (between two activity calls), give their slots back and ask again.
	yieldAll := func() {
		for i := range st.Entries {
			if e := &st.Entries[i]; e.Started && !e.Released && !e.Closed {
				signal(e, SignalYield, nil)
			}
		}
	}
	sel := workflow.NewSelector(ctx)
	// batch cancel: the moves it started are cancelled with it (a child's
	// context is its parent's), and it starts no other.
	cancelled := false
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { cancelled = true })
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalMoveReleased), func(c workflow.ReceiveChannel, _ bool) {
		var mailbox string
		c.Receive(ctx, &mailbox)
		if i, ok := byMailbox[g.key(mailbox)]; ok && !st.Entries[i].Released && !st.Entries[i].Closed {
			st.Entries[i].Released = true
			active--
			grant()
		}
	})
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalMoveAcquire), func(c workflow.ReceiveChannel, _ bool) {
		var mailbox string
		c.Receive(ctx, &mailbox)
		if in.Gated {
			// A move retried after it ended, or started by `batch add`
			// before its page reached the batch, joins it.
			g.add([]string{mailbox}, true)
		}
		i, ok := byMailbox[g.key(mailbox)]
		switch {
		case !ok || st.Entries[i].Closed || slices.Contains(asking, i):
		case !st.Entries[i].Released:
			// Counted already (its release did not reach the batch): it
			// asks, so it waits; answer at once.
			signal(&st.Entries[i], SignalSlotGranted, nil)
		default:
			asking = append(asking, i)
			grant()
		}
	})
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalPause), func(c workflow.ReceiveChannel, _ bool) {
		var pause bool
		c.Receive(ctx, &pause)
		if pause == st.Paused {
			return
		}
		st.Paused = pause
		if !pause {
			grant()
			return
		}
		yieldAll()
	})
	if in.Window != "" {
		win, err := window.Parse(in.Window, in.WindowZone)
		if err != nil {
			return st, temporal.NewNonRetryableApplicationError("--window: "+err.Error(), string(failure.TypeInvalidInput), nil)
		}
		var follow func()
		follow = func() {
			open, next := win.Open(workflow.Now(ctx))
			st.OutsideWindow, st.WindowChange = !open, next
			if open {
				grant()
			} else {
				yieldAll()
			}
			if !next.IsZero() {
				sel.AddFuture(workflow.NewTimer(ctx, next.Sub(workflow.Now(ctx))), func(workflow.Future) { follow() })
			}
		}
		follow()
	}
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalConcurrency), func(c workflow.ReceiveChannel, _ bool) {
		var n int
		c.Receive(ctx, &n)
		if n > 0 {
			in.Concurrency = n
			st.Concurrency = n
			grant()
		}
	})
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalCompleteMove), func(c workflow.ReceiveChannel, _ bool) {
		var mailbox string
		c.Receive(ctx, &mailbox)
		for i := range st.Entries {
			e := &st.Entries[i]
			if strings.EqualFold(e.Mailbox, mailbox) {
				e.CompleteRequested = true
				// Started since the CLI found it missing.
				if e.Started && !e.Closed {
					signal(e, SignalComplete, nil)
				}
			}
		}
	})
	// completeAll completes every move started (a signal: a workflow
	// cannot send updates) and has those started later complete after
	// their initial sync.
	completeAll := func() {
		st.CompleteRequested = true
		for i := range st.Entries {
			if e := &st.Entries[i]; e.Started && !e.Closed {
				signal(e, SignalComplete, nil)
			}
		}
	}
	completeAt := func(at time.Time) {
		st.CompleteAt = at
		sel.AddFuture(workflow.NewTimer(ctx, max(at.Sub(workflow.Now(ctx)), time.Second)), func(workflow.Future) {
			// A later --after replaces this one.
			if st.CompleteAt.Equal(at) {
				completeAll()
				// Done: the next run of a gated batch must not do it again
				// (the moves it starts later complete: CompleteRequested).
				st.CompleteAt = time.Time{}
			}
		})
	}
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalCompleteAt), func(c workflow.ReceiveChannel, _ bool) {
		var at time.Time
		c.Receive(ctx, &at)
		completeAt(at)
	})
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalCompleteAll), func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		st.CompleteRequested = true
	})
	if in.Gated {
		sel.AddReceive(gone, func(c workflow.ReceiveChannel, _ bool) {
			var mailbox string
			c.Receive(ctx, &mailbox)
			if i, ok := byMailbox[g.key(mailbox)]; ok && !st.Entries[i].Closed && !st.Entries[i].Released {
				e := &st.Entries[i]
				e.Closed, e.Released, e.Error = true, true, "the move is gone: its workflow was ended from outside the batch"
				g.closed++
				active--
				grant()
			}
		})
		return g.run(ctx, sel, &cancelled, &before, &active, &asking, grant, completeAt)
	}
	if wait := in.StartAfter.Sub(workflow.Now(ctx)); wait > 0 {
		// Signals that come meanwhile (pause, concurrency, complete) are
		// taken at once: the status shows them.
		due := false
		sel.AddFuture(workflow.NewTimer(ctx, wait), func(workflow.Future) { due = true })
		for !due && !cancelled {
			sel.Select(ctx)
		}
	}
	open := 0
	for i, mv := range in.Moves {
		// Signals first (a complete asked for, a move asking for a slot
		// again), then a free slot nobody asks for.
		for !cancelled && (st.Paused || st.OutsideWindow || active >= in.Concurrency || len(asking) > 0 || sel.HasPending()) {
			sel.Select(ctx)
		}
		if cancelled {
			return st, ctx.Err()
		}
		mv.Batch = in.Name
		if st.CompleteRequested || st.Entries[i].CompleteRequested {
			mv.Settings.Complete = CompleteAuto
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: st.Entries[i].WorkflowID,
			// A failed move may be started again by `batch retry`; a
			// completed one never.
			WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
			// Moves outlive a batch that is terminated by mistake.
			ParentClosePolicy: enums.PARENT_CLOSE_POLICY_ABANDON,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				SearchAttrBatch.ValueSet(in.Name), SearchAttrMailbox.ValueSet(mv.Mailbox), SearchAttrStatus.ValueSet(string(StatusQueued)),
			),
		})
		fut := workflow.ExecuteChildWorkflow(cctx, MailboxMove, mv)
		st.Entries[i].Started = true
		active++
		open++
		sel.AddFuture(fut, func(f workflow.Future) {
			open--
			e := &st.Entries[i]
			if !e.Released {
				active--
			}
			e.Closed = true
			if err := f.Get(ctx, nil); err != nil {
				e.Error = reason(err)
			}
			grant()
		})
	}
	for open > 0 && !cancelled {
		sel.Select(ctx)
	}
	return st, ctx.Err()
}

// reason is the message a move failed with.
func reason(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

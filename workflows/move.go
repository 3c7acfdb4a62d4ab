package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/internal/metrics"
)

// a is used only for its method names: workflows call activities through it.
var a *activities.Activities

// MailboxMove moves one mailbox: connect, initial sync, incremental passes
// until completed, finalize. Failures are waited out as the batch's policy
// table says; the move fails — with the server's words as reason — when a
// failure is final or its budget is spent.
func MailboxMove(ctx workflow.Context, in MailboxMoveInput) (MoveReport, error) {
	m := &move{in: in, settings: in.Settings.withDefaults()}
	if err := m.setup(ctx); err != nil {
		return MoveReport{}, err
	}
	rep, err := m.run(ctx)
	m.closed(ctx, err)
	return rep, err
}

// metrics is the SDK's replay-aware metrics handler, tagged with the
// move's batch: a workflow task replayed counts nothing twice.
func (m *move) metrics(ctx workflow.Context) client.MetricsHandler {
	return workflow.GetMetricsHandler(ctx).WithTags(map[string]string{metrics.TagBatch: m.in.Batch})
}

// waited counts a wait that ended, by its StatusDetail.
func (m *move) waited(ctx workflow.Context, detail string, d time.Duration) {
	h := m.metrics(ctx).WithTags(map[string]string{metrics.TagReason: detail})
	h.Counter(metrics.Waits).Inc(1)
	h.Counter(metrics.WaitSeconds).Inc(int64(d.Seconds()))
}

// closed tells a gated move's batch that the move ended (also when
// cancelled), so that it frees the move's slot and knows when all its
// moves are done. A move that continues as new has not ended.
func (m *move) closed(ctx workflow.Context, err error) {
	if workflow.IsContinueAsNewError(err) {
		return
	}
	status := string(m.state.Status)
	msg := MoveClosed{Mailbox: m.in.Mailbox}
	if ctx.Err() != nil {
		// Cancelled (batch cancel, or an admin): the batch must still
		// learn it, or it would wait for the move and keep its slot.
		ctx, _ = workflow.NewDisconnectedContext(ctx)
		status, msg.Error = "Cancelled", "cancelled"
	} else if err != nil {
		msg.Error = m.state.Reason
		if msg.Error == "" {
			msg.Error = err.Error()
		}
	}
	m.metrics(ctx).WithTags(map[string]string{metrics.TagStatus: status}).Counter(metrics.MovesEnded).Inc(1)
	if !m.in.Gated {
		return
	}
	if err := workflow.SignalExternalWorkflow(ctx, BatchWorkflowID(m.in.Batch), "", SignalMoveClosed, msg).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Info("the batch did not take the news that the move ended", "batch", m.in.Batch, "error", err)
	}
}

// batchID is the workflow ID of the batch that counts this move against
// its concurrency, or "" for a move on its own.
func (m *move) batchID(ctx workflow.Context) string {
	if parent := workflow.GetInfo(ctx).ParentWorkflowExecution; parent != nil {
		return parent.ID
	}
	if m.in.Gated {
		return BatchWorkflowID(m.in.Batch)
	}
	return ""
}

type move struct {
	in       MailboxMoveInput
	settings Settings
	state    MoveState
	resume   bool // a resume signal arrived during a wait
	calls    int  // sync calls started in this run
	live     []liveCall
	final    bool // the final pass is under way
	// granted is the daily transfer budget granted to calls under way;
	// quotaWaiters counts the lanes waiting for it, since quotaSince.
	granted      int64
	quotaWaiters int
	quotaSince   time.Time
	// waits are the waits under way, phase what the move showed before.
	waits   []activeWait
	waitSeq int
	phase   phase
	// holding: a lane is asking the batch for a slot (hold); grants are
	// the slots the batch granted and no hold has taken yet.
	holding bool
	grants  int
	// busy counts the activity calls under way: a lane waiting while
	// another copies does not give the move's slot back.
	busy int
	// yield: the batch was paused; give the slot back before the next
	// call and ask again.
	yield bool
	// memoAt is when the memo was last written (updateMemo).
	memoAt time.Time
	// releasing counts the releases on their way to the batch: no ask is
	// sent before they arrive.
	releasing int
	// cuttable: the pass under way may stop for continue-as-new;
	// cutting: it is stopping (cutDue).
	cuttable, cutting bool
}

func (m *move) setup(ctx workflow.Context) error {
	if m.in.Batch == "" || m.in.Mailbox == "" {
		return temporal.NewNonRetryableApplicationError("batch and mailbox are required", string(failure.TypeInvalidInput), nil)
	}
	if m.in.State != nil {
		m.state = *m.in.State
	} else {
		// A gated move holds no slot until its batch grants one.
		m.state = MoveState{Status: StatusQueued, StatusDetail: DetailQueued, Started: workflow.Now(ctx), Released: m.in.Gated}
	}
	if m.state.Attempts == nil {
		m.state.Attempts = map[failure.Type]int{}
	}
	if m.state.StallTime == nil {
		m.state.StallTime = map[string]time.Duration{}
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (MoveStatus, error) {
		return m.status(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (MoveState, error) {
		return m.state, nil
	}); err != nil {
		return err
	}
	m.receiveProgress(ctx)
	resume := workflow.GetSignalChannel(ctx, SignalResume)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			resume.Receive(ctx, nil)
			m.resume = true
		}
	})
	yield := workflow.GetSignalChannel(ctx, SignalYield)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			yield.Receive(ctx, nil)
			m.yield = true
		}
	})
	complete := workflow.GetSignalChannel(ctx, SignalComplete)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			complete.Receive(ctx, nil)
			m.state.CompleteRequested = true
		}
	})
	granted := workflow.GetSignalChannel(ctx, SignalSlotGranted)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			granted.Receive(ctx, nil)
			m.grants++
		}
	})
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateComplete, func(ctx workflow.Context) (MoveStatus, error) {
		m.state.CompleteRequested = true
		return m.status(), nil
	}, workflow.UpdateHandlerOptions{Validator: func() error {
		if m.state.Status.Terminal() || m.state.Status == StatusCompleting {
			return fmt.Errorf("move of %s is already %s", m.in.Mailbox, m.state.Status)
		}
		return nil
	}})
}

// run is the move's story, top to bottom. A pass that grows the history
// too long continues as new in its middle (syncPass, cut); the next run
// takes it up where the state says: the initial copy goes on with the
// folders not copied yet, an incremental pass is run again at once, the
// final pass from its start.
func (m *move) run(ctx workflow.Context) (MoveReport, error) {
	// A synced move gives its slot back after each pass and before it
	// continues as new between passes: one that starts synced and holding
	// it was cut in the middle of a pass (cut).
	inPass := !m.state.SyncedAt.IsZero() && !m.state.Released
	if len(m.state.Folders) == 0 {
		// A gated move waits for its first slot as Queued, not as a move
		// under way: batch status counts those copying.
		if m.in.Gated && m.state.Status == StatusQueued && workflow.GetVersion(ctx, "gated-queued", workflow.DefaultVersion, 1) == 1 {
			if err := m.hold(ctx); err != nil {
				return MoveReport{}, err // cancelled
			}
		}
		m.setStatus(ctx, StatusInProgress, DetailConnecting)
		if err := m.connect(ctx); err != nil {
			return m.fail(ctx, err)
		}
	}
	if !m.state.FoldersCreated {
		m.setStatus(ctx, StatusInProgress, DetailCreatingFolderHierarchy)
		if err := m.createFolders(ctx); err != nil {
			return m.fail(ctx, err)
		}
	}
	if m.state.SyncedAt.IsZero() {
		m.setStatus(ctx, StatusInProgress, DetailCopyingMessages)
		if err := m.syncPass(ctx, a.InitialSync, pass{initial: true, cut: true}); err != nil {
			return m.stop(ctx, err)
		}
		// With manual completion, catch up at once with the mail that
		// arrived during a long initial copy, so that "Synced" means up to
		// date now rather than after the first incremental interval. Moves
		// started before this patch take the old path (docs/evolving-workflows.md).
		if m.settings.Complete == CompleteManual && workflow.GetVersion(ctx, "catch-up-pass", workflow.DefaultVersion, 1) == 1 {
			if err := m.syncPass(ctx, a.IncrementalSync, pass{cut: true}); err != nil {
				return m.stop(ctx, err)
			}
		}
		m.state.SyncedAt = workflow.Now(ctx)
		m.setStatus(ctx, StatusSynced, DetailSynced)
		// A move that waits for its next pass gives its slot back; one that
		// goes on to its final pass at once keeps it (moves started
		// before the batch-slots patch gave it back either way).
		if m.settings.Complete == CompleteManual && !m.state.CompleteRequested ||
			workflow.GetVersion(ctx, "batch-slots", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			m.release(ctx)
		}
	}
	if m.settings.Complete == CompleteManual {
		// A pass that was cut goes on at once, with the slot it holds.
		again := inPass && !m.state.CompleteRequested &&
			workflow.GetVersion(ctx, "initial-sync-cut", workflow.DefaultVersion, 1) == 1
		for !m.state.CompleteRequested {
			if !again {
				m.setStatus(ctx, StatusSynced, DetailSynced)
				ok, err := workflow.AwaitWithTimeout(ctx, m.settings.IncrementalInterval, func() bool { return m.state.CompleteRequested })
				if err != nil {
					return MoveReport{}, err // cancelled
				}
				if ok {
					break
				}
				if err := m.hold(ctx); err != nil {
					return MoveReport{}, err // cancelled
				}
			}
			again = false
			m.setStatus(ctx, StatusSynced, DetailIncrementalSync)
			if err := m.replan(ctx); err != nil {
				return m.fail(ctx, err)
			}
			if err := m.syncPass(ctx, a.IncrementalSync, pass{cut: true}); err != nil {
				return m.stop(ctx, err)
			}
			m.release(ctx)
			m.state.IncrementalPasses++
			m.state.PassesThisRun++
			if m.state.PassesThisRun >= m.settings.PassesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
				return MoveReport{}, m.continueAsNew(ctx)
			}
		}
	}

	if err := m.hold(ctx); err != nil {
		return MoveReport{}, err // cancelled
	}
	m.setStatus(ctx, StatusCompleting, DetailFinalIncrementalSync)
	if err := m.replan(ctx); err != nil {
		return m.fail(ctx, err)
	}
	m.final = true // every target folder is examined for extra copies
	if err := m.syncPass(ctx, a.IncrementalSync, pass{cut: true}); err != nil {
		return m.stop(ctx, err)
	}
	m.setStatus(ctx, StatusCompleting, DetailVerifying)
	if err := m.verify(ctx); err != nil {
		return m.fail(ctx, err)
	}
	if warning := m.warnings(); warning != "" {
		m.state.Reason = warning
		m.setStatus(ctx, StatusCompletedWithWarnings, DetailCompleted)
	} else {
		m.setStatus(ctx, StatusCompleted, DetailCompleted)
	}
	return m.report(ctx), nil
}

// warnings explains a CompletedWithWarnings, or is empty.
func (m *move) warnings() string {
	var w string
	if n := len(m.state.BadItems); n > 0 {
		w = fmt.Sprintf("%d bad items: messages the target refused, skipped (see `mailmove batch report`)", n)
	}
	if len(m.state.RefusedKeywords) > 0 {
		var parts []string
		//workflowcheck:ignore the keys are sorted
		for _, k := range slices.Sorted(maps.Keys(m.state.RefusedKeywords)) {
			parts = append(parts, fmt.Sprintf("%s on %d messages", k, m.state.RefusedKeywords[k]))
		}
		if w != "" {
			w += "; "
		}
		w += "keywords the target does not keep were left off: " + strings.Join(parts, ", ")
	}
	// Bad items and messages the rules filter out are left out of the
	// verification: missing by design.
	if v := m.state.Verify; v != nil && v.Missing+v.Duplicated > 0 {
		if w != "" {
			w += "; "
		}
		w += fmt.Sprintf("verification (%s): %d messages missing on the target, %d copied twice", m.grade(), v.Missing, v.Duplicated)
		if m.state.Repairs > 0 {
			w += ", after a repair pass"
		}
	}
	return w
}

// call runs an activity and carries out the policy table on its classified
// failures: record, show the wait, sleep, run again from the progress kept —
// the one place where a move waits out a failure. in builds the input anew
// for each attempt; progress receives what a failed sync attempt had done.
func (m *move) call(ctx, actx workflow.Context, act interface{}, in func() interface{}, out interface{}, progress func(activities.SyncResult)) error {
	for {
		// A pass being cut stops here, before an attempt, and again once
		// the slot is there: after a failure's wait, never instead of it.
		if m.cutDue(ctx) {
			return errCut
		}
		if err := m.yieldAndHold(ctx); err != nil {
			return err
		}
		if m.cutDue(ctx) {
			return errCut
		}
		m.busy++
		err := workflow.ExecuteActivity(actx, act, in()).Get(ctx, out)
		m.busy--
		if err == nil {
			m.succeeded()
			return nil
		}
		d, partial, ok := failureOf(err)
		if !ok {
			return err
		}
		if partial != nil && progress != nil {
			progress(*partial)
			if partial.Copied+partial.Matched+partial.Filtered > 0 {
				// It made progress before it failed: a link that drops now
				// and then waits the first interval again, not the longest.
				m.succeeded()
			}
		}
		m.state.LastFailure = &d
		if d.Type == failure.TypeLogonFailed {
			m.state.LogonFailures++
		}
		rule := m.settings.Policy.Rule(d.Type)
		m.state.Attempts[d.Type]++
		n := m.state.Attempts[d.Type]
		if rule.Exhausted(n) {
			return m.finalError(d, n, rule)
		}
		if d.Type == failure.TypeMailboxLocked {
			m.state.LockRelinquishes++
		}
		if err := m.wait(ctx, d, n, rule); err != nil {
			return err
		}
	}
}

// succeeded starts the consecutive budgets (logon, connect) afresh.
func (m *move) succeeded() {
	//workflowcheck:ignore each key is reset on its own: the order is irrelevant
	for t := range m.state.Attempts {
		if m.settings.Policy.Rule(t).Consecutive {
			m.state.Attempts[t] = 0
		}
	}
}

// wait shows the wait as StatusDetail with the next attempt's time, gives
// the batch its concurrency slot back, sleeps, and accounts the time.
func (m *move) wait(ctx workflow.Context, d failure.Details, n int, rule failure.Rule) error {
	status, detail := waitDetail(d, m.phaseStatus())
	delay := rule.Delay(n)
	if d.RetryAfter > 0 {
		// The server said how long (Exchange Online's suggested backoff).
		delay = time.Duration(d.RetryAfter)
	}
	start := workflow.Now(ctx)
	attempts := fmt.Sprintf("%d", n)
	if rule.MaximumAttempts > 0 {
		attempts = fmt.Sprintf("%d/%d", n, rule.MaximumAttempts)
	}
	next := start.Add(delay)
	m.releaseIdle(ctx)
	id := m.beginWait(ctx, activeWait{status: status, detail: detail, next: next,
		reason: fmt.Sprintf("%s (attempt %s, next at %s)", d, attempts, next.UTC().Format(time.RFC3339))})

	m.resume = false
	_, err := workflow.AwaitWithTimeout(ctx, delay, func() bool { return m.resume })
	m.resume = false
	m.state.StallTime[detail] += workflow.Now(ctx).Sub(start)
	m.waited(ctx, detail, workflow.Now(ctx).Sub(start))
	m.endWait(ctx, id)
	if err != nil {
		return err // cancelled
	}
	return m.hold(ctx)
}

// activeWait is one wait under way: a lane waiting out a failure or for
// the daily budget. Lanes wait at the same time, so the move shows the
// latest wait still under way, and what it showed before the first once
// the last ends.
type activeWait struct {
	id             int
	status         Status
	detail, reason string
	next           time.Time // the next attempt, if any
}

// phase is what the move showed before its first wait under way.
type phase struct {
	status         Status
	detail, reason string
}

// phaseStatus is the move's Status apart from its waits.
func (m *move) phaseStatus() Status {
	if len(m.waits) > 0 {
		return m.phase.status
	}
	return m.state.Status
}

func (m *move) beginWait(ctx workflow.Context, w activeWait) int {
	if len(m.waits) == 0 {
		m.phase = phase{status: m.state.Status, detail: m.state.StatusDetail, reason: m.state.Reason}
	}
	m.waitSeq++
	w.id = m.waitSeq
	m.waits = append(m.waits, w)
	m.showWaits(ctx)
	return w.id
}

func (m *move) endWait(ctx workflow.Context, id int) {
	m.waits = slices.DeleteFunc(m.waits, func(w activeWait) bool { return w.id == id })
	m.showWaits(ctx)
}

// showWaits shows the latest wait under way, or the phase when none is.
func (m *move) showWaits(ctx workflow.Context) {
	if len(m.waits) == 0 {
		m.state.Reason, m.state.NextAttemptAt = m.phase.reason, time.Time{}
		m.setStatus(ctx, m.phase.status, m.phase.detail)
		return
	}
	w := m.waits[len(m.waits)-1]
	m.state.Reason, m.state.NextAttemptAt = w.reason, w.next
	m.setStatus(ctx, w.status, w.detail)
}

// moveError ends a move with a reason an admin can act on.
type moveError struct {
	typ    failure.Type
	reason string
}

func (e *moveError) Error() string { return e.reason }

func (m *move) finalError(d failure.Details, n int, rule failure.Rule) error {
	r := d.String()
	switch {
	case d.Type == failure.TypeTargetFull && m.state.BytesTotal > m.state.Bytes:
		r += fmt.Sprintf("; about %s of the source mailbox is still to copy", humanize.Bytes(m.state.BytesTotal-m.state.Bytes))
	case !rule.Final:
		r += fmt.Sprintf(" (gave up after %d attempts)", n)
	}
	return &moveError{typ: d.Type, reason: r}
}

// hold takes one of the batch's concurrency slots again before the move
// copies after it released its own (a wait ended, an incremental or the
// final pass is due): --concurrency bounds the moves copying at once in
// every state. It asks the batch and waits for its grant; lanes that come
// while one asks wait for the same grant. A move without a batch, or
// whose batch is gone, goes on at once. Moves started before this patch
// never ask (docs/evolving-workflows.md).
func (m *move) hold(ctx workflow.Context) error {
	if !m.state.Released {
		return nil
	}
	if m.holding {
		return workflow.Await(ctx, func() bool { return !m.state.Released })
	}
	batch := m.batchID(ctx)
	if batch == "" || workflow.GetVersion(ctx, "batch-slots", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	m.holding = true
	defer func() { m.holding = false }()
	// Temporal does not order two signals sent by separate commands: an
	// ask sent while the release is on its way could reach the batch
	// first, which still counts the slot as held and would grant again.
	if m.releasing > 0 && workflow.GetVersion(ctx, "ask-after-release", workflow.DefaultVersion, 1) == 1 {
		if err := workflow.Await(ctx, func() bool { return m.releasing == 0 }); err != nil {
			return err
		}
	}
	if err := workflow.SignalExternalWorkflow(ctx, batch, "", SignalMoveAcquire, m.in.Mailbox).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Info("the batch did not take the request for a slot; copying", "batch", batch, "error", err)
		m.state.Released = false
		return nil
	}
	id := m.beginWait(ctx, activeWait{status: m.phaseStatus(), detail: DetailWaitingForBatchSlot,
		reason: "waiting for one of the batch's slots: as many moves as --concurrency allows are copying, or the batch is paused (batch resume)"})
	start := workflow.Now(ctx)
	// Only a grant ends it: a move that copied on without one would be
	// counted by the batch once the grant comes, while idle.
	err := workflow.Await(ctx, func() bool { return m.grants > 0 })
	if err == nil {
		m.grants--
	}
	m.state.StallTime[DetailWaitingForBatchSlot] += workflow.Now(ctx).Sub(start)
	m.waited(ctx, DetailWaitingForBatchSlot, workflow.Now(ctx).Sub(start))
	m.endWait(ctx, id)
	m.state.Released = false
	return err
}

// yieldAndHold is the safe point before an activity call. A yield (the
// batch paused, or left its window) stops the lane here; the slot goes
// back once none of the move's calls runs (its other lanes finish theirs),
// and the move asks again. A yield that comes while it asks is honoured
// before it copies.
func (m *move) yieldAndHold(ctx workflow.Context) error {
	for {
		if m.yield {
			if err := workflow.Await(ctx, func() bool { return m.busy == 0 || !m.yield }); err != nil {
				return err
			}
			if m.yield {
				m.yield = false
				m.release(ctx)
			}
		}
		if err := m.hold(ctx); err != nil {
			return err
		}
		if !m.yield {
			return nil
		}
	}
}

// releaseIdle gives the batch its slot back for a wait, unless another of
// the move's calls is under way: the move copies on, and keeps its slot
// until no lane copies (syncAll gives it back when a lane ends while the
// others wait). Moves started before the batch-slots patch release at
// every wait, as they did.
func (m *move) releaseIdle(ctx workflow.Context) {
	if m.busy > 0 && workflow.GetVersion(ctx, "batch-slots", workflow.DefaultVersion, 1) == 1 {
		return
	}
	m.release(ctx)
}

// release tells the batch that started this move to stop counting it against
// its concurrency: the move is synced, or waiting out a failure that must not
// hold up the other mailboxes.
func (m *move) release(ctx workflow.Context) {
	if m.state.Released {
		return
	}
	m.state.Released = true
	batch := m.batchID(ctx)
	if batch == "" {
		return
	}
	// Best effort: a batch that is gone has nothing to start.
	m.releasing++
	defer func() { m.releasing-- }()
	if err := workflow.SignalExternalWorkflow(ctx, batch, "", SignalMoveReleased, m.in.Mailbox).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Info("the batch did not take the release", "batch", batch, "error", err)
	}
}

// stop ends a run whose pass did not finish: one that was cut continues
// as new, any other fails the move.
func (m *move) stop(ctx workflow.Context, err error) (MoveReport, error) {
	if !errors.Is(err, errCut) {
		return m.fail(ctx, err)
	}
	return MoveReport{}, m.cut(ctx)
}

// cut continues as new in the middle of a pass, every lane stopped at a
// safe point. The slot goes along as it is: a move holding one keeps it
// (its batch still counts it) and its next run copies at once without
// asking; one that gave it back asks before it copies (an incremental
// pass then waits for the next interval). A yield that came while the
// lanes stopped is honoured here, since the next run does not know of
// it. A move without a batch counts against none: Released false tells
// its next run that it was copying.
func (m *move) cut(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	workflow.GetLogger(ctx).Info("the history is long: continuing as new in the middle of a pass",
		"events", info.GetCurrentHistoryLength(), "bytes", info.GetCurrentHistorySize())
	if m.yield {
		m.yield = false
		m.release(ctx)
	} else if m.batchID(ctx) == "" {
		m.state.Released = false
	}
	return m.continueAsNew(ctx)
}

func (m *move) continueAsNew(ctx workflow.Context) error {
	// Let an in-flight complete update finish before the history is cut.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	next := m.in
	st := m.state
	st.PassesThisRun = 0
	next.State = &st
	return workflow.NewContinueAsNewError(ctx, MailboxMove, next)
}

// fail records the reason, marks the move Failed and fails the workflow so
// the Web UI and `batch status` both show it.
func (m *move) fail(ctx workflow.Context, err error) (MoveReport, error) {
	typ := failure.TypeUnclassified
	if me, ok := err.(*moveError); ok {
		m.state.Reason, typ = me.reason, me.typ
	} else {
		m.state.Reason = err.Error()
	}
	m.state.NextAttemptAt = time.Time{}
	m.setStatus(ctx, StatusFailed, DetailFailedPrefix+string(typ))
	return m.report(ctx), temporal.NewNonRetryableApplicationError(m.state.Reason, string(failure.TypeMoveFailed), nil)
}

func (m *move) setStatus(ctx workflow.Context, s Status, detail string) {
	if m.state.Status == s && m.state.StatusDetail == detail {
		m.updateDetails(ctx)
		return
	}
	m.state.Status, m.state.StatusDetail = s, detail
	m.memoAt = time.Time{} // a new status is written at once
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrBatch.ValueSet(m.in.Batch),
		SearchAttrMailbox.ValueSet(m.in.Mailbox),
		SearchAttrStatus.ValueSet(string(s)),
		SearchAttrStatusDetail.ValueSet(detail),
	); err != nil {
		// Only the Web UI's filters lag; the status query is right.
		workflow.GetLogger(ctx).Warn("search attributes not updated", "error", err)
	}
	m.updateDetails(ctx)
}

// updateDetails refreshes the "current details" the Web UI shows on the
// workflow page.
func (m *move) updateDetails(ctx workflow.Context) {
	st := m.status()
	details := fmt.Sprintf("**%s** / %s — %d%%, %d/%d messages, %s copied, %d/%d folders",
		st.Status, st.StatusDetail, st.PercentComplete, st.Copied+st.Matched, st.MessagesTotal, humanize.Bytes(st.Bytes), st.FoldersCopied, st.FoldersTotal)
	if st.Reason != "" {
		details += "\n\n" + st.Reason
	}
	workflow.SetCurrentDetails(ctx, details)
	m.updateMemo(ctx, st)
}

// memoEvery is how often a gated move's progress is written to its memo.
const memoEvery = 5 * time.Second

// updateMemo writes the move's status into its memo, for `batch status`
// to read from the visibility store whatever the size of the batch (one
// list call, no query): at once for a new status, at most every memoEvery
// for progress. Moves started by a batch as children (before gating) are
// queried instead and write none.
func (m *move) updateMemo(ctx workflow.Context, st MoveStatus) {
	if !m.in.Gated {
		return
	}
	now := workflow.Now(ctx)
	if !m.memoAt.IsZero() && now.Sub(m.memoAt) < memoEvery {
		return
	}
	m.memoAt = now
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoMove: st.memo()}); err != nil {
		workflow.GetLogger(ctx).Warn("memo not updated", "error", err)
	}
}

func (m *move) status() MoveStatus {
	st := MoveStatus{
		Batch: m.in.Batch, Mailbox: m.in.Mailbox, Status: m.state.Status, StatusDetail: m.state.StatusDetail, Reason: m.state.Reason,
		FoldersTotal: len(m.state.Folders), MessagesTotal: m.state.MessagesTotal, BytesTotal: m.state.BytesTotal,
		Counters: m.state.Counters.Clone(), FoldersExcluded: m.state.FoldersExcluded,
		FoldersAdded: m.state.FoldersAdded, FoldersRenamed: m.state.FoldersRenamed, FoldersDeleted: m.state.FoldersDeleted,
		IncrementalPasses: m.state.IncrementalPasses, LogonFailures: m.state.LogonFailures, LockRelinquishes: m.state.LockRelinquishes,
		NextAttemptAt: m.state.NextAttemptAt, LastFailure: m.state.LastFailure,
		Started: m.state.Started, SyncedAt: m.state.SyncedAt, Verify: m.state.Verify,
	}
	for _, l := range m.live {
		st.Add(l.Counters)
	}
	st.StallTime = maps.Clone(m.state.StallTime)
	for _, side := range []failure.Side{failure.SideSource, failure.SideTarget} {
		if d := m.state.Throttled[side]; d > 0 {
			if st.StallTime == nil {
				st.StallTime = map[string]time.Duration{}
			}
			st.StallTime[stallDetail(side, "HighLatency")] += d
		}
	}
	for _, f := range m.state.Folders {
		if f.Copied {
			st.FoldersCopied++
		}
		if f.Plan.Renamed != "" {
			st.FoldersRenamedForTarget = append(st.FoldersRenamedForTarget, fmt.Sprintf("%s → %s: %s", f.Plan.Source, f.Plan.Target, f.Plan.Renamed))
		}
	}
	st.Grade, st.Repairs = m.grade(), m.state.Repairs
	st.SourceProfile, st.TargetProfile = m.state.SourceProfile, m.state.TargetProfile
	st.BudgetWindows, st.BudgetWindow = m.budgetWindows()
	switch {
	case !m.state.SyncedAt.IsZero():
		st.PercentComplete = 100
	case st.MessagesTotal > 0:
		st.PercentComplete = min(99, 100*(st.Copied+st.Matched+st.Filtered)/st.MessagesTotal)
	}
	return st
}

func (m *move) report(ctx workflow.Context) MoveReport {
	return MoveReport{MoveStatus: m.status(), Duration: workflow.Now(ctx).Sub(m.state.Started)}
}

// grade is the move's data consistency grade, once verified.
func (m *move) grade() Grade {
	v := m.state.Verify
	if v == nil {
		return ""
	}
	wrong := v.Missing + v.Duplicated
	switch {
	case wrong == 0 && len(m.state.BadItems) == 0 && len(m.state.RefusedKeywords) == 0 && v.DeletedOnTarget == 0:
		return GradePerfect
	case wrong == 0:
		return GradeGood
	case wrong*100 <= max(v.Compared, 1):
		return GradeInvestigate
	}
	return GradePoor
}

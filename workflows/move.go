package workflows

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/humanize"
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
	return m.run(ctx)
}

type move struct {
	in       MailboxMoveInput
	settings Settings
	state    MoveState
	resume   bool // a resume signal arrived during a wait
}

func (m *move) setup(ctx workflow.Context) error {
	if m.in.Batch == "" || m.in.Mailbox == "" {
		return temporal.NewNonRetryableApplicationError("batch and mailbox are required", string(failure.TypeInvalidInput), nil)
	}
	if m.in.State != nil {
		m.state = *m.in.State
	} else {
		m.state = MoveState{Status: StatusQueued, StatusDetail: DetailQueued, Started: workflow.Now(ctx)}
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
	resume := workflow.GetSignalChannel(ctx, SignalResume)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			resume.Receive(ctx, nil)
			m.resume = true
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

// run is the move's story, top to bottom.
func (m *move) run(ctx workflow.Context) (MoveReport, error) {
	if len(m.state.Folders) == 0 {
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
		if err := m.syncAll(ctx, a.InitialSync); err != nil {
			return m.fail(ctx, err)
		}
		// With manual completion, catch up at once with the mail that
		// arrived during a long initial copy, so that "Synced" means up to
		// date now rather than after the first incremental interval. Moves
		// started before this patch take the old path (docs/evolving-workflows.md).
		if m.settings.Complete == CompleteManual && workflow.GetVersion(ctx, "catch-up-pass", workflow.DefaultVersion, 1) == 1 {
			if err := m.syncAll(ctx, a.IncrementalSync); err != nil {
				return m.fail(ctx, err)
			}
		}
		m.state.SyncedAt = workflow.Now(ctx)
		m.setStatus(ctx, StatusSynced, DetailSynced)
		m.release(ctx)
	}
	if m.settings.Complete == CompleteManual {
		for !m.state.CompleteRequested {
			m.setStatus(ctx, StatusSynced, DetailSynced)
			ok, _ := workflow.AwaitWithTimeout(ctx, m.settings.IncrementalInterval, func() bool { return m.state.CompleteRequested })
			if ok {
				break
			}
			m.setStatus(ctx, StatusSynced, DetailIncrementalSync)
			if err := m.replan(ctx); err != nil {
				return m.fail(ctx, err)
			}
			if err := m.syncAll(ctx, a.IncrementalSync); err != nil {
				return m.fail(ctx, err)
			}
			m.state.IncrementalPasses++
			m.state.PassesThisRun++
			if m.state.PassesThisRun >= m.settings.PassesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
				return MoveReport{}, m.continueAsNew(ctx)
			}
		}
	}

	m.setStatus(ctx, StatusCompleting, DetailFinalIncrementalSync)
	if err := m.replan(ctx); err != nil {
		return m.fail(ctx, err)
	}
	if err := m.syncAll(ctx, a.IncrementalSync); err != nil {
		return m.fail(ctx, err)
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

// plan runs Connect: both sides' folders, mapped by the batch's rules.
func (m *move) plan(ctx workflow.Context) (activities.ConnectResult, error) {
	var res activities.ConnectResult
	in := func() interface{} {
		return activities.ConnectInput{Mailbox: m.in.Mailbox, Source: m.in.Source, Target: m.in.Target, Rules: m.settings.Rules}
	}
	if err := m.call(ctx, shortOptions(ctx), a.Connect, in, &res, nil); err != nil {
		return res, err
	}
	m.state.FoldersExcluded = res.Excluded
	return res, nil
}

func (m *move) connect(ctx workflow.Context) error {
	res, err := m.plan(ctx)
	if err != nil {
		return err
	}
	for _, p := range res.Folders {
		m.state.Folders = append(m.state.Folders, FolderState{Plan: p, Cursor: engine.Cursor{Source: p.Source, Target: p.Target}})
		m.state.MessagesTotal += int(p.Messages)
		m.state.BytesTotal += p.Bytes
	}
	return nil
}

func (m *move) createFolders(ctx workflow.Context) error {
	in := func() interface{} {
		plans := make([]engine.FolderPlan, len(m.state.Folders))
		for i, f := range m.state.Folders {
			plans[i] = f.Plan
		}
		return activities.CreateFoldersInput{Mailbox: m.in.Mailbox, Target: m.in.Target, Folders: plans}
	}
	if err := m.call(ctx, shortOptions(ctx), a.CreateFolders, in, nil, nil); err != nil {
		return err
	}
	m.state.FoldersCreated = true
	return nil
}

// replan lists the source's folders again before an incremental pass: a new
// folder is created and copied, a renamed one is followed (the target folder
// is renamed, its progress kept), a deleted one stays on the target and is
// no longer synced.
func (m *move) replan(ctx workflow.Context) error {
	res, err := m.plan(ctx)
	if err != nil {
		return err
	}
	bySource := make(map[string]int, len(m.state.Folders))
	for i, f := range m.state.Folders {
		if !f.Gone {
			bySource[f.Plan.Source] = i
		}
	}
	seen := make(map[int]bool)
	var fresh []engine.FolderPlan
	for _, p := range res.Folders {
		if i, ok := bySource[p.Source]; ok {
			seen[i] = true
			continue
		}
		fresh = append(fresh, p)
	}
	// A source folder that vanished while one with its UIDVALIDITY appeared
	// was renamed; with two candidates it is ambiguous and treated as a
	// deletion and a new folder.
	vanished := make(map[uint32][]int)
	for i, f := range m.state.Folders {
		if !f.Gone && !seen[i] {
			v := f.Cursor.UIDValidity
			if v == 0 {
				v = f.Plan.UIDValidity
			}
			vanished[v] = append(vanished[v], i)
		}
	}
	var renames []activities.FolderRename
	var created []engine.FolderPlan
	for _, p := range fresh {
		if idx := vanished[p.UIDValidity]; p.UIDValidity != 0 && len(idx) == 1 {
			delete(vanished, p.UIDValidity)
			f := &m.state.Folders[idx[0]]
			if f.Plan.Target != p.Target {
				renames = append(renames, activities.FolderRename{From: f.Plan.Target, To: p.Target})
			}
			f.Plan.Source, f.Plan.Target, f.Plan.Subscribed = p.Source, p.Target, p.Subscribed
			f.Cursor.Source, f.Cursor.Target = p.Source, p.Target
			m.state.FoldersRenamed++
			continue
		}
		m.state.Folders = append(m.state.Folders, FolderState{Plan: p, Cursor: engine.Cursor{Source: p.Source, Target: p.Target}})
		m.state.MessagesTotal += int(p.Messages)
		m.state.BytesTotal += p.Bytes
		m.state.FoldersAdded++
		created = append(created, p)
	}
	for _, idx := range vanished {
		for _, i := range idx {
			m.state.Folders[i].Gone = true
			m.state.FoldersDeleted++
		}
	}
	if len(renames) == 0 && len(created) == 0 {
		return nil
	}
	cin := func() interface{} {
		return activities.CreateFoldersInput{Mailbox: m.in.Mailbox, Target: m.in.Target, Renames: renames, Folders: created}
	}
	return m.call(ctx, shortOptions(ctx), a.CreateFolders, cin, nil, nil)
}

// syncActivity is InitialSync or IncrementalSync.
type syncActivity func(context.Context, activities.SyncInput) (activities.SyncResult, error)

// syncAll runs one pass over every folder: FolderConcurrency lanes, each
// running one sync activity at a time over its own connections, folders
// balanced across lanes by message count.
func (m *move) syncAll(ctx workflow.Context, act syncActivity) error {
	var firstErr error
	wg := workflow.NewWaitGroup(ctx)
	lanes := m.lanes()
	pool := &connPool{spare: m.settings.ConnectionsPerMove - len(lanes), running: len(lanes)}
	for _, lane := range lanes {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			defer pool.release()
			if err := m.syncLane(ctx, act, lane, pool); err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait(ctx)
	return firstErr
}

func (m *move) lanes() [][]int {
	n := min(m.settings.ConnectionsPerMove, len(m.state.Folders))
	if n == 0 {
		return nil
	}
	var idx []int
	for i, f := range m.state.Folders {
		if !f.Gone {
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

// connPool shares a move's FolderConcurrency connections (per side) among
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
	apply := func(res activities.SyncResult) {
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
			Connections: pool.share()}
		for _, i := range pending {
			in.Cursors = append(in.Cursors, m.state.Folders[i].Cursor)
		}
		return in
	}
	actx := syncOptions(ctx, m.settings)
	for len(pending) > 0 {
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

func (m *move) verify(ctx workflow.Context) error {
	in := func() interface{} {
		plans := make([]engine.FolderPlan, len(m.state.Folders))
		for i, f := range m.state.Folders {
			plans[i] = f.Plan
		}
		return activities.VerifyInput{Mailbox: m.in.Mailbox, Source: m.in.Source, Target: m.in.Target, Folders: plans}
	}
	var res activities.VerifyResult
	if err := m.call(ctx, shortOptions(ctx), a.Verify, in, &res, nil); err != nil {
		return err
	}
	m.state.Verify = &res
	return nil
}

// warnings explains a CompletedWithWarnings, or is empty.
func (m *move) warnings() string {
	var w string
	if n := len(m.state.BadItems); n > 0 {
		w = fmt.Sprintf("%d bad items: messages the target refused, skipped (see `mailmove batch report`)", n)
	}
	if len(m.state.RefusedKeywords) > 0 {
		keys := make([]string, 0, len(m.state.RefusedKeywords))
		for k := range m.state.RefusedKeywords {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s on %d messages", k, m.state.RefusedKeywords[k]))
		}
		if w != "" {
			w += "; "
		}
		w += "keywords the target does not keep were left off: " + strings.Join(parts, ", ")
	}
	// Bad items and messages the rules filter out are missing by design.
	if v := m.state.Verify; v != nil && v.Missing > len(m.state.BadItems)+m.state.Filtered {
		if w != "" {
			w += "; "
		}
		w += fmt.Sprintf("verification: the target has %d messages fewer than the source, %d more than the bad items and filtered messages explain",
			v.Missing, v.Missing-len(m.state.BadItems)-m.state.Filtered)
	}
	return w
}

// call runs an activity and carries out the policy table on its classified
// failures: record, show the wait, sleep, run again from the progress kept —
// the one place where a move waits out a failure. in builds the input anew
// for each attempt; progress receives what a failed sync attempt had done.
func (m *move) call(ctx, actx workflow.Context, act interface{}, in func() interface{}, out interface{}, progress func(activities.SyncResult)) error {
	for {
		err := workflow.ExecuteActivity(actx, act, in()).Get(ctx, out)
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
		m.wait(ctx, d, n, rule)
	}
}

// succeeded starts the consecutive budgets (logon, connect) afresh.
func (m *move) succeeded() {
	for t := range m.state.Attempts {
		if m.settings.Policy.Rule(t).Consecutive {
			m.state.Attempts[t] = 0
		}
	}
}

// wait shows the wait as StatusDetail with the next attempt's time, gives
// the batch its concurrency slot back, sleeps, and accounts the time.
func (m *move) wait(ctx workflow.Context, d failure.Details, n int, rule failure.Rule) {
	prevStatus, prevDetail := m.state.Status, m.state.StatusDetail
	status, detail := waitDetail(d, prevStatus)
	delay := rule.Delay(n)
	start := workflow.Now(ctx)
	m.state.NextAttemptAt = start.Add(delay)
	attempts := fmt.Sprintf("%d", n)
	if rule.MaximumAttempts > 0 {
		attempts = fmt.Sprintf("%d/%d", n, rule.MaximumAttempts)
	}
	m.state.Reason = fmt.Sprintf("%s (attempt %s, next at %s)", d, attempts, m.state.NextAttemptAt.UTC().Format(time.RFC3339))
	m.release(ctx)
	m.setStatus(ctx, status, detail)

	m.resume = false
	_, _ = workflow.AwaitWithTimeout(ctx, delay, func() bool { return m.resume })
	m.resume = false

	m.state.StallTime[detail] += workflow.Now(ctx).Sub(start)
	m.state.NextAttemptAt = time.Time{}
	m.state.Reason = ""
	m.setStatus(ctx, prevStatus, prevDetail)
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

// release tells the batch that started this move to stop counting it against
// its concurrency: the move is synced, or waiting out a failure that must not
// hold up the other mailboxes.
func (m *move) release(ctx workflow.Context) {
	if m.state.Released {
		return
	}
	m.state.Released = true
	parent := workflow.GetInfo(ctx).ParentWorkflowExecution
	if parent == nil {
		return
	}
	// Best effort: a batch that is gone has nothing to start.
	_ = workflow.SignalExternalWorkflow(ctx, parent.ID, "", SignalMoveReleased, m.in.Mailbox).Get(ctx, nil)
}

func (m *move) continueAsNew(ctx workflow.Context) error {
	// Let an in-flight complete update finish before the history is cut.
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
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
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrBatch.ValueSet(m.in.Batch),
		SearchAttrMailbox.ValueSet(m.in.Mailbox),
		SearchAttrStatus.ValueSet(string(s)),
		SearchAttrStatusDetail.ValueSet(detail),
	)
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
	}
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

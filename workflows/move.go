package workflows

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
)

// a is used only for its method names: workflows call activities through it.
var a *activities.Activities

// MailboxMove moves one mailbox: connect, initial sync, incremental passes
// until completed, finalize. It fails — with the server's words as reason —
// when a failure is final or its retries are spent.
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
}

func (m *move) setup(ctx workflow.Context) error {
	if m.in.Batch == "" || m.in.Mailbox == "" {
		return temporal.NewNonRetryableApplicationError("batch and mailbox are required", "InvalidInput", nil)
	}
	if m.in.State != nil {
		m.state = *m.in.State
	} else {
		m.state = MoveState{Status: StatusQueued, Started: workflow.Now(ctx)}
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (MoveStatus, error) {
		return m.status(), nil
	}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateComplete, func(ctx workflow.Context) (MoveStatus, error) {
		m.state.CompleteRequested = true
		return m.status(), nil
	}, workflow.UpdateHandlerOptions{Validator: func() error {
		switch m.state.Status {
		case StatusCompleting, StatusCompleted, StatusFailed:
			return fmt.Errorf("move of %s is already %s", m.in.Mailbox, m.state.Status)
		}
		return nil
	}})
}

// run is the move's story, top to bottom.
func (m *move) run(ctx workflow.Context) (MoveReport, error) {
	if len(m.state.Folders) == 0 {
		m.setStatus(ctx, StatusConnecting)
		if err := m.connect(ctx); err != nil {
			return m.fail(ctx, err)
		}
	}
	if m.state.SyncedAt.IsZero() {
		m.setStatus(ctx, StatusInitialSync)
		if err := m.syncAll(ctx, a.InitialSync); err != nil {
			return m.fail(ctx, err)
		}
		m.state.SyncedAt = workflow.Now(ctx)
		m.setStatus(ctx, StatusSynced)
		m.notifyBatch(ctx)
	}
	if m.settings.Complete == CompleteManual {
		for !m.state.CompleteRequested {
			m.setStatus(ctx, StatusSynced)
			ok, _ := workflow.AwaitWithTimeout(ctx, m.settings.IncrementalInterval, func() bool { return m.state.CompleteRequested })
			if ok {
				break
			}
			m.setStatus(ctx, StatusIncrementalSync)
			if err := m.syncAll(ctx, a.IncrementalSync); err != nil {
				return m.fail(ctx, err)
			}
			m.state.IncrementalPasses++
			if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
				return MoveReport{}, m.continueAsNew(ctx)
			}
		}
	}

	m.setStatus(ctx, StatusCompleting)
	if err := m.syncAll(ctx, a.IncrementalSync); err != nil {
		return m.fail(ctx, err)
	}
	if err := m.verify(ctx); err != nil {
		return m.fail(ctx, err)
	}
	m.setStatus(ctx, StatusCompleted)
	return m.report(ctx), nil
}

func (m *move) connect(ctx workflow.Context) error {
	var res activities.ConnectResult
	err := workflow.ExecuteActivity(connectOptions(ctx, m.settings), a.Connect, activities.ConnectInput{
		Mailbox: m.in.Mailbox, Source: m.in.Source, Target: m.in.Target,
	}).Get(ctx, &res)
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

// syncActivity is InitialSync or IncrementalSync.
type syncActivity func(context.Context, activities.SyncInput) (activities.SyncResult, error)

// syncAll runs one pass over every folder: FolderConcurrency lanes, each
// running one sync activity at a time over its own connections, folders
// balanced across lanes by message count.
func (m *move) syncAll(ctx workflow.Context, act syncActivity) error {
	lanes := m.lanes()
	var firstErr error
	wg := workflow.NewWaitGroup(ctx)
	for _, lane := range lanes {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			if err := m.syncLane(syncOptions(ctx, m.settings), act, lane); err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait(ctx)
	return firstErr
}

func (m *move) lanes() [][]int {
	n := min(m.settings.FolderConcurrency, len(m.state.Folders))
	if n == 0 {
		return nil
	}
	idx := make([]int, len(m.state.Folders))
	for i := range idx {
		idx[i] = i
	}
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

func (m *move) syncLane(ctx workflow.Context, act syncActivity, lane []int) error {
	pending := lane
	for len(pending) > 0 {
		in := activities.SyncInput{Mailbox: m.in.Mailbox, Source: m.in.Source, Target: m.in.Target, MaxMessages: m.settings.ChunkMessages}
		for _, i := range pending {
			in.Cursors = append(in.Cursors, m.state.Folders[i].Cursor)
		}
		var res activities.SyncResult
		if err := workflow.ExecuteActivity(ctx, act, in).Get(ctx, &res); err != nil {
			return err
		}
		var next []int
		for k, i := range pending {
			m.state.Folders[i].Cursor = res.Cursors[k]
			if res.Done[k] {
				m.state.Folders[i].Copied = true
			} else {
				next = append(next, i)
			}
		}
		m.state.MessagesCopied += res.Copied
		m.state.BytesCopied += res.Bytes
		m.state.MessagesMatched += res.Matched
		m.state.FlagUpdates += res.FlagUpdates
		m.state.BadItems = append(m.state.BadItems, res.BadItems...)
		m.updateDetails(ctx)
		pending = next
	}
	return nil
}

func (m *move) verify(ctx workflow.Context) error {
	plans := make([]engine.FolderPlan, len(m.state.Folders))
	for i, f := range m.state.Folders {
		plans[i] = f.Plan
	}
	var res activities.VerifyResult
	err := workflow.ExecuteActivity(syncOptions(ctx, m.settings), a.Verify, activities.VerifyInput{
		Mailbox: m.in.Mailbox, Source: m.in.Source, Target: m.in.Target, Folders: plans,
	}).Get(ctx, &res)
	if err != nil {
		return err
	}
	m.state.Verify = &res
	if res.Missing > 0 {
		m.state.Reason = fmt.Sprintf("verification: the target has %d messages fewer than the source (see the folder counts)", res.Missing)
	}
	return nil
}

// notifyBatch tells the batch that started this move that its initial sync
// is over, so the batch can start the next queued move.
func (m *move) notifyBatch(ctx workflow.Context) {
	parent := workflow.GetInfo(ctx).ParentWorkflowExecution
	if parent == nil {
		return
	}
	// Best effort: a batch that is gone has nothing to start.
	_ = workflow.SignalExternalWorkflow(ctx, parent.ID, "", SignalMoveSynced, m.in.Mailbox).Get(ctx, nil)
}

func (m *move) continueAsNew(ctx workflow.Context) error {
	// Let an in-flight complete update finish before the history is cut.
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	next := m.in
	st := m.state
	next.State = &st
	return workflow.NewContinueAsNewError(ctx, MailboxMove, next)
}

// fail records the reason, marks the move Failed and fails the workflow so
// the Web UI and `batch status` both show it.
func (m *move) fail(ctx workflow.Context, err error) (MoveReport, error) {
	m.state.Reason = reason(err)
	m.setStatus(ctx, StatusFailed)
	return m.report(ctx), temporal.NewNonRetryableApplicationError(m.state.Reason, "MoveFailed", err)
}

// reason is the admin-readable cause of an activity failure: the failure
// type, the side, what we were doing, the server's words and what to check.
func reason(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		var d activities.FailureDetails
		if appErr.HasDetails() && appErr.Details(&d) == nil && d.Type != "" {
			s := fmt.Sprintf("%s: %s %s", d.Type, d.Side, d.Op)
			if d.Server != "" {
				s += fmt.Sprintf(": server said %q", d.Server)
			}
			if d.Hint != "" {
				s += " — " + d.Hint
			}
			return s
		}
		return appErr.Error()
	}
	return err.Error()
}

func (m *move) setStatus(ctx workflow.Context, s Status) {
	if m.state.Status == s {
		return
	}
	m.state.Status = s
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrBatch.ValueSet(m.in.Batch),
		SearchAttrMailbox.ValueSet(m.in.Mailbox),
		SearchAttrStatus.ValueSet(string(s)),
	)
	m.updateDetails(ctx)
}

// updateDetails refreshes the "current details" the Web UI shows on the
// workflow page.
func (m *move) updateDetails(ctx workflow.Context) {
	st := m.status()
	details := fmt.Sprintf("**%s** — %d%%, %d/%d messages, %s copied, %d/%d folders",
		st.Status, st.PercentComplete, st.MessagesCopied+st.MessagesMatched, st.MessagesTotal, humanBytes(st.BytesCopied), st.FoldersCopied, st.FoldersTotal)
	if st.Reason != "" {
		details += "\n\n" + st.Reason
	}
	workflow.SetCurrentDetails(ctx, details)
}

func (m *move) status() MoveStatus {
	st := MoveStatus{
		Batch: m.in.Batch, Mailbox: m.in.Mailbox, Status: m.state.Status, Reason: m.state.Reason,
		FoldersTotal: len(m.state.Folders), MessagesTotal: m.state.MessagesTotal,
		MessagesCopied: m.state.MessagesCopied, BytesCopied: m.state.BytesCopied,
		MessagesMatched: m.state.MessagesMatched, FlagUpdates: m.state.FlagUpdates,
		BadItems: len(m.state.BadItems), IncrementalPasses: m.state.IncrementalPasses,
		Started: m.state.Started, SyncedAt: m.state.SyncedAt, Verify: m.state.Verify,
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
		st.PercentComplete = min(99, 100*(st.MessagesCopied+st.MessagesMatched)/st.MessagesTotal)
	}
	return st
}

func (m *move) report(ctx workflow.Context) MoveReport {
	return MoveReport{MoveStatus: m.status(), BadItems: m.state.BadItems, Duration: workflow.Now(ctx).Sub(m.state.Started)}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

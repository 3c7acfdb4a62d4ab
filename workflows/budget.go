package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/internal/profile"
)

// DetailWaitingForDailyQuotaPrefix + side is the StatusDetail of a move
// that has copied a provider's daily transfer budget and waits for the next
// window (WaitingForDailyQuota_Source: Gmail's 2,500 MB a day of download).
const DetailWaitingForDailyQuotaPrefix = "WaitingForDailyQuota_"

// QuotaLedger counts what a move copied in the current window of one
// side's daily transfer budget.
type QuotaLedger struct {
	WindowStart time.Time
	// Used includes the grants of calls under way, charged when they
	// start and refunded by what they report: a call that reports nothing
	// (its worker died) keeps its whole grant spent, so the budget holds.
	Used int64
}

// budget is one side's daily transfer budget: the source profile's
// download, the target profile's upload.
type budget struct {
	limit   int64
	window  time.Duration
	side    failure.Side
	profile string
}

// profiles returns the sides' profiles, as named or detected, with the
// batch's profile file applied.
func (m *move) profiles() (src, tgt profile.Profile) {
	return profile.Resolve(m.state.SourceProfile, m.settings.Profiles), profile.Resolve(m.state.TargetProfile, m.settings.Profiles)
}

// budgets are the sides' budgets, source first; each holds in its own
// window.
func (m *move) budgets() []budget {
	src, tgt := m.profiles()
	var bs []budget
	if src.DownloadBytesPerWindow > 0 {
		bs = append(bs, budget{limit: src.DownloadBytesPerWindow, window: time.Duration(src.Window), side: failure.SideSource, profile: src.Name})
	}
	if tgt.UploadBytesPerWindow > 0 {
		bs = append(bs, budget{limit: tgt.UploadBytesPerWindow, window: time.Duration(tgt.Window), side: failure.SideTarget, profile: tgt.Name})
	}
	return bs
}

// connections is the most connection pairs the move holds: the batch's
// setting, within both profiles' per-user caps.
func (m *move) connections() int {
	n := m.settings.ConnectionsPerMove
	src, tgt := m.profiles()
	for _, c := range []int{src.ConnectionsPerUser, tgt.ConnectionsPerUser} {
		if c > 0 {
			n = min(n, c)
		}
	}
	return n
}

// ledger rolls the side's window over when it has passed and returns its
// ledger.
func (m *move) ledger(ctx workflow.Context, b budget) *QuotaLedger {
	now := workflow.Now(ctx)
	if m.state.Quota == nil {
		m.state.Quota = map[failure.Side]*QuotaLedger{}
	}
	q := m.state.Quota[b.side]
	if q == nil {
		q = &QuotaLedger{WindowStart: now}
		m.state.Quota[b.side] = q
	}
	if now.Sub(q.WindowStart) >= b.window {
		// Calls under way stay charged to the new window too.
		q.WindowStart, q.Used = now, m.granted
	}
	return q
}

// free is what the tightest budget has left, and that budget.
func (m *move) free(ctx workflow.Context) (int64, budget, bool) {
	var least int64
	var tight budget
	for i, b := range m.budgets() {
		if f := b.limit - m.ledger(ctx, b).Used; i == 0 || f < least {
			least, tight = f, b
		}
	}
	return least, tight, tight.limit > 0
}

// grant charges every budget with a call's share: what the tightest has
// free, split among the lanes running (all of it for a lane whose share
// was too small for its next message). whole says no budget has anything
// spent or under way: a message larger than the share may go alone.
func (m *move) grant(ctx workflow.Context, lanes int, all bool) (bytes int64, whole bool) {
	free, _, ok := m.free(ctx)
	if !ok {
		return 0, false
	}
	whole = true
	for _, b := range m.budgets() {
		whole = whole && m.ledger(ctx, b).Used == 0
	}
	if free <= 0 {
		// A byte: the call still syncs flags and deletions, and reports
		// BudgetReached if it had mail to copy (0 would mean no budget).
		free = 1
	}
	if all {
		lanes = 1
	}
	bytes = max(free/int64(max(lanes, 1)), 1)
	whole = whole && bytes == free
	for _, b := range m.budgets() {
		m.ledger(ctx, b).Used += bytes
	}
	m.granted += bytes
	return bytes, whole
}

// settle refunds what a call was granted and did not copy (or charges what
// a larger-than-the-budget message took beyond it).
func (m *move) settle(granted, copied int64) {
	if granted == 0 {
		return
	}
	//workflowcheck:ignore each ledger is settled on its own: the order is irrelevant
	for _, q := range m.state.Quota {
		q.Used -= granted - copied
	}
	m.granted -= granted
}

// awaitBudget waits, while a budget has no more than short bytes free (0,
// or the grant that was too small for the lane's next message), until its
// window rolls over or more is free: at a safe point, between two calls,
// holding no connection.
func (m *move) awaitBudget(ctx workflow.Context, short int64) error {
	free, b, ok := m.free(ctx)
	if !ok || free > short {
		return nil
	}
	q := m.ledger(ctx, b)
	start, end := q.WindowStart, q.WindowStart.Add(b.window)
	detail := DetailWaitingForDailyQuotaPrefix + sideName(b.side)
	if m.quotaWaiters == 0 {
		m.quotaSince = workflow.Now(ctx)
	}
	m.quotaWaiters++
	m.releaseIdle(ctx)
	id := m.beginWait(ctx, activeWait{status: m.phaseStatus(), detail: detail, next: end,
		reason: fmt.Sprintf("the %s's daily transfer budget (%s per %s, profile %s) is used up; copying resumes at %s",
			b.side, humanize.Bytes(b.limit), b.window, b.profile, end.UTC().Format(time.RFC3339))})
	// One wait: a fresh window ends it even for a lane whose next message
	// is larger than the whole budget (it then goes alone); another budget
	// still short stops the next call, whose lane waits again.
	_, err := workflow.AwaitWithTimeout(ctx, end.Sub(workflow.Now(ctx)), func() bool {
		return b.limit-q.Used > short || q.WindowStart != start
	})
	m.quotaWaiters--
	if m.quotaWaiters == 0 {
		m.state.StallTime[detail] += workflow.Now(ctx).Sub(m.quotaSince)
		m.waited(ctx, detail, workflow.Now(ctx).Sub(m.quotaSince))
	}
	m.endWait(ctx, id)
	if err != nil {
		return err // cancelled
	}
	return m.hold(ctx)
}

// sideName is a side as StatusDetail spells it.
func sideName(s failure.Side) string {
	if s == failure.SideTarget {
		return "Target"
	}
	return "Source"
}

// budgetWindows is how many windows of its tightest budget copying the
// whole mailbox takes (the one that takes longest), 0 without a budget:
// the ETA before the copy starts.
func (m *move) budgetWindows() (int, time.Duration) {
	var n int
	var window time.Duration
	for _, b := range m.budgets() {
		if m.state.BytesTotal <= 0 {
			break
		}
		k := int((m.state.BytesTotal + b.limit - 1) / b.limit)
		if time.Duration(k)*b.window > time.Duration(n)*window {
			n, window = k, b.window
		}
	}
	return n, window
}

// maxMessageBytes is the target profile's message size limit (0: none).
func (m *move) maxMessageBytes() int64 {
	_, tgt := m.profiles()
	return tgt.MaxMessageBytes
}

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

// QuotaLedger counts what a move copied in the current window of its
// daily transfer budget.
type QuotaLedger struct {
	WindowStart time.Time
	// Used includes the grants of calls under way, charged when they
	// start and refunded by what they report: a call that reports nothing
	// (its worker died) keeps its whole grant spent, so the budget holds.
	Used int64
}

// budget is the tighter of the source's download and the target's upload
// budget.
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

func (m *move) budget() (budget, bool) {
	src, tgt := m.profiles()
	var b budget
	if src.DownloadBytesPerWindow > 0 {
		b = budget{limit: src.DownloadBytesPerWindow, window: time.Duration(src.Window), side: failure.SideSource, profile: src.Name}
	}
	if l := tgt.UploadBytesPerWindow; l > 0 && (b.limit == 0 || l < b.limit) {
		b = budget{limit: l, window: time.Duration(tgt.Window), side: failure.SideTarget, profile: tgt.Name}
	}
	return b, b.limit > 0
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

// ledger rolls the budget's window over when it has passed and returns it.
func (m *move) ledger(ctx workflow.Context, b budget) *QuotaLedger {
	now := workflow.Now(ctx)
	q := m.state.Quota
	if q == nil {
		q = &QuotaLedger{WindowStart: now}
		m.state.Quota = q
	}
	if now.Sub(q.WindowStart) >= b.window {
		// Calls under way stay charged to the new window too.
		q.WindowStart, q.Used = now, m.granted
	}
	return q
}

// grant charges the budget with a call's share: what is free, split among
// the lanes running (all of it for a lane whose share was too small for
// its next message), and says whether it is the window's whole budget.
func (m *move) grant(ctx workflow.Context, lanes int, all bool) (bytes int64, whole bool) {
	b, ok := m.budget()
	if !ok {
		return 0, false
	}
	q := m.ledger(ctx, b)
	free := b.limit - q.Used
	if free <= 0 {
		// A byte: the call still syncs flags and deletions, and reports
		// BudgetReached if it had mail to copy (0 would mean no budget).
		free = 1
	}
	if all {
		lanes = 1
	}
	bytes = max(free/int64(max(lanes, 1)), 1)
	whole = bytes == b.limit
	q.Used += bytes
	m.granted += bytes
	return bytes, whole
}

// settle refunds what a call was granted and did not copy (or charges what
// a larger-than-the-budget message took beyond it).
func (m *move) settle(granted, copied int64) {
	if granted == 0 || m.state.Quota == nil {
		return
	}
	m.state.Quota.Used -= granted - copied
	m.granted -= granted
}

// awaitBudget waits, when the budget has no more than short bytes free
// (0, or the grant that was too small for the lane's next message),
// until the window rolls over or more is free: at a safe point, between
// two calls, holding no connection.
func (m *move) awaitBudget(ctx workflow.Context, short int64) error {
	b, ok := m.budget()
	if !ok {
		return nil
	}
	q := m.ledger(ctx, b)
	if b.limit-q.Used > short {
		return nil
	}
	end := q.WindowStart.Add(b.window)
	detail := DetailWaitingForDailyQuotaPrefix + sideName(b.side)
	if m.quotaWaiters == 0 {
		m.quotaWait = quotaWait{start: workflow.Now(ctx), status: m.state.Status, detail: m.state.StatusDetail, reason: m.state.Reason}
		m.state.Reason = fmt.Sprintf("the %s's daily transfer budget (%s per %s, profile %s) is used up; copying resumes at %s",
			b.side, humanize.Bytes(b.limit), b.window, b.profile, end.UTC().Format(time.RFC3339))
		m.release(ctx)
		m.setStatus(ctx, m.state.Status, detail)
	}
	m.quotaWaiters++
	_, err := workflow.AwaitWithTimeout(ctx, end.Sub(workflow.Now(ctx)), func() bool {
		return m.state.Quota.Used < b.limit-short || m.state.Quota.WindowStart != q.WindowStart
	})
	m.quotaWaiters--
	if m.quotaWaiters == 0 {
		w := m.quotaWait
		m.state.StallTime[detail] += workflow.Now(ctx).Sub(w.start)
		m.state.Reason = w.reason
		m.setStatus(ctx, w.status, w.detail)
	}
	if err != nil {
		return err // cancelled
	}
	m.ledger(ctx, b)
	return nil
}

// quotaWait is what the move showed before its lanes began to wait for the
// budget.
type quotaWait struct {
	start          time.Time
	status         Status
	detail, reason string
}

// sideName is a side as StatusDetail spells it.
func sideName(s failure.Side) string {
	if s == failure.SideTarget {
		return "Target"
	}
	return "Source"
}

// budgetWindows is how many windows of its budget copying the whole
// mailbox takes, 0 without a budget: the ETA before the copy starts.
func (m *move) budgetWindows() (int, time.Duration) {
	b, ok := m.budget()
	if !ok || m.state.BytesTotal <= 0 {
		return 0, 0
	}
	return int((m.state.BytesTotal + b.limit - 1) / b.limit), b.window
}

// maxMessageBytes is the target profile's message size limit (0: none).
func (m *move) maxMessageBytes() int64 {
	_, tgt := m.profiles()
	return tgt.MaxMessageBytes
}

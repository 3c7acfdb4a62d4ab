package workflows

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/failure"
)

// rsSpan is one sync activity call: which mailbox copied, from when to when.
type rsSpan = prSpan

// rsRec records the sync calls of a batch test (mocks with .After(rsD):
// the test environment runs the mock's function when the delay is over, so
// a call spans [now-rsD, now]).
type rsRec struct {
	mu    sync.Mutex
	env   *testsuite.TestWorkflowEnvironment
	spans []rsSpan
	calls int
	limit int // fail every call after this many
	t0    time.Time
	// fail, when set, makes a call fail with the error it returns.
	fail func(in activities.SyncInput, act string, n int) error
	// notDone, when set, leaves the lane's folders to copy (more chunks).
	notDone func(in activities.SyncInput, act string, n int) bool
	perMB   map[string]int
}

const rsD = 10 * time.Minute

func newRsRec(env *testsuite.TestWorkflowEnvironment, limit int) *rsRec {
	return &rsRec{env: env, limit: limit, t0: env.Now(), perMB: map[string]int{}}
}

func (r *rsRec) fn(act string) func(context.Context, activities.SyncInput) (activities.SyncResult, error) {
	return func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		r.mu.Lock()
		now := r.env.Now()
		r.calls++
		if r.calls > r.limit {
			// Enough: every move fails (unclassified, non-retryable) and
			// closes, so the batch ends (cancelling the batch leaves
			// abandoned children, continued as new, running forever).
			r.mu.Unlock()
			return activities.SyncResult{}, temporal.NewNonRetryableApplicationError("review: enough calls", "ReviewStop", nil)
		}
		r.perMB[in.Mailbox]++
		n := r.perMB[in.Mailbox]
		folder := ""
		if len(in.Cursors) > 0 {
			folder = in.Cursors[0].Source
		}
		var err error
		if r.fail != nil {
			err = r.fail(in, act, n)
		}
		r.spans = append(r.spans, rsSpan{mailbox: in.Mailbox, act: act, folder: folder, start: now.Add(-rsD), end: now, failed: err != nil})
		nd := r.notDone != nil && r.notDone(in, act, n)
		r.mu.Unlock()
		if err != nil {
			return activities.SyncResult{}, err
		}
		res, _ := syncAllDone(ctx, in)
		if nd {
			for i := range res.Done {
				res.Done[i] = false
			}
		}
		return res, nil
	}
}

// peak is the most distinct mailboxes copying at one instant, over the
// instants in [from, to) (offsets from the batch's start), and when.
func (r *rsRec) peak(from, to time.Duration) (int, time.Duration, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return peakOf(r.spans, r.t0, from, to)
}

// callsAfter counts each mailbox's calls starting at or after off.
func (r *rsRec) callsAfter(off time.Duration) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return callsAfterOf(r.spans, r.t0, off)
}

func (r *rsRec) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dumpUnlocked()
}

func (r *rsRec) dumpUnlocked() string {
	s := ""
	for i, x := range r.spans {
		if i >= 60 {
			s += "...\n"
			break
		}
		s += fmt.Sprintf("  %-4s %-3s %-6s %v-%v failed=%v\n", x.mailbox, x.act, x.folder, x.start.Sub(r.t0), x.end.Sub(r.t0), x.failed)
	}
	return s
}

// rsMock mocks the activities; syncs take rsD of virtual time.
func rsMock(env *testsuite.TestWorkflowEnvironment, r *rsRec) {
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(rsD).Return(r.fn("I"))
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).After(rsD).Return(r.fn("N"))
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
}

func rsMoves(s Settings, names ...string) []MailboxMoveInput {
	var mv []MailboxMoveInput
	for _, n := range names {
		mv = append(mv, MailboxMoveInput{Mailbox: n, Settings: s})
	}
	return mv
}

func rsBatchResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) BatchStatus {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatalf("batch did not end")
	}
	var st BatchStatus
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("batch error = %v", err)
	}
	env.GetWorkflowResult(&st)
	return st
}

var rsUnavailable = withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: minutes(5)})

func rsUnavail() error {
	return failed(failure.TypeServerUnavailable, failure.SideTarget, "Unavailable", "Server busy", nil)
}

// One lane of a two-lane move fails and waits out the failure while the
// other lane keeps copying a large folder. The wait gives the move's slot
// back to the batch, which starts the next move: two mailboxes copy at once
// with --concurrency 1.
func TestReviewSlotsLaneWaitFreesSlotWhileOtherLaneCopies(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 300)
	r.fail = func(in activities.SyncInput, act string, n int) error {
		if in.Mailbox == "a@x" && act == "I" && in.Cursors[0].Source == "Sent" && n <= 2 {
			return rsUnavail()
		}
		return nil
	}
	// a's INBOX is large: six chunks of rsD each.
	inbox := 0
	r.notDone = func(in activities.SyncInput, act string, n int) bool {
		if in.Mailbox == "a@x" && act == "I" && in.Cursors[0].Source == "INBOX" {
			inbox++
			return inbox < 6
		}
		return false
	}
	rsMock(env, r)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1,
		Moves: rsMoves(Settings{ConnectionsPerMove: 2, Policy: rsUnavailable}, "a@x", "b@x")})
	st := rsBatchResult(t, env)
	for _, e := range st.Entries {
		if e.Error != "" {
			t.Fatalf("entry %+v failed", e)
		}
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Fatalf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

// A `move resume` while the move waits for a batch slot lets it copy at
// once (uncounted, by design). But the batch still has its request and
// grants it later (while the resumed pass runs); that grant stays in
// m.grants, so the move's NEXT hold finds it and copies at once although
// the batch, after the resumed pass released, gave the slot to another
// move. Timeline (--concurrency 1, 10m passes, 1m interval): a waits for a
// slot from +21m, resumed at +35m (copies +35..+45), b releases at +40m ->
// batch grants a; a releases at +45m -> b granted; a holds at +46m and
// copies at once on the stale grant, next to b.
func TestReviewSlotsResumeDuringSlotWaitLeavesStaleGrant(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 200)
	rsMock(env, r)
	var during MoveStatus
	var qerr error
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflowByID(MoveWorkflowID("b1", "a@x"), QueryStatus)
		if qerr = err; err == nil {
			qerr = v.Get(&during)
		}
		if err := env.SignalWorkflowByID(MoveWorkflowID("b1", "a@x"), SignalResume, nil); err != nil {
			t.Errorf("resume: %v", err)
		}
	}, 35*time.Minute)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 1}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, Moves: rsMoves(s, "a@x", "b@x")})
	if qerr != nil || during.StatusDetail != DetailWaitingForBatchSlot {
		t.Fatalf("a at +35m: %s (%v), want WaitingForBatchSlot", during.StatusDetail, qerr)
	}
	// After the resumed pass (+35m..+45m) is over, the bound holds.
	if p, at, who := r.peak(45*time.Minute, 1000*time.Hour); p > 1 {
		late, _, _ := r.peak(3*time.Hour, 1000*time.Hour)
		t.Fatalf("%d mailboxes %v copying at once at +%v with --concurrency 1, after the resumed pass ended at +45m (still %d after +3h); calls:\n%s", p, who, at, late, r.dump())
	}
}

// Auto-complete moves with --concurrency 1: each releases its slot when
// synced and asks again at once for its final pass. The bound must hold,
// and a move under way should finish before the next one begins.
func TestReviewSlotsAutoMovesFinalPassBound(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 200)
	rsMock(env, r)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1,
		Moves: rsMoves(Settings{ConnectionsPerMove: 1}, "a@x", "b@x", "c@x")})
	st := rsBatchResult(t, env)
	for _, e := range st.Entries {
		if e.Error != "" || !e.Closed {
			t.Fatalf("entry %+v", e)
		}
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Fatalf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

// --concurrency lowered from 3 to 1 while five synced moves do incremental
// passes: once the calls under way at the change are over, no more than one
// mailbox copies at once, and every move still gets passes (no deadlock).
func TestReviewSlotsConcurrencyLoweredWhileRunning(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 300)
	rsMock(env, r)
	lowerAt := 3 * time.Hour
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalConcurrency, 1) }, lowerAt)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 1}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 3, Moves: rsMoves(s, "a@x", "b@x", "c@x", "d@x", "e@x")})
	if p, _, _ := r.peak(time.Hour, lowerAt); p != 3 {
		t.Errorf("before the change at most %d copied at once, want 3", p)
	}
	if p, at, who := r.peak(lowerAt+rsD, 1000*time.Hour); p > 1 {
		t.Errorf("%d mailboxes %v copying at once at +%v after --concurrency was lowered to 1", p, who, at)
	}
	if n := r.callsAfter(lowerAt + rsD); len(n) != 5 {
		t.Errorf("calls per mailbox after the change %v, want all 5 still passing", n)
	}
}

// Single-lane manual moves whose calls fail now and then
// (ServerUnavailable, 5m waits) between incremental passes: every failure
// releases, every retry holds. The bound holds throughout, and the moves
// keep passing (no slot leaks: all four still copy late in the run).
func TestReviewSlotsFailuresInterleavedWithPasses(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 400)
	r.fail = func(in activities.SyncInput, act string, n int) error {
		if n%3 == 0 || (in.Mailbox == "b@x" && n%4 == 1) {
			return rsUnavail()
		}
		return nil
	}
	rsMock(env, r)
	s := Settings{Complete: CompleteManual, IncrementalInterval: 2 * time.Minute, ConnectionsPerMove: 1, Policy: rsUnavailable}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Moves: rsMoves(s, "a@x", "b@x", "c@x", "d@x")})
	// After +2h all four moves have started.
	if p, at, who := r.peak(2*time.Hour, 1000*time.Hour); p > 2 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 2", p, who, at)
	}
	late := r.spans[len(r.spans)-1].end.Sub(r.t0) / 2
	if n := r.callsAfter(late); len(n) != 4 {
		t.Errorf("calls per mailbox in the second half %v, want all 4", n)
	}
	if p, _, _ := r.peak(late, 1000*time.Hour); p != 2 {
		t.Errorf("at most %d copying at once late in the run, want 2 (a slot leaked?)", p)
	}
}

// Two lanes of one move (two folders, ConnectionsPerMove 2) fail at once
// and wait; both end their waits and hold. One grant must serve both, the
// move must not deadlock, and the other move must not copy meanwhile.
func TestReviewSlotsBothLanesWaitAndHold(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 300)
	r.fail = func(in activities.SyncInput, act string, n int) error {
		if in.Mailbox == "a@x" && n <= 4 {
			return rsUnavail()
		}
		return nil
	}
	rsMock(env, r)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1,
		Moves: rsMoves(Settings{ConnectionsPerMove: 2, Policy: rsUnavailable}, "a@x", "b@x")})
	st := rsBatchResult(t, env)
	for _, e := range st.Entries {
		if e.Error != "" || !e.Closed {
			t.Fatalf("entry %+v", e)
		}
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Fatalf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

// Manual moves that continue as new every 2 passes while others hold and
// ask for slots: the new run keeps Released and its parent; the bound
// holds and nobody stalls.
func TestReviewSlotsContinueAsNewKeepsTheBound(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 300)
	rsMock(env, r)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 2, PassesPerRun: 2}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Moves: rsMoves(s, "a@x", "b@x", "c@x", "d@x")})
	if p, at, who := r.peak(2*time.Hour, 1000*time.Hour); p != 2 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 2 (want 2)", p, who, at)
	}
	late := r.spans[len(r.spans)-1].end.Sub(r.t0) / 2
	if n := r.callsAfter(late); len(n) != 4 || n["a@x"] < 10 {
		t.Errorf("calls per mailbox in the second half (+%v on) %v, want all 4 passing, several times", late, n)
	}
}

// complete-all while moves are queued: the later moves complete after
// their initial sync; their final passes take slots like every copy. The
// batch ends, every move completes, and the bound holds once the last move
// has started (before that, the race of TestReviewSlotsAutoMovesFinalPassBound
// sometimes breaks it here too).
func TestReviewSlotsFinalPassAfterCompleteAll(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 300)
	rsMock(env, r)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCompleteAll, nil) }, time.Minute)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 2}
	moves := rsMoves(s, "a@x", "b@x", "c@x", "d@x")
	moves[0].Settings.Complete = CompleteAuto
	moves[1].Settings.Complete = CompleteAuto
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Moves: moves})
	st := rsBatchResult(t, env)
	for _, e := range st.Entries {
		if e.Error != "" || !e.Closed {
			t.Fatalf("entry %+v", e)
		}
	}
	var last time.Duration
	for _, x := range r.spans {
		if x.mailbox == "d@x" && x.act == "I" {
			last = x.end.Sub(r.t0)
			break
		}
	}
	if last == 0 {
		t.Fatalf("d never copied; calls:\n%s", r.dump())
	}
	if p, at, who := r.peak(last, 1000*time.Hour); p > 2 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 2; calls:\n%s", p, who, at, r.dump())
	}
}

// Moves that close while the batch counts them or while they ask: a is
// cancelled while it waits for a slot (WaitingForBatchSlot), c fails in its
// final pass (a final failure) while it holds one. The others still get
// their slots and the batch ends.
func TestReviewSlotsFailedAndCancelledMovesFreeTheirSlots(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 300)
	r.fail = func(in activities.SyncInput, act string, n int) error {
		if in.Mailbox == "c@x" && act == "N" {
			return failed(failure.TypeTargetFull, failure.SideTarget, "Full", "Quota exceeded", nil)
		}
		return nil
	}
	rsMock(env, r)
	// a (manual) synced at +20m, b started, a asked at +21m: at +25m a
	// waits for b's slot. Cancel it there.
	var during MoveStatus
	env.RegisterDelayedCallback(func() {
		if v, err := env.QueryWorkflowByID(MoveWorkflowID("b1", "a@x"), QueryStatus); err == nil {
			_ = v.Get(&during)
		}
		env.CancelWorkflowByID(MoveWorkflowID("b1", "a@x"), "")
	}, 25*time.Minute)
	pol := withRule(failure.TypeTargetFull, failure.Rule{Final: true})
	moves := rsMoves(Settings{ConnectionsPerMove: 1, Policy: pol}, "a@x", "b@x", "c@x", "d@x", "e@x")
	moves[0].Settings.Complete, moves[0].Settings.IncrementalInterval = CompleteManual, time.Minute
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, Moves: moves})
	st := rsBatchResult(t, env)
	if during.StatusDetail != DetailWaitingForBatchSlot {
		t.Errorf("a at +25m: %s, want WaitingForBatchSlot", during.StatusDetail)
	}
	for _, e := range st.Entries {
		if !e.Closed {
			t.Errorf("entry %+v not closed", e)
		}
	}
	if st.Entries[0].Error == "" || st.Entries[2].Error == "" || st.Entries[1].Error != "" || st.Entries[3].Error != "" || st.Entries[4].Error != "" {
		t.Errorf("entries %+v, want a cancelled, c failed, b d e completed", st.Entries)
	}
	if n := r.callsAfter(0); n["e@x"] != 2 || n["d@x"] != 2 {
		t.Errorf("calls %v, want d's and e's initial and final passes", n)
	}
}

// A `move resume` during a failure wait (not a slot wait): the wait ends
// early, the move then asks for a slot like after any wait. The bound
// holds and both moves complete.
func TestReviewSlotsResumeDuringFailureWait(t *testing.T) {
	env := newEnv(t)
	r := newRsRec(env, 300)
	r.fail = func(in activities.SyncInput, act string, n int) error {
		if in.Mailbox == "a@x" && n == 1 {
			return rsUnavail()
		}
		return nil
	}
	rsMock(env, r)
	var during MoveStatus
	env.RegisterDelayedCallback(func() {
		if v, err := env.QueryWorkflowByID(MoveWorkflowID("b1", "a@x"), QueryStatus); err == nil {
			_ = v.Get(&during)
		}
		_ = env.SignalWorkflowByID(MoveWorkflowID("b1", "a@x"), SignalResume, nil)
	}, 15*time.Minute)
	long := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: minutes(600)})
	start := env.Now()
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1,
		Moves: rsMoves(Settings{ConnectionsPerMove: 1, Policy: long}, "a@x", "b@x")})
	st := rsBatchResult(t, env)
	if during.StatusDetail != "StalledDueToTarget_Unavailable" {
		t.Errorf("a at +15m: %s, want its failure wait", during.StatusDetail)
	}
	for _, e := range st.Entries {
		if e.Error != "" || !e.Closed {
			t.Errorf("entry %+v", e)
		}
	}
	if d := env.Now().Sub(start); d > 2*time.Hour {
		t.Errorf("batch took %v: the resume did not end the wait", d)
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

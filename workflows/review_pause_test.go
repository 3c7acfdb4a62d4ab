package workflows

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/failure"
)

// prSpan is one sync activity call.
type prSpan struct {
	mailbox, act, folder string
	start, end           time.Time
	failed               bool
}

// prRec records the sync calls of a batch. Mocks are registered per
// folder with .After(d): the test environment runs the mock's function
// when the delay is over, so a call spans [now-d, now].
type prRec struct {
	mu    sync.Mutex
	env   *testsuite.TestWorkflowEnvironment
	t0    time.Time
	spans []prSpan
	calls int
	limit int // every call after this many fails non-retryably (stops the run)
	n     map[string]int
	// fail, when set, makes a call fail with the error it returns.
	fail func(in activities.SyncInput, act string, n int) error
	// notDone, when set, leaves the call's folders to copy (more chunks).
	notDone func(in activities.SyncInput, act string, n int) bool
}

func newPrRec(env *testsuite.TestWorkflowEnvironment, limit int) *prRec {
	return &prRec{env: env, t0: env.Now(), limit: limit, n: map[string]int{}}
}

func prFolder(in activities.SyncInput) string {
	if len(in.Cursors) == 0 {
		return ""
	}
	return in.Cursors[0].Source
}

func (r *prRec) fn(act string, d time.Duration) func(context.Context, activities.SyncInput) (activities.SyncResult, error) {
	return func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		r.mu.Lock()
		now := r.env.Now()
		r.calls++
		if r.calls > r.limit {
			r.mu.Unlock()
			return activities.SyncResult{}, temporal.NewNonRetryableApplicationError("review: enough calls", "ReviewStop", nil)
		}
		key := in.Mailbox + "/" + act + "/" + prFolder(in)
		r.n[key]++
		n := r.n[key]
		var err error
		if r.fail != nil {
			err = r.fail(in, act, n)
		}
		r.spans = append(r.spans, prSpan{mailbox: in.Mailbox, act: act, folder: prFolder(in), start: now.Add(-d), end: now, failed: err != nil})
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

// prMock mocks the activities: sync calls whose first folder is INBOX take
// inbox, the others (Sent) take sent.
func prMock(env *testsuite.TestWorkflowEnvironment, r *prRec, inbox, sent time.Duration) {
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	isInbox := mock.MatchedBy(func(in activities.SyncInput) bool { return prFolder(in) == "INBOX" })
	notInbox := mock.MatchedBy(func(in activities.SyncInput) bool { return prFolder(in) != "INBOX" })
	env.OnActivity(a.InitialSync, mock.Anything, isInbox).After(inbox).Return(r.fn("I", inbox))
	env.OnActivity(a.InitialSync, mock.Anything, notInbox).After(sent).Return(r.fn("I", sent))
	env.OnActivity(a.IncrementalSync, mock.Anything, isInbox).After(inbox).Return(r.fn("N", inbox))
	env.OnActivity(a.IncrementalSync, mock.Anything, notInbox).After(sent).Return(r.fn("N", sent))
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
}

// peak is the most distinct mailboxes copying at one instant, over the
// span starts in [from, to) (offsets from t0).
func (r *prRec) peak(from, to time.Duration) (int, time.Duration, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return peakOf(r.spans, r.t0, from, to)
}

// peakOf is the most distinct mailboxes with overlapping calls at one
// call's start, over the starts in [from, to) (offsets from t0), when,
// and which.
func peakOf(spans []prSpan, t0 time.Time, from, to time.Duration) (int, time.Duration, []string) {
	best, at := 0, time.Duration(0)
	var who []string
	for _, x := range spans {
		off := x.start.Sub(t0)
		if off < from || off >= to {
			continue
		}
		set := map[string]bool{}
		for _, y := range spans {
			if !y.start.After(x.start) && y.end.After(x.start) {
				set[y.mailbox] = true
			}
		}
		if len(set) > best {
			best, at = len(set), off
			who = who[:0]
			for m := range set {
				who = append(who, m)
			}
			sort.Strings(who)
		}
	}
	return best, at, who
}

// startsIn lists the calls starting in [from, to).
func (r *prRec) startsIn(from, to time.Duration) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, x := range r.spans {
		if off := x.start.Sub(r.t0); off >= from && off < to {
			out = append(out, fmt.Sprintf("%s %s %s at +%v", x.mailbox, x.act, x.folder, off))
		}
	}
	return out
}

// callsAfter counts each mailbox's calls starting at or after off.
func (r *prRec) callsAfter(off time.Duration) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return callsAfterOf(r.spans, r.t0, off)
}

func callsAfterOf(spans []prSpan, t0 time.Time, off time.Duration) map[string]int {
	n := map[string]int{}
	for _, x := range spans {
		if x.start.Sub(t0) >= off {
			n[x.mailbox]++
		}
	}
	return n
}

func (r *prRec) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := ""
	for i, x := range r.spans {
		if i >= 80 {
			s += "  ...\n"
			break
		}
		s += fmt.Sprintf("  %-4s %s %-5s +%v..+%v failed=%v\n", x.mailbox, x.act, x.folder, x.start.Sub(r.t0), x.end.Sub(r.t0), x.failed)
	}
	return s
}

func prMoves(s Settings, names ...string) []MailboxMoveInput {
	var mv []MailboxMoveInput
	for _, n := range names {
		mv = append(mv, MailboxMoveInput{Mailbox: n, Settings: s})
	}
	return mv
}

func prResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) BatchStatus {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatalf("batch did not end")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("batch error = %v", err)
	}
	var st BatchStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func prAllCompleted(t *testing.T, st BatchStatus) {
	t.Helper()
	for _, e := range st.Entries {
		if e.Error != "" || !e.Closed || !e.Started {
			t.Errorf("entry %+v, want every move started and completed", e)
		}
	}
}

func prSignalAt(env *testsuite.TestWorkflowEnvironment, at time.Duration, name string, arg interface{}) {
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(name, arg) }, at)
}

func prBatchStatus(env *testsuite.TestWorkflowEnvironment) (BatchStatus, error) {
	var st BatchStatus
	v, err := env.QueryWorkflow(QueryStatus)
	if err == nil {
		err = v.Get(&st)
	}
	return st, err
}

// chunks: every folder of an initial sync takes k calls.
func prChunks(k int) func(activities.SyncInput, string, int) bool {
	return func(_ activities.SyncInput, act string, n int) bool { return act == "I" && n < k }
}

// Baseline: two-lane moves whose lanes are out of phase (10m and 7m
// calls), paused mid-call at +23m and resumed at +3h. No call starts while
// paused, the bound (2) holds throughout and every move completes.
func TestReviewPauseNoCallStartsWhilePaused(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 400)
	r.notDone = prChunks(5)
	prMock(env, r, 10*time.Minute, 7*time.Minute)
	pauseAt, resumeAt := 23*time.Minute, 3*time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	prSignalAt(env, resumeAt, SignalPause, false)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2,
		Moves: prMoves(Settings{ConnectionsPerMove: 2}, "a@x", "b@x", "c@x", "d@x")})
	st := prResult(t, env)
	prAllCompleted(t, st)
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused (+%v..+%v): %v", pauseAt, resumeAt, s)
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 2 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 2; calls:\n%s", p, who, at, r.dump())
	}
}

// Same, paused while the slow lane is mid-call and resumed only after the
// fast lane yielded (+20m) but before the slow lane's call ends (+25m):
// the move asked before the resume, so it gets the slot back first.
func TestReviewPauseYieldOfOneLaneWhileOtherCopies(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	r.notDone = func(in activities.SyncInput, act string, n int) bool {
		return act == "I" && in.Mailbox == "a@x" && n < 4
	}
	prMock(env, r, 10*time.Minute, 25*time.Minute)
	pauseAt, resumeAt := 12*time.Minute, 22*time.Minute
	prSignalAt(env, pauseAt, SignalPause, true)
	prSignalAt(env, resumeAt, SignalPause, false)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1,
		Moves: prMoves(Settings{ConnectionsPerMove: 2}, "a@x", "b@x")})
	st := prResult(t, env)
	prAllCompleted(t, st)
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused: %v", s)
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

// Resume and pause in the same instant while a move asks for a slot: the
// resume grants it (slot-granted), the pause sends it yield right after.
// The move must not start a call: hold returns on the grant and call
// starts the activity without looking at the yield again.
func TestReviewPauseResumeAndPauseAtOnce(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	r.notDone = prChunks(5)
	prMock(env, r, 10*time.Minute, 10*time.Minute)
	pauseAt, flipAt, resumeAt := 5*time.Minute, 30*time.Minute, 2*time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalPause, false)
		env.SignalWorkflow(SignalPause, true)
	}, flipAt)
	prSignalAt(env, resumeAt, SignalPause, false)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1,
		Moves: prMoves(Settings{ConnectionsPerMove: 1}, "a@x", "b@x")})
	st := prResult(t, env)
	prAllCompleted(t, st)
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused (resume+pause at +%v): %v", flipAt, s)
	}
}

// A pause while a move waits out a failure: a (two lanes) has its Sent
// lane waiting 30m (the INBOX lane copies, so the move keeps its slot);
// the pause's yield reaches a, whose INBOX lane gives the slot back at
// +20m. The wait ends at +37m while paused: no call; after the resume at
// +60m a gets its slot back before b starts, the bound holds, all complete.
func TestReviewPauseDuringFailureWait(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	r.fail = func(in activities.SyncInput, act string, n int) error {
		if in.Mailbox == "a@x" && prFolder(in) == "Sent" && act == "I" && n == 1 {
			return failed(failure.TypeServerUnavailable, failure.SideTarget, "Unavailable", "Server busy", nil)
		}
		return nil
	}
	r.notDone = func(in activities.SyncInput, act string, n int) bool {
		return act == "I" && prFolder(in) == "INBOX" && n < 4
	}
	prMock(env, r, 10*time.Minute, 7*time.Minute)
	pauseAt, resumeAt := 15*time.Minute, time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	prSignalAt(env, resumeAt, SignalPause, false)
	pol := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: minutes(30)})
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1,
		Moves: prMoves(Settings{ConnectionsPerMove: 2, Policy: pol}, "a@x", "b@x")})
	st := prResult(t, env)
	prAllCompleted(t, st)
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused: %v", s)
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

// A single-lane move waiting out a failure (released) when the batch is
// paused gets no yield; the move that took its slot does. Both ask during
// the pause; after the resume the bound holds and both complete.
func TestReviewPauseReleasedWaiterAndYielderBothAsk(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	r.fail = func(in activities.SyncInput, act string, n int) error {
		if in.Mailbox == "a@x" && act == "I" && n == 1 {
			return failed(failure.TypeServerUnavailable, failure.SideTarget, "Unavailable", "Server busy", nil)
		}
		return nil
	}
	r.notDone = prChunks(4)
	prMock(env, r, 10*time.Minute, 10*time.Minute)
	pauseAt, resumeAt := 15*time.Minute, time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	prSignalAt(env, resumeAt, SignalPause, false)
	pol := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: minutes(30)})
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1,
		Moves: prMoves(Settings{ConnectionsPerMove: 1, Policy: pol}, "a@x", "b@x", "c@x")})
	st := prResult(t, env)
	prAllCompleted(t, st)
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused: %v", s)
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

// Synced manual moves doing incremental passes (1m interval, two lanes
// of 10m/7m) are paused at +3h03m and resumed at +6h: no pass call starts
// meanwhile; afterwards all four pass again and the bound (2) holds.
func TestReviewPauseSyncedMovesIncrementalPasses(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 260)
	prMock(env, r, 10*time.Minute, 7*time.Minute)
	pauseAt, resumeAt := 3*time.Hour+3*time.Minute, 6*time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	prSignalAt(env, resumeAt, SignalPause, false)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 2, PassesPerRun: 1000}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Moves: prMoves(s, "a@x", "b@x", "c@x", "d@x")})
	if !env.IsWorkflowCompleted() {
		t.Fatalf("batch did not end")
	}
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused: %v", s)
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 2 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 2", p, who, at)
	}
	if n := r.callsAfter(resumeAt); len(n) != 4 {
		t.Errorf("calls per mailbox after the resume %v, want all 4 (deadlock or leaked slot?)", n)
	}
	if p, _, _ := r.peak(resumeAt, 1000*time.Hour); p != 2 {
		t.Errorf("at most %d copying at once after the resume, want 2 (slot leaked?)", p)
	}
}

// --concurrency raised from 2 to 3 while paused: nothing starts while
// paused; after the resume up to 3 copy at once, never more.
func TestReviewPauseConcurrencyRaisedWhilePaused(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	prMock(env, r, 10*time.Minute, 7*time.Minute)
	pauseAt, setAt, resumeAt := 2*time.Hour+3*time.Minute, 3*time.Hour, 4*time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	prSignalAt(env, setAt, SignalConcurrency, 3)
	prSignalAt(env, resumeAt, SignalPause, false)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 2, PassesPerRun: 1000}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2, Moves: prMoves(s, "a@x", "b@x", "c@x", "d@x", "e@x")})
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused: %v", s)
	}
	if p, at, who := r.peak(0, pauseAt); p > 2 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 2", p, who, at)
	}
	if p, at, who := r.peak(resumeAt, 1000*time.Hour); p != 3 {
		t.Errorf("after the resume at most %d mailboxes %v copied at once (at +%v), want 3", p, who, at)
	}
	if n := r.callsAfter(resumeAt); len(n) != 5 {
		t.Errorf("calls per mailbox after the resume %v, want all 5", n)
	}
}

// --concurrency lowered from 3 to 1 while paused: every move gave its slot
// back; after the resume only one copies at a time.
func TestReviewPauseConcurrencyLoweredWhilePaused(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	prMock(env, r, 10*time.Minute, 7*time.Minute)
	pauseAt, setAt, resumeAt := 2*time.Hour+3*time.Minute, 3*time.Hour, 4*time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	prSignalAt(env, setAt, SignalConcurrency, 1)
	prSignalAt(env, resumeAt, SignalPause, false)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 2, PassesPerRun: 1000}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 3, Moves: prMoves(s, "a@x", "b@x", "c@x", "d@x", "e@x")})
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused: %v", s)
	}
	if p, at, who := r.peak(resumeAt, 1000*time.Hour); p != 1 {
		t.Errorf("after the resume %d mailboxes %v copied at once (at +%v), want 1", p, who, at)
	}
	if n := r.callsAfter(resumeAt); len(n) != 5 {
		t.Errorf("calls per mailbox after the resume %v, want all 5", n)
	}
}

// complete-all while paused: a (auto) is copying at the pause, b and c
// (manual) have not started. After the resume b and c complete after
// their initial sync (auto); nothing copies while paused; the batch ends.
func TestReviewPauseCompleteAllWhilePaused(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	r.notDone = prChunks(3)
	prMock(env, r, 10*time.Minute, 7*time.Minute)
	pauseAt, completeAt, resumeAt := 15*time.Minute, 30*time.Minute, 2*time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	prSignalAt(env, completeAt, SignalCompleteAll, nil)
	prSignalAt(env, resumeAt, SignalPause, false)
	s := Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 2}
	moves := prMoves(s, "a@x", "b@x", "c@x")
	moves[0].Settings.Complete = CompleteAuto
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, Moves: moves})
	st := prResult(t, env)
	prAllCompleted(t, st)
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused: %v", s)
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

// Pause (and a new --concurrency) before --start-after: no move starts
// before the resume, which comes after the start time; and `batch status`
// meanwhile shows the batch paused with its new concurrency (the signals
// wait in their channels during the sleep, so the query says neither).
func TestReviewPauseBeforeStartAfter(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	prMock(env, r, 10*time.Minute, 7*time.Minute)
	prSignalAt(env, time.Hour, SignalPause, true)
	prSignalAt(env, 90*time.Minute, SignalConcurrency, 2)
	var during BatchStatus
	var qerr error
	env.RegisterDelayedCallback(func() { during, qerr = prBatchStatus(env) }, 2*time.Hour)
	resumeAt := 5 * time.Hour
	prSignalAt(env, resumeAt, SignalPause, false)
	start := env.Now()
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, StartAfter: start.Add(3 * time.Hour),
		Moves: prMoves(Settings{ConnectionsPerMove: 2}, "a@x", "b@x", "c@x")})
	st := prResult(t, env)
	prAllCompleted(t, st)
	if s := r.startsIn(0, resumeAt); len(s) > 0 {
		t.Errorf("calls started before the resume at +%v (paused before --start-after +3h): %v", resumeAt, s)
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 2 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 2", p, who, at)
	}
	if qerr != nil || !during.Paused || during.Concurrency != 2 {
		t.Errorf("status at +2h (paused at +1h, concurrency 2 at +1h30, start at +3h): Paused=%v Concurrency=%d (%v); want true, 2", during.Paused, during.Concurrency, qerr)
	}
}

// Repeated pause/resume (paused 4m of every 9m, for 6h) over two-lane
// moves out of phase: no call starts inside a pause, the bound holds, no
// deadlock, every move completes.
func TestReviewPauseRepeatedToggle(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 600)
	r.notDone = prChunks(6)
	prMock(env, r, 10*time.Minute, 7*time.Minute)
	type iv struct{ from, to time.Duration }
	var paused []iv
	for k := 0; k < 40; k++ {
		p := time.Duration(3+9*k) * time.Minute
		q := p + 4*time.Minute
		paused = append(paused, iv{p, q})
		prSignalAt(env, p, SignalPause, true)
		prSignalAt(env, q, SignalPause, false)
	}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2,
		Moves: prMoves(Settings{ConnectionsPerMove: 2}, "a@x", "b@x", "c@x", "d@x", "e@x")})
	st := prResult(t, env)
	prAllCompleted(t, st)
	for _, p := range paused {
		if s := r.startsIn(p.from+time.Nanosecond, p.to); len(s) > 0 {
			t.Errorf("calls started while paused (+%v..+%v): %v", p.from, p.to, s)
		}
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 2 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 2; calls:\n%s", p, who, at, r.dump())
	}
}

// Moves that fail or are cancelled while paused free their slots: a's
// call under way at the pause fails with a final error; b, having yielded,
// is cancelled while it waits for a slot. After the resume c and d start
// at once, side by side (--concurrency 2), and complete.
func TestReviewPauseFailAndCancelWhilePaused(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 300)
	r.fail = func(in activities.SyncInput, act string, n int) error {
		if in.Mailbox == "a@x" && n == 2 {
			return failed(failure.TypeTargetFull, failure.SideTarget, "Full", "Quota exceeded", nil)
		}
		return nil
	}
	r.notDone = prChunks(4)
	prMock(env, r, 10*time.Minute, 10*time.Minute)
	pauseAt, cancelAt, resumeAt := 15*time.Minute, 30*time.Minute, time.Hour
	prSignalAt(env, pauseAt, SignalPause, true)
	var during MoveStatus
	env.RegisterDelayedCallback(func() {
		if v, err := env.QueryWorkflowByID(MoveWorkflowID("b1", "b@x"), QueryStatus); err == nil {
			_ = v.Get(&during)
		}
		env.CancelWorkflowByID(MoveWorkflowID("b1", "b@x"), "")
	}, cancelAt)
	prSignalAt(env, resumeAt, SignalPause, false)
	pol := withRule(failure.TypeTargetFull, failure.Rule{Final: true})
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 2,
		Moves: prMoves(Settings{ConnectionsPerMove: 1, Policy: pol}, "a@x", "b@x", "c@x", "d@x")})
	st := prResult(t, env)
	if during.StatusDetail != DetailWaitingForBatchSlot {
		t.Errorf("b at +30m: %s, want WaitingForBatchSlot", during.StatusDetail)
	}
	if st.Entries[0].Error == "" || st.Entries[1].Error == "" || st.Entries[2].Error != "" || st.Entries[3].Error != "" {
		t.Errorf("entries %+v, want a failed, b cancelled, c and d completed", st.Entries)
	}
	if s := r.startsIn(pauseAt+time.Nanosecond, resumeAt); len(s) > 0 {
		t.Errorf("calls started while paused: %v", s)
	}
	first := map[string]time.Duration{}
	for _, x := range r.spans {
		if _, ok := first[x.mailbox]; !ok {
			first[x.mailbox] = x.start.Sub(r.t0)
		}
	}
	if first["c@x"] != resumeAt || first["d@x"] != resumeAt {
		t.Errorf("c first copied at +%v, d at +%v; want both at the resume +%v (slots of a and b freed); calls:\n%s", first["c@x"], first["d@x"], resumeAt, r.dump())
	}
}

// The yield path of a two-lane move gives the move's slot back while its
// other lane is mid-call (call uses release, not releaseIdle), and a move
// already asking gets that slot. --concurrency 1: c (manual, one lane) is
// synced at +20m and asks for its first pass at +21m, queued behind a
// (two lanes: INBOX 10m calls, Sent 25m calls, from +20m). Paused at
// +32m; at +40m a's INBOX lane yields (its Sent lane copies until +45m)
// and asks behind c; resumed at +42m: c is granted first and copies from
// +42m next to a's Sent call.
func TestReviewPauseLaneYieldGivesSlotToQueuedMove(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 80)
	r.notDone = func(in activities.SyncInput, act string, n int) bool {
		return act == "I" && in.Mailbox == "a@x" && n < 4
	}
	prMock(env, r, 10*time.Minute, 25*time.Minute)
	prSignalAt(env, 32*time.Minute, SignalPause, true)
	prSignalAt(env, 42*time.Minute, SignalPause, false)
	moves := []MailboxMoveInput{
		{Mailbox: "c@x", Settings: Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 1, PassesPerRun: 1000}},
		{Mailbox: "a@x", Settings: Settings{ConnectionsPerMove: 2}},
	}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, Moves: moves})
	if !env.IsWorkflowCompleted() {
		t.Fatalf("batch did not end")
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

// Same without any time paused to speak of: pause at +32m, resume at
// +34m, both within a's calls. At +40m a's INBOX lane honours the stale
// yield, gives the slot back while its Sent lane copies until +45m, and
// the batch grants it to c, asking since +21m.
func TestReviewPauseStaleYieldGivesSlotToQueuedMove(t *testing.T) {
	env := newEnv(t)
	r := newPrRec(env, 80)
	r.notDone = func(in activities.SyncInput, act string, n int) bool {
		return act == "I" && in.Mailbox == "a@x" && n < 4
	}
	prMock(env, r, 10*time.Minute, 25*time.Minute)
	prSignalAt(env, 32*time.Minute, SignalPause, true)
	prSignalAt(env, 34*time.Minute, SignalPause, false)
	moves := []MailboxMoveInput{
		{Mailbox: "c@x", Settings: Settings{Complete: CompleteManual, IncrementalInterval: time.Minute, ConnectionsPerMove: 1, PassesPerRun: 1000}},
		{Mailbox: "a@x", Settings: Settings{ConnectionsPerMove: 2}},
	}
	env.ExecuteWorkflow(Batch, BatchInput{Name: "b1", Concurrency: 1, Moves: moves})
	if !env.IsWorkflowCompleted() {
		t.Fatalf("batch did not end")
	}
	if p, at, who := r.peak(0, 1000*time.Hour); p > 1 {
		t.Errorf("%d mailboxes %v copying at once at +%v with --concurrency 1; calls:\n%s", p, who, at, r.dump())
	}
}

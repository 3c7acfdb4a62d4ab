package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/profile"
)

// cutD is how long a mocked sync call takes (the test environment runs
// the mock's function when it is over).
const cutD = time.Minute

// cutSim is a mailbox whose folders hold UIDs 1..n, as the sync activities
// of a move's runs see it: a call copies up to MaxMessages, folder after
// folder, from the cursors it is handed. It counts every UID copied and
// notes what the workflow asked wrongly.
type cutSim struct {
	t   *testing.T
	mu  sync.Mutex
	env *testsuite.TestWorkflowEnvironment // the run under way
	run int                                // runs so far
	t0  time.Time                          // the run's start
	end time.Duration                      // when the last run ended
	// clock is when the last run ended: the next starts then, as a
	// continued-as-new run would.
	clock time.Time
	size  map[string]imap.UID
	// plan is what Connect lists; later, when set, what it lists from
	// its second call on (a folder that appeared).
	plan, later activities.ConnectResult
	connects    int
	copies      map[string]map[imap.UID]int
	calls       []cutCall
	wrong       []string
	// cutWhen forces the cut (historyLong): the run's calls so far.
	cutWhen func(run []cutCall) bool
	// fail fails a call after two messages, once for each call it names
	// (a classified, retryable failure with its progress).
	fail func(c cutCall, all []cutCall) bool
	// reconcileTwice: the final pass needs two calls for each folder.
	reconcileTwice bool
	reconciled     map[string]bool
	// events are the run's activity calls and signals to the batch, in
	// order, with their offset from the run's start.
	events []string
}

// cutCall is one sync call: the cursors it was handed (folder → UID
// copied up to), in order.
type cutCall struct {
	run       int
	act       string // I: InitialSync, N: IncrementalSync
	end       time.Duration
	at        time.Time // end, on the clock
	bytes     int64
	folders   []string
	from      []imap.UID
	reconcile bool
	failed    bool
}

func newCutSim(t *testing.T, folders ...any) *cutSim {
	s := &cutSim{t: t, size: map[string]imap.UID{}, copies: map[string]map[imap.UID]int{}, reconciled: map[string]bool{}}
	for i := 0; i < len(folders); i += 2 {
		name, n := folders[i].(string), folders[i+1].(int)
		s.size[name] = imap.UID(n)
		s.copies[name] = map[imap.UID]int{}
		s.plan.Folders = append(s.plan.Folders, engine.FolderPlan{Source: name, Target: name, Messages: uint32(n), Bytes: int64(n) * 100})
	}
	return s
}

func (s *cutSim) sync(act string) func(context.Context, activities.SyncInput) (activities.SyncResult, error) {
	return func(_ context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		c := cutCall{run: s.run, act: act, end: s.env.Now().Sub(s.t0), at: s.env.Now(), reconcile: in.Reconcile}
		for _, cur := range in.Cursors {
			c.folders, c.from = append(c.folders, cur.Source), append(c.from, cur.LastUID)
		}
		s.events = append(s.events, fmt.Sprintf("%s%v@%v", act, c.folders, c.end))
		fail := s.fail != nil && s.fail(c, s.calls)
		c.failed = fail
		res := activities.SyncResult{Cursors: slices.Clone(in.Cursors), Done: make([]bool, len(in.Cursors))}
		budget := in.MaxMessages
		if fail {
			budget = min(budget, 2)
		}
		for i := range res.Cursors {
			cur := &res.Cursors[i]
			if act == "I" && cur.LastUID >= s.size[cur.Source] {
				s.wrong = append(s.wrong, fmt.Sprintf("run %d: the initial copy was handed %s, copied already", s.run, cur.Source))
			}
			if in.Reconcile && s.reconcileTwice && !s.reconciled[cur.Source] {
				s.reconciled[cur.Source] = true
				break
			}
			for budget > 0 && cur.LastUID < s.size[cur.Source] {
				if in.MaxBytes > 0 && res.Bytes+100 > in.MaxBytes {
					res.BudgetReached = true
					break
				}
				cur.LastUID++
				s.copies[cur.Source][cur.LastUID]++
				res.Copied++
				res.Bytes += 100
				budget--
			}
			if cur.LastUID < s.size[cur.Source] {
				break
			}
			res.Done[i] = true
		}
		c.bytes = res.Bytes
		s.calls = append(s.calls, c)
		if fail {
			return activities.SyncResult{}, failed(failure.TypeServerUnavailable, failure.SideTarget, "Unavailable", "try again later", &res)
		}
		return res, nil
	}
}

func (s *cutSim) mock(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(context.Context, activities.ConnectInput) (activities.ConnectResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.connects++
		s.events = append(s.events, fmt.Sprintf("connect@%v", env.Now().Sub(s.t0)))
		if s.connects > 1 && s.later.Folders != nil {
			return s.later, nil
		}
		return s.plan, nil
	})
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(cutD).Return(s.sync("I"))
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).After(cutD).Return(s.sync("N"))
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
}

// runCalls are the calls of the run under way.
func (s *cutSim) runCalls() []cutCall {
	return slices.DeleteFunc(slices.Clone(s.calls), func(c cutCall) bool { return c.run != s.run })
}

// runOnce runs one run of the move in a fresh test environment (setup
// adds to its mocks); it returns the next run's input if the run
// continued as new, else the report.
func (s *cutSim) runOnce(in MailboxMoveInput, setup func(*testsuite.TestWorkflowEnvironment)) (*MailboxMoveInput, MoveReport) {
	s.t.Helper()
	env := newEnv(s.t)
	if !s.clock.IsZero() {
		env.SetStartTime(s.clock)
	}
	s.mu.Lock()
	s.env, s.t0 = env, env.Now()
	s.run++
	s.events = nil
	s.mu.Unlock()
	s.mock(env)
	if setup != nil {
		setup(env)
	}
	env.ExecuteWorkflow(MailboxMove, in)
	s.end, s.clock = env.Now().Sub(s.t0), env.Now()
	if !env.IsWorkflowCompleted() {
		s.t.Fatalf("run %d did not end", s.run)
	}
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if errors.As(err, &can) {
		var next MailboxMoveInput
		if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
			s.t.Fatal(err)
		}
		if next.State == nil {
			s.t.Fatalf("run %d continued as new without its state", s.run)
		}
		return &next, MoveReport{}
	}
	if err != nil {
		s.t.Fatalf("run %d: %v", s.run, err)
	}
	var rep MoveReport
	if err := env.GetWorkflowResult(&rep); err != nil {
		s.t.Fatal(err)
	}
	return nil, rep
}

// forceCut makes historyLong ask the simulation, for the test's length.
func (s *cutSim) forceCut(t *testing.T) {
	old := historyLong
	t.Cleanup(func() { historyLong = old })
	historyLong = func(workflow.Context) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cutWhen != nil && s.cutWhen(s.runCalls())
	}
}

// exactlyOnce checks that every UID of every folder was copied once
// and the workflow asked nothing wrongly.
func (s *cutSim) exactlyOnce() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.wrong {
		s.t.Error(w)
	}
	for f, n := range s.size {
		for u := imap.UID(1); u <= n; u++ {
			if c := s.copies[f][u]; c != 1 {
				s.t.Errorf("%s uid %d copied %d times, want once", f, u, c)
			}
		}
	}
}

// total is the number of messages of every folder.
func (s *cutSim) total() int {
	n := 0
	for _, m := range s.size {
		n += int(m)
	}
	return n
}

// checkCarried checks that a cut's state holds what was copied: each
// folder's cursor where its copy stopped, Copied once its copy finished,
// the counters, and an initial copy still to finish.
func (s *cutSim) checkCarried(st *MoveState) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	copied := 0
	for _, f := range st.Folders {
		n := imap.UID(len(s.copies[f.Plan.Source]))
		copied += int(n)
		if f.Cursor.LastUID != n || f.Copied != (n == s.size[f.Plan.Source]) {
			s.t.Errorf("%s carried at uid %d (copied %v); the activities copied up to %d of %d", f.Plan.Source, f.Cursor.LastUID, f.Copied, n, s.size[f.Plan.Source])
		}
	}
	if st.Copied != copied {
		s.t.Errorf("carried counter Copied = %d, the activities copied %d", st.Copied, copied)
	}
	if !st.FoldersCreated || !st.SyncedAt.IsZero() || st.Status != StatusInProgress || st.StatusDetail != DetailCopyingMessages {
		s.t.Errorf("carried state %s/%s, folders created %v, synced at %v; want InProgress/CopyingMessages, created, not synced",
			st.Status, st.StatusDetail, st.FoldersCreated, st.SyncedAt)
	}
}

// An initial copy of several chunks continues as new between two calls:
// the state carries the cursors and Copied flags so far, and the next run
// copies the rest, leaving out the folder that was finished.
func TestInitialSyncContinuesAsNewBetweenCalls(t *testing.T) {
	s := newCutSim(t, "INBOX", 10, "Sent", 3, "Drafts", 2)
	s.forceCut(t)
	s.cutWhen = func(run []cutCall) bool { return s.run == 1 && len(run) >= 3 }
	in := testInput(Settings{ConnectionsPerMove: 1, ChunkMessages: 4})

	next, _ := s.runOnce(in, nil)
	if next == nil {
		t.Fatal("the first run completed, want continue-as-new after 3 calls")
	}
	if got := len(s.runCalls()); got != 3 {
		t.Fatalf("first run made %d calls, want 3 (none after the cut was due)", got)
	}
	st := next.State
	s.checkCarried(st)
	// INBOX 1-4, 5-8, then 9-10 and Sent 1-2.
	if !st.Folders[0].Copied || st.Folders[1].Cursor.LastUID != 2 || st.Folders[1].Copied || st.Folders[2].Cursor.LastUID != 0 {
		t.Fatalf("carried folders %+v", st.Folders)
	}
	if next.Batch != in.Batch || next.Mailbox != in.Mailbox || next.Settings.ChunkMessages != 4 {
		t.Fatalf("next run's input %+v lost the move's own", next)
	}

	last, rep := s.runOnce(*next, nil)
	if last != nil {
		t.Fatal("the second run continued as new, want it completed")
	}
	s.exactlyOnce()
	second := s.runCalls()
	if first := second[0]; first.act != "I" || !slices.Equal(first.folders, []string{"Sent", "Drafts"}) || !slices.Equal(first.from, []imap.UID{2, 0}) {
		t.Fatalf("second run's first call %+v, want the initial copy of Sent from uid 2 and Drafts", first)
	}
	if rep.Status != StatusCompleted || rep.FoldersCopied != 3 || rep.Copied != s.total() || rep.PercentComplete != 100 {
		t.Fatalf("report %+v, want Completed, 3 folders, %d copied", rep.MoveStatus, s.total())
	}
}

// The adversary: a cut after every number of calls, in every run, with
// one to three lanes, with and without a failure's wait on the way. The
// move goes through as many runs as it takes; every message is copied
// exactly once and the counters add up. Every=0: the history is long
// from each run's start (a large state in its input), and each run still
// copies before it continues as new.
func TestCutAfterEveryCallCopiesEachMessageOnce(t *testing.T) {
	for lanes := 1; lanes <= 3; lanes++ {
		for k := 0; k <= 6; k++ {
			for _, fail := range []bool{false, true} {
				t.Run(fmt.Sprintf("lanes=%d/every=%d/fail=%v", lanes, k, fail), func(t *testing.T) {
					s := newCutSim(t, "INBOX", 10, "Archive", 7, "Sent", 3, "Drafts", 1)
					s.forceCut(t)
					s.cutWhen = func(run []cutCall) bool { return len(run) >= k }
					if fail {
						s.fail = func(c cutCall, all []cutCall) bool { return len(all) == 2 } // the third call of all, once
					}
					pol := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: minutes(10), MaximumAttempts: 5})
					in := testInput(Settings{ConnectionsPerMove: lanes, ChunkMessages: 3, Policy: pol})
					var rep MoveReport
					for runs := 1; ; runs++ {
						if runs > 60 {
							t.Fatal("60 runs and not done")
						}
						next, r := s.runOnce(in, nil)
						if next == nil {
							rep = r
							break
						}
						if got := next.State.Folders; len(got) != 4 {
							t.Fatalf("run %d carried %d folders", runs, len(got))
						}
						in = *next
					}
					s.exactlyOnce()
					if rep.Status != StatusCompleted || rep.FoldersCopied != 4 || rep.Copied != s.total() {
						t.Fatalf("after %d runs: report %+v, want Completed, 4 folders, %d copied", s.run, rep.MoveStatus, s.total())
					}
					if fail && rep.StallTime[stallOf(failure.TypeServerUnavailable, failure.SideTarget)] != 10*time.Minute {
						t.Fatalf("waited %v, want the failure's 10m once", rep.StallTime)
					}
				})
			}
		}
	}
}

// stallOf is the StatusDetail of a wait for a failure of cutSim.
func stallOf(typ failure.Type, side failure.Side) string {
	_, detail := waitDetail(failure.Details{Type: typ, Side: side, Reason: "Unavailable"}, StatusInProgress)
	return detail
}

// Three lanes, one of them waiting out a failure when the cut comes: the
// others stop before their next call, the wait runs its course (the next
// run does not skip or repeat it) and the lane stops before its next
// attempt; the next run resumes it from the failed call's progress.
func TestCutWaitsForALaneWaitingOutAFailure(t *testing.T) {
	s := newCutSim(t, "INBOX", 40, "Archive", 40, "Sent", 12)
	s.forceCut(t)
	s.fail = func(c cutCall, all []cutCall) bool {
		n := 0
		for _, x := range all {
			if x.folders[0] == "Sent" {
				n++
			}
		}
		return c.run == 1 && c.folders[0] == "Sent" && n == 1 // its second call
	}
	s.cutWhen = func(run []cutCall) bool {
		return s.run == 1 && slices.ContainsFunc(run, func(c cutCall) bool { return c.failed })
	}
	pol := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: minutes(30), MaximumAttempts: 5})
	in := testInput(Settings{ConnectionsPerMove: 3, ChunkMessages: 4, Policy: pol})

	var during MoveStatus
	next, _ := s.runOnce(in, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(func() { during = queryStatus(t, env) }, 10*time.Minute)
	})
	end := s.end
	if next == nil {
		t.Fatal("the first run completed, want continue-as-new")
	}
	detail := stallOf(failure.TypeServerUnavailable, failure.SideTarget)
	if during.StatusDetail != detail {
		t.Fatalf("during the wait: %s, want %s", during.StatusDetail, detail)
	}
	var sent []cutCall
	for _, c := range s.runCalls() {
		if c.folders[0] == "Sent" {
			sent = append(sent, c)
		}
		if c.end > 3*cutD && c.folders[0] != "Sent" {
			t.Errorf("a lane called again once the cut was due: %+v", c)
		}
	}
	if len(sent) != 2 || end < 2*cutD+30*time.Minute {
		t.Fatalf("Sent's lane made %d calls, the run ended at %v; want 2 calls (none after the wait) and the 30m wait over", len(sent), end)
	}
	st := next.State
	s.checkCarried(st)
	if st.Folders[2].Cursor.LastUID != 6 || st.Attempts[failure.TypeServerUnavailable] != 1 || st.LastFailure == nil ||
		st.StallTime[detail] != 30*time.Minute || !st.NextAttemptAt.IsZero() || st.Reason != "" {
		t.Fatalf("carried Sent at %d, attempts %v, last failure %v, stall %v, next attempt %v, reason %q; want 6 (the failed call's progress), 1 attempt, the failure, 30m waited, no wait shown",
			st.Folders[2].Cursor.LastUID, st.Attempts, st.LastFailure, st.StallTime, st.NextAttemptAt, st.Reason)
	}

	last, rep := s.runOnce(*next, nil)
	if last != nil {
		t.Fatal("the second run continued as new, want it completed")
	}
	s.exactlyOnce()
	for _, c := range s.runCalls() {
		if i := slices.Index(c.folders, "Sent"); i >= 0 && c.act == "I" {
			if c.from[i] != 6 || c.end != cutD {
				t.Fatalf("second run's first Sent call %+v, want it at once from uid 6", c)
			}
			break
		}
	}
	if rep.Status != StatusCompleted || rep.Copied != s.total() || rep.StallTime[detail] != 30*time.Minute {
		t.Fatalf("report %+v, want Completed, %d copied, the one 30m wait", rep.MoveStatus, s.total())
	}
}

// batchSignals mocks the signals a gated move sends its batch: it notes
// them in the run's events and grants a slot an hour after it is asked.
func (s *cutSim) batchSignals(env *testsuite.TestWorkflowEnvironment) {
	env.OnSignalExternalWorkflow(mock.Anything, BatchWorkflowID("b1"), "", mock.Anything, mock.Anything).Return(
		func(_, _, _, signal string, _ any) error {
			s.mu.Lock()
			s.events = append(s.events, fmt.Sprintf("%s@%v", signal, env.Now().Sub(s.t0)))
			s.mu.Unlock()
			if signal == SignalMoveAcquire {
				env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalSlotGranted, nil) }, time.Hour)
			}
			return nil
		})
}

// signals are the run's signals to the batch.
func (s *cutSim) signals() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		if !strings.HasPrefix(e, "I[") && !strings.HasPrefix(e, "N[") && !strings.HasPrefix(e, "connect") {
			out = append(out, e)
		}
	}
	return strings.Join(out, " ")
}

// A gated move cut while it holds one of its batch's slots keeps it: the
// next run copies at once without asking, and the batch is never told
// of a release. One the batch asked to yield as the lanes stopped gives
// its slot back, and its next run asks before it copies.
func TestGatedMoveCutKeepsItsSlot(t *testing.T) {
	for _, yield := range []bool{false, true} {
		t.Run(fmt.Sprintf("yield=%v", yield), func(t *testing.T) {
			s := newCutSim(t, "INBOX", 12, "Sent", 12)
			s.forceCut(t)
			s.cutWhen = func(run []cutCall) bool { return s.run == 1 && len(run) >= 3 }
			in := testInput(Settings{ConnectionsPerMove: 2, ChunkMessages: 4})
			in.Gated = true
			next, _ := s.runOnce(in, func(env *testsuite.TestWorkflowEnvironment) {
				s.batchSignals(env)
				if yield {
					// During the second round of calls (granted at 1h).
					env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalYield, nil) }, time.Hour+cutD+cutD/2)
				}
			})
			if next == nil {
				t.Fatal("the first run completed, want continue-as-new")
			}
			s.checkCarried(next.State)
			want, released := SignalMoveAcquire+"@0s", false
			if yield {
				want, released = SignalMoveAcquire+"@0s "+SignalMoveReleased+"@1h2m0s", true
			}
			if got := s.signals(); got != want || next.State.Released != released {
				t.Fatalf("first run's signals %q, carried Released %v; want %q and %v", got, next.State.Released, want, released)
			}

			last, rep := s.runOnce(*next, s.batchSignals)
			if last != nil {
				t.Fatal("the second run continued as new, want it completed")
			}
			s.exactlyOnce()
			first := s.runCalls()[0]
			want, start := SignalMoveClosed+"@2m0s", cutD
			if yield {
				want, start = SignalMoveAcquire+"@0s "+SignalMoveClosed+"@1h2m0s", time.Hour+cutD
			}
			if got := s.signals(); got != want || first.end != start {
				t.Fatalf("second run's signals %q, first call done at %v; want %q and %v", got, first.end, want, start)
			}
			if rep.Status != StatusCompleted || rep.Copied != s.total() {
				t.Fatalf("report %+v", rep.MoveStatus)
			}
		})
	}
}

// An incremental pass is cut too (a large folder appeared while the move
// was synced): the next run goes on with the pass at once, without the
// interval's wait, runs it to its end however long its history, and
// counts it once.
func TestIncrementalPassCutGoesOnAtOnce(t *testing.T) {
	s := newCutSim(t, "INBOX", 4, "Sent", 4, "Big", 12)
	s.later = s.plan
	s.plan.Folders = s.plan.Folders[:2]
	s.forceCut(t)
	s.cutWhen = func(run []cutCall) bool {
		// Run 2: throughout the pass it takes up, which it runs to its end.
		return s.run == 1 && slices.ContainsFunc(run, func(c cutCall) bool { return c.act == "N" && c.folders[0] == "Big" }) ||
			s.run == 2 && len(run) < 2
	}
	in := testInput(Settings{Complete: CompleteManual, IncrementalInterval: time.Hour, ConnectionsPerMove: 1, ChunkMessages: 4})
	next, _ := s.runOnce(in, nil)
	if next == nil {
		t.Fatal("the first run completed, want continue-as-new")
	}
	st := next.State
	big := st.Folders[2]
	if big.Plan.Source != "Big" || big.Cursor.LastUID != 4 || big.Copied || st.SyncedAt.IsZero() || st.IncrementalPasses != 0 ||
		st.Status != StatusSynced || st.StatusDetail != DetailIncrementalSync || st.Released {
		t.Fatalf("carried %+v, Synced/IncrementalSync, %d passes, released %v; want Big at uid 4, no pass counted, copying", big, st.IncrementalPasses, st.Released)
	}

	last, rep := s.runOnce(*next, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow(UpdateComplete, "u1", &testsuite.TestUpdateCallback{
				OnReject: func(err error) { t.Errorf("complete rejected: %v", err) },
				OnAccept: func() {}, OnComplete: func(any, error) {},
			})
		}, 30*time.Minute)
	})
	if last != nil {
		t.Fatal("the second run continued as new, want it completed")
	}
	s.exactlyOnce()
	if first := s.runCalls()[0]; !strings.HasPrefix(s.events[0], "connect@0s") || first.act != "N" || first.folders[0] != "Big" || first.from[0] != 4 || first.end != cutD {
		t.Fatalf("second run began with %v, first call %+v; want a listing and Big's copy from uid 4 at once", s.events[:2], first)
	}
	if rep.Status != StatusCompleted || rep.IncrementalPasses != 1 || rep.FoldersCopied != 3 || rep.Copied != s.total() {
		t.Fatalf("report %+v, want Completed after 1 pass, 3 folders, %d copied", rep.MoveStatus, s.total())
	}
}

// The final pass is cut between two calls: the next run takes it up from
// its start (a listing, then every folder examined again) and, having
// made no call before it, runs it to its end however long its history;
// then it verifies.
func TestFinalPassCutRunsItAgain(t *testing.T) {
	s := newCutSim(t, "INBOX", 4, "Sent", 4)
	s.reconcileTwice = true
	s.forceCut(t)
	s.cutWhen = func(run []cutCall) bool {
		// Run 2 takes the pass up and runs it to its end.
		return s.run == 1 && slices.ContainsFunc(run, func(c cutCall) bool { return c.reconcile }) || s.run == 2
	}
	in := testInput(Settings{ConnectionsPerMove: 1, ChunkMessages: 4})
	next, _ := s.runOnce(in, nil)
	if next == nil {
		t.Fatal("the first run completed, want continue-as-new")
	}
	if st := next.State; st.Status != StatusCompleting || st.StatusDetail != DetailFinalIncrementalSync || st.SyncedAt.IsZero() || st.Verify != nil {
		t.Fatalf("carried %s/%s, verified %v; want Completing/FinalIncrementalSync, not verified", st.Status, st.StatusDetail, st.Verify)
	}
	last, rep := s.runOnce(*next, nil)
	if last != nil {
		t.Fatal("the second run continued as new, want it completed")
	}
	s.exactlyOnce()
	if got := strings.Join(s.events, " "); got != "connect@0s N[INBOX Sent]@1m0s N[Sent]@2m0s" {
		t.Fatalf("second run: %s; want a listing then the final pass's calls", got)
	}
	for _, c := range s.runCalls() {
		if !c.reconcile {
			t.Fatalf("second run's call %+v is not the final pass's", c)
		}
	}
	if rep.Status != StatusCompleted || rep.Copied != s.total() {
		t.Fatalf("report %+v", rep.MoveStatus)
	}
}

// A move recorded before the cut, replayed where its history was long,
// takes the old path: it never cuts in that run, and an initial copy
// with copied folders (batch retry) copies them again.
func TestMoveBeforeTheCutNeverCuts(t *testing.T) {
	s := newCutSim(t, "INBOX", 12, "Sent", 4)
	s.forceCut(t)
	s.cutWhen = func([]cutCall) bool { return true }
	old := func(env *testsuite.TestWorkflowEnvironment) {
		env.OnGetVersion("initial-sync-cut", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	}
	in := testInput(Settings{ConnectionsPerMove: 1, ChunkMessages: 4})
	if next, rep := s.runOnce(in, old); next != nil || rep.Status != StatusCompleted {
		t.Fatalf("old move cut (%v) or ended %s", next != nil, rep.Status)
	}

	// batch retry of a move that had copied INBOX.
	in.State = &MoveState{Status: StatusQueued, FoldersCreated: true, Released: true, MessagesTotal: 16,
		Folders: []FolderState{
			{Plan: s.plan.Folders[0], Cursor: engine.Cursor{Source: "INBOX", Target: "INBOX", LastUID: 12}, Copied: true},
			{Plan: s.plan.Folders[1], Cursor: engine.Cursor{Source: "Sent", Target: "Sent"}},
		}}
	if next, _ := s.runOnce(in, old); next != nil {
		t.Fatal("old move cut")
	}
	if first := s.runCalls()[0]; first.act != "I" || !slices.Equal(first.folders, []string{"INBOX", "Sent"}) {
		t.Fatalf("old move's initial copy began with %+v, want INBOX handed again", first)
	}
	s.mu.Lock()
	s.wrong = nil
	s.mu.Unlock()

	// The same retry on the new path leaves INBOX out.
	s.cutWhen = nil
	if next, _ := s.runOnce(in, nil); next != nil {
		t.Fatal("the retried move continued as new with a short history")
	}
	if first := s.runCalls()[0]; !slices.Equal(first.folders, []string{"Sent"}) {
		t.Fatalf("retried move's initial copy began with %+v, want Sent alone", first)
	}
}

// The trigger itself: Temporal's suggestion, the history's length or its
// size each cut the initial copy.
func TestHistoryLongCutsTheInitialSync(t *testing.T) {
	for name, set := range map[string]func(*testsuite.TestWorkflowEnvironment){
		"suggested": func(env *testsuite.TestWorkflowEnvironment) { env.SetContinueAsNewSuggested(true) },
		"length":    func(env *testsuite.TestWorkflowEnvironment) { env.SetCurrentHistoryLength(cutEvents + 1) },
		"size":      func(env *testsuite.TestWorkflowEnvironment) { env.SetCurrentHistorySize(cutBytes + 1) },
		"short": func(env *testsuite.TestWorkflowEnvironment) {
			env.SetCurrentHistoryLength(cutEvents)
			env.SetCurrentHistorySize(cutBytes)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newCutSim(t, "INBOX", 40)
			in := testInput(Settings{ConnectionsPerMove: 1, ChunkMessages: 4})
			next, _ := s.runOnce(in, func(env *testsuite.TestWorkflowEnvironment) {
				env.RegisterDelayedCallback(func() { set(env) }, 3*cutD+cutD/2)
			})
			if name == "short" {
				if next != nil {
					t.Fatal("cut with a short history")
				}
				return
			}
			if next == nil || next.State.Folders[0].Cursor.LastUID != 16 {
				t.Fatalf("next run %v, want a cut after the fourth call (uid 16)", next)
			}
		})
	}
}

// A lane stopped by the daily transfer budget when the cut comes does not
// wait for the next window first: the run ends at once, the ledger goes
// along, and the next run's lane finds the budget spent and waits then.
// No window copies more than the budget; every message is copied once.
func TestCutDoesNotWaitForTheBudget(t *testing.T) {
	const limit, window = 1000, time.Hour
	s := newCutSim(t, "INBOX", 30) // 100 bytes each: three windows
	s.plan.SourceProfile = profile.Gmail
	s.forceCut(t)
	s.cutWhen = func(run []cutCall) bool { return s.run == 1 && len(run) >= 1 }
	in := testInput(Settings{ConnectionsPerMove: 1, ChunkMessages: 20,
		Profiles: map[string]profile.Limits{profile.Gmail: {DownloadBytesPerWindow: limit, Window: failure.Duration(window)}}})
	next, _ := s.runOnce(in, nil)
	if next == nil {
		t.Fatal("the first run completed, want continue-as-new")
	}
	q := next.State.Quota[failure.SideSource]
	if s.end != cutD || q == nil || q.Used != limit {
		t.Fatalf("first run ended at %v with the ledger %+v; want at once (%v) with %d bytes used", s.end, q, cutD, limit)
	}
	s.checkCarried(next.State)
	last, rep := s.runOnce(*next, nil)
	if last != nil {
		t.Fatal("the second run continued as new, want it completed")
	}
	s.exactlyOnce()
	first := s.calls[0].at.Add(-cutD)
	used := map[int]int64{}
	for _, c := range s.calls {
		w := int(c.at.Add(-cutD).Sub(first) / window)
		if used[w] += c.bytes; used[w] > limit {
			t.Fatalf("window %d: %d bytes copied, budget %d", w, used[w], limit)
		}
	}
	if rep.Status != StatusCompleted || rep.StallTime[DetailWaitingForDailyQuotaPrefix+"Source"] == 0 || len(used) != 3 {
		t.Fatalf("report %+v, %d windows; want Completed after waits for the budget, in 3 windows", rep.MoveStatus, len(used))
	}
}

package workflows

// Adversarial review of gated batches (workflows/gate.go, batch.go, the
// gated parts of move.go). Tests named TestReviewGateFixed... show a
// guarantee broken; the other TestReviewGate... tests pass and say what
// they cover.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/policy"
	"github.com/mailmove/mailmove/internal/window"
)

// ---------------------------------------------------------------------------
// Common helpers.

// rgNewEnv is newEnv with optional worker interceptors.
func rgNewEnv(t *testing.T, ics ...interceptor.WorkerInterceptor) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	if len(ics) > 0 {
		env.SetWorkerOptions(worker.Options{Interceptors: ics})
	}
	env.RegisterWorkflow(MailboxMove)
	env.RegisterWorkflow(Batch)
	env.RegisterActivity(&activities.Activities{})
	env.SetTestTimeout(30 * time.Second)
	return env
}

// rgMailbox is the mailbox of a move's workflow ID in batch.
func rgMailbox(batch, id string) string { return strings.TrimPrefix(id, MoveWorkflowID(batch, "")) }

// rgCase spells a mailbox in a random case, as a CSV, a move or the CLI may.
func rgCase(rng *rand.Rand, mb string) string {
	switch rng.IntN(3) {
	case 0:
		return strings.ToUpper(mb)
	case 1:
		return strings.ToUpper(mb[:1]) + mb[1:]
	}
	return mb
}

func rgSet(l []string) map[string]bool {
	s := map[string]bool{}
	for _, x := range l {
		s[strings.ToLower(x)] = true
	}
	return s
}

func rgSorted(s map[string]bool) []string {
	var l []string
	for k := range s {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

// rgDecodeCAN returns the next run's input of a run that continued as new.
func rgDecodeCAN[T any](t *testing.T, err error) (T, bool) {
	t.Helper()
	var next T
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		return next, false
	}
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	return next, true
}

// ---------------------------------------------------------------------------
// A model of a gated batch's moves, played against the Batch workflow.

const (
	rgUnknown = iota // the batch has not heard of it
	rgIdle           // registered, not ended, no slot, not asking
	rgAsking         // asked for a slot, not granted yet
	rgHolding        // granted, not released or closed yet
	rgClosed         // ended
)

var rgStateName = []string{"unknown", "idle", "asking", "holding", "closed"}

// rgBatch drives the Batch workflow with one signal per minute, chosen at
// random from what moves (and a few faulty ones) send, keeps a model of
// every move and checks each signal the batch sends against it: a grant
// goes to a move that asks, in order, never beyond --concurrency, never
// while paused or before --start-after; a yield to a move holding a slot;
// a continue-as-new carries every move as the model has it; the batch
// ends when, and only when, every move it knows has ended.
type rgBatch struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	name string
	env  *testsuite.TestWorkflowEnvironment
	now  time.Time

	mu       sync.Mutex
	state    map[string]int
	pool     []string // every mailbox the test may use, lower case
	queue    []string // the batch's asking queue as the model has it (closed askers stay in it)
	dupAsk   map[string]int
	conc     int
	paused   bool
	startAt  time.Time
	win      *window.Window
	fifo     bool // no move closed while it asked: grants must follow the queue
	cutEvery float64

	cut       atomic.Bool
	steps     int
	maxSteps  int
	idle      int
	runs      int
	grants    int
	regrants  int
	cuts      int
	log       []string
	breaches  []string
	stopped   bool // the test cancelled the batch
	completed bool
}

func newRgBatch(t *testing.T, seed uint64, moves, maxSteps int) *rgBatch {
	b := &rgBatch{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x9e3779b9)), name: "rg",
		state: map[string]int{}, dupAsk: map[string]int{}, fifo: true, maxSteps: maxSteps, cutEvery: 0.05}
	for i := range moves {
		mb := fmt.Sprintf("m%02d@x.example", i)
		b.pool = append(b.pool, mb)
		b.state[mb] = rgUnknown
	}
	return b
}

func (b *rgBatch) breach(format string, args ...any) {
	msg := fmt.Sprintf("step %d run %d: ", b.steps, b.runs) + fmt.Sprintf(format, args...)
	if len(b.breaches) < 20 {
		b.breaches = append(b.breaches, msg)
	}
}

func (b *rgBatch) holders() int {
	n := 0
	for _, s := range b.state {
		if s == rgHolding {
			n++
		}
	}
	return n
}

func (b *rgBatch) in(states ...int) []string {
	var l []string
	for _, mb := range b.pool {
		if slices.Contains(states, b.state[mb]) {
			l = append(l, mb)
		}
	}
	return l
}

func (b *rgBatch) pick(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[b.rng.IntN(len(l))]
}

// signal is the mock of SignalExternalWorkflow: what the batch sends.
func (b *rgBatch) signal(_, id, _, name string, _ any) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	mb := rgMailbox(b.name, id)
	now := b.env.Now()
	switch name {
	case SignalSlotGranted:
		st, ok := b.state[mb]
		switch {
		case !ok:
			b.breach("grant to %s, which no move asked for", mb)
		case st == rgHolding && b.dupAsk[mb] > 0:
			// Asked again while counted: answered at once (batch.go).
			b.dupAsk[mb]--
			b.regrants++
		case st != rgAsking:
			b.breach("grant to %s, which is %s", mb, rgStateName[st])
		default:
			b.grants++
			if b.paused {
				b.breach("grant to %s while the batch is paused", mb)
			}
			if now.Before(b.startAt) {
				b.breach("grant to %s before --start-after (%v early)", mb, b.startAt.Sub(now))
			}
			if b.win != nil {
				if open, _ := b.win.Open(now); !open {
					b.breach("grant to %s outside the window at %v", mb, now.Format("Mon 15:04:05"))
				}
			}
			for len(b.queue) > 0 && b.state[b.queue[0]] != rgAsking {
				b.queue = b.queue[1:]
			}
			// The grants of one step reach this mock in any order (each
			// in its own goroutine): in order means among the first
			// askers, as many as there are free slots.
			var eligible []string
			for _, q := range b.queue {
				if b.state[q] == rgAsking {
					eligible = append(eligible, q)
				}
			}
			if free := b.conc - b.holders(); b.fifo && !slices.Contains(eligible[:min(max(free, 0), len(eligible))], mb) {
				b.breach("grant to %s out of order; queue %v, %d free slots", mb, b.queue, free)
			}
			if i := slices.Index(b.queue, mb); i >= 0 {
				b.queue = slices.Delete(b.queue, i, i+1)
			}
			b.state[mb] = rgHolding
			if h := b.holders(); h > b.conc {
				b.breach("grant to %s: %d moves hold a slot, --concurrency %d", mb, h, b.conc)
			}
		}
	case SignalYield:
		if b.state[mb] != rgHolding {
			b.breach("yield to %s, which is %s", mb, rgStateName[b.state[mb]])
		}
	case SignalComplete:
	default:
		b.breach("unexpected signal %s to %s", name, mb)
	}
	return nil
}

// next picks the step's signal and updates the model as the batch will
// see it. One signal per step: the grants a step causes are all sent
// before the next step (the test environment fires no timer while a mock
// runs).
func (b *rgBatch) next() (string, any, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.steps > b.maxSteps {
		return b.drain()
	}
	r := b.rng.IntN(100)
	switch {
	case r < 22: // a move asks: its first ask, again after a release, a retry after it ended, or one the batch never heard of
		mb := b.pick(b.in(rgUnknown, rgIdle, rgClosed))
		if mb == "" {
			break
		}
		b.state[mb] = rgAsking
		if !slices.Contains(b.queue, mb) {
			b.queue = append(b.queue, mb)
		}
		return SignalMoveAcquire, rgCase(b.rng, mb), "ask " + mb
	case r < 27: // the same ask again (duplicate)
		mb := b.pick(b.in(rgAsking, rgHolding))
		if mb == "" {
			break
		}
		if b.state[mb] == rgHolding {
			b.dupAsk[mb]++
		}
		return SignalMoveAcquire, rgCase(b.rng, mb), "ask again " + mb
	case r < 45: // a holder gives its slot back
		mb := b.pick(b.in(rgHolding))
		if mb == "" {
			break
		}
		b.state[mb] = rgIdle
		return SignalMoveReleased, rgCase(b.rng, mb), "release " + mb
	case r < 49: // a release that counts nothing: late, after the close, from a move that never asked
		mb := b.pick(b.in(rgUnknown, rgIdle, rgAsking, rgClosed))
		if mb == "" {
			break
		}
		return SignalMoveReleased, rgCase(b.rng, mb), "stray release " + mb
	case r < 62: // a move ends
		var mb string
		switch x := b.rng.IntN(20); {
		case x < 12:
			mb = b.pick(b.in(rgHolding))
		case x < 17:
			mb = b.pick(b.in(rgIdle))
		case x < 19:
			mb = b.pick(b.in(rgAsking))
		default:
			mb = b.pick(b.in(rgUnknown, rgClosed))
		}
		if mb == "" {
			break
		}
		switch b.state[mb] {
		case rgAsking:
			b.fifo = false // the batch keeps its place in the queue
			b.state[mb] = rgClosed
		case rgHolding, rgIdle:
			b.state[mb] = rgClosed
		}
		mc := MoveClosed{Mailbox: rgCase(b.rng, mb)}
		if b.rng.IntN(3) == 0 {
			mc.Error = "LogonFailed"
		}
		return SignalMoveClosed, mc, "close " + mb
	case r < 69:
		b.paused = !b.paused
		return SignalPause, b.paused, fmt.Sprintf("pause %v", b.paused)
	case r < 77:
		b.conc = 1 + b.rng.IntN(5)
		return SignalConcurrency, b.conc, fmt.Sprintf("concurrency %d", b.conc)
	case r < 85: // batch add: a page of names, some already there
		var page []string
		for _, mb := range b.in(rgUnknown, rgIdle, rgAsking, rgHolding) {
			if b.rng.IntN(3) == 0 {
				page = append(page, rgCase(b.rng, mb))
				if b.state[mb] == rgUnknown {
					b.state[mb] = rgIdle
				}
			}
		}
		return SignalAddMoves, page, fmt.Sprintf("add %v", page)
	case r < 90:
		if b.rng.Float64() < b.cutEvery*10 {
			b.cut.Store(true)
			b.cuts++
			return SignalConcurrency, b.conc, "cut"
		}
	}
	return "", nil, "nothing"
}

// drain plays the moves to their end: resume, and close holders, then
// moves that never asked; askers must be granted meanwhile.
func (b *rgBatch) drain() (string, any, string) {
	if b.paused {
		b.paused = false
		return SignalPause, false, "pause false"
	}
	if mb := b.pick(b.in(rgHolding)); mb != "" {
		b.state[mb] = rgClosed
		return SignalMoveClosed, MoveClosed{Mailbox: rgCase(b.rng, mb)}, "close " + mb
	}
	if mb := b.pick(b.in(rgIdle)); mb != "" {
		b.state[mb] = rgClosed
		return SignalMoveClosed, MoveClosed{Mailbox: rgCase(b.rng, mb)}, "close " + mb
	}
	b.idle++
	if l := b.in(rgAsking); len(l) > 0 {
		if b.idle > 300 && b.win == nil || b.idle > 1500 {
			b.breach("moves ask and no move holds a slot, none granted for %d minutes: %v", b.idle, l)
			b.stopped = true
			return "", nil, "stop"
		}
		return "", nil, "wait"
	}
	b.breach("every move the batch knows has ended, and it runs on")
	b.stopped = true
	return "", nil, "stop"
}

func (b *rgBatch) step() {
	b.steps++
	name, arg, desc := b.next()
	b.now = b.env.Now()
	if len(b.log) < 400 {
		b.log = append(b.log, fmt.Sprintf("%d: %s", b.steps, desc))
	}
	if b.stopped {
		b.env.CancelWorkflow()
		return
	}
	if name != "" {
		b.env.SignalWorkflow(name, arg)
	}
	b.env.RegisterDelayedCallback(b.step, time.Minute)
}

// checkCarry compares what a run carries with the model.
func (b *rgBatch) checkCarry(next BatchInput) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := next.Carry
	if c == nil {
		b.breach("continued as new without its state")
		return
	}
	want := map[int]map[string]bool{rgIdle: {}, rgAsking: {}, rgHolding: {}, rgClosed: {}}
	for _, mb := range b.pool {
		if s := b.state[mb]; s != rgUnknown {
			want[s][mb] = true
		}
	}
	open := map[string]bool{}
	for mb := range want[rgIdle] {
		open[mb] = true
	}
	for mb := range want[rgAsking] {
		open[mb] = true
	}
	if got := rgSorted(rgSet(c.Holding)); !slices.Equal(got, rgSorted(want[rgHolding])) {
		b.breach("carried Holding %v, moves holding a slot %v", got, rgSorted(want[rgHolding]))
	}
	if got := rgSorted(rgSet(c.Open)); !slices.Equal(got, rgSorted(open)) {
		b.breach("carried Open %v, moves open without a slot %v", got, rgSorted(open))
	}
	if got := rgSorted(rgSet(c.Closed)); !slices.Equal(got, rgSorted(want[rgClosed])) {
		b.breach("carried Closed %v, moves ended %v", got, rgSorted(want[rgClosed]))
	}
	var asking, model []string
	for _, mb := range c.Asking {
		if want[rgAsking][strings.ToLower(mb)] {
			asking = append(asking, strings.ToLower(mb))
		}
	}
	for _, mb := range b.queue {
		if b.state[mb] == rgAsking {
			model = append(model, mb)
		}
	}
	if got := rgSorted(rgSet(asking)); !slices.Equal(got, rgSorted(want[rgAsking])) {
		b.breach("carried Asking %v, moves asking %v", c.Asking, rgSorted(want[rgAsking]))
	} else if b.fifo && !slices.Equal(asking, model) {
		b.breach("carried Asking in the order %v, asked in the order %v", asking, model)
	}
	if c.Concurrency != b.conc || c.Paused != b.paused {
		b.breach("carried concurrency %d paused %v, batch has %d %v", c.Concurrency, c.Paused, b.conc, b.paused)
	}
}

func (b *rgBatch) run(in BatchInput) {
	b.t.Helper()
	b.conc = in.Concurrency
	b.startAt = in.StartAfter
	if in.Window != "" {
		w, err := window.Parse(in.Window, in.WindowZone)
		if err != nil {
			b.t.Fatal(err)
		}
		b.win = &w
	}
	b.now = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for b.runs = 1; b.runs <= 60; b.runs++ {
		env := rgNewEnv(b.t)
		b.env = env
		env.SetStartTime(b.now.Add(time.Second))
		b.cut.Store(false)
		env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(b.signal)
		env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, "").Return(nil)
		env.RegisterDelayedCallback(b.step, time.Minute)
		env.ExecuteWorkflow(Batch, in)
		b.now = env.Now()
		err := env.GetWorkflowError()
		if next, ok := rgDecodeCAN[BatchInput](b.t, err); ok {
			b.checkCarry(next)
			in = next
			continue
		}
		if b.stopped {
			return
		}
		b.completed = true
		if err != nil {
			b.breach("batch ended with %v", err)
		}
		b.mu.Lock()
		if l := b.in(rgIdle, rgAsking, rgHolding); len(l) > 0 {
			b.breach("batch ended while moves it knows have not: %v", l)
		}
		b.mu.Unlock()
		return
	}
	b.breach("more than 60 runs")
}

func (b *rgBatch) report() {
	b.t.Helper()
	if len(b.breaches) > 0 {
		tail := b.log
		if len(tail) > 60 {
			tail = tail[len(tail)-60:]
		}
		b.t.Errorf("seed %d: %d breaches:\n  %s\nlast steps:\n  %s", b.seed, len(b.breaches),
			strings.Join(b.breaches, "\n  "), strings.Join(tail, "\n  "))
	}
}

// Random signal orders against the gated batch: duplicate acquires,
// releases after the close or from moves that never asked, closes of moves
// that never asked (and, rarely, of moves waiting for a slot), acquires
// from mailboxes the batch never heard of and retries after an end,
// mailboxes in any case, pause/resume, --concurrency up and down,
// add-moves pages, --start-after, a --window that opens and closes three
// times, and continue-as-new at random points
// (up to dozens of runs per seed). Checked at every grant: the move asked,
// order, never more holders than the concurrency in effect, never while
// paused, outside the window or before --start-after; at every cut: the carried state equals
// the model (holders, askers in order, ended, open, concurrency, pause);
// at the end: the batch ends exactly when every move it knows has ended.
func TestReviewGateRandomSignalsKeepTheBound(t *testing.T) {
	defer func(f func(*workflow.Info) bool) { batchRunFull = f }(batchRunFull)
	seeds := 150
	if testing.Short() {
		seeds = 20
	}
	totals := map[string]int{}
	for seed := range uint64(seeds) {
		b := newRgBatch(t, seed+1, 14, 150+int(seed%4)*50)
		batchRunFull = func(*workflow.Info) bool { return b.cut.Load() }
		var first []string
		for _, mb := range b.pool[:6] {
			first = append(first, rgCase(b.rng, mb))
			b.state[mb] = rgIdle
		}
		in := BatchInput{Name: b.name, Gated: true, Concurrency: 1 + b.rng.IntN(4), Mailboxes: first}
		if seed%3 == 0 {
			in.StartAfter = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).Add(time.Duration(10+b.rng.IntN(60)) * time.Minute)
		}
		if seed%4 == 1 {
			in.Window, in.WindowZone = "Mon-Sun 09:20-10:10, Mon-Sun 10:40-11:30, Mon-Sun 12:00-13:15", "UTC"
		}
		b.run(in)
		b.report()
		totals["grants"] += b.grants
		totals["regrants"] += b.regrants
		totals["cuts"] += b.cuts
		totals["runs"] += b.runs
		if !b.completed && len(b.breaches) == 0 {
			t.Errorf("seed %d: did not complete", seed+1)
		}
	}
	t.Logf("%v", totals)
	if totals["cuts"] == 0 || totals["grants"] == 0 {
		t.Fatalf("the random test exercised nothing: %v", totals)
	}
}

// A grant in flight across the cut: the batch decides to continue as new
// while its grant to b is not yet delivered, and signals arrive meanwhile
// (c asks, a releases). The grant is delivered first, the signals taken,
// and the next run counts b and c as holding: a, asking again in the next
// run, waits until a slot frees (concurrency 2).
func TestReviewGateGrantInFlightAcrossTheCut(t *testing.T) {
	defer func(f func(*workflow.Info) bool) { batchRunFull = f }(batchRunFull)
	var cut atomic.Bool
	batchRunFull = func(*workflow.Info) bool { return cut.Load() }
	var mu sync.Mutex
	holding := map[string]bool{}
	peak := 0
	var env *testsuite.TestWorkflowEnvironment
	grantMock := func(_, id, _, name string, _ any) error {
		mu.Lock()
		defer mu.Unlock()
		if name != SignalSlotGranted {
			return nil
		}
		mb := rgMailbox("g", id)
		if holding[mb] {
			t.Errorf("%s granted while it holds", mb)
		}
		holding[mb] = true
		peak = max(peak, len(holding))
		if mb == "b@x" && cut.Load() {
			// Delivered only after these two reach the batch.
			env.SignalWorkflow(SignalMoveAcquire, "C@X")
			env.SignalWorkflow(SignalMoveReleased, "a@x")
			delete(holding, "a@x")
		}
		return nil
	}
	env = rgNewEnv(t)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(grantMock)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalMoveAcquire, "a@x") }, time.Minute)
	env.RegisterDelayedCallback(func() {
		cut.Store(true)
		env.SignalWorkflow(SignalMoveAcquire, "b@x")
	}, 2*time.Minute)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "g", Gated: true, Concurrency: 2, Mailboxes: []string{"a@x", "b@x", "c@x"}})
	next, ok := rgDecodeCAN[BatchInput](t, env.GetWorkflowError())
	if !ok {
		t.Fatalf("batch ended with %v, want continue-as-new", env.GetWorkflowError())
	}
	c := next.Carry
	if got := rgSorted(rgSet(c.Holding)); !slices.Equal(got, []string{"b@x", "c@x"}) || len(c.Open) != 1 || len(c.Asking) != 0 {
		t.Fatalf("carry %+v: want b and c holding, a open", c)
	}
	cut.Store(false)
	env = rgNewEnv(t)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(grantMock)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalMoveAcquire, "a@x") }, time.Minute)
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		if holding["a@x"] {
			t.Errorf("a granted while b and c hold both slots")
		}
		delete(holding, "b@x")
		mu.Unlock()
		env.SignalWorkflow(SignalMoveClosed, MoveClosed{Mailbox: "b@x"})
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		if !holding["a@x"] {
			t.Errorf("a not granted after b ended")
		}
		holding = map[string]bool{}
		mu.Unlock()
		env.SignalWorkflow(SignalMoveClosed, MoveClosed{Mailbox: "a@x"})
		env.SignalWorkflow(SignalMoveClosed, MoveClosed{Mailbox: "c@x"})
	}, 2*time.Hour)
	env.ExecuteWorkflow(Batch, next)
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("second run: %v", env.GetWorkflowError())
	}
	if peak > 2 {
		t.Fatalf("%d moves held slots at once, concurrency 2", peak)
	}
}

// ---------------------------------------------------------------------------
// Breaches of "no move is forgotten".

// rgStillRunning cancels a batch that is still running at the end of the
// test's horizon and reports what it waits for.
func rgStillRunning(t *testing.T, env *testsuite.TestWorkflowEnvironment, after time.Duration, running *BatchStatus) {
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		if err := v.Get(running); err != nil {
			t.Error(err)
		}
		env.CancelWorkflow()
	}, after)
}

func rgOpen(st BatchStatus) []string {
	var l []string
	for _, e := range st.Entries {
		if !e.Closed {
			l = append(l, e.Mailbox)
		}
	}
	return l
}

// `batch add` run again after it was cut off (the CLI's own advice, for
// `batch start` too) registers the whole CSV again. A mailbox of it whose
// move has completed meanwhile is reopened by the batch (gate.add reopens
// every Closed entry it is given), while the CLI's start of that move is
// refused (WorkflowIDReusePolicy ALLOW_DUPLICATE_FAILED_ONLY: a completed
// move is never started twice). The batch then waits forever for a move
// that ended: every move of the batch has ended and it never does.
func TestReviewGateFixedAddMovesReopensACompletedMove(t *testing.T) {
	env := rgNewEnv(t)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(nil)
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, "").Return(nil)
	at := func(d time.Duration, name string, arg any) {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(name, arg) }, d)
	}
	at(time.Minute, SignalMoveAcquire, "a@x")
	at(2*time.Minute, SignalMoveClosed, MoveClosed{Mailbox: "a@x"}) // a completed
	// batch add NAME --csv (a, c), run again: registers both, starts c
	// only (a's start is refused: completed).
	at(3*time.Minute, SignalAddMoves, []string{"a@x", "c@x"})
	at(4*time.Minute, SignalMoveAcquire, "c@x")
	at(4*time.Minute, SignalMoveAcquire, "b@x")
	at(5*time.Minute, SignalMoveClosed, MoveClosed{Mailbox: "c@x"})
	at(5*time.Minute, SignalMoveClosed, MoveClosed{Mailbox: "b@x"})
	var running BatchStatus
	rgStillRunning(t, env, 30*24*time.Hour, &running)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "g", Gated: true, Concurrency: 2, Mailboxes: []string{"a@x", "b@x"}})
	if running.Name != "" {
		t.Fatalf("every move ended within 5 minutes (a completed, then b and c); after 30 days the batch still waits for %v", rgOpen(running))
	}
}

// A move started beyond MaxBatchMailboxes. The CLI's check reads the
// batch's memo (batch add: checkBatchSize(memo.Mailboxes, ...)), whose
// counts are written at most every 5 s and reach the visibility store
// later still, so two `batch add` close together (or one right after
// `batch start`) both pass it. The batch honours the bound by ignoring the
// extra mailbox's add-moves and its acquire, silently: the move waits for
// a grant forever, and the batch ends without it. Checked: a name given
// beyond the bound (add-moves of a move that never asks) does not join;
// a move that asks is answered (a grant, or any word) before the batch
// ends.
func TestReviewGateFixedMoveBeyondMaxBatchMailboxesIsForgotten(t *testing.T) {
	env := rgNewEnv(t)
	closed := make([]string, MaxBatchMailboxes-1)
	for i := range closed {
		closed[i] = fmt.Sprintf("c%05d@x", i)
	}
	var mu sync.Mutex
	told := map[string][]string{}
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(
		func(_, id, _, name string, _ any) error {
			mu.Lock()
			defer mu.Unlock()
			mb := rgMailbox("big", id)
			told[mb] = append(told[mb], name)
			return nil
		})
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, "").Return(nil)
	at := func(d time.Duration, name string, arg any) {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(name, arg) }, d)
	}
	at(time.Minute, SignalAddMoves, []string{"extra@x", "named@x"})
	at(2*time.Minute, SignalMoveAcquire, "extra@x") // the move started by the CLI asks; named@x's never does
	at(3*time.Minute, SignalMoveAcquire, "last@x")
	at(4*time.Minute, SignalMoveClosed, MoveClosed{Mailbox: "last@x"})
	var running BatchStatus
	rgStillRunning(t, env, 30*24*time.Hour, &running)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "big", Gated: true, Concurrency: 5,
		Carry: &BatchCarry{Concurrency: 5, Open: []string{"last@x"}, Closed: closed}})
	var st BatchStatus
	if running.Name != "" {
		st = running
	} else if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	// Honoured: no name joins beyond the bound.
	for _, e := range st.Entries {
		if strings.EqualFold(e.Mailbox, "named@x") {
			t.Errorf("named@x joined a batch of MaxBatchMailboxes (%d entries)", len(st.Entries))
		}
	}
	if !slices.Contains(told["last@x"], SignalSlotGranted) {
		t.Errorf("last@x never granted")
	}
	// Forgotten: extra@x asked, was neither granted nor told, and the batch
	// ended (or runs without knowing it).
	if len(told["extra@x"]) == 0 {
		t.Errorf("extra@x asked the batch for a slot and was never answered (signals to it: none); batch ended: %v: "+
			"the move waits in WaitingForBatchSlot forever", running.Name == "")
	}
}

// A move that ends without telling the batch: cancelled on its own (Web
// UI, `temporal workflow cancel`) or terminated. move.closed sends no
// move-closed for a cancelled move, and the batch, whose grant to it then
// fails (the workflow is closed), counts the slot as held forever
// (batch.go signal ignores the error): with --concurrency 1 the next move
// never gets a slot, and the batch never ends.
func TestReviewGateFixedGrantToAGoneMoveLeaksItsSlot(t *testing.T) {
	env := rgNewEnv(t)
	var mu sync.Mutex
	granted := map[string]int{}
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(
		func(_, id, _, name string, _ any) error {
			mu.Lock()
			defer mu.Unlock()
			mb := rgMailbox("g", id)
			if name == SignalSlotGranted {
				granted[mb]++
				if mb == "a@x" {
					return errors.New("unknown external workflow execution: workflow is not running")
				}
			}
			return nil
		})
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, "").Return(nil)
	at := func(d time.Duration, name string, arg any) {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(name, arg) }, d)
	}
	at(time.Minute, SignalMoveAcquire, "x@x")
	at(2*time.Minute, SignalMoveAcquire, "a@x")
	at(2*time.Minute, SignalMoveAcquire, "b@x")
	// 3m: a's move is cancelled by an admin while it waits: it says nothing.
	at(4*time.Minute, SignalMoveClosed, MoveClosed{Mailbox: "x@x"})
	var running BatchStatus
	rgStillRunning(t, env, 30*24*time.Hour, &running)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "g", Gated: true, Concurrency: 1, Mailboxes: []string{"x@x", "a@x", "b@x"}})
	mu.Lock()
	defer mu.Unlock()
	if granted["b@x"] == 0 {
		t.Errorf("b never granted in 30 days: the only slot went to a, whose move had ended (the grant failed), and is counted as held forever; open: %v",
			rgOpen(running))
	}
}

// The move side of the leak above: a gated move cancelled on its own
// (not by its batch) ends without move-closed and without giving its slot
// back (move.go closed: ctx.Err() != nil returns).
func TestReviewGateFixedCancelledGatedMoveNeverTellsItsBatch(t *testing.T) {
	env := rgNewEnv(t)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(2 * time.Hour).Return(syncAllDone)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	var mu sync.Mutex
	var sent []string
	env.OnSignalExternalWorkflow(mock.Anything, BatchWorkflowID("b1"), "", mock.Anything, mock.Anything).Return(
		func(_, _, _, name string, _ any) error {
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, name)
			if name == SignalMoveAcquire {
				env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalSlotGranted, nil) }, time.Minute)
			}
			return nil
		})
	env.RegisterDelayedCallback(func() { env.CancelWorkflow() }, time.Hour)
	in := testInput(Settings{})
	in.Gated = true
	env.ExecuteWorkflow(MailboxMove, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("move did not end")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(sent, SignalMoveClosed) && !slices.Contains(sent, SignalMoveReleased) {
		t.Errorf("a gated move cancelled while it held its batch's slot ended (%v) telling its batch nothing (signals: %v): "+
			"the batch counts the slot as held and waits for the move forever", env.GetWorkflowError(), sent)
	}
}

// ---------------------------------------------------------------------------
// Cancel.

// Moves in every state, then `batch cancel`: every registered move not
// ended (holding, asking, idle, registered and never started, joined by
// its acquire, retried after it ended) is asked to cancel exactly once,
// none that ended, none the batch never heard of, and the batch ends
// cancelled. Also across a continue-as-new just before the cancel.
func TestReviewGateCancelRequestsEveryMoveNotEnded(t *testing.T) {
	defer func(f func(*workflow.Info) bool) { batchRunFull = f }(batchRunFull)
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var cut atomic.Bool
		batchRunFull = func(*workflow.Info) bool { return cut.Load() }
		state := map[string]int{}
		var names []string
		for i := range 12 {
			mb := fmt.Sprintf("m%02d@x", i)
			names = append(names, mb)
		}
		first := names[:8]
		for _, mb := range first {
			state[mb] = rgIdle
		}
		type sig struct {
			name string
			arg  any
		}
		var script []sig
		for range 40 {
			mb := names[rng.IntN(len(names))]
			switch rng.IntN(4) {
			case 0, 1:
				script = append(script, sig{SignalMoveAcquire, rgCase(rng, mb)})
				state[mb] = rgAsking
			case 2:
				if state[mb] != rgUnknown {
					state[mb] = rgClosed
				}
				script = append(script, sig{SignalMoveClosed, MoveClosed{Mailbox: rgCase(rng, mb)}})
			case 3:
				script = append(script, sig{SignalMoveReleased, rgCase(rng, mb)})
			}
		}
		wantCancel := map[string]bool{}
		for mb, s := range state {
			if s == rgIdle || s == rgAsking {
				wantCancel[mb] = true
			}
		}
		withCut := seed%2 == 1
		var mu sync.Mutex
		cancels := map[string]int{}
		runEnv := func(in BatchInput, play bool) error {
			env := rgNewEnv(t)
			env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(nil)
			env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, "").Return(func(_, id, _ string) error {
				mu.Lock()
				defer mu.Unlock()
				cancels[rgMailbox("g", id)]++
				return nil
			})
			if play {
				for i, s := range script {
					env.RegisterDelayedCallback(func() { env.SignalWorkflow(s.name, s.arg) }, time.Duration(i+1)*time.Minute)
				}
				if withCut {
					env.RegisterDelayedCallback(func() { cut.Store(true); env.SignalWorkflow(SignalConcurrency, 2) }, time.Hour)
				} else {
					env.RegisterDelayedCallback(env.CancelWorkflow, time.Hour)
				}
			} else {
				env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
			}
			env.ExecuteWorkflow(Batch, in)
			return env.GetWorkflowError()
		}
		err := runEnv(BatchInput{Name: "g", Gated: true, Concurrency: 2, Mailboxes: first}, true)
		if withCut {
			next, ok := rgDecodeCAN[BatchInput](t, err)
			if !ok {
				if len(wantCancel) == 0 && err == nil {
					continue // every move ended before the cut: the batch ended
				}
				t.Fatalf("seed %d: %v, want continue-as-new", seed, err)
			}
			cut.Store(false)
			err = runEnv(next, false)
		}
		if len(wantCancel) == 0 && err == nil {
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "canceled") {
			t.Errorf("seed %d: batch ended with %v, want cancelled", seed, err)
		}
		for mb := range wantCancel {
			if cancels[mb] != 1 {
				t.Errorf("seed %d: %s (not ended) asked to cancel %d times", seed, mb, cancels[mb])
			}
		}
		for mb, n := range cancels {
			if !wantCancel[mb] {
				t.Errorf("seed %d: %s (%s) asked to cancel %d times", seed, mb, rgStateName[state[mb]], n)
			}
		}
	}
}

// rgPending counts, through a workflow interceptor, the signals to other
// workflows and the cancel requests a workflow has under way: Temporal
// refuses a workflow task that would leave more than 2,000 of either
// pending (limit.numPendingSignals.error,
// limit.numPendingCancelRequests.error; temporalio/temporal#4326: "no
// partial acceptance ... Workflow task will be failed & workflow will
// enter a stuck state").
type rgPending struct {
	interceptor.WorkerInterceptorBase
	mu                                         sync.Mutex
	signals, cancels, peakSignals, peakCancels int
}

func (p *rgPending) count(n *int, peak *int, d int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	*n += d
	*peak = max(*peak, *n)
}

func (p *rgPending) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &rgPendingIn{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, p: p}
}

type rgPendingIn struct {
	interceptor.WorkflowInboundInterceptorBase
	p *rgPending
}

func (i *rgPendingIn) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&rgPendingOut{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, p: i.p})
}

// rgPendingOut counts a command pending from its call until one waiter
// coroutine sees its future ready. The waiter takes the futures in the
// order they were issued (one coroutine, not one per future: the
// dispatcher runs every blocked coroutine at each step), so a future that
// is ready behind one that is not counts a little longer: exact for
// commands issued together in one workflow task, which is what the tests
// measure.
type rgPendingOut struct {
	interceptor.WorkflowOutboundInterceptorBase
	p       *rgPending
	queue   []rgPendingF
	waiting bool
}

type rgPendingF struct {
	f      workflow.Future
	signal bool
}

func (o *rgPendingOut) track(ctx workflow.Context, f workflow.Future, signal bool) {
	if signal {
		o.p.count(&o.p.signals, &o.p.peakSignals, 1)
	} else {
		o.p.count(&o.p.cancels, &o.p.peakCancels, 1)
	}
	o.queue = append(o.queue, rgPendingF{f, signal})
	if o.waiting {
		return
	}
	o.waiting = true
	o.Next.Go(ctx, "rg-pending", func(ctx workflow.Context) {
		for {
			if len(o.queue) == 0 {
				if workflow.Await(ctx, func() bool { return len(o.queue) > 0 }) != nil {
					return
				}
			}
			head := o.queue[0]
			_ = head.f.Get(ctx, nil)
			o.queue = o.queue[1:]
			if head.signal {
				o.p.count(&o.p.signals, &o.p.peakSignals, -1)
			} else {
				o.p.count(&o.p.cancels, &o.p.peakCancels, -1)
			}
		}
	})
}

func (o *rgPendingOut) SignalExternalWorkflow(ctx workflow.Context, id, run, name string, arg interface{}) workflow.Future {
	f := o.Next.SignalExternalWorkflow(ctx, id, run, name, arg)
	o.track(ctx, f, true)
	return f
}

func (o *rgPendingOut) RequestCancelExternalWorkflow(ctx workflow.Context, id, run string) workflow.Future {
	f := o.Next.RequestCancelExternalWorkflow(ctx, id, run)
	o.track(ctx, f, false)
	return f
}

const rgPendingLimit = 2000

func rgManyNames(n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = fmt.Sprintf("u%05d@x", i)
	}
	return l
}

// `batch cancel` of a batch with 2,001 moves not ended (a batch of 10,000
// a fifth through): cancelMoves issues every cancel request in one
// workflow task. On a Temporal server with the default per-workflow limit
// of 2,000 pending cancel requests the task is refused, again at every
// retry: the batch never ends and cancels none of its moves.
func TestReviewGateFixedCancelOfALargeBatchExceedsPendingCancelLimit(t *testing.T) {
	p := &rgPending{}
	env := rgNewEnv(t, p)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(nil)
	var n atomic.Int64
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, "").Return(func(string, string, string) error {
		n.Add(1)
		return nil
	})
	names := rgManyNames(rgPendingLimit + 1)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalAddMoves, names[2000:]) }, time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Hour)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "big", Gated: true, Concurrency: 10, Mailboxes: names[:2000]})
	if n.Load() != rgPendingLimit+1 {
		t.Fatalf("%d cancel requests, want %d", n.Load(), rgPendingLimit+1)
	}
	if p.peakCancels > rgPendingLimit {
		t.Errorf("%d cancel requests pending at once (one workflow task): above Temporal's default limit of %d, the server fails the task "+
			"and the cancelled batch is stuck", p.peakCancels, rgPendingLimit)
	}
}

// `batch complete --after T` on a manual-complete batch with 2,001 moves
// synced: at T, completeAll signals every move in one workflow task, above
// the default limit of 2,000 pending signals to other workflows: the batch
// is stuck (no grant, no end) from then on.
func TestReviewGateFixedCompleteAtOnALargeBatchExceedsPendingSignalLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("about 20 s: every signal of the batch runs in a coroutine of its own, which the dispatcher visits at every step")
	}
	p := &rgPending{}
	env := rgNewEnv(t, p)
	var n atomic.Int64
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(
		func(_, _, _, name string, _ any) error {
			if name == SignalComplete {
				n.Add(1)
			}
			return nil
		})
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, "").Return(nil)
	names := rgManyNames(rgPendingLimit + 1)
	start := env.Now()
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalAddMoves, names[2000:]) }, time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCompleteAt, start.Add(2*time.Hour)) }, time.Hour)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Hour)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "big", Gated: true, Concurrency: 10, Mailboxes: names[:2000]})
	if n.Load() < rgPendingLimit+1 {
		t.Fatalf("%d complete signals, want %d", n.Load(), rgPendingLimit+1)
	}
	if p.peakSignals > rgPendingLimit {
		t.Errorf("%d signals to moves pending at once (one workflow task): above Temporal's default limit of %d, the server fails the task "+
			"and the batch is stuck", p.peakSignals, rgPendingLimit)
	}
}

// CompleteAt stays in BatchCarry after it fired, and every run re-arms it
// (gate.run: completeAt(c.CompleteAt), at least a second later): each run
// after a continue-as-new signals complete to every move not ended again:
// 2N events in each new run's history for N open moves, N events in each
// move's; above 2,000 open moves each new run is stuck at once (see
// TestReviewGateFixedCompleteAtOnALargeBatchExceedsPendingSignalLimit).
func TestReviewGateFixedCompleteAtResentByEveryRun(t *testing.T) {
	defer func(f func(*workflow.Info) bool) { batchRunFull = f }(batchRunFull)
	var cut atomic.Bool
	batchRunFull = func(*workflow.Info) bool { return cut.Load() }
	var mu sync.Mutex
	completes := map[string]int{}
	mockFn := func(_, id, _, name string, _ any) error {
		mu.Lock()
		defer mu.Unlock()
		if name == SignalComplete {
			completes[rgMailbox("g", id)]++
		}
		return nil
	}
	in := BatchInput{Name: "g", Gated: true, Concurrency: 3, Mailboxes: []string{"a@x", "b@x", "c@x"}}
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	now := start
	for run := range 4 {
		env := rgNewEnv(t)
		env.SetStartTime(now.Add(time.Second))
		cut.Store(false)
		env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(mockFn)
		if run == 0 {
			for _, mb := range in.Mailboxes {
				env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalMoveAcquire, mb) }, time.Minute)
			}
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCompleteAt, start.Add(time.Hour)) }, 2*time.Minute)
		}
		env.RegisterDelayedCallback(func() { cut.Store(true); env.SignalWorkflow(SignalConcurrency, 3) }, 3*time.Hour)
		env.ExecuteWorkflow(Batch, in)
		now = env.Now()
		next, ok := rgDecodeCAN[BatchInput](t, env.GetWorkflowError())
		if !ok {
			t.Fatalf("run %d: %v", run, env.GetWorkflowError())
		}
		in = next
	}
	mu.Lock()
	defer mu.Unlock()
	for mb, n := range completes {
		if n > 1 {
			t.Errorf("%s told to complete %d times over 4 runs (CompleteAt fired in the first)", mb, n)
		}
	}
}

// ---------------------------------------------------------------------------
// Moves.

var rgThreeFolders = activities.ConnectResult{Folders: []engine.FolderPlan{
	{Source: "INBOX", Target: "INBOX", Messages: 30, Bytes: 3000},
	{Source: "Sent", Target: "Sent Items", Messages: 20, Bytes: 2000},
	{Source: "Archive", Target: "Archive", Messages: 10, Bytes: 1000},
}}

const rgD = 10 * time.Minute

type rgSpan struct {
	what       string
	start, end time.Time
	yield      time.Time // a slot: when a yield came while it was held
}

// rgMoveSim is a gated move's batch and servers: it grants a slot some
// time after each ask, yields at random while the move holds one, and
// records the slot's intervals and every activity call.
type rgMoveSim struct {
	t    *testing.T
	seed uint64
	env  *testsuite.TestWorkflowEnvironment
	rng  *rand.Rand

	mu      sync.Mutex
	holding bool
	asking  bool
	since   time.Time
	yieldAt time.Time // a yield came while the move held its slot, at
	yields  int
	// raced counts the asks that came while the move held its slot: its
	// release was issued in the same workflow task and reached this mock
	// second (TestReviewGateFixedMoveAsksWhileItsReleaseIsUnderWay);
	// the slot is taken as given back at the ask.
	raced, lateRelease int
	slots              []rgSpan
	calls              []rgSpan
	closed             []MoveClosed
	anomalies          []string
	asks               int
	failP              float64
	finalP             float64
	finals             int
	cutNow             atomic.Bool
	completed          bool // complete sent
}

func (s *rgMoveSim) anomaly(format string, args ...any) {
	if len(s.anomalies) < 20 {
		s.anomalies = append(s.anomalies, fmt.Sprintf("%v: ", s.env.Now().Format("15:04:05"))+fmt.Sprintf(format, args...))
	}
}

func (s *rgMoveSim) signal(_, _, _, name string, arg any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.env.Now()
	switch name {
	case SignalMoveAcquire:
		s.asks++
		if s.asking {
			s.anomaly("asked while asking")
		}
		if s.holding {
			s.raced++
			s.lateRelease++
			s.slots = append(s.slots, rgSpan{"slot", s.since, now, s.yieldAt})
			s.holding, s.yieldAt = false, time.Time{}
		}
		s.asking = true
		d := time.Duration(1+s.rng.IntN(40)) * time.Minute
		if s.rng.IntN(4) == 0 {
			d = time.Second
		}
		env := s.env
		env.RegisterDelayedCallback(func() {
			s.mu.Lock()
			if s.env != env {
				s.mu.Unlock()
				return
			}
			s.asking, s.holding, s.since = false, true, env.Now()
			s.mu.Unlock()
			env.SignalWorkflow(SignalSlotGranted, nil)
		}, d)
	case SignalMoveReleased:
		if !s.holding && s.lateRelease > 0 {
			s.lateRelease--
			return nil
		}
		if !s.holding {
			s.anomaly("released without holding a slot")
		}
		if s.holding {
			s.slots = append(s.slots, rgSpan{"slot", s.since, now, s.yieldAt})
		}
		s.holding, s.yieldAt = false, time.Time{}
	case SignalMoveClosed:
		s.closed = append(s.closed, arg.(MoveClosed))
		if s.holding {
			s.slots = append(s.slots, rgSpan{"slot", s.since, now, s.yieldAt})
		}
		s.holding, s.yieldAt = false, time.Time{}
		if s.asking {
			s.anomaly("closed while asking")
		}
	default:
		s.anomaly("unexpected signal %s", name)
	}
	return nil
}

func (s *rgMoveSim) call(what string, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.env.Now()
	s.calls = append(s.calls, rgSpan{what: what, start: now.Add(-d), end: now})
	switch x := s.rng.Float64(); {
	case x < s.finalP:
		s.finals++
		return failed(failure.TypeProtocol, failure.SideSource, "BAD", "review: final", nil)
	case x < s.finalP+s.failP:
		return failed(failure.TypeServerUnavailable, failure.SideTarget, "Unavailable", "review: busy", nil)
	}
	return nil
}

func (s *rgMoveSim) mockActivities(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(context.Context, activities.ConnectInput) (activities.ConnectResult, error) {
		if err := s.call("connect", 0); err != nil {
			return activities.ConnectResult{}, err
		}
		return rgThreeFolders, nil
	})
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(func(context.Context, activities.CreateFoldersInput) error {
		return s.call("create", 0)
	})
	sync := func(what string, d time.Duration) func(context.Context, activities.SyncInput) (activities.SyncResult, error) {
		return func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
			if err := s.call(what, d); err != nil {
				return activities.SyncResult{}, err
			}
			res, _ := syncAllDone(ctx, in)
			s.mu.Lock()
			more := s.rng.IntN(3) == 0
			s.mu.Unlock()
			if more {
				for i := range res.Done {
					res.Done[i] = false
				}
			}
			return res, nil
		}
	}
	// Calls of different lengths (by a lane's first folder): one lane's
	// call ends, and it waits, while another's runs on.
	for _, f := range []struct {
		src string
		d   time.Duration
	}{{"INBOX", rgD}, {"Sent", 7 * time.Minute}, {"Archive", 4 * time.Minute}} {
		match := mock.MatchedBy(func(in activities.SyncInput) bool { return len(in.Cursors) > 0 && in.Cursors[0].Source == f.src })
		env.OnActivity(a.InitialSync, mock.Anything, match).After(f.d).Return(sync("initial", f.d))
		env.OnActivity(a.IncrementalSync, mock.Anything, match).After(f.d).Return(sync("incremental", f.d))
	}
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(func(context.Context, activities.VerifyInput) (activities.VerifyResult, error) {
		return activities.VerifyResult{}, s.call("verify", 0)
	})
}

// inSlot finds the slot a call ran in.
func (s *rgMoveSim) inSlot(c rgSpan) (rgSpan, bool) {
	for _, sl := range s.slots {
		if !c.start.Before(sl.start) && !c.end.After(sl.end) {
			return sl, true
		}
	}
	return rgSpan{}, false
}

// A gated move against a simulated batch, with random faults: retryable
// failures on every activity (the move gives its slot back while it waits
// and asks again), rare final failures, 1–3 lanes (a lane waits while
// another copies), grants after random delays, yields at random while it
// holds a slot, resume signals during waits, auto and manual completion
// with incremental passes, continue-as-new between passes (PassesPerRun)
// and in the middle of a pass (historyLong forced at random), stale
// yields. Checked: no activity runs outside a granted slot; none starts
// after a yield in the slot it came in (the slot goes back first, across
// a continue-as-new too); no ask while asking or holding;
// no release without a slot; across each continue-as-new, no move-closed
// and the carried Released matches the slot the batch counts; at the end,
// exactly one move-closed, with an error exactly when the move failed.
func TestReviewGateMoveNeverCopiesWithoutAGrant(t *testing.T) {
	defer func(f func(workflow.Context) bool) { historyLong = f }(historyLong)
	seeds := 150
	if testing.Short() {
		seeds = 20
	}
	var fails, runs, cuts, raced int
	for seed := range uint64(seeds) {
		s := &rgMoveSim{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 42)), failP: 0.2, finalP: 0.004}
		historyLong = func(workflow.Context) bool { return s.cutNow.Load() }
		p := policy.Default()
		p.Rules[failure.TypeServerUnavailable] = failure.Rule{InitialInterval: minutes(7), BackoffCoefficient: 1}
		p.Rules[failure.TypeProtocol] = failure.Rule{Final: true}
		set := Settings{Policy: &p, ConnectionsPerMove: 1 + s.rng.IntN(3), IncrementalInterval: 30 * time.Minute}
		manual := s.rng.IntN(2) == 0
		if manual {
			set.Complete = CompleteManual
			set.PassesPerRun = 1 + s.rng.IntN(3)
		}
		in := testInput(set)
		in.Gated = true
		now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		completeAt := now.Add(time.Duration(3+s.rng.IntN(8)) * time.Hour)
		var err error
		done := false
		for run := 1; run <= 40 && !done; run++ {
			runs++
			env := rgNewEnv(t)
			env.SetStartTime(now.Add(time.Second))
			s.mu.Lock()
			s.env = env
			s.mu.Unlock()
			s.cutNow.Store(false)
			s.mockActivities(env)
			env.OnSignalExternalWorkflow(mock.Anything, BatchWorkflowID("b1"), "", mock.Anything, mock.Anything).Return(s.signal)
			for range 12 {
				d := time.Duration(1+s.rng.IntN(12*60)) * time.Minute
				switch s.rng.IntN(3) {
				case 0, 1:
					// The batch paused: it yields the moves it counts;
					// sometimes one that has just given its slot back
					// (its release crossed the pause).
					stale := s.rng.IntN(4) == 0
					env.RegisterDelayedCallback(func() {
						s.mu.Lock()
						h := s.holding
						if h && s.yieldAt.IsZero() {
							s.yieldAt = env.Now()
						}
						s.yields++
						s.mu.Unlock()
						if h || stale {
							env.SignalWorkflow(SignalYield, nil)
						}
					}, d)
				case 2:
					env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalResume, nil) }, d)
				}
			}
			if s.rng.IntN(3) == 0 {
				// The history is long from now on; the batch sometimes
				// pauses at the same moment.
				yield := s.rng.IntN(2) == 0
				env.RegisterDelayedCallback(func() {
					s.cutNow.Store(true)
					s.mu.Lock()
					h := s.holding
					if h && yield && s.yieldAt.IsZero() {
						s.yieldAt = env.Now()
					}
					s.mu.Unlock()
					if h && yield {
						env.SignalWorkflow(SignalYield, nil)
					}
				}, time.Duration(1+s.rng.IntN(5*60))*time.Minute)
			}
			if manual && !s.completed {
				if d := completeAt.Sub(now); d > 0 {
					env.RegisterDelayedCallback(func() { s.completed = true; env.SignalWorkflow(SignalComplete, nil) }, d)
				} else {
					s.completed = true
					env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalComplete, nil) }, time.Second)
				}
			}
			env.ExecuteWorkflow(MailboxMove, in)
			now = env.Now()
			err = env.GetWorkflowError()
			s.mu.Lock()
			closedSoFar := len(s.closed)
			s.mu.Unlock()
			if next, ok := rgDecodeCAN[MailboxMoveInput](t, err); ok {
				if s.cutNow.Load() {
					cuts++
				}
				s.mu.Lock()
				if closedSoFar != 0 {
					s.anomaly("move-closed sent by a run that continued as new")
				}
				if s.asking {
					s.anomaly("continued as new while asking for a slot")
				}
				if next.State == nil || next.State.Released == s.holding {
					s.anomaly("continued as new with Released=%v while the batch counts its slot: %v", next.State != nil && next.State.Released, s.holding)
				}
				s.mu.Unlock()
				in = next
				continue
			}
			done = true
		}
		s.mu.Lock()
		if s.holding {
			s.slots = append(s.slots, rgSpan{"slot", s.since, now, s.yieldAt})
		}
		if !done {
			s.anomaly("did not end in 40 runs")
		}
		if err != nil {
			fails++
		}
		if len(s.closed) != 1 {
			s.anomaly("%d move-closed signals, want 1", len(s.closed))
		} else if (s.closed[0].Error != "") != (err != nil) {
			s.anomaly("move-closed %+v, workflow error %v", s.closed[0], err)
		}
		if s.holding || s.asking {
			s.anomaly("ended holding %v asking %v", s.holding, s.asking)
		}
		for _, c := range s.calls {
			sl, ok := s.inSlot(c)
			if !ok {
				s.anomaly("%s call %v–%v outside a granted slot; slots %v", c.what, c.start.Format("15:04:05"), c.end.Format("15:04:05"), s.slotsString())
				break
			}
			if !sl.yield.IsZero() && c.start.After(sl.yield) {
				s.anomaly("%s call %v–%v started after a yield (%v) in the slot %v–%v it did not give back", c.what,
					c.start.Format("15:04:05"), c.end.Format("15:04:05"), sl.yield.Format("15:04:05"), sl.start.Format("15:04:05"), sl.end.Format("15:04:05"))
				break
			}
		}
		if len(s.anomalies) > 0 {
			t.Errorf("seed %d (lanes %d, manual %v): %s", seed, set.ConnectionsPerMove, manual, strings.Join(s.anomalies, "\n  "))
		}
		raced += s.raced
		s.mu.Unlock()
	}
	t.Logf("%d moves, %d failed, %d runs, %d cut, %d asks that raced their release", seeds, fails, runs, cuts, raced)
}

func (s *rgMoveSim) slotsString() string {
	var b strings.Builder
	for i, sl := range s.slots {
		if i > 12 {
			b.WriteString(" …")
			break
		}
		fmt.Fprintf(&b, " [%s–%s]", sl.start.Format("15:04:05"), sl.end.Format("15:04:05"))
	}
	return b.String()
}

// rgOrder records, in the order a workflow issues them, its signals to
// other workflows, each with the signals issued before it and not yet
// delivered (their futures not ready).
type rgOrder struct {
	interceptor.WorkerInterceptorBase
	mu  sync.Mutex
	log []string
}

func (p *rgOrder) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &rgOrderIn{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, p: p}
}

type rgOrderIn struct {
	interceptor.WorkflowInboundInterceptorBase
	p *rgOrder
}

func (i *rgOrderIn) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&rgOrderOut{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, p: i.p})
}

type rgOrderOut struct {
	interceptor.WorkflowOutboundInterceptorBase
	p       *rgOrder
	pending []rgOrderF
}

type rgOrderF struct {
	name string
	f    workflow.Future
}

func (o *rgOrderOut) SignalExternalWorkflow(ctx workflow.Context, id, run, name string, arg interface{}) workflow.Future {
	var under []string
	live := o.pending[:0]
	for _, p := range o.pending {
		if !p.f.IsReady() {
			under = append(under, p.name)
			live = append(live, p)
		}
	}
	o.pending = live
	f := o.Next.SignalExternalWorkflow(ctx, id, run, name, arg)
	o.pending = append(o.pending, rgOrderF{name, f})
	o.p.mu.Lock()
	o.p.log = append(o.p.log, fmt.Sprintf("%s %s [under way: %s]", workflow.Now(ctx).Format("15:04:05"), name, strings.Join(under, ",")))
	o.p.mu.Unlock()
	return f
}

// A gated move with two lanes is yielded (batch pause) while both copy.
// When their calls end, one lane gives the slot back (release) and, in
// the same workflow task, the other lane — whose wait for the yield ended
// too, the yield being taken — finds the move released and not asking,
// and asks (move-acquire) while the release is still under way
// (yieldAndHold: m.holding is set only after release's signal returns).
// Two signals issued together are not ordered: Temporal delivers each
// from its own transfer task. The batch getting the ask first answers it
// at once ("counted already", batch.go), then takes the release and
// frees the slot the move now copies with: see
// TestReviewGateFixedAskBeforeReleaseOverfillsTheBatch.
func TestReviewGateFixedMoveAsksWhileItsReleaseIsUnderWay(t *testing.T) {
	p := &rgOrder{}
	env := rgNewEnv(t, p)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	var calls atomic.Int32
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(20 * time.Minute).Return(
		func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
			res, _ := syncAllDone(ctx, in)
			if calls.Add(1) <= 2 {
				for i := range res.Done {
					res.Done[i] = false // a second chunk each
				}
			}
			return res, nil
		})
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(syncAllDone)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.OnSignalExternalWorkflow(mock.Anything, BatchWorkflowID("b1"), "", mock.Anything, mock.Anything).Return(
		func(_, _, _, name string, _ any) error {
			if name == SignalMoveAcquire {
				env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalSlotGranted, nil) }, time.Minute)
			}
			return nil
		})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalYield, nil) }, 10*time.Minute)
	in := testInput(Settings{ConnectionsPerMove: 2})
	in.Gated = true
	env.ExecuteWorkflow(MailboxMove, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.log {
		if strings.Contains(l, SignalMoveAcquire+" [under way: ") && strings.Contains(l, SignalMoveReleased) {
			t.Errorf("the move asked for a slot while its release was under way:\n  %s", strings.Join(p.log, "\n  "))
			return
		}
	}
	t.Logf("signals:\n  %s", strings.Join(p.log, "\n  "))
}

// (The batch-side half of the race above — an ask delivered before the
// release of the same move — cannot happen any more: a move sends no ask
// while a release is on its way, ask-after-release in move.go.)

// A pass cut for continue-as-new while a yield (batch pause) is pending:
// the lane stops at the cut before it takes the yield, so cut() must give
// the slot back itself, since the next run does not know of the yield.
// It does: the run releases, carries Released, and the next run asks
// before it copies.
func TestReviewGateMoveCutWithAPendingYieldGivesTheSlotBack(t *testing.T) {
	defer func(f func(workflow.Context) bool) { historyLong = f }(historyLong)
	var long atomic.Bool
	historyLong = func(workflow.Context) bool { return long.Load() }
	env := rgNewEnv(t)
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(twoFolders, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).After(20 * time.Minute).Return(
		func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
			res, _ := syncAllDone(ctx, in)
			res.Done[0] = false
			return res, nil
		})
	var mu sync.Mutex
	var sent []string
	env.OnSignalExternalWorkflow(mock.Anything, BatchWorkflowID("b1"), "", mock.Anything, mock.Anything).Return(
		func(_, _, _, name string, _ any) error {
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, name)
			if name == SignalMoveAcquire {
				env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalSlotGranted, nil) }, time.Minute)
			}
			return nil
		})
	// During the second call: the history is long, the batch pauses.
	env.RegisterDelayedCallback(func() {
		long.Store(true)
		env.SignalWorkflow(SignalYield, nil)
	}, 30*time.Minute)
	in := testInput(Settings{ConnectionsPerMove: 1})
	in.Gated = true
	env.ExecuteWorkflow(MailboxMove, in)
	next, ok := rgDecodeCAN[MailboxMoveInput](t, env.GetWorkflowError())
	if !ok {
		t.Fatalf("move ended with %v, want continue-as-new", env.GetWorkflowError())
	}
	mu.Lock()
	defer mu.Unlock()
	if !next.State.Released || !slices.Equal(sent, []string{SignalMoveAcquire, SignalMoveReleased}) {
		t.Fatalf("carried Released %v after signals %v: want the slot given back", next.State.Released, sent)
	}
}

// `batch retry --failed` while the batch still runs (one move of it not
// ended): rejoinBatch names the failed moves to the batch (add-moves)
// before it starts them again, so that the batch waits for them ("the
// batch knows every move before any starts and never ends early",
// docs/batches.md). If the batch takes the name as nothing (an ended entry
// given again), the last other move's end ends the batch before the
// retried move's first ask reaches it (retryMove reads the failed move's
// history and queries its state first, move after move): the retried
// moves then find no batch and copy without a slot (hold: "the batch did
// not take the request for a slot; copying").
func TestReviewGateFixedRetriedMoveNamedBeforeItStartsKeepsTheBatch(t *testing.T) {
	env := rgNewEnv(t)
	var mu sync.Mutex
	granted := map[string]int{}
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(
		func(_, id, _, name string, _ any) error {
			mu.Lock()
			defer mu.Unlock()
			if name == SignalSlotGranted {
				granted[rgMailbox("g", id)]++
			}
			return nil
		})
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, "").Return(nil)
	at := func(d time.Duration, name string, arg any) {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(name, arg) }, d)
	}
	at(time.Minute, SignalMoveAcquire, "a@x")
	at(time.Minute, SignalMoveAcquire, "b@x")
	at(2*time.Minute, SignalMoveClosed, MoveClosed{Mailbox: "a@x", Error: "LogonFailed: wrong password"})
	at(10*time.Minute, SignalAddMoves, []string{"a@x"})                             // batch retry --failed: rejoinBatch
	at(10*time.Minute+20*time.Second, SignalMoveClosed, MoveClosed{Mailbox: "b@x"}) // b ends meanwhile
	at(10*time.Minute+40*time.Second, SignalMoveAcquire, "a@x")                     // a's new run asks
	at(time.Hour, SignalMoveClosed, MoveClosed{Mailbox: "a@x"})
	start := env.Now()
	env.ExecuteWorkflow(Batch, BatchInput{Name: "g", Gated: true, Concurrency: 2, Mailboxes: []string{"a@x", "b@x"}})
	mu.Lock()
	defer mu.Unlock()
	if granted["a@x"] < 2 {
		t.Errorf("a granted %d times: the batch ended %v after its start, after it was told (10m) that a's move was starting again and before a asked (10m40s)",
			granted["a@x"], env.Now().Sub(start))
	}
}

package workflows

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
)

// gateSim plays a gated batch's moves against the Batch workflow: each
// asks for a slot, copies for copyFor once granted, and ends (or, for the
// mailboxes in failOnce, fails once and is retried).
type gateSim struct {
	t        *testing.T
	copyFor  time.Duration
	holding  map[string]bool
	peak     int
	granted  map[string]int
	failOnce map[string]bool
	signals  []string
}

func newGateSim(t *testing.T) *gateSim {
	return &gateSim{t: t, copyFor: 10 * time.Minute, holding: map[string]bool{}, granted: map[string]int{}, failOnce: map[string]bool{}}
}

func (g *gateSim) mock(envSignal func(name string, arg any), delay func(func(), time.Duration)) func(string, string, string, string, any) error {
	return func(_, id, _, signal string, _ any) error {
		mailbox := id[strings.LastIndex(id, "/")+1:]
		g.signals = append(g.signals, signal+" "+mailbox)
		if signal != SignalSlotGranted {
			return nil
		}
		if g.holding[mailbox] {
			g.t.Errorf("%s granted a slot it holds", mailbox)
		}
		g.holding[mailbox] = true
		g.granted[mailbox]++
		g.peak = max(g.peak, len(g.holding))
		delay(func() {
			delete(g.holding, mailbox)
			mc := MoveClosed{Mailbox: mailbox}
			if g.failOnce[mailbox] {
				delete(g.failOnce, mailbox)
				mc.Error = "logon failed"
				envSignal(SignalMoveClosed, mc)
				// batch retry: the move runs again and asks.
				delay(func() { envSignal(SignalMoveAcquire, mailbox) }, time.Minute)
				return
			}
			envSignal(SignalMoveClosed, mc)
		}, g.copyFor)
		return nil
	}
}

func TestGatedBatchGrantsSlotsToTheMovesTheCLIStarted(t *testing.T) {
	env := newEnv(t)
	sim := newGateSim(t)
	sim.failOnce["m2@x"] = true
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(
		sim.mock(env.SignalWorkflow, env.RegisterDelayedCallback))
	var first, later []string
	for i := range 8 {
		first = append(first, fmt.Sprintf("m%d@x", i))
	}
	for i := 8; i < 12; i++ {
		later = append(later, fmt.Sprintf("M%d@X", i)) // case differs from the move's own
	}
	// The moves ask as they start; two ask before their page reached the
	// batch (batch add cut off and run again).
	env.RegisterDelayedCallback(func() {
		for _, mb := range first {
			env.SignalWorkflow(SignalMoveAcquire, mb)
		}
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalAddMoves, later)
		for _, mb := range later {
			env.SignalWorkflow(SignalMoveAcquire, strings.ToLower(mb))
		}
		env.SignalWorkflow(SignalMoveAcquire, "n1@x")
	}, 15*time.Minute)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "g", Gated: true, Concurrency: 3, Mailboxes: first})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("batch did not end: %v", env.GetWorkflowError())
	}
	var st BatchStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	if sim.peak > 3 {
		t.Errorf("%d moves held slots at once, concurrency 3", sim.peak)
	}
	if len(st.Entries) != 13 {
		t.Errorf("%d entries, want 13 (8, 4 added, 1 that asked)", len(st.Entries))
	}
	for _, e := range st.Entries {
		if !e.Closed || e.Error != "" {
			t.Errorf("entry %+v: want closed without error (m2 retried)", e)
		}
		want := 1
		if e.Mailbox == "m2@x" {
			want = 2
		}
		if n := sim.granted[strings.ToLower(e.Mailbox)]; n != want {
			t.Errorf("%s granted %d times, want %d", e.Mailbox, n, want)
		}
	}
}

func TestGatedBatchContinuesAsNewWithEveryMoveInItsState(t *testing.T) {
	defer func(f func(*workflow.Info) bool) { batchRunFull = f }(batchRunFull)
	env := newEnv(t)
	cut := false
	batchRunFull = func(*workflow.Info) bool { return cut }
	env.RegisterDelayedCallback(func() {
		cut = true
		env.SignalWorkflow(SignalConcurrency, 4) // wakes the batch
	}, time.Hour)
	sim := newGateSim(t)
	sim.copyFor = 24 * time.Hour // holders keep their slots past the cut
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(
		sim.mock(env.SignalWorkflow, env.RegisterDelayedCallback))
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("m%02d@x", i))
	}
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalCompleteMove, "m29@x")
		env.SignalWorkflow(SignalMoveClosed, MoveClosed{Mailbox: "m28@x", Error: "gone"})
		for _, mb := range names[:20] {
			env.SignalWorkflow(SignalMoveAcquire, mb)
		}
	}, time.Second)
	env.ExecuteWorkflow(Batch, BatchInput{Name: "g", Gated: true, Concurrency: 4, Mailboxes: names})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("batch ended with %v, want continue-as-new", err)
	}
	var next BatchInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	c := next.Carry
	if c == nil || len(next.Mailboxes) != 0 || !next.Gated || c.Concurrency != 4 {
		t.Fatalf("next run's input %+v", next)
	}
	if len(c.Holding) != 4 || len(c.Asking) != 16 || len(c.Closed) != 1 || len(c.Failed) != 1 || len(c.Open)+len(c.Holding)+len(c.Closed) != 30 ||
		len(c.Complete) != 1 || c.Asking[0] != "m04@x" {
		t.Fatalf("carry %+v", c)
	}
	// The next run takes it up as it was.
	g := &gate{in: &next, st: &BatchStatus{}, byMailbox: map[string]int{}}
	g.restore()
	if got := g.carry(g.asking()); !reflect.DeepEqual(got, c) {
		t.Fatalf("carried again:\n%+v\nwant\n%+v", got, c)
	}
	if g.holding() != 4 || g.closed != 1 {
		t.Fatalf("restored: %d holding, %d closed", g.holding(), g.closed)
	}
}

func TestGatedMoveAsksItsBatchBeforeItConnectsAndSaysWhenItEnds(t *testing.T) {
	env := newEnv(t)
	var log []string
	connected := false
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(context.Context, activities.ConnectInput) (activities.ConnectResult, error) {
		log = append(log, "connect")
		connected = true
		return twoFolders, nil
	})
	mockHappy(env)
	env.OnSignalExternalWorkflow(mock.Anything, BatchWorkflowID("b1"), "", mock.Anything, mock.Anything).Return(
		func(_, _, _, signal string, arg any) error {
			log = append(log, signal)
			if signal == SignalMoveAcquire && !connected {
				env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalSlotGranted, nil) }, time.Hour)
			}
			if signal == SignalMoveClosed {
				if mc := arg.(MoveClosed); mc.Mailbox != "alice@example.com" || mc.Error != "" {
					t.Errorf("closed with %+v", mc)
				}
			}
			return nil
		})
	in := testInput(Settings{})
	in.Gated = true
	env.ExecuteWorkflow(MailboxMove, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// It keeps its slot through its final pass (auto completion), which
	// plans again (a second Connect).
	if got := strings.Join(log, " "); got != SignalMoveAcquire+" connect connect "+SignalMoveClosed {
		t.Fatalf("calls and signals: %s", got)
	}
}

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/workflows"
)

func TestBatchCompleteArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *batchCompleteOptions
	if err := execute(newCmdBatchComplete(f, func(o *batchCompleteOptions) error { got = o; return nil }), "w1"); err != nil || got.Name != "w1" {
		t.Fatalf("complete w1: %v, options %+v", err, got)
	}
	if err := execute(newCmdBatchComplete(f, nil), "w1", "w2"); err == nil {
		t.Fatal("complete w1 w2 succeeded")
	}
}

// Every move that has not ended is completed: those running get the
// update, including one started but still queued inside its workflow; the
// batch is told first, so that those it has not started yet (queued behind
// --concurrency) complete after their initial sync.
func TestBatchCompleteUpdatesOnlyMovesThatHaveNotEnded(t *testing.T) {
	c := newFakeClient()
	var moves []workflows.MoveStatus
	for mailbox, st := range map[string]workflows.Status{
		"done@x": workflows.StatusCompleted, "failed@x": workflows.StatusFailed, "finishing@x": workflows.StatusCompleting,
		"synced@x": workflows.StatusSynced, "copying@x": workflows.StatusInProgress, "waiting@x": workflows.StatusSuspended,
		"starting@x": workflows.StatusQueued,
	} {
		m := workflows.MoveStatus{Mailbox: mailbox, Status: st, Started: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		moves = append(moves, m)
	}
	c.addBatch("w1", moves, "queued@x")
	f, out := testFactory(t, c)
	if err := batchCompleteRun(context.Background(), &batchCompleteOptions{Client: f.Client, Out: f.Out, Name: "w1"}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"mailmove/w1/copying@x " + workflows.UpdateComplete,
		"mailmove/w1/starting@x " + workflows.UpdateComplete,
		"mailmove/w1/synced@x " + workflows.UpdateComplete,
		"mailmove/w1/waiting@x " + workflows.UpdateComplete,
	}
	if got := c.callsOf("UpdateWorkflow"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("updates = %q, want %q", got, want)
	}
	if got := c.callsOf("SignalWorkflow"); strings.Join(got, "") != workflows.BatchWorkflowID("w1")+" "+workflows.SignalCompleteAll {
		t.Fatalf("signals = %q, want the batch told to complete the moves it starts", got)
	}
	for _, line := range []string{"done@x: skipped: Completed", "queued@x: completing: not started yet, completes after its initial sync",
		"finishing@x: skipped: Completing", "synced@x: completing", "5 moves completing, 3 skipped"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("batch complete output lacks %q:\n%s", line, out)
		}
	}
}

// --after: the batch is told when, and does it itself.
func TestBatchCompleteAfterTellsTheBatchWhen(t *testing.T) {
	c := newFakeClient()
	f, out := testFactory(t, c)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.Local)
	if err := batchCompleteAfterRun(context.Background(), &batchCompleteOptions{Client: f.Client, Out: f.Out, Name: "w1", After: "18:00"}, now); err != nil {
		t.Fatal(err)
	}
	if got := c.callsOf("SignalWorkflow"); strings.Join(got, "") != workflows.BatchWorkflowID("w1")+" "+workflows.SignalCompleteAt || !strings.Contains(out.String(), "w1: its moves complete at 2026-12-04 18:00") {
		t.Fatalf("signals %q, output %q", got, out)
	}
	if err := batchCompleteAfterRun(context.Background(), &batchCompleteOptions{Client: f.Client, Out: f.Out, Name: "w1", After: "friday"}, now); err == nil || !strings.Contains(err.Error(), `--after "friday"`) || exitCode(err) != exitUsage {
		t.Fatalf("--after friday = %v", err)
	}
}

package main

import (
	"context"
	"strings"
	"testing"

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

func TestBatchCompleteUpdatesOnlyMovesThatHaveNotEnded(t *testing.T) {
	c := newFakeClient()
	var moves []workflows.MoveStatus
	for mailbox, st := range map[string]workflows.Status{
		"done@x": workflows.StatusCompleted, "failed@x": workflows.StatusFailed, "finishing@x": workflows.StatusCompleting,
		"synced@x": workflows.StatusSynced, "copying@x": workflows.StatusInProgress, "waiting@x": workflows.StatusSuspended,
	} {
		moves = append(moves, workflows.MoveStatus{Mailbox: mailbox, Status: st})
	}
	c.addBatch("w1", moves, "queued@x")
	f, out := testFactory(t, c)
	if err := batchCompleteRun(context.Background(), &batchCompleteOptions{Client: f.Client, Out: f.Out, Name: "w1"}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"mailmove/w1/copying@x " + workflows.UpdateComplete,
		"mailmove/w1/synced@x " + workflows.UpdateComplete,
		"mailmove/w1/waiting@x " + workflows.UpdateComplete,
	}
	if got := c.callsOf("UpdateWorkflow"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("updates = %q, want %q", got, want)
	}
	for _, line := range []string{"done@x: Completed, skipped", "queued@x: Queued, skipped", "finishing@x: Completing, skipped", "synced@x: completing", "3 moves completing, 4 skipped"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("batch complete output lacks %q:\n%s", line, out)
		}
	}
}

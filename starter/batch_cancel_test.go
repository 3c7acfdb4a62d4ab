package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/workflows"
)

// The batch first, then every move that has not ended.
func TestBatchCancelCancelsTheBatchThenItsMoves(t *testing.T) {
	c := newFakeClient()
	threeMoves(c) // a@x completed, b@x copying, c@x not started
	f, out := testFactory(t, c)
	if err := batchCancelRun(context.Background(), &batchCancelOptions{Client: f.Client, Out: f.Out, Name: "w1"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, call := range c.calls {
		if strings.HasPrefix(call, "CancelWorkflow ") {
			got = append(got, strings.TrimPrefix(call, "CancelWorkflow "))
		}
	}
	// The batch first; its moves then, in parallel.
	slices.Sort(got[1:])
	want := []string{workflows.BatchWorkflowID("w1"), workflows.MoveWorkflowID("w1", "b@x"), workflows.MoveWorkflowID("w1", "c@x")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("cancelled %q, want %q", got, want)
	}
	if !strings.Contains(out.String(), "w1: cancelled, with 2 moves under way") {
		t.Errorf("output %q", out)
	}
}

package main

import (
	"context"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"

	"github.com/mailmove/mailmove/workflows"
)

// A running move gets the update; one the batch has not started yet is
// marked in the batch, which starts it with completion after its initial
// sync.
func TestMoveCompleteUpdatesTheMoveOrTellsTheBatch(t *testing.T) {
	c := newFakeClient()
	f, out := testFactory(t, c)
	if err := moveCompleteRun(context.Background(), &moveCompleteOptions{Client: f.Client, Out: f.Out, Mailbox: "a@x", Batch: "w1"}); err != nil {
		t.Fatal(err)
	}
	if got := c.callsOf("UpdateWorkflow"); strings.Join(got, "") != workflows.MoveWorkflowID("w1", "a@x")+" "+workflows.UpdateComplete || !strings.Contains(out.String(), "a@x: completing") {
		t.Fatalf("updates %q, output %q", got, out)
	}
	c = newFakeClient()
	c.errs["UpdateWorkflow "+workflows.MoveWorkflowID("w1", "q@x")] = serviceerror.NewNotFound("workflow not found")
	f, out = testFactory(t, c)
	if err := moveCompleteRun(context.Background(), &moveCompleteOptions{Client: f.Client, Out: f.Out, Mailbox: "q@x", Batch: "w1"}); err != nil {
		t.Fatal(err)
	}
	if got := c.callsOf("SignalWorkflow"); strings.Join(got, "") != workflows.BatchWorkflowID("w1")+" "+workflows.SignalCompleteMove || !strings.Contains(out.String(), "q@x: not started yet, completes after its initial sync") {
		t.Fatalf("signals %q, output %q", got, out)
	}
}

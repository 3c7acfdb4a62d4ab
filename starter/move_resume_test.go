package main

import (
	"context"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/workflows"
)

func TestMoveResumeArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *moveResumeOptions
	cmd := newCmdMoveResume(f, func(o *moveResumeOptions) error { got = o; return nil })
	if err := execute(cmd, "a@x", "--batch", "w1"); err != nil || got.Mailbox != "a@x" || got.Batch != "w1" {
		t.Fatalf("move resume: %v, options %+v", err, got)
	}
}

func TestMoveResumeSignalsTheMove(t *testing.T) {
	c := newFakeClient()
	f, out := testFactory(t, c)
	if err := moveResumeRun(context.Background(), &moveResumeOptions{Client: f.Client, Out: f.Out, Mailbox: "A@x", Batch: "w1"}); err != nil {
		t.Fatal(err)
	}
	if got := c.callsOf("SignalWorkflow"); len(got) != 1 || got[0] != workflows.MoveWorkflowID("w1", "a@x")+" "+workflows.SignalResume {
		t.Fatalf("signals = %q", got)
	}
	if out.String() != "A@x: resuming\n" {
		t.Fatalf("output %q", out)
	}
}

func TestMoveResumeOfAnEndedMove(t *testing.T) {
	c := newFakeClient()
	id := workflows.MoveWorkflowID("w1", "a@x")
	c.errs["SignalWorkflow "+id] = errString("workflow execution already completed")
	f, _ := testFactory(t, c)
	err := moveResumeRun(context.Background(), &moveResumeOptions{Client: f.Client, Out: f.Out, Mailbox: "a@x", Batch: "w1"})
	if err == nil || !strings.Contains(err.Error(), "resume "+id) || exitCode(err) != exitFailed {
		t.Fatalf("moveResumeRun() = %v, want a failure naming the workflow", err)
	}
}

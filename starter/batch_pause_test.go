package main

import (
	"context"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/workflows"
)

func TestBatchPauseAndResumeSignalTheBatch(t *testing.T) {
	for _, pause := range []bool{true, false} {
		f, _ := testFactory(t, nil)
		var got *batchPauseOptions
		if err := execute(newCmdBatchPause(f, pause, func(o *batchPauseOptions) error { got = o; return nil }), "w1"); err != nil || got.Name != "w1" || got.Pause != pause {
			t.Fatalf("pause %v w1: %v, options %+v", pause, err, got)
		}
		c := newFakeClient()
		f, out := testFactory(t, c)
		if err := batchPauseRun(context.Background(), &batchPauseOptions{Client: f.Client, Out: f.Out, Name: "w1", Pause: pause}); err != nil {
			t.Fatal(err)
		}
		if got := c.callsOf("SignalWorkflow"); strings.Join(got, "") != workflows.BatchWorkflowID("w1")+" "+workflows.SignalPause {
			t.Fatalf("signals = %q", got)
		}
		if want := map[bool]string{true: "w1: pausing", false: "w1: resuming"}[pause]; !strings.Contains(out.String(), want) {
			t.Errorf("output %q, want %q", out, want)
		}
	}
}

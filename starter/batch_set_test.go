package main

import (
	"context"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/workflows"
)

func TestBatchSetArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *batchSetOptions
	if err := execute(newCmdBatchSet(f, func(o *batchSetOptions) error { got = o; return nil }), "w1", "--concurrency", "20"); err != nil || got.Name != "w1" || got.Concurrency != 20 {
		t.Fatalf("set w1 --concurrency 20: %v, options %+v", err, got)
	}
	if err := execute(newCmdBatchSet(f, nil), "w1", "--concurrency", "0"); err == nil || !strings.Contains(err.Error(), "--concurrency 0: must be at least 1") {
		t.Fatalf("set --concurrency 0 = %v", err)
	}
	if err := execute(newCmdBatchSet(f, nil), "w1"); err == nil || !strings.Contains(err.Error(), `"concurrency"`) {
		t.Fatalf("set without --concurrency = %v", err)
	}
}

func TestBatchSetSignalsTheBatch(t *testing.T) {
	c := newFakeClient()
	f, out := testFactory(t, c)
	if err := batchSetRun(context.Background(), &batchSetOptions{Client: f.Client, Out: f.Out, Name: "w1", Concurrency: 20}); err != nil {
		t.Fatal(err)
	}
	if got := c.callsOf("SignalWorkflow"); strings.Join(got, "") != workflows.BatchWorkflowID("w1")+" "+workflows.SignalConcurrency {
		t.Fatalf("signals = %q", got)
	}
	if !strings.Contains(out.String(), "w1: at most 20 moves copying at once") {
		t.Errorf("output %q", out)
	}
}

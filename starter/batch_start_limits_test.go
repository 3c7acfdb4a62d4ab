package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

func TestBatchStartEndpointLimitsFromFlags(t *testing.T) {
	key, _ := secret.Load(filepath.Join(t.TempDir(), "key"), true)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	base := []string{"--name", "w1", "--source", "a:993", "--target", "b:993", "--csv", csv}
	opts := parseStart(t, append(base, "--source-max-connections", "4", "--source-connection-rate", "2", "--source-profile", "courier")...)
	if _, err := batchInput(opts, key); err != nil {
		t.Fatal(err)
	}
	want := workflows.EndpointLimits{MaxConnections: 4, ConnectionRate: 2, ConnectionsPerUser: 4}
	if !opts.SourceLimitsSet || opts.TargetLimitsSet || opts.SourceLimits != want {
		t.Fatalf("limits = %+v (set %v), target set %v; want %+v on the source only", opts.SourceLimits, opts.SourceLimitsSet, opts.TargetLimitsSet, want)
	}
	// A rate alone sets the target's limits too (no cap on connections).
	if opts = parseStart(t, append(base, "--target-connection-rate", "0.5")...); !opts.TargetLimitsSet || opts.SourceLimitsSet {
		t.Fatalf("--target-connection-rate alone: set %v %v", opts.SourceLimitsSet, opts.TargetLimitsSet)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--source-max-connections", "-1"}, "--source-max-connections -1: write 1 or more, or 0 for no cap"},
		{[]string{"--target-connection-rate", "-2"}, "--target-connection-rate -2: write a rate above 0"},
	} {
		opts := parseStart(t, append(append([]string{}, base...), tc.args...)...)
		if _, err := batchInput(opts, key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("batchInput(%v) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestBatchStartRunSetsEndpointLimitsFirst(t *testing.T) {
	c := newFakeClient()
	f, out := testFactory(t, c)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "Imap.Old:993", "--target", "b:993", "--source-max-connections", "4", "--source-connection-rate", "2")
	opts.Client, opts.Key, opts.Out = f.Client, f.Key, f.Out
	if err := batchStartRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	id := workflows.EndpointWorkflowID("source", "Imap.Old:993")
	if id != "mailmove-endpoint/source/imap.old:993" {
		t.Fatalf("limiter ID %q", id)
	}
	if got := c.callsOf("SignalWithStartWorkflow"); len(got) != 1 || got[0] != id+" "+workflows.SignalEndpointLimits {
		t.Fatalf("SignalWithStartWorkflow calls %v, want one to %s", got, id)
	}
	// The limiter first, then the batch: no move dials before its limits.
	if s := c.started[0]; s.Options.ID != id || s.Arg.(workflows.EndpointLimiterInput).Limits != (workflows.EndpointLimits{MaxConnections: 4, ConnectionRate: 2}) {
		t.Fatalf("first start %+v", s)
	}
	if !strings.Contains(out.String(), "Limits of source Imap.Old:993 across all workers: 4 connections at most, 2 new per second") {
		t.Fatalf("output %q", out)
	}
	// Without the flags nothing is sent.
	c2 := newFakeClient()
	f2, _ := testFactory(t, c2)
	opts = parseStart(t, "--name", "w2", "--csv", csv, "--source", "a:993", "--target", "b:993")
	opts.Client, opts.Key, opts.Out = f2.Client, f2.Key, f2.Out
	if err := batchStartRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if got := c2.callsOf("SignalWithStartWorkflow"); len(got) != 0 {
		t.Fatalf("without limit flags: %v", got)
	}
}

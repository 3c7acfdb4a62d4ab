package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/workflows"
)

// A warning's class is its worst cause: a verification that does not add
// up, then bad items, then keywords left off.
func TestWarningClass(t *testing.T) {
	bad := workflows.Counters{BadItems: make([]workflows.BadItem, 1)}
	for _, tc := range []struct {
		m    workflows.MoveStatus
		want failure.Type
	}{
		{workflows.MoveStatus{Grade: workflows.GradeInvestigate, Counters: bad}, failure.TypeVerificationMismatch},
		{workflows.MoveStatus{Grade: workflows.GradePoor}, failure.TypeVerificationMismatch},
		{workflows.MoveStatus{Grade: workflows.GradeGood, Counters: bad}, failure.TypeBadItems},
		{workflows.MoveStatus{Grade: workflows.GradeGood}, failure.TypeKeywordsLeftOff},
	} {
		if got := warningClass(tc.m); got != tc.want {
			t.Errorf("warningClass(grade %s, %d bad items) = %s, want %s", tc.m.Grade, len(tc.m.BadItems), got, tc.want)
		}
	}
}

func TestProblemsReport(t *testing.T) {
	rep := batchReport{Moves: []workflows.MoveStatus{
		{Mailbox: "ok@x", Status: workflows.StatusCompleted},
		{Mailbox: "bad@x", Status: workflows.StatusFailed, StatusDetail: "Failed_LogonFailed", Reason: "LogonFailed: source login bad@x"},
		{Mailbox: "warn@x", Status: workflows.StatusCompletedWithWarnings, Counters: workflows.Counters{BadItems: make([]workflows.BadItem, 2)}, Reason: "2 bad items"},
	}}
	ps := problems(rep)
	if len(ps) != 2 || ps[0].Category != "LogonFailed" || !strings.Contains(ps[0].Remedy, "password") || ps[1].Category != "BadItems" {
		t.Fatalf("problems() = %+v", ps)
	}
	if settled(rep) != true {
		t.Error("settled() = false for ended moves")
	}
	if settled(batchReport{Moves: []workflows.MoveStatus{{Status: workflows.StatusInProgress}}}) {
		t.Error("settled() = true for a move in progress")
	}
}

func TestBatchReportArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *batchReportOptions
	cmd := newCmdBatchReport(f, func(o *batchReportOptions) error { got = o; return nil })
	if err := execute(cmd, "w1", "--format", "csv"); err != nil || got.Name != "w1" || got.Format != "csv" {
		t.Fatalf("report w1 --format csv: %v, options %+v", err, got)
	}
	cmd = newCmdBatchReport(f, func(*batchReportOptions) error { t.Fatal("ran with --format xml"); return nil })
	if err := execute(cmd, "w1", "--format", "xml"); err == nil || !strings.Contains(err.Error(), `--format "xml"`) || exitCode(err) != exitUsage {
		t.Fatalf("report --format xml = %v, want a usage error naming --format", err)
	}
}

// badpwBatch is a batch of a completed move, a move whose logon failed
// and one completed with bad items.
func badpwBatch(c *fakeClient) {
	c.addBatch("w1", []workflows.MoveStatus{
		{Mailbox: "ok@x", Status: workflows.StatusCompleted},
		{Mailbox: "bad@x", Status: workflows.StatusFailed, StatusDetail: "Failed_LogonFailed", Reason: "LogonFailed: source login bad@x",
			LastFailure: &failure.Details{Type: failure.TypeLogonFailed, Side: failure.SideSource}},
		{Mailbox: "warn@x", Status: workflows.StatusCompletedWithWarnings, Counters: workflows.Counters{BadItems: make([]workflows.BadItem, 2)}, Reason: "2 bad items"},
	})
}

func TestBatchReportPrintsRemediesFromTheFailureTable(t *testing.T) {
	c := newFakeClient()
	badpwBatch(c)
	f, out := testFactory(t, c)
	if err := batchReportRun(context.Background(), &batchReportOptions{Client: f.Client, Out: f.Out, Name: "w1", Format: "text"}); err != nil {
		t.Fatal(err)
	}
	logon, _ := failure.ClassOf(failure.TypeLogonFailed)
	bad, _ := failure.ClassOf(failure.TypeBadItems)
	for _, want := range []string{"bad@x", "LogonFailed", "source", "warn@x", "BadItems", "What to do:", "  LogonFailed: " + logon.Remedy, "  BadItems: " + bad.Remedy} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("batch report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out.String(), "ok@x") {
		t.Errorf("batch report lists a completed move:\n%s", out)
	}
}

func TestBatchReportJSON(t *testing.T) {
	c := newFakeClient()
	badpwBatch(c)
	f, out := testFactory(t, c)
	if err := batchReportRun(context.Background(), &batchReportOptions{Client: f.Client, Out: f.Out, Name: "w1", Format: "json"}); err != nil {
		t.Fatal(err)
	}
	var ps []problem
	if err := json.Unmarshal([]byte(out.String()), &ps); err != nil || len(ps) != 2 || ps[0].Mailbox != "bad@x" || ps[0].Side != failure.SideSource {
		t.Fatalf("batch report --format json = %v, %+v:\n%s", err, ps, out)
	}
}

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
	rep.Totals.ByStatus = map[workflows.Status]int{}
	rep.total()
	if settled(rep) != true {
		t.Error("settled() = false for ended moves")
	}
	if settled(batchReport{Totals: totals{ByStatus: map[workflows.Status]int{workflows.StatusInProgress: 1, workflows.StatusCompleted: 3}}}) {
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

// The HTML report is one page with every mailbox (status, counts, bytes,
// time, waits, bad items, grade) and what to do; what servers said is
// escaped.
func TestBatchReportHTML(t *testing.T) {
	started := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	ok := workflows.MoveStatus{Mailbox: "ok@x", Status: workflows.StatusCompleted, Grade: workflows.GradePerfect, MessagesTotal: 10,
		Started: started, SyncedAt: started.Add(90 * time.Second), StallTime: map[string]time.Duration{"WaitingForLogonRetry": time.Minute}}
	ok.Copied, ok.Bytes = 10, 2048
	warn := workflows.MoveStatus{Mailbox: "warn@x", Status: workflows.StatusCompletedWithWarnings, Grade: workflows.GradeGood, Reason: "1 bad items"}
	warn.BadItems = []workflows.BadItem{{Folder: "Work", UID: 7, Size: 99, Reason: "NO [LIMIT] <too big>"}}
	failed := workflows.MoveStatus{Mailbox: "bad@x", Status: workflows.StatusFailed, StatusDetail: "Failed_LogonFailed", Reason: "LogonFailed: <script>alert(1)</script>"}
	rep := batchReport{Batch: "w1", Moves: []workflows.MoveStatus{ok, warn, failed},
		Totals: totals{Mailboxes: 3, ByStatus: map[workflows.Status]int{workflows.StatusCompleted: 1, workflows.StatusCompletedWithWarnings: 1, workflows.StatusFailed: 1}, MessagesCopied: 10}}
	var out strings.Builder
	if err := writeHTMLReport(&out, rep, started.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	page := out.String()
	for _, want := range []string{
		"<h1>Batch w1</h1>", "3 mailboxes: 1 Completed; 1 CompletedWithWarnings; 1 Failed;", "ok@x", "Perfect", "10 copied, 0 found, of 10", "2.0 KiB", "1m30s",
		"WaitingForLogonRetry 1m0s", "Work UID 7 (99 bytes): NO [LIMIT] &lt;too big&gt;", "&lt;script&gt;", "What to do",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("the HTML report carries a server's words unescaped")
	}
}

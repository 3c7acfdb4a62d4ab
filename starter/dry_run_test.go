package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/workflows"
)

func TestDryRunArgs(t *testing.T) {
	opts := parseStart(t, "--name", "w1", "--csv", "b.csv", "--source", "a:993", "--target", "b:993", "--dry-run")
	if !opts.DryRun {
		t.Fatalf("--dry-run not parsed: %+v", opts)
	}
}

// plannedBatch is a dry run's answer: alice planned, bob refused.
func plannedBatch() []workflows.PlannedMove {
	var alice workflows.PlannedMove
	alice.Mailbox = "alice@example.com"
	alice.Plan.Folders = []workflows.FolderPlan{
		{Source: "INBOX", Target: "INBOX", Exists: true, Messages: 10, Bytes: 2048},
		{Source: "Sent", Target: "Sent Items", Exists: true, SpecialUse: `\Sent`, Messages: 5, Bytes: 1024},
		{Source: "Projets", Target: "Projects FR", Messages: 15},
	}
	alice.Plan.Excluded = []string{"Junk"}
	bob := workflows.PlannedMove{Mailbox: "bob@example.com", Error: "LogonFailed: source login bob@example.com: authentication failed",
		Failure: &failure.Details{Type: failure.TypeLogonFailed, Side: failure.SideSource}}
	return []workflows.PlannedMove{alice, bob}
}

func TestDryRunPrintsThePlansOfTheWorkers(t *testing.T) {
	c := newFakeClient()
	c.results[workflows.DryRunWorkflowID("w1")] = plannedBatch()
	f, out := testFactory(t, c)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\nbob@example.com,bob,pw\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "a:993", "--target", "b:993", "--dry-run", "--max-message-size", "1MB")
	opts.Client, opts.Key, opts.Out, opts.ErrOut = f.Client, f.Key, f.Out, f.ErrOut
	err := batchStartRun(context.Background(), opts)
	if err == nil || err.Error() != "1 of 2 mailboxes cannot be planned; fix them before starting the batch" {
		t.Fatalf("dry run = %v, want bob's mailbox not planned", err)
	}
	for _, want := range []string{
		"alice@example.com\n  SOURCE", "INBOX (exists)", `Sent Items (exists) \Sent`, "Projects FR (new)", "Junk", "(excluded)",
		"  3 folders, 30 messages, 3.0 KiB; 1 folders excluded (before the size and date filters); about a second\n",
		"bob@example.com\n  cannot plan: LogonFailed: source login bob@example.com: authentication failed\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if len(c.started) != 1 {
		t.Fatalf("started %d workflows, want the dry run only", len(c.started))
	}
	o, in := c.started[0].Options, c.started[0].Arg.(workflows.BatchInput)
	if o.ID != workflows.DryRunWorkflowID("w1") || o.TaskQueue != workflows.TaskQueue || o.WorkflowIDReusePolicy != enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE ||
		o.WorkflowIDConflictPolicy != enums.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING || len(in.Moves) != 2 || in.Moves[0].Source.Password == "pw" {
		t.Fatalf("ExecuteWorkflow(%+v, %+v)", o, in)
	}
}

func TestDryRunAllPlanned(t *testing.T) {
	c := newFakeClient()
	c.results[workflows.DryRunWorkflowID("w1")] = plannedBatch()[:1]
	f, out := testFactory(t, c)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "a:993", "--target", "b:993", "--dry-run")
	opts.Client, opts.Key, opts.Out, opts.ErrOut = f.Client, f.Key, f.Out, f.ErrOut
	if err := batchStartRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "  3 folders, 30 messages, 3.0 KiB; 1 folders excluded; about a second\n\n") ||
		!strings.Contains(got, "Total: 1 mailboxes, 30 messages, 3.0 KiB. Estimated time: about a second at --concurrency 10") {
		t.Fatalf("dry run output:\n%s", got)
	}
}

func TestDryRunInterruptedEndsTheWorkflow(t *testing.T) {
	c := newFakeClient()
	c.results[workflows.DryRunWorkflowID("w1")] = context.Canceled
	f, _ := testFactory(t, c)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "a:993", "--target", "b:993", "--dry-run")
	opts.Client, opts.Key, opts.Out, opts.ErrOut = f.Client, f.Key, f.Out, f.ErrOut
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := batchStartRun(ctx, opts); err == nil {
		t.Fatal("interrupted dry run succeeded")
	}
	if got := c.callsOf("TerminateWorkflow"); len(got) != 1 || got[0] != workflows.DryRunWorkflowID("w1") {
		t.Fatalf("TerminateWorkflow calls = %q, want the dry run ended", got)
	}
}

func TestDryRunReplacedByANewerOne(t *testing.T) {
	c := newFakeClient()
	c.results[workflows.DryRunWorkflowID("w1")] = &temporal.TerminatedError{}
	f, _ := testFactory(t, c)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "a:993", "--target", "b:993", "--dry-run")
	opts.Client, opts.Key, opts.Out, opts.ErrOut = f.Client, f.Key, f.Out, f.ErrOut
	if err := batchStartRun(context.Background(), opts); err == nil || !strings.Contains(err.Error(), `by a newer dry run of batch "w1"`) {
		t.Fatalf("dry run = %v, want it said that a newer one replaced it", err)
	}
}

func TestCannotPlanErrorsOfSeveralLinesStayIndented(t *testing.T) {
	var out strings.Builder
	printPlans(&out, []workflows.PlannedMove{{Mailbox: "a@x", Error: "source: refused\ntarget: refused"}}, workflows.Rules{}, 10)
	if want := "a@x\n  cannot plan: source: refused\n    target: refused\n\n"; out.String() != want {
		t.Fatalf("printPlans() wrote %q, want %q", out.String(), want)
	}
}

// A dry run of a tenant goes to the workers in pages, each far below
// Temporal's 2 MB per payload, and estimates the batch at its concurrency.
func TestDryRunPlansInPagesAndEstimatesTheBatch(t *testing.T) {
	c := newFakeClient()
	one := plannedBatch()[0]
	one.Plan.Folders[0].Messages = 36000 // with the others, 36,020 messages: 6 minutes at 100/s
	page := make([]workflows.PlannedMove, dryRunPage)
	for i := range page {
		page[i] = one
	}
	c.results[workflows.DryRunWorkflowID("w1")] = page
	f, out := testFactory(t, c)
	var b strings.Builder
	b.WriteString("EmailAddress,UserName,Password\n")
	for i := range 2 * dryRunPage {
		fmt.Fprintf(&b, "u%d@x,u%d,pw\n", i, i)
	}
	opts := parseStart(t, "--name", "w1", "--csv", writeFile(t, "b.csv", b.String()), "--source", "a:993", "--target", "b:993", "--dry-run", "--concurrency", "40")
	opts.Client, opts.Key, opts.Out, opts.ErrOut = f.Client, f.Key, f.Out, f.ErrOut
	if err := batchStartRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if len(c.started) != 2 || len(c.started[0].Arg.(workflows.BatchInput).Moves) != dryRunPage {
		t.Fatalf("%d dry runs started, want 2 of %d mailboxes", len(c.started), dryRunPage)
	}
	// 400 moves of 6 minutes, 40 at a time.
	if got := out.String(); !strings.Contains(got, "Total: 400 mailboxes, 14408000 messages") || !strings.Contains(got, "about 1h0m2s at --concurrency 40") {
		t.Fatalf("dry run output ends:\n%s", got[max(0, len(got)-400):])
	}
}

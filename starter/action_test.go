package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/workflows"
)

// Commands that act print JSON with --json: one object, nothing else.
func TestActionCommandsPrintJSON(t *testing.T) {
	c := newFakeClient()
	f, out := testFactory(t, c)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\nbob@example.com,bob,pw\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "a:993", "--target", "b:993", "--json")
	opts.Client, opts.Key, opts.Out = f.Client, f.Key, f.Out
	if err := batchStartRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	var res actionResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || res.Action != "start" || res.Counts["started"] != 2 || res.Counts["mailboxes"] != 2 {
		t.Fatalf("batch start --json printed %q (%v)", out.String(), err)
	}

	c = newFakeClient()
	c.results[workflows.DryRunWorkflowID("w1")] = plannedBatch()[:1]
	f, out = testFactory(t, c)
	opts = parseStart(t, "--name", "w1", "--csv", writeFile(t, "a.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n"),
		"--source", "a:993", "--target", "b:993", "--dry-run", "--json")
	opts.Client, opts.Key, opts.Out, opts.ErrOut = f.Client, f.Key, f.Out, f.ErrOut
	if err := batchStartRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	var plan struct {
		Mailboxes       []struct{ Mailbox string }
		Messages        int64
		EstimateSeconds float64
	}
	if err := json.Unmarshal([]byte(out.String()), &plan); err != nil || len(plan.Mailboxes) != 1 || plan.Messages != 30 || plan.EstimateSeconds <= 0 {
		t.Fatalf("batch start --dry-run --json printed %q (%v)", out.String(), err)
	}

	c = newFakeClient()
	c.addBatch("w1", []workflows.MoveStatus{{Mailbox: "a@x", Status: workflows.StatusSynced}, {Mailbox: "b@x", Status: workflows.StatusCompleted}})
	f, out = testFactory(t, c)
	if err := batchCompleteRun(context.Background(), &batchCompleteOptions{Client: f.Client, Out: f.Out, Name: "w1", JSON: true}); err != nil {
		t.Fatal(err)
	}
	res = actionResult{}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || len(res.Moves) != 2 || res.Counts["completing"] != 1 || res.Counts["skipped"] != 1 ||
		strings.Contains(out.String(), "moves completing,") && !strings.Contains(out.String(), `"Summary"`) {
		t.Fatalf("batch complete --json printed %q (%v)", out.String(), err)
	}
}

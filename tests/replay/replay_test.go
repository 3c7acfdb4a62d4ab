// Package replay replays recorded histories of real moves against the
// current workflow code: a change that would break a running move with a
// non-determinism error fails here first. Histories are recorded by
// `make record-histories` (tests/replay/record).
package replay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/workflows"
)

const dir = "../testdata/histories"

func histories(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no histories in %s: run `make record-histories`", dir)
	}
	return files
}

func TestReplayRecordedHistories(t *testing.T) {
	for _, f := range histories(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(workflows.MailboxMove)
			r.RegisterWorkflow(workflows.Batch)
			if err := r.ReplayWorkflowHistoryFromJSONFile(temporaltest.QuietLogger(), f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}

// The scenarios the suite must cover; a missing file means a scenario was
// dropped from the recorder.
func TestEveryScenarioIsRecorded(t *testing.T) {
	have := map[string]bool{}
	for _, f := range histories(t) {
		have[strings.TrimSuffix(filepath.Base(f), ".json")] = true
	}
	for _, want := range []string{"move-manual-complete", "move-continue-as-new-1", "move-continue-as-new-2", "move-logon-failure",
		"move-mailbox-locked", "move-stall", "batch", "move-manual-complete-v0"} {
		if !have[want] {
			t.Errorf("no recorded history %s.json", want)
		}
	}
}

var a *activities.Activities

// reordered is MailboxMove with its first two activities swapped: the kind
// of edit that breaks running moves. Registered under MailboxMove's name, it
// must fail to replay.
func reordered(ctx workflow.Context, in workflows.MailboxMoveInput) (workflows.MoveReport, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 60})
	_ = workflow.ExecuteActivity(ctx, a.CreateFolders, activities.CreateFoldersInput{}).Get(ctx, nil)
	_ = workflow.ExecuteActivity(ctx, a.Connect, activities.ConnectInput{}).Get(ctx, nil)
	return workflows.MoveReport{}, nil
}

func TestReplayCatchesAReorderedWorkflow(t *testing.T) {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(reordered, workflow.RegisterOptions{Name: "MailboxMove"})
	err := r.ReplayWorkflowHistoryFromJSONFile(temporaltest.QuietLogger(), filepath.Join(dir, "move-manual-complete.json"))
	// TMPRL1100 is the SDK's code for a non-determinism error.
	if err == nil || !strings.Contains(err.Error(), "TMPRL1100") && !strings.Contains(err.Error(), "nondeterministic") {
		t.Fatalf("replay of a reordered workflow = %v, want a non-determinism error", err)
	}
}

// load reads a recorded history.
func load(t *testing.T, f string) *historypb.History {
	t.Helper()
	r, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h, err := client.HistoryFromJSON(r, client.HistoryJSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Recorded histories are committed: every password in them must be sealed.
func TestHistoriesHoldNoPlaintextPassword(t *testing.T) {
	for _, f := range histories(t) {
		for _, ev := range load(t, f).GetEvents() {
			attrs := ev.GetWorkflowExecutionStartedEventAttributes()
			if attrs == nil {
				continue
			}
			for _, p := range attrs.GetInput().GetPayloads() {
				data := string(p.GetData())
				for _, field := range []string{`"Password":"pw"`, `"Password":"wrong"`} {
					if strings.Contains(data, field) {
						t.Errorf("%s: plaintext password in the workflow input", f)
					}
				}
				// mmsec1: in histories recorded before secrets were bound.
				if strings.Contains(data, `"Password":`) && !strings.Contains(data, `"Password":"mmsec1:`) && !strings.Contains(data, `"Password":"mmsec2:`) {
					t.Errorf("%s: a password in the workflow input is not sealed", f)
				}
			}
		}
	}
}

// The catch-up-pass patch is exercised both ways: the v0 history predates
// it, the current one records its marker.
func TestVersionPatchIsExercisedBothWays(t *testing.T) {
	hasMarker := func(f string) bool {
		for _, ev := range load(t, filepath.Join(dir, f)).GetEvents() {
			if m := ev.GetMarkerRecordedEventAttributes(); m != nil && strings.Contains(m.String(), "catch-up-pass") {
				return true
			}
		}
		return false
	}
	if hasMarker("move-manual-complete-v0.json") {
		t.Error("move-manual-complete-v0.json records the catch-up-pass marker; it must predate the patch")
	}
	if !hasMarker("move-manual-complete.json") {
		t.Error("move-manual-complete.json does not record the catch-up-pass marker; run `make record-histories`")
	}
}

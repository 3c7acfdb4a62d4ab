package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/workflows"
)

func TestMoveStatusArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *moveStatusOptions
	cmd := newCmdMoveStatus(f, func(o *moveStatusOptions) error { got = o; return nil })
	if err := execute(cmd, "a@x", "--batch", "w1", "--json"); err != nil || got.Mailbox != "a@x" || got.Batch != "w1" || !got.JSON {
		t.Fatalf("move status: %v, options %+v", err, got)
	}
	if err := execute(newCmdMoveStatus(f, nil), "a@x"); err == nil || !strings.Contains(err.Error(), `"batch"`) {
		t.Fatalf("move status without --batch = %v", err)
	}
}

func TestMoveStatusPrintsTheStatusQuery(t *testing.T) {
	c := newFakeClient()
	id := workflows.MoveWorkflowID("w1", "a@x")
	st := workflows.MoveStatus{Batch: "w1", Mailbox: "a@x", Status: workflows.StatusInProgress, StatusDetail: workflows.DetailCopyingMessages,
		PercentComplete: 40, MessagesTotal: 100, FoldersTotal: 3, FoldersCopied: 1, LogonFailures: 2,
		StallTime:   map[string]time.Duration{"WaitingForLogonRetry": time.Minute},
		LastFailure: &failure.Details{Type: failure.TypeLogonFailed, Side: failure.SideSource, Op: "LOGIN", Server: "NO bad"}}
	st.Copied, st.Matched, st.Bytes = 30, 10, 2048
	st.BadItems = []workflows.BadItem{{Folder: "Work", UID: 42, Size: 40 << 20, Reason: "NO [LIMIT] too big"}}
	st.FoldersRenamedForTarget = []string{"a.b → a_b: '.' separates levels on the target"}
	st.SourceProfile, st.BytesTotal, st.BudgetWindows, st.BudgetWindow = "gmail", 6<<30, 3, 24*time.Hour
	c.queries[id+" "+workflows.QueryStatus] = st
	f, out := testFactory(t, c)
	if err := moveStatusRun(context.Background(), &moveStatusOptions{Client: f.Client, Out: f.Out, Mailbox: "a@x", Batch: "w1"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Mailbox: a@x (batch w1)", "Status: InProgress / CopyingMessages", "Progress: 40%, 40/100 messages, 2.0 KiB copied, 1/3 folders",
		"Renamed for the target: a.b → a_b: '.' separates levels on the target", "Profiles: source gmail, target generic", "Daily budget: 6.0 GiB needs 3 windows of 24h0m0s at the providers' daily transfer budget (at least 48h0m0s)",
		"Bad items: 1", "Work UID 42, 40.0 MiB: NO [LIMIT] too big", "Logon failures: 2", "Waited: WaitingForLogonRetry 1m0s", `Last failure: LogonFailed on source: LOGIN: "NO bad"`, "Workflow: " + id,
	} {
		if !strings.Contains(squeeze(out.String()), want) {
			t.Errorf("move status lacks %q:\n%s", want, out)
		}
	}
	// In-flight progress is the status query's; no heartbeat is read.
	if got := c.calls; len(got) != 1 {
		t.Errorf("calls = %q, want the status query only", got)
	}
}

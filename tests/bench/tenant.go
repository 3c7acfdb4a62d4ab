package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// tenantRun is a tenant-sized batch through the CLI, as an admin runs it:
// n small mailboxes, `batch start`, then `batch status` and `batch report`
// timed while hundreds of moves copy, until the batch ends or wait is
// over; then the largest payload and history it wrote.
func tenantRun(n, concurrency int, wait time.Duration) error {
	if err := testbed.EnsureDovecot(); err != nil {
		return err
	}
	users := make([]testbed.User, n)
	for i := range users {
		users[i] = testbed.User{Name: fmt.Sprintf("t%05d@example.com", i), Password: pw}
	}
	src, tgt, err := testbed.StartPair("tenant", users)
	if err != nil {
		return err
	}
	defer src.Stop()
	defer tgt.Stop()
	start := time.Now()
	if err := seedAll(src, users); err != nil {
		return err
	}
	fmt.Printf("Tenant: %d mailboxes of 2 messages seeded in %v\n", n, time.Since(start).Round(time.Second))

	env, _, dir, stop, err := startTemporal("mailmove-tenant-*")
	if err != nil {
		return err
	}
	defer stop()
	cli, err := buildCLI(dir)
	if err != nil {
		return err
	}
	run := func(args ...string) (string, time.Duration, error) {
		args = append(args, "--address", env.Server.Addr, "--secret-key-file", env.KeyFile)
		t0 := time.Now()
		var stderr strings.Builder
		cmd := exec.Command(cli, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		took := time.Since(t0)
		// batch status exits 4 while moves run, 5 when some failed: an
		// answer, not a failure.
		var exit *exec.ExitError
		if errors.As(err, &exit) && args[0] == "batch" && args[1] == "status" && (exit.ExitCode() == 4 || exit.ExitCode() == 5) {
			err = nil
		}
		if err != nil {
			return string(out), 0, fmt.Errorf("mailmove %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out), took, nil
	}
	var csv strings.Builder
	csv.WriteString("EmailAddress,UserName,Password\n")
	for _, u := range users {
		fmt.Fprintf(&csv, "%s,%s,%s\n", u.Name, u.Name, pw)
	}
	csvFile := filepath.Join(dir, "tenant.csv")
	if err := os.WriteFile(csvFile, []byte(csv.String()), 0o600); err != nil {
		return err
	}
	_, took, err := run("batch", "start", "--name", "tenant", "--csv", csvFile, "--source", src.Addr(), "--target", tgt.Addr(),
		"--source-security", "none", "--target-security", "none", "--concurrency", fmt.Sprint(concurrency))
	if err != nil {
		return err
	}
	fmt.Printf("  batch start (%d moves started by the CLI): %v\n", n, took.Round(time.Millisecond))

	deadline := time.Now().Add(wait)
	var statusTimes, reportTimes, listTimes, problemTimes []time.Duration
	for time.Now().Before(deadline) {
		out, took, err := run("batch", "status", "tenant", "--json")
		if err != nil {
			// A busy dev server may not answer in time: said, not fatal.
			fmt.Printf("  %s batch status failed: %v\n", time.Since(start).Round(time.Second), err)
			time.Sleep(15 * time.Second)
			continue
		}
		statusTimes = append(statusTimes, took)
		if err := gateCheck(env.Client, concurrency); err != nil {
			fmt.Printf("    %v\n", err)
		}
		var rep struct {
			State  string
			Totals struct{ ByStatus map[string]int }
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return fmt.Errorf("batch status --json: %w", err)
		}
		by := rep.Totals.ByStatus
		fmt.Printf("  %s batch status: %v — %d Queued, %d InProgress, %d Completing, %d Completed, %d Failed (batch %s)\n",
			time.Since(start).Round(time.Second), took.Round(time.Millisecond), by["Queued"], by["InProgress"], by["Completing"], by["Completed"], by["Failed"], rep.State)
		_, listTook, err := run("batch", "list")
		if err != nil {
			fmt.Printf("    batch list failed: %v\n", err)
		}
		_, problemsTook, err := run("batch", "report", "tenant")
		if err != nil {
			fmt.Printf("    batch report failed: %v\n", err)
		}
		listTimes, problemTimes = append(listTimes, listTook), append(problemTimes, problemsTook)
		fmt.Printf("    batch list: %v, batch report (failures and warnings): %v\n", listTook.Round(time.Millisecond), problemsTook.Round(time.Millisecond))
		if len(reportTimes) == 0 && by["InProgress"]+by["Completing"] >= min(concurrency/2, n/2) {
			_, took, err := run("batch", "report", "tenant", "--format", "html")
			if err != nil {
				return err
			}
			reportTimes = append(reportTimes, took)
			fmt.Printf("  batch report --format html while %d moves copy: %v\n", by["InProgress"]+by["Completing"], took.Round(time.Millisecond))
		}
		if rep.State != "Running" {
			break
		}
		time.Sleep(15 * time.Second)
	}
	fmt.Printf("  while moves copy: batch status %s; batch list %s; batch report %s\n", spread(statusTimes), spread(listTimes), spread(problemTimes))
	// The same with the batch paused: the dev server's SQLite then serves
	// the list calls without the moves' writes in between.
	if _, _, err := run("batch", "pause", "tenant"); err != nil {
		return err
	}
	time.Sleep(30 * time.Second)
	var quiet []time.Duration
	for range 3 {
		_, took, err := run("batch", "status", "tenant", "--json")
		if err != nil {
			return err
		}
		quiet = append(quiet, took)
	}
	_, took, err = run("batch", "report", "tenant", "--format", "html")
	if err != nil {
		return err
	}
	fmt.Printf("  batch status with the batch paused: %s; batch report --format html: %v\n", spread(quiet), took.Round(time.Millisecond))
	return largest(env.Client)
}

// seedAll gives every source mailbox two messages, written as Maildir
// files: 10,000 logons would take longer than the batch.
func seedAll(src *testbed.Server, users []testbed.User) error {
	date := time.Now().UTC().Format(time.RFC1123Z)
	for i, u := range users {
		var msgs [][]byte
		for j := range 2 {
			msgs = append(msgs, fmt.Appendf(nil, "From: sender%d@example.org\r\nTo: %s\r\nSubject: tenant message %d\r\nMessage-ID: <t%d.%d@bench.example>\r\nDate: %s\r\n\r\nMessage %d of %s.\r\n",
				j, u.Name, j, i, j, date, j, u.Name))
		}
		if err := src.SeedMaildir(u.Name, msgs); err != nil {
			return err
		}
	}
	return nil
}

// buildCLI builds bin/mailmove's command into dir.
func buildCLI(dir string) (string, error) {
	root, err := temporaltest.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mailmove")
	build := exec.Command("go", "build", "-o", bin, "./starter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the CLI: %v\n%s", err, out)
	}
	return bin, nil
}

// spread is "median X, slowest Y of N".
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "not measured"
	}
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return fmt.Sprintf("median %v, slowest %v of %d calls", s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}

// largest prints the largest history of the batch's runs and moves (from
// the visibility store) and the largest payload in the batch's histories
// and in a sample of moves'.
func largest(c client.Client) error {
	ctx := context.Background()
	var maxLen, maxSize int64
	var maxID string
	var batchRuns, moveIDs []string
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: "MailmoveBatch = 'tenant'", PageSize: 1000, NextPageToken: token})
		if err != nil {
			return err
		}
		for _, e := range resp.GetExecutions() {
			if e.GetHistorySizeBytes() > maxSize {
				maxSize, maxID = e.GetHistorySizeBytes(), e.GetExecution().GetWorkflowId()
			}
			maxLen = max(maxLen, e.GetHistoryLength())
			if e.GetType().GetName() == "Batch" {
				batchRuns = append(batchRuns, e.GetExecution().GetRunId())
			} else if len(moveIDs) < 20 {
				moveIDs = append(moveIDs, e.GetExecution().GetWorkflowId())
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	fmt.Printf("  largest history: %d events; largest in bytes: %.0f KiB (%s); the batch ran as %d runs (continue-as-new)\n",
		maxLen, float64(maxSize)/1024, maxID, len(batchRuns))
	var payload int
	var what string
	scan := func(id, run string) error {
		it := c.GetWorkflowHistory(ctx, id, run, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return err
			}
			if n := payloadSize(ev); n > payload {
				payload, what = n, fmt.Sprintf("%s of %s", strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_"), id)
			}
		}
		return nil
	}
	for _, run := range batchRuns {
		if err := scan(workflows.BatchWorkflowID("tenant"), run); err != nil {
			return err
		}
	}
	for _, id := range moveIDs {
		if err := scan(id, ""); err != nil {
			return err
		}
	}
	fmt.Printf("  largest payload: %.1f KiB (%s; the batch's runs and %d moves read)\n\n", float64(payload)/1024, what, len(moveIDs))
	return nil
}

// payloadSize is the size of the largest payload field an event carries.
func payloadSize(ev *historypb.HistoryEvent) int {
	n := 0
	for _, p := range []proto.Message{
		ev.GetWorkflowExecutionStartedEventAttributes().GetInput(),
		ev.GetWorkflowExecutionContinuedAsNewEventAttributes().GetInput(),
		ev.GetWorkflowExecutionSignaledEventAttributes().GetInput(),
		ev.GetActivityTaskScheduledEventAttributes().GetInput(),
		ev.GetActivityTaskCompletedEventAttributes().GetResult(),
		ev.GetWorkflowExecutionCompletedEventAttributes().GetResult(),
		ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes().GetInput(),
		ev.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes(),
		ev.GetWorkflowPropertiesModifiedEventAttributes().GetUpsertedMemo(),
	} {
		n = max(n, proto.Size(p))
	}
	return n
}

// gateCheck prints the batch's own count of moves holding a slot (its
// memo) next to the moves whose status says they copy, so that a run
// shows --concurrency holding, or where it does not.
func gateCheck(c client.Client, concurrency int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	desc, err := c.DescribeWorkflowExecution(ctx, workflows.BatchWorkflowID("tenant"), "")
	if err != nil {
		return err
	}
	var memo workflows.BatchMemo
	if p := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()[workflows.MemoBatch]; p != nil {
		if err := converter.GetDefaultDataConverter().FromPayload(p, &memo); err != nil {
			return err
		}
	}
	copying := func(q string) int {
		r, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: "MailmoveBatch = 'tenant' AND ExecutionStatus = 'Running' AND " + q})
		if err != nil {
			return -1
		}
		return int(r.GetCount())
	}
	busy := copying("MailmoveStatus = 'InProgress' AND MailmoveStatusDetail IN ('Connecting', 'CreatingFolderHierarchy', 'CopyingMessages')")
	completing := copying("MailmoveStatus = 'Completing' AND MailmoveStatusDetail IN ('FinalIncrementalSync', 'Verifying')")
	mark := ""
	if memo.Active > concurrency {
		mark = " — ABOVE --concurrency"
	}
	// Statuses reach the visibility store later than the batch's grants
	// and a closed move's end: a few more or fewer than holding.
	fmt.Printf("    gate: %d holding a slot%s, %d asking (batch memo); by their status (visibility, lags): %d copying + %d completing\n", memo.Active, mark, memo.Asking, busy, completing)
	return nil
}

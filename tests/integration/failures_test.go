package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// waitVisible waits until a visibility query — what an admin types in the
// Web UI's filter — finds a workflow.
func waitVisible(t *testing.T, query string) {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Logger: temporaltest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err == nil && len(resp.GetExecutions()) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no workflow matches %s after a minute (last error %v)", query, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writePolicy writes a policy file for --policy.
func writePolicy(t *testing.T, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// waitCount waits until the account has at least n messages on the target.
func waitCount(t *testing.T, a account, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if got, err := countTarget(a); err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d messages on the target after 2 minutes", a.user, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// onlyMove returns the single move of a one-mailbox batch, Completed.
func onlyMove(t *testing.T, r report) workflows.MoveStatus {
	t.Helper()
	m := r.Moves[0]
	if m.Status != workflows.StatusCompleted {
		t.Fatalf("%s: %s/%s (%s), want Completed", m.Mailbox, m.Status, m.StatusDetail, m.Reason)
	}
	return m
}

func TestLockedMailboxIsWaitedOut(t *testing.T) {
	accs := addAccounts(t, 400, 150, "lockie")
	src := faultproxy.StartForTest(t, env.source.Addr())
	src.LockMailbox(6 * time.Second)
	pol := writePolicy(t, "rules:\n  MailboxLocked:\n    initialInterval: 2s\n    maximumAttempts: 10\n")
	startBatchTo(t, "default", "locked", writeCSV(t, accs, func(a account) string { return a.password }), src.Addr(), env.target.Addr(), "--policy", pol)

	// While it waits, the move is found by the Web UI's filter.
	waitVisible(t, `MailmoveBatch="locked" AND MailmoveStatusDetail="Relinquished_MailboxLocked"`)

	r := waitTerminal(t, "default", "locked", 3*time.Minute)
	m := onlyMove(t, r)
	if m.LockRelinquishes == 0 || m.StallTime[workflows.DetailRelinquishedLocked] < 2*time.Second {
		t.Fatalf("relinquishes %d, waited %v; want the lock waited out and accounted", m.LockRelinquishes, m.StallTime)
	}
	assertIdentical(t, accs[0])
}

func TestThrottledTargetStallsAndResumes(t *testing.T) {
	accs := addAccounts(t, 500, 1500, "throttle")
	tgt := faultproxy.StartForTest(t, env.target.Addr())
	// Slow enough that the throttling below starts mid-copy on any machine.
	tgt.SetLatency(time.Millisecond)
	pol := writePolicy(t, "rules:\n  ServerUnavailable:\n    initialInterval: 1s\n    backoffCoefficient: 2\n    maximumInterval: 4s\n")
	startBatchTo(t, "default", "throttled", writeCSV(t, accs, func(a account) string { return a.password }), env.source.Addr(), tgt.Addr(),
		"--policy", pol, "--connections-per-move", "1")
	// Throttle in the middle of the copy.
	waitCount(t, accs[0], 30)
	tgt.Unavailable(5*time.Second, "UNAVAILABLE", "Server busy, try later")
	tgt.SetLatency(0)

	r := waitTerminal(t, "default", "throttled", 3*time.Minute)
	m := onlyMove(t, r)
	stalled := m.StallTime["StalledDueToTarget_Unavailable"]
	if stalled < time.Second {
		t.Fatalf("stall time = %v, want the throttling window accounted as StalledDueToTarget_Unavailable", m.StallTime)
	}
	t.Logf("stalled %v, %d messages", stalled, m.Copied+m.Matched)
	assertIdentical(t, accs[0])
}

func TestConnectionCutMidMessageNeitherLosesNorDuplicates(t *testing.T) {
	accs := addAccounts(t, 600, 400, "cutter")
	src := faultproxy.StartForTest(t, env.source.Addr())
	src.CutFetchLiterals(3, 3000)
	pol := writePolicy(t, "rules:\n  ServerUnavailable:\n    initialInterval: 500ms\n    backoffCoefficient: 1\n")
	startBatchTo(t, "default", "cut", writeCSV(t, accs, func(a account) string { return a.password }), src.Addr(), env.target.Addr(), "--policy", pol)

	r := waitTerminal(t, "default", "cut", 3*time.Minute)
	m := onlyMove(t, r)
	if got := src.Stats().Injected[faultproxy.FaultCutLiteral]; got != 3 {
		t.Fatalf("the proxy cut %d messages, want 3", got)
	}
	if m.StallTime["StalledDueToSource_ConnectionDropped"] == 0 {
		t.Fatalf("stall time = %v, want the dropped connections accounted", m.StallTime)
	}
	assertIdentical(t, accs[0])
}

func TestLogonFailuresAreRetriedUntilTheyPass(t *testing.T) {
	accs := addAccounts(t, 450, 50, "flaky")
	src := faultproxy.StartForTest(t, env.source.Addr())
	src.FailLogins(2, "Authentication failed.")
	pol := writePolicy(t, "rules:\n  LogonFailed:\n    initialInterval: 1s\n    maximumAttempts: 5\n    consecutive: true\n")
	startBatchTo(t, "default", "flaky", writeCSV(t, accs, func(a account) string { return a.password }), src.Addr(), env.target.Addr(), "--policy", pol)

	m := onlyMove(t, waitTerminal(t, "default", "flaky", 3*time.Minute))
	if m.LogonFailures != 2 || m.StallTime[workflows.DetailWaitingForLogonRetry] < 2*time.Second {
		t.Fatalf("logon failures %d, waited %v; want 2 failures waited out", m.LogonFailures, m.StallTime)
	}
	assertIdentical(t, accs[0])
}

func TestWrongPasswordsDoNotDelayTheOthers(t *testing.T) {
	accs := addAccounts(t, 700, 60, "bad1", "bad2", "bad3", "good1", "good2", "good3")
	csv := writeCSV(t, accs, func(a account) string {
		if strings.HasPrefix(a.user, "bad") {
			return "wrong"
		}
		return a.password
	})
	pol := writePolicy(t, "rules:\n  LogonFailed:\n    initialInterval: 20s\n    maximumAttempts: 2\n    consecutive: true\n")
	start := time.Now()
	// Three at a time, the three wrong passwords first.
	startBatch(t, "default", "sixpack", csv, "--concurrency", "3", "--policy", pol)

	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := batchStatus(t, "default", "sixpack")
		good, waiting := 0, 0
		for _, m := range r.Moves {
			switch {
			case strings.HasPrefix(m.Mailbox, "good") && m.Status == workflows.StatusCompleted:
				good++
			case strings.HasPrefix(m.Mailbox, "bad") && m.StatusDetail == workflows.DetailWaitingForLogonRetry:
				waiting++
			}
		}
		if good == 3 {
			if waiting != 3 {
				t.Fatalf("the good mailboxes completed but only %d bad ones wait for a logon retry: %+v", waiting, r.Moves)
			}
			t.Logf("the 3 good mailboxes completed in %v while the 3 bad ones wait for their logon retry", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the good mailboxes did not complete while the bad ones waited: %+v", r.Moves)
		}
		time.Sleep(300 * time.Millisecond)
	}
	r := waitTerminal(t, "default", "sixpack", 3*time.Minute)
	for _, m := range r.Moves {
		if strings.HasPrefix(m.Mailbox, "bad") {
			if m.Status != workflows.StatusFailed || m.StatusDetail != "Failed_LogonFailed" || !strings.Contains(m.Reason, m.Mailbox) || m.LogonFailures != 2 {
				t.Errorf("%s: %s/%s %q after %d logon failures; want Failed_LogonFailed naming the account after 2", m.Mailbox, m.Status, m.StatusDetail, m.Reason, m.LogonFailures)
			}
		}
	}
	for _, a := range accs[3:] {
		assertIdentical(t, a)
	}
}

func TestFullTargetReportsOverQuotaWithNumbers(t *testing.T) {
	accs := []account{{user: "fullish@example.com", password: "pw-fullish"}}
	full := testbed.StartForTest(t, testbed.Options{Name: "full", QuotaBytes: 1 << 20, Users: []testbed.User{{Name: accs[0].user, Password: accs[0].password}}})
	if err := env.source.AddUser(testbed.User{Name: accs[0].user, Password: accs[0].password}); err != nil {
		t.Fatal(err)
	}
	if err := testbed.Seed(env.source.Addr(), accs[0].user, accs[0].password, testbed.SampleMailbox(800, 200)); err != nil {
		t.Fatal(err)
	}
	startBatchTo(t, "default", "full", writeCSV(t, accs, func(a account) string { return a.password }), env.source.Addr(), full.Addr())

	r := waitTerminal(t, "default", "full", 3*time.Minute)
	m := r.Moves[0]
	if m.Status != workflows.StatusFailed || m.StatusDetail != "Failed_TargetFull" || !strings.Contains(m.Reason, "OVERQUOTA") && !strings.Contains(m.Reason, "target quota:") {
		t.Fatalf("%s/%s %q; want Failed_TargetFull with the quota", m.Status, m.StatusDetail, m.Reason)
	}
	if !strings.Contains(m.Reason, "target quota:") || !strings.Contains(m.Reason, "of 1.0 MiB used") {
		t.Fatalf("reason %q does not give the target's quota", m.Reason)
	}
	t.Logf("reason: %s", m.Reason)
}

func TestMessageTheTargetRefusesIsABadItem(t *testing.T) {
	accs := []account{{user: "picky@example.com", password: "pw-picky"}}
	picky := testbed.StartForTest(t, testbed.Options{Name: "picky", MaxMessageBytes: 1 << 20, Users: []testbed.User{{Name: accs[0].user, Password: accs[0].password}}})
	if err := env.source.AddUser(testbed.User{Name: accs[0].user, Password: accs[0].password}); err != nil {
		t.Fatal(err)
	}
	folders := append(testbed.SampleMailbox(900, 50), testbed.Folder{Name: "INBOX", Messages: []testbed.Message{testbed.LargeMessage(9, 3<<20)}})
	if err := testbed.Seed(env.source.Addr(), accs[0].user, accs[0].password, folders); err != nil {
		t.Fatal(err)
	}
	startBatchTo(t, "default", "picky", writeCSV(t, accs, func(a account) string { return a.password }), env.source.Addr(), picky.Addr())

	r := waitTerminal(t, "default", "picky", 3*time.Minute)
	m := r.Moves[0]
	if m.Status != workflows.StatusCompletedWithWarnings || len(m.BadItems) != 1 || !strings.Contains(m.Reason, "1 bad items") {
		t.Fatalf("%s/%s %q with %d bad items; want CompletedWithWarnings with the 3 MB message as its one bad item", m.Status, m.StatusDetail, m.Reason, len(m.BadItems))
	}
	out := mailmove(t, "default", "batch", "report", "picky")
	if !strings.Contains(out, "BadItems") || !strings.Contains(out, accs[0].user) {
		t.Fatalf("batch report does not list the bad item:\n%s", out)
	}
}

// A worker started with --max-connections-per-server 1 never holds two
// connections to the source, however many moves and folder lanes want them
// (an uncapped worker reaches 6 here).
func TestWorkerConnectionCap(t *testing.T) {
	accs := addAccounts(t, 1300, 80, "capped1", "capped2", "capped3")
	src := faultproxy.StartForTest(t, env.source.Addr())
	peakOpen := watchPeakOpen(src)
	startBatchTo(t, cappedNamespace, "capped", writeCSV(t, accs, func(a account) string { return a.password }), src.Addr(), env.target.Addr(),
		"--connections-per-move", "3", "--concurrency", "3")
	r := waitTerminal(t, cappedNamespace, "capped", 3*time.Minute)
	peak := peakOpen()
	for _, m := range r.Moves {
		if m.Status != workflows.StatusCompleted {
			t.Fatalf("%s: %s/%s (%s)", m.Mailbox, m.Status, m.StatusDetail, m.Reason)
		}
	}
	for _, a := range accs {
		assertIdentical(t, a)
	}
	// The proxy counts a connection as open until it has drained it, so
	// one closing while the next opens is allowed for.
	if peak > 2 {
		t.Fatalf("up to %d connections to the source at once, want 1 (2 while one closes)", peak)
	}
	t.Logf("peak connections to the source: %d", peak)
}

// watchPeakOpen samples how many connections are open through p until the
// returned function is called, which returns the peak.
func watchPeakOpen(p *faultproxy.Proxy) func() int {
	var peak int
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, p.Stats().Open)
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() int {
		close(stop)
		<-sampled
		return peak
	}
}

// Package integration moves real mailboxes between two real Dovecot servers
// through a real Temporal dev server, with the real CLI and worker binaries,
// and compares both sides message by message.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// env is what every test shares: the servers and binaries started once.
var env struct {
	dir            string
	mailmove       string
	worker         string
	temporal       *temporaltest.Server
	source, target *testbed.Server
	keyFile        string
	// metrics is where the default namespace's worker serves its
	// Prometheus metrics.
	metrics string
}

// crashNamespace has no worker of its own: the crash test runs and kills
// its own workers there.
const crashNamespace = "crash"

// cappedNamespace's worker holds at most one connection per server and side.
const cappedNamespace = "capped"

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	// In memory where it can be (testbed.ScratchDir): on a VM disk the dev
	// server's SQLite and Dovecot's Maildirs wait for a sync at every
	// commit.
	dir, err := os.MkdirTemp(testbed.ScratchDir(), "mailmove-it-*")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	env.dir = dir
	if err := testbed.EnsureDovecot(); err != nil {
		return 1, err
	}
	root, err := temporaltest.RepoRoot()
	if err != nil {
		return 1, err
	}
	env.mailmove, env.worker = filepath.Join(dir, "mailmove"), filepath.Join(dir, "mailmove-worker")
	for out, pkg := range map[string]string{env.mailmove: "./starter", env.worker: "./worker/cmd/mailmove-worker"} {
		build := exec.Command("go", "build", "-o", out, pkg)
		build.Dir = root
		if b, err := build.CombinedOutput(); err != nil {
			return 1, fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	env.keyFile = filepath.Join(dir, "secret.key")
	// The admin makes the key once; the workers only read it.
	if out, err := exec.Command(env.mailmove, "key", "init", "--secret-key-file", env.keyFile).CombinedOutput(); err != nil {
		return 1, fmt.Errorf("mailmove key init: %v\n%s", err, out)
	}

	if env.temporal, err = temporaltest.Start(dir, crashNamespace, cappedNamespace, chaosNamespace, limitsNamespace); err != nil {
		return 1, err
	}
	defer env.temporal.Stop()
	if env.source, err = testbed.Start(testbed.Options{Name: "source", Dir: filepath.Join(dir, "source"), SpecialUse: testbed.StandardSpecialUse()}); err != nil {
		return 1, err
	}
	// The chaos test restarts the source: stop the one running at the end.
	defer func() { env.source.Stop() }()
	// The target names its special folders the Microsoft way and separates
	// levels with '.', so special-use mapping and separator translation are
	// exercised.
	if env.target, err = testbed.Start(testbed.Options{Name: "target", Dir: filepath.Join(dir, "target"), Separator: ".", SpecialUse: testbed.OutlookSpecialUse()}); err != nil {
		return 1, err
	}
	defer env.target.Stop()

	port, err := temporaltest.FreePort()
	if err != nil {
		return 1, err
	}
	env.metrics = fmt.Sprintf("127.0.0.1:%d", port)
	w, err := startWorker("default", "--metrics-address", env.metrics)
	if err != nil {
		return 1, err
	}
	defer stopWorker(w)
	capped, err := startWorker(cappedNamespace, "--max-connections-per-server", "1")
	if err != nil {
		return 1, err
	}
	defer stopWorker(capped)
	return m.Run(), nil
}

// startWorker runs the worker binary as its own process, as in production.
func startWorker(namespace string, extra ...string) (*exec.Cmd, error) {
	cmd := exec.Command(env.worker, append([]string{"--address", env.temporal.Addr, "--namespace", namespace, "--secret-key-file", env.keyFile}, extra...)...)
	log, err := os.OpenFile(filepath.Join(env.dir, "worker-"+namespace+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, cmd.Start()
}

func stopWorker(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// mailmove runs the CLI against the test Temporal server.
func mailmove(t *testing.T, namespace string, args ...string) string {
	t.Helper()
	args = append(args, "--address", env.temporal.Addr, "--namespace", namespace, "--secret-key-file", env.keyFile)
	out, err := exec.Command(env.mailmove, args...).CombinedOutput()
	if statusExit(args, err) {
		// Its last line, on stderr, says why.
		err, out = nil, out[:bytes.LastIndex(bytes.TrimRight(out, "\n"), []byte("\n"))+1]
	}
	if err != nil {
		t.Fatalf("mailmove %s: %v\n%s\nworker log of namespace %s (end):\n%s", strings.Join(args, " "), err, out, namespace, workerLogTail(namespace))
	}
	return string(out)
}

// statusExit: err is `batch status` saying that moves still run (4) or
// failed (5), an answer rather than a failure of the command.
func statusExit(args []string, err error) bool {
	var exit *exec.ExitError
	return len(args) >= 2 && args[0] == "batch" && args[1] == "status" && errors.As(err, &exit) && (exit.ExitCode() == 4 || exit.ExitCode() == 5)
}

// workerLogTail is the end of a namespace's worker log, for failures.
func workerLogTail(namespace string) string {
	data, _ := os.ReadFile(filepath.Join(env.dir, "worker-"+namespace+".log"))
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}

type account struct{ user, password string }

// addAccounts creates the accounts on both servers and seeds the source.
func addAccounts(t *testing.T, seed int64, messages int, names ...string) []account {
	t.Helper()
	return addAccountsWith(t, seed, messages, nil, names...)
}

// addAccountsWith is addAccounts with extra messages in the first
// account's INBOX.
func addAccountsWith(t *testing.T, seed int64, messages int, extra []testbed.Message, names ...string) []account {
	t.Helper()
	var accs []account
	for i, n := range names {
		a := account{user: n + "@example.com", password: "pw-" + n}
		for _, s := range []*testbed.Server{env.source, env.target} {
			if err := s.AddUser(testbed.User{Name: a.user, Password: a.password}); err != nil {
				t.Fatal(err)
			}
		}
		folders := testbed.SampleMailbox(seed+int64(i), messages)
		if i == 0 && len(extra) > 0 {
			folders = append(folders, testbed.Folder{Name: "INBOX", Messages: extra})
		}
		if err := testbed.Seed(env.source.Addr(), a.user, a.password, folders); err != nil {
			t.Fatalf("seed %s: %v", a.user, err)
		}
		accs = append(accs, a)
	}
	return accs
}

func writeCSV(t *testing.T, accs []account, password func(account) string) string {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("EmailAddress,UserName,Password\n")
	for _, a := range accs {
		fmt.Fprintf(&b, "%s,%s,%s\n", a.user, a.user, password(a))
	}
	f := filepath.Join(t.TempDir(), "batch.csv")
	if err := os.WriteFile(f, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func startBatch(t *testing.T, namespace, name, csv string, extra ...string) {
	t.Helper()
	startBatchTo(t, namespace, name, csv, env.source.Addr(), env.target.Addr(), extra...)
}

// startBatchTo starts a batch between the given servers (a fault proxy in
// front of the test bed, say).
func startBatchTo(t *testing.T, namespace, name, csv, source, target string, extra ...string) {
	t.Helper()
	args := append([]string{"batch", "start", "--name", name, "--csv", csv,
		"--source", source, "--target", target,
		"--source-security", "none", "--target-security", "none"}, extra...)
	mailmove(t, namespace, args...)
}

type report struct {
	Moves []workflows.MoveStatus
}

func batchStatus(t *testing.T, namespace, name string) report {
	t.Helper()
	out := mailmove(t, namespace, "batch", "status", name, "--json")
	r, err := parseReport([]byte(out))
	if err != nil {
		t.Fatalf("batch status --json: %v\n%s", err, out)
	}
	return r
}

func parseReport(out []byte) (report, error) {
	var r report
	err := json.Unmarshal(out, &r)
	return r, err
}

// waitTerminal waits until every move of the batch has ended.
func waitTerminal(t *testing.T, namespace, name string, timeout time.Duration) report {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := batchStatus(t, namespace, name)
		done := len(r.Moves) > 0
		for _, m := range r.Moves {
			done = done && m.Status.Terminal()
		}
		if done {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s not finished after %v: %+v\npending activities:\n%s\nworker log of namespace %s (end):\n%s",
				name, timeout, r.Moves, pendingActivities(namespace, name, r), namespace, workerLogTail(namespace))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// pendingActivities describes the activities the batch's moves wait on,
// with their attempts and last failures, for failures.
func pendingActivities(namespace, batch string, r report) string {
	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Namespace: namespace, Logger: temporaltest.QuietLogger()})
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	var b strings.Builder
	for _, m := range r.Moves {
		d, err := c.DescribeWorkflowExecution(context.Background(), workflows.MoveWorkflowID(batch, m.Mailbox), "")
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", m.Mailbox, err)
			continue
		}
		for _, pa := range d.GetPendingActivities() {
			fmt.Fprintf(&b, "%s: %s %s attempt %d, last failure %q, last worker %s\n", m.Mailbox, pa.GetActivityType().GetName(),
				pa.GetState(), pa.GetAttempt(), pa.GetLastFailure().GetMessage(), pa.GetLastWorkerIdentity())
		}
	}
	return b.String()
}

// snapshots reads an account on a source and a target server.
func snapshots(t *testing.T, srcAddr, tgtAddr string, a account) (src, tgt testbed.Snapshot) {
	t.Helper()
	src, err := testbed.TakeSnapshot(srcAddr, a.user, a.password)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err = testbed.TakeSnapshot(tgtAddr, a.user, a.password)
	if err != nil {
		t.Fatal(err)
	}
	return src, tgt
}

// assertIdentical compares both sides of an account message by message:
// same bytes (hash), flags and internal date, nothing missing or duplicated.
func assertIdentical(t *testing.T, a account) {
	t.Helper()
	src, tgt := snapshots(t, env.source.Addr(), env.target.Addr(), a)
	if diff := testbed.Diff(src, tgt, testbed.OutlookName); len(diff) > 0 {
		if len(diff) > 20 {
			diff = append(diff[:20], fmt.Sprintf("... and %d more", len(diff)-20))
		}
		t.Fatalf("%s differs between source and target:\n%s", a.user, strings.Join(diff, "\n"))
	}
}

// countTarget counts the account's messages on the target without reading
// them, cheap enough to poll during a copy.
func countTarget(a account) (int, error) {
	c, err := testbed.Dial(env.target.Addr(), a.user, a.password)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	lists, err := c.List("", "*", nil).Collect()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range lists {
		st, err := c.Status(l.Mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		if err == nil && st.NumMessages != nil {
			n += int(*st.NumMessages)
		}
	}
	return n, nil
}

func TestBatchMovesThreeMailboxesExactly(t *testing.T) {
	// A 30 MB message streams through without being held in memory.
	accs := addAccountsWith(t, 100, 300, []testbed.Message{testbed.LargeMessage(7, 30<<20)}, "alice", "bob", "carol")
	csv := writeCSV(t, accs, func(a account) string { return a.password })
	start := time.Now()
	startBatch(t, "default", "three", csv)
	r := waitTerminal(t, "default", "three", 5*time.Minute)
	elapsed := time.Since(start)

	copied := 0
	for _, m := range r.Moves {
		if m.Status != workflows.StatusCompleted {
			t.Fatalf("%s: %s (%s), want Completed", m.Mailbox, m.Status, m.Reason)
		}
		if m.Verify == nil || m.Verify.Missing != 0 {
			t.Errorf("%s: verification = %+v, want nothing missing", m.Mailbox, m.Verify)
		}
		copied += m.Copied
	}
	for _, a := range accs {
		assertIdentical(t, a)
	}
	t.Logf("moved %d messages in %v through Temporal: %.0f messages/s", copied, elapsed.Round(time.Millisecond), float64(copied)/elapsed.Seconds())

	// batch list reads the visibility store, which follows the moves'
	// search attributes a moment later.
	listed := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if listed = mailmove(t, "default", "batch", "list"); strings.Contains(strings.Join(strings.Fields(lineWith(listed, "three ")), " "), " 3 3 Completed") {
			break
		}
	}
	if line := lineWith(listed, "three "); !strings.Contains(strings.Join(strings.Fields(line), " "), " 3 3 Completed") {
		t.Errorf("batch list: %q, want batch three with 3 mailboxes, 3 Completed:\n%s", line, listed)
	}

	// Starting the same batch again is refused, not a second copy.
	args := []string{"batch", "start", "--name", "three", "--csv", csv, "--source", env.source.Addr(), "--target", env.target.Addr(),
		"--address", env.temporal.Addr, "--secret-key-file", env.keyFile}
	out, err := exec.Command(env.mailmove, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already exists") {
		t.Fatalf("second batch start = %v, %s; want refused", err, out)
	}
}

func TestWrongPasswordFailsClearlyOthersComplete(t *testing.T) {
	accs := addAccounts(t, 200, 40, "erin", "frank", "grace")
	bad := accs[2].user
	csv := writeCSV(t, accs, func(a account) string {
		if a.user == bad {
			return "not-the-password"
		}
		return a.password
	})
	startBatch(t, "default", "badpw", csv, "--logon-attempts", "3", "--logon-retry-interval", "1s")
	r := waitTerminal(t, "default", "badpw", 3*time.Minute)
	for _, m := range r.Moves {
		if m.Mailbox == bad {
			if m.Status != workflows.StatusFailed || !strings.Contains(m.Reason, "LogonFailed") || !strings.Contains(m.Reason, bad) || !strings.Contains(m.Reason, "source") {
				t.Fatalf("%s: %s, reason %q; want Failed with a logon reason naming side and account", m.Mailbox, m.Status, m.Reason)
			}
			continue
		}
		if m.Status != workflows.StatusCompleted {
			t.Fatalf("%s: %s (%s), want Completed", m.Mailbox, m.Status, m.Reason)
		}
	}
	assertIdentical(t, accs[0])
	assertIdentical(t, accs[1])
	// The human table shows the reason too.
	if out := mailmove(t, "default", "batch", "status", "badpw"); !strings.Contains(out, "LogonFailed") {
		t.Fatalf("batch status does not show the logon failure:\n%s", out)
	}
	// The error report names the category, side and remedy.
	var probs []struct{ Mailbox, Category, Side, Message, Remedy string }
	if err := json.Unmarshal([]byte(mailmove(t, "default", "batch", "report", "badpw", "--format", "json")), &probs); err != nil {
		t.Fatal(err)
	}
	if len(probs) != 1 || probs[0].Mailbox != bad || probs[0].Category != "LogonFailed" || probs[0].Side != "source" || !strings.Contains(probs[0].Remedy, "password") {
		t.Fatalf("batch report = %+v, want one LogonFailed line for %s with a remedy", probs, bad)
	}

	// With the password corrected, retry completes the move.
	fixed := writeCSV(t, accs[2:], func(a account) string { return a.password })
	mailmove(t, "default", "batch", "retry", "badpw", "--failed", "--csv", fixed)
	r = waitTerminal(t, "default", "badpw", 3*time.Minute)
	for _, m := range r.Moves {
		if m.Status != workflows.StatusCompleted {
			t.Fatalf("after retry %s: %s (%s), want Completed", m.Mailbox, m.Status, m.Reason)
		}
	}
	assertIdentical(t, accs[2])
}

func TestWorkerKilledMidCopyResumesWithoutDuplicates(t *testing.T) {
	accs := addAccounts(t, 300, 3000, "dave")
	a := accs[0]
	csv := writeCSV(t, accs, func(a account) string { return a.password })
	w, err := startWorker(crashNamespace)
	if err != nil {
		t.Fatal(err)
	}
	// The target answers through a proxy that holds each response line a
	// millisecond, so the copy lasts seconds and the kill lands in its middle
	// however fast this machine is.
	slow := faultproxy.StartForTest(t, env.target.Addr())
	slow.SetLatency(time.Millisecond)
	startBatchTo(t, crashNamespace, "crash", csv, env.source.Addr(), slow.Addr(), "--heartbeat-timeout", "5s", "--connections-per-move", "2")

	// Kill the worker process once part of the mailbox is on the target.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := countTarget(a)
		if err == nil && n >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the copy did not start within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.Process.Kill()
	w.Wait()
	n, _ := countTarget(a)
	t.Logf("killed the worker with %d of 3000 messages on the target", n)
	if n >= 3000 {
		t.Fatal("the copy finished before the worker was killed; the test proves nothing")
	}

	slow.SetLatency(0)
	w2, err := startWorker(crashNamespace)
	if err != nil {
		t.Fatal(err)
	}
	defer stopWorker(w2)
	r := waitTerminal(t, crashNamespace, "crash", 5*time.Minute)
	if m := r.Moves[0]; m.Status != workflows.StatusCompleted {
		t.Fatalf("%s: %s (%s), want Completed", m.Mailbox, m.Status, m.Reason)
	}
	assertIdentical(t, a)
}

// lineWith is the first line of text that starts with prefix.
func lineWith(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// parseStart parses argv of `batch start` into its options, as cobra does.
func parseStart(t *testing.T, args ...string) *batchStartOptions {
	t.Helper()
	var got *batchStartOptions
	f, _ := testFactory(t, nil)
	cmd := newCmdBatchStart(f, func(o *batchStartOptions) error { got = o; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return got
}

func TestBatchInputFromFlagsAndCSV(t *testing.T) {
	key, err := secret.Load(filepath.Join(t.TempDir(), "key"), true)
	if err != nil {
		t.Fatal(err)
	}
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,s3cret\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "old:993", "--target", "new:143", "--target-security", "starttls",
		"--complete", "manual", "--concurrency", "4", "--logon-attempts", "2", "--exclude-folder", "Junk", "--rename-folder", "Sent Items=Sent",
		"--max-message-size", "25MB", "--newer-than", "2024-01-01", "--propagate-deletes",
		"--gmail-labels", "priority", "--gmail-label-order", "Clients/*,INBOX")
	in, err := batchInput(opts, key)
	if err != nil {
		t.Fatalf("batchInput() = %v", err)
	}
	mv := in.Moves[0]
	if in.Name != "w1" || in.Concurrency != 4 || mv.Mailbox != "alice@example.com" || mv.Source.User != "alice" || mv.Target.User != "alice@example.com" {
		t.Fatalf("batchInput() = %+v", in)
	}
	if string(mv.Source.Password) == "s3cret" || !strings.HasPrefix(string(mv.Source.Password), "mmsec2:") {
		t.Fatalf("password not sealed: %q", mv.Source.Password)
	}
	s := mv.Settings
	if s.Complete != workflows.CompleteManual || !s.PropagateDeletes || s.Policy.Rule(failure.TypeLogonFailed).MaximumAttempts != 2 ||
		s.Rules.Exclude[0] != "Junk" || s.Rules.Renames["Sent Items"] != "Sent" || s.Rules.MaxMessageSize != 25<<20 ||
		!s.Rules.NewerThan.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) || mv.Target.Endpoint.Security != "starttls" ||
		s.Rules.GmailLabels != "priority" || strings.Join(s.Rules.GmailLabelOrder, "|") != "Clients/*|INBOX" {
		t.Fatalf("settings = %+v", s)
	}
}

// A row may name its own logon mechanism, within how its side logs on.
func TestBatchInputRowAuth(t *testing.T) {
	key, _ := secret.Load(filepath.Join(t.TempDir(), "key"), true)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password,SourceAuth,TargetAuth\nalice@example.com,alice,pw,LOGIN,\nbob@example.com,bob,pw,,xoauth2\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "old:993", "--target", "new:993", "--source-auth", "plain",
		"--target-token-command", "get-token")
	in, err := batchInput(opts, key)
	if err != nil {
		t.Fatalf("batchInput() = %v", err)
	}
	if a, b := in.Moves[0], in.Moves[1]; a.Source.Auth != "login" || b.Source.Auth != "plain" || a.Target.Auth != "" || b.Target.Auth != "xoauth2" {
		t.Fatalf("auth = %q/%q, %q/%q; want the rows' over the batch's", a.Source.Auth, a.Target.Auth, b.Source.Auth, b.Target.Auth)
	}
	bad := writeFile(t, "bad.csv", "EmailAddress,UserName,Password,SourceAuth\nalice@example.com,alice,pw,xoauth2\n")
	opts = parseStart(t, "--name", "w1", "--csv", bad, "--source", "old:993", "--target", "new:993")
	if _, err := batchInput(opts, key); err == nil || !strings.Contains(err.Error(), `line 2: SourceAuth "xoauth2": the source logs on with a password here, so use login or plain`) {
		t.Fatalf("batchInput() = %v, want the row's mechanism refused with its line", err)
	}
}

func TestBatchInputErrorsNameWhatToFix(t *testing.T) {
	key, _ := secret.Load(filepath.Join(t.TempDir(), "key"), true)
	good := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	bad := writeFile(t, "bad.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\nbob,bob,\n")
	policy := writeFile(t, "p.yaml", "rules:\n  Lockd: {}\n")
	profiles := writeFile(t, "profiles.yaml", "gmail:\n  downloadBytesPerDay: 5\n")
	unknownProfile := writeFile(t, "profiles2.yaml", "hotmail:\n  connectionsPerUser: 2\n")
	base := []string{"--name", "w1", "--source", "a:993", "--target", "b:993"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--csv", bad}, "line 3"},
		{[]string{"--csv", good, "--source-security", "ssl"}, "--source-security"},
		{[]string{"--csv", good, "--complete", "later"}, `--complete "later"`},
		{[]string{"--csv", good, "--concurrency", "0"}, "--concurrency 0"},
		{[]string{"--csv", good, "--policy", policy}, "rules.Lockd"},
		{[]string{"--csv", good, "--rename-folder", "Sent"}, "SOURCE=TARGET"},
		{[]string{"--csv", good, "--max-message-size", "big"}, "--max-message-size"},
		{[]string{"--csv", good, "--newer-than", "yesterday"}, "YYYY-MM-DD"},
		{[]string{"--csv", good, "--exclude-folder", "[oops"}, "not a valid pattern"},
		{[]string{"--csv", good, "--source-profile", "gmial"}, `--source-profile "gmial": use one of gmail, office365`},
		{[]string{"--csv", good, "--profiles", profiles}, "downloadBytesPerDay"},
		{[]string{"--csv", good, "--profiles", unknownProfile}, `unknown profile "hotmail"`},
		{[]string{"--csv", good, "--gmail-labels", "first"}, `--gmail-labels "first": use folders`},
		{[]string{"--csv", good, "--window", "weekdays 19:00-07:00"}, `--window "weekdays 19:00-07:00" (zone`},
		{[]string{"--csv", good, "--window", "Mon 19:00-07:00", "--window-zone", "Mars/Olympus"}, "IANA name"},
		{[]string{"--csv", good, "--gmail-label-order", "Work"}, "--gmail-label-order orders labels for --gmail-labels priority"},
		{[]string{"--csv", good, "--gmail-labels", "priority", "--gmail-label-order", "[x"}, `label "[x" of the Gmail label order is not a valid name or pattern`},
	} {
		opts := parseStart(t, append(append([]string{}, base...), tc.args...)...)
		if _, err := batchInput(opts, key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("batchInput(%v) = %v, want an error about %q", tc.args, err, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"25MB": 25 << 20, "512kb": 512 << 10, "1G": 1 << 30, "1000": 1000} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseSize("-3MB"); err == nil {
		t.Error("parseSize(-3MB) succeeded")
	}
}

func TestBatchStartRejectsMeaninglessNumbers(t *testing.T) {
	key, _ := secret.Load(filepath.Join(t.TempDir(), "key"), true)
	good := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	base := []string{"--name", "w1", "--source", "a:993", "--target", "b:993", "--csv", good}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrency", "-2"}, "--concurrency -2: must be at least 1"},
		{[]string{"--connections-per-move", "0"}, "--connections-per-move 0: must be at least 1"},
		{[]string{"--folder-concurrency", "-1"}, "--folder-concurrency -1: must be at least 1"},
		{[]string{"--chunk-messages", "0"}, "--chunk-messages 0: must be at least 1"},
		{[]string{"--logon-attempts", "-1"}, "--logon-attempts -1: must be at least 1, or 0 for the policy's"},
		{[]string{"--heartbeat-timeout", "0s"}, "--heartbeat-timeout 0s: must be a duration above zero"},
		{[]string{"--incremental-interval", "-1m"}, "--incremental-interval -1m0s: must be a duration above zero"},
		{[]string{"--logon-retry-interval", "-1s"}, "--logon-retry-interval -1s: must be a duration above zero, e.g. 1m, or 0 for the policy's"},
	} {
		opts := parseStart(t, append(append([]string{}, base...), tc.args...)...)
		if _, err := batchInput(opts, key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("batchInput(%v) = %v, want %q", tc.args, err, tc.want)
		}
	}
	// Zero is the policy's where the help says so.
	opts := parseStart(t, append(base, "--logon-attempts", "0", "--logon-retry-interval", "0")...)
	in, err := batchInput(opts, key)
	if err != nil || in.Moves[0].Settings.Policy.Rule(failure.TypeLogonFailed).MaximumAttempts != 5 {
		t.Fatalf("batchInput(--logon-attempts 0) = %v, want the policy's 5 attempts", err)
	}
}

func TestBatchStartRunStartsTheBatch(t *testing.T) {
	c := newFakeClient()
	f, out := testFactory(t, c)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\nbob@example.com,bob,pw\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "a:993", "--target", "b:993", "--concurrency", "4")
	opts.Client, opts.Key, opts.Out = f.Client, f.Key, f.Out
	if err := batchStartRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if len(c.started) != 3 {
		t.Fatalf("started %d workflows, want the batch and its 2 moves", len(c.started))
	}
	// The batch gets the mailboxes' names, never their settings or
	// credentials: each move gets its own.
	o, in := c.started[0].Options, c.started[0].Arg.(workflows.BatchInput)
	if o.ID != workflows.BatchWorkflowID("w1") || o.TaskQueue != workflows.TaskQueue || o.WorkflowIDReusePolicy != enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE ||
		!o.WorkflowExecutionErrorWhenAlreadyStarted || len(in.Moves) != 0 || !in.Gated || len(in.Mailboxes) != 2 || in.Concurrency != 4 {
		t.Fatalf("ExecuteWorkflow(%+v, %+v)", o, in)
	}
	ids := map[string]bool{}
	for _, s := range c.started[1:] {
		mv := s.Arg.(workflows.MailboxMoveInput)
		if !mv.Gated || mv.Batch != "w1" || mv.Source.Password == "" || s.Options.ID != workflows.MoveWorkflowID("w1", mv.Mailbox) ||
			s.Options.WorkflowIDReusePolicy != enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY || s.Options.Memo[workflows.MemoMove] == nil {
			t.Fatalf("move started with %+v, %+v", s.Options, mv)
		}
		ids[s.Options.ID] = true
	}
	if len(ids) != 2 {
		t.Fatalf("moves started: %v", ids)
	}
	if !strings.Contains(out.String(), "Started batch w1: 2 mailboxes, 4 at a time") || !strings.Contains(out.String(), "2 moves started") || !c.closed {
		t.Fatalf("output %q, client closed %v", out, c.closed)
	}
}

func TestBatchStartRunNamesEveryPageBeforeItStartsAMove(t *testing.T) {
	c := newFakeClient()
	f, out := testFactory(t, c)
	var b strings.Builder
	b.WriteString("EmailAddress,UserName,Password\n")
	n := 2*namesPerSignal + 5
	for i := range n {
		fmt.Fprintf(&b, "u%05d@example.com,u%05d,pw\n", i, i)
	}
	csv := writeFile(t, "b.csv", b.String())
	opts := parseStart(t, "--name", "big", "--csv", csv, "--source", "a:993", "--target", "b:993")
	opts.Client, opts.Key, opts.Out = f.Client, f.Key, f.Out
	if err := batchStartRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	in := c.started[0].Arg.(workflows.BatchInput)
	if len(in.Mailboxes) != namesPerSignal || len(c.callsOf("SignalWorkflow")) != 2 || len(c.started) != n+1 {
		t.Fatalf("first page %d names, %d signals, %d started", len(in.Mailboxes), len(c.callsOf("SignalWorkflow")), len(c.started))
	}
	// The signals come before the first move starts.
	c.mu.Lock()
	calls := strings.Join(c.calls, "\n")
	c.mu.Unlock()
	if i, j := strings.LastIndex(calls, "SignalWorkflow"), strings.Index(calls, "ExecuteWorkflow mailmove/"); i > j {
		t.Fatalf("a move started before the batch knew every mailbox:\n%s", calls[:min(len(calls), 2000)])
	}
	if !strings.Contains(out.String(), fmt.Sprintf("%d moves started", n)) {
		t.Fatalf("output %q", out)
	}
}

func TestBatchStartRunRefusesAnExistingBatch(t *testing.T) {
	c := newFakeClient()
	c.errs["ExecuteWorkflow "+workflows.BatchWorkflowID("w1")] = serviceerror.NewWorkflowExecutionAlreadyStarted("started", "", "run-0")
	f, _ := testFactory(t, c)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	opts := parseStart(t, "--name", "w1", "--csv", csv, "--source", "a:993", "--target", "b:993")
	opts.Client, opts.Key, opts.Out = f.Client, f.Key, f.Out
	if err := batchStartRun(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("batchStartRun() = %v, want the batch refused", err)
	}
}

func TestParseTime(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 11, 29, 20, 0, 0, 0, loc)
	for in, want := range map[string]time.Time{
		"21:30":                     time.Date(2026, 11, 29, 21, 30, 0, 0, loc),
		"07:00":                     time.Date(2026, 11, 30, 7, 0, 0, 0, loc), // passed today: tomorrow
		"2026-12-05 19:00":          time.Date(2026, 12, 5, 19, 0, 0, 0, loc),
		"2026-12-05T19:00:00+01:00": time.Date(2026, 12, 5, 19, 0, 0, 0, loc),
	} {
		if got, err := parseTime("--start-after", in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTime("--start-after", "tonight", now); err == nil || !strings.Contains(err.Error(), `--start-after "tonight": write "19:00"`) {
		t.Errorf("parseTime(tonight) = %v", err)
	}
}

func TestParseAge(t *testing.T) {
	now := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90d":        time.Date(2026, 8, 31, 0, 0, 0, 0, time.UTC),
		"2024-01-01": time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseAge(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0d", "-3d", "ninety", "2024-13-01"} {
		if _, err := parseAge(bad, now); err == nil {
			t.Errorf("parseAge(%q): no error", bad)
		}
	}
}

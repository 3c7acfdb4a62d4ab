// Command record regenerates the recorded workflow histories the replay
// tests use (tests/testdata/histories): it runs each scenario for real —
// the Temporal dev server, a worker, real Dovecot servers, the fault proxy —
// and writes each run's history as JSON. Passwords in the histories are
// sealed with a key that is thrown away afterwards. `make record-histories`
// runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/policy"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

func main() {
	out := flag.String("out", "tests/testdata/histories", "directory for the history files")
	only := flag.String("only", "", "record only this scenario")
	flag.Parse()
	if err := run(*out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "record:", err)
		os.Exit(1)
	}
}

type recorder struct {
	ctx      context.Context
	c        client.Client
	key      *secret.Key
	src, tgt *testbed.Server
	out      string
}

type scenario struct {
	name string
	run  func(r *recorder) error
}

var scenarios = []scenario{
	{"move-manual-complete", manualComplete},
	{"move-continue-as-new", continueAsNew},
	{"move-logon-failure", logonFailure},
	{"move-mailbox-locked", mailboxLocked},
	{"move-stall", stall},
	{"batch", batch},
}

func run(out, only string) error {
	if err := testbed.EnsureDovecot(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mailmove-record-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var users []testbed.User
	for _, s := range scenarios {
		users = append(users, testbed.User{Name: s.name + "@example.com", Password: "pw"}, testbed.User{Name: s.name + "-2@example.com", Password: "pw"})
	}
	src, tgt, err := testbed.StartPair("record", users)
	if err != nil {
		return err
	}
	defer src.Stop()
	defer tgt.Stop()
	for _, u := range users {
		if err := testbed.Seed(src.Addr(), u.Name, u.Password, testbed.SampleMailbox(7, 30)); err != nil {
			return err
		}
	}
	env, err := temporaltest.StartEnv(dir, true)
	if err != nil {
		return err
	}
	defer env.Stop()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	r := &recorder{ctx: context.Background(), c: env.Client, key: env.Key, src: src, tgt: tgt, out: out}
	for _, s := range scenarios {
		if only != "" && s.name != only {
			continue
		}
		start := time.Now()
		if err := s.run(r); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Printf("recorded %s in %v\n", s.name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// input builds a move's input between the two servers (or proxies).
func (r *recorder) input(batch, mailbox, srcAddr, tgtAddr, password string, s workflows.Settings) (workflows.MailboxMoveInput, error) {
	in := workflows.MailboxMoveInput{Batch: batch, Mailbox: mailbox, Settings: s,
		Source: activities.Account{Endpoint: engine.Endpoint{Addr: srcAddr, Security: engine.SecurityNone}, User: mailbox},
		Target: activities.Account{Endpoint: engine.Endpoint{Addr: tgtAddr, Security: engine.SecurityNone}, User: mailbox},
	}
	var err error
	if in.Source.Password, err = r.key.SealFor(in.Source.Endpoint.SecretBinding(failure.SideSource, secret.UsePassword, mailbox), password); err != nil {
		return in, err
	}
	in.Target.Password, err = r.key.SealFor(in.Target.Endpoint.SecretBinding(failure.SideTarget, secret.UsePassword, mailbox), "pw")
	return in, err
}

func (r *recorder) start(in workflows.MailboxMoveInput) (client.WorkflowRun, error) {
	return r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: workflows.MoveWorkflowID(in.Batch, in.Mailbox), TaskQueue: workflows.TaskQueue}, workflows.MailboxMove, in)
}

// waitFor polls the move's status until ok says so.
func (r *recorder) waitFor(id string, ok func(workflows.MoveStatus) bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		v, err := r.c.QueryWorkflow(r.ctx, id, "", workflows.QueryStatus)
		if err == nil {
			var st workflows.MoveStatus
			if v.Get(&st) == nil && ok(st) {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s: timed out", id)
}

func (r *recorder) complete(id string) error {
	h, err := r.c.UpdateWorkflow(r.ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: workflows.UpdateComplete, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		return err
	}
	return h.Get(r.ctx, nil)
}

// save writes the history of one run, once it has closed.
func (r *recorder) save(name, id, runID string) error {
	// Wait for this run to close; GetWorkflow(...).Get would follow a
	// continue-as-new chain to its end.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		d, err := r.c.DescribeWorkflowExecution(r.ctx, id, runID)
		if err != nil {
			return err
		}
		if d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s run %s still running", id, runID)
		}
		time.Sleep(200 * time.Millisecond)
	}
	it := r.c.GetWorkflowHistory(r.ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return err
		}
		h.Events = append(h.Events, ev)
	}
	data, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.out, name+".json"), append(data, '\n'), 0o644)
}

func manualComplete(r *recorder) error {
	in, err := r.input("record", "move-manual-complete@example.com", r.src.Addr(), r.tgt.Addr(), "pw",
		workflows.Settings{Complete: workflows.CompleteManual, IncrementalInterval: time.Second})
	if err != nil {
		return err
	}
	run, err := r.start(in)
	if err != nil {
		return err
	}
	if err := r.waitFor(run.GetID(), func(st workflows.MoveStatus) bool { return st.IncrementalPasses >= 3 }); err != nil {
		return err
	}
	if err := r.complete(run.GetID()); err != nil {
		return err
	}
	return r.save("move-manual-complete", run.GetID(), run.GetRunID())
}

func continueAsNew(r *recorder) error {
	in, err := r.input("record", "move-continue-as-new@example.com", r.src.Addr(), r.tgt.Addr(), "pw",
		workflows.Settings{Complete: workflows.CompleteManual, IncrementalInterval: time.Second, PassesPerRun: 2})
	if err != nil {
		return err
	}
	run, err := r.start(in)
	if err != nil {
		return err
	}
	if err := r.save("move-continue-as-new-1", run.GetID(), run.GetRunID()); err != nil {
		return err
	}
	if err := r.waitFor(run.GetID(), func(st workflows.MoveStatus) bool { return st.IncrementalPasses >= 3 }); err != nil {
		return err
	}
	if err := r.complete(run.GetID()); err != nil {
		return err
	}
	d, err := r.c.DescribeWorkflowExecution(r.ctx, run.GetID(), "")
	if err != nil {
		return err
	}
	return r.save("move-continue-as-new-2", run.GetID(), d.GetWorkflowExecutionInfo().GetExecution().GetRunId())
}

// fastPolicy waits seconds, not minutes, so recording is quick.
func fastPolicy(t failure.Type, attempts int) *policy.Policy {
	p := policy.Default()
	p.Rules[t] = failure.Rule{InitialInterval: failure.Duration(time.Second), BackoffCoefficient: 1, MaximumAttempts: attempts, Consecutive: t == failure.TypeLogonFailed}
	return &p
}

func logonFailure(r *recorder) error {
	in, err := r.input("record", "move-logon-failure@example.com", r.src.Addr(), r.tgt.Addr(), "wrong",
		workflows.Settings{Policy: fastPolicy(failure.TypeLogonFailed, 3)})
	if err != nil {
		return err
	}
	run, err := r.start(in)
	if err != nil {
		return err
	}
	return r.save("move-logon-failure", run.GetID(), run.GetRunID())
}

func mailboxLocked(r *recorder) error {
	p, err := faultproxy.Start(r.src.Addr())
	if err != nil {
		return err
	}
	defer p.Close()
	p.LockMailbox(2500 * time.Millisecond)
	in, err := r.input("record", "move-mailbox-locked@example.com", p.Addr(), r.tgt.Addr(), "pw",
		workflows.Settings{Policy: fastPolicy(failure.TypeMailboxLocked, 10), ConnectionsPerMove: 1})
	if err != nil {
		return err
	}
	run, err := r.start(in)
	if err != nil {
		return err
	}
	return r.save("move-mailbox-locked", run.GetID(), run.GetRunID())
}

func stall(r *recorder) error {
	p, err := faultproxy.Start(r.tgt.Addr())
	if err != nil {
		return err
	}
	defer p.Close()
	in, err := r.input("record", "move-stall@example.com", r.src.Addr(), p.Addr(), "pw",
		workflows.Settings{Policy: fastPolicy(failure.TypeServerUnavailable, 0), ConnectionsPerMove: 1})
	if err != nil {
		return err
	}
	// Throttled after logon: the move stalls on its first command.
	p.Unavailable(2500*time.Millisecond, "UNAVAILABLE", "Server busy")
	run, err := r.start(in)
	if err != nil {
		return err
	}
	return r.save("move-stall", run.GetID(), run.GetRunID())
}

func batch(r *recorder) error {
	ok, err := r.input("", "batch@example.com", r.src.Addr(), r.tgt.Addr(), "pw", workflows.Settings{})
	if err != nil {
		return err
	}
	bad, err := r.input("", "batch-2@example.com", r.src.Addr(), r.tgt.Addr(), "wrong", workflows.Settings{Policy: fastPolicy(failure.TypeLogonFailed, 2)})
	if err != nil {
		return err
	}
	run, err := r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: workflows.BatchWorkflowID("record"), TaskQueue: workflows.TaskQueue},
		workflows.Batch, workflows.BatchInput{Name: "record", Concurrency: 1, Moves: []workflows.MailboxMoveInput{bad, ok}})
	if err != nil {
		return err
	}
	return r.save("batch", run.GetID(), run.GetRunID())
}

package activities

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/memserver"
)

// signals is a Temporal client that only records the signals it sends.
type signals struct {
	client.Client
	mu   sync.Mutex
	sent []SyncProgressSignal
}

func (s *signals) SignalWorkflow(_ context.Context, _, _, name string, arg interface{}) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == SignalSyncProgress {
		s.sent = append(s.sent, arg.(SyncProgressSignal))
	}
	return nil
}

// A sync call running longer than ProgressInterval signals its progress
// to its workflow: rising, never more than the call's result.
func TestSyncCallReportsItsProgress(t *testing.T) {
	key, err := secret.NewKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	u := memserver.NewUser(t, "Work")
	memserver.Fill(t, u, "Work", 0, 200)
	srcAddr := memserver.Serve(t, memserver.Sessions(u))
	slow := faultproxy.StartForTest(t, memserver.Start(t, "Work"))
	slow.SetLatency(2 * time.Millisecond) // each answer of the target: the call takes a while

	fake := &signals{}
	var env testsuite.WorkflowTestSuite
	env.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	aenv := env.NewTestActivityEnvironment()
	acts := &Activities{Key: key, Client: fake, ProgressInterval: 20 * time.Millisecond}
	aenv.RegisterActivity(acts)
	in := SyncInput{Mailbox: "alice", Source: boundAccount(t, key, failure.SideSource, srcAddr), Target: boundAccount(t, key, failure.SideTarget, slow.Addr()), Call: 3,
		Cursors: []engine.Cursor{{Source: "Work", Target: "Work"}}}
	val, err := aenv.ExecuteActivity(acts.InitialSync, in)
	if err != nil {
		t.Fatalf("InitialSync() = %v", err)
	}
	var res SyncResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	if res.Copied != 200 || !res.Done[0] {
		t.Fatalf("InitialSync() copied %d, done %v; want 200, done", res.Copied, res.Done)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.sent) == 0 {
		t.Fatal("no progress signal from a call that ran longer than ProgressInterval")
	}
	for i, s := range fake.sent {
		if s.Call != 3 || s.Copied > res.Copied || (i > 0 && s.Copied <= fake.sent[i-1].Copied) {
			t.Fatalf("signal %d = call %d, %d copied; want call 3, copied rising, at most %d", i, s.Call, s.Copied, res.Copied)
		}
	}
}

// A worker whose key is not the batch's fails the call at once with
// SecretKeyMismatch, an error the workflow's policy ends the move with —
// even when both sides fail together (the errors are joined).
func TestSecretKeyMismatchIsClassified(t *testing.T) {
	batchKey, _ := secret.NewKey(bytes.Repeat([]byte{1}, 32))
	workerKey, _ := secret.NewKey(bytes.Repeat([]byte{2}, 32))
	addr := memserver.Start(t, "Work")
	var env testsuite.WorkflowTestSuite
	env.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	aenv := env.NewTestActivityEnvironment()
	acts := &Activities{Key: workerKey}
	aenv.RegisterActivity(acts)
	_, err := aenv.ExecuteActivity(acts.Connect, ConnectInput{Mailbox: "alice", Source: boundAccount(t, batchKey, failure.SideSource, addr), Target: boundAccount(t, batchKey, failure.SideTarget, addr)})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != string(failure.TypeSecretKeyMismatch) {
		t.Fatalf("Connect() = %v; want an ApplicationError of type %s", err, failure.TypeSecretKeyMismatch)
	}
	var d failure.Details
	if err := appErr.Details(&d); err != nil || d.Type != failure.TypeSecretKeyMismatch || d.Hint == "" {
		t.Fatalf("details %+v, %v; want the class and its hint", d, err)
	}
}

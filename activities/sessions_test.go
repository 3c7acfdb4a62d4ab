package activities

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/memserver"
)

// reuseBed is a source of 200 messages and an empty target behind fault
// proxies (whose Connections count the logons), and activities that keep
// sessions, run as the move named by move.
type reuseBed struct {
	t        *testing.T
	src, tgt *faultproxy.Proxy
	acts     *Activities
	source   Account
	target   Account
	key      *secret.Key

	// full makes the target refuse every APPEND (NO [OVERQUOTA]).
	full atomic.Bool

	mu   sync.Mutex
	move string
}

// fullTarget refuses APPENDs while full is set.
type fullTarget struct {
	*memserver.Session
	full *atomic.Bool
}

func (s fullTarget) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if s.full.Load() {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "mailbox full"}
	}
	return s.Session.Append(mailbox, r, options)
}

func newReuseBed(t *testing.T, idle time.Duration) *reuseBed {
	key, err := secret.NewKey(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	u := memserver.NewUser(t, "Work")
	memserver.Fill(t, u, "Work", 0, 200)
	b := &reuseBed{t: t, key: key, move: "move-a"}
	b.src = faultproxy.StartForTest(t, memserver.Serve(t, memserver.Sessions(u)))
	tu := memserver.NewUser(t)
	b.tgt = faultproxy.StartForTest(t, memserver.Serve(t, func() imapserver.Session {
		return fullTarget{memserver.Sessions(tu)().(*memserver.Session), &b.full}
	}))
	ss := NewSessions(idle)
	ss.moveOf = func(context.Context) string {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.move
	}
	t.Cleanup(ss.Close)
	b.acts = &Activities{Key: key, Sessions: ss}
	b.source = boundAccount(t, key, failure.SideSource, b.src.Addr())
	b.target = boundAccount(t, key, failure.SideTarget, b.tgt.Addr())
	return b
}

func (b *reuseBed) as(move string) {
	b.mu.Lock()
	b.move = move
	b.mu.Unlock()
}

// run runs one activity in a fresh activity environment, as Temporal runs
// each call of a move.
func (b *reuseBed) run(fn, in, out interface{}) error {
	var env testsuite.WorkflowTestSuite
	env.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	aenv := env.NewTestActivityEnvironment()
	aenv.SetTestTimeout(30 * time.Second)
	aenv.RegisterActivity(b.acts)
	val, err := aenv.ExecuteActivity(fn, in)
	if err != nil || out == nil {
		return err
	}
	return val.Get(out)
}

// logons are the connections each proxy has accepted.
func (b *reuseBed) logons() (src, tgt int) {
	return b.src.Stats().Connections, b.tgt.Stats().Connections
}

// chunk copies at most 20 messages of Work from the cursor.
func (b *reuseBed) chunk(cur engine.Cursor) (SyncResult, error) {
	var res SyncResult
	err := b.run(b.acts.InitialSync, SyncInput{Mailbox: "alice", Source: b.source, Target: b.target, Cursors: []engine.Cursor{cur}, MaxMessages: 20}, &res)
	return res, err
}

// plan connects and creates the target folders; it returns Work's cursor.
func (b *reuseBed) plan() engine.Cursor {
	b.t.Helper()
	var cr ConnectResult
	if err := b.run(b.acts.Connect, ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}, &cr); err != nil {
		b.t.Fatalf("Connect() = %v", err)
	}
	if err := b.run(b.acts.CreateFolders, CreateFoldersInput{Mailbox: "alice", Target: b.target, Folders: cr.Folders}, nil); err != nil {
		b.t.Fatalf("CreateFolders() = %v", err)
	}
	for _, f := range cr.Folders {
		if f.Source == "Work" {
			return f.Cursor()
		}
	}
	b.t.Fatalf("no plan for Work in %+v", cr.Folders)
	return engine.Cursor{}
}

// verify checks every message arrived once.
func (b *reuseBed) verify(cur engine.Cursor) {
	b.t.Helper()
	var v VerifyResult
	plans := []engine.FolderPlan{{Source: "Work", Target: "Work"}}
	if err := b.run(b.acts.Verify, VerifyInput{Mailbox: "alice", Source: b.source, Target: b.target, Folders: plans, Cursors: []engine.Cursor{cur}}, &v); err != nil {
		b.t.Fatalf("Verify() = %v", err)
	}
	if v.Compared != 200 || v.Missing != 0 || v.Duplicated != 0 {
		b.t.Fatalf("verify: compared %d, missing %d, duplicated %d; want 200 compared, none missing or twice", v.Compared, v.Missing, v.Duplicated)
	}
}

// waitOpen waits until the proxy relays n connections: closing is a
// round trip.
func waitOpen(t *testing.T, p *faultproxy.Proxy, n int, why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Open != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d connections open; want %d", why, p.Stats().Open, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A move's calls on one worker log on once a side: connect, folders, ten
// chunks, an incremental pass; the copy stays exact.
func TestAMoveLogsOnOnceForAllItsCalls(t *testing.T) {
	b := newReuseBed(t, time.Minute)
	cur := b.plan()
	for i := 0; i < 10; i++ {
		res, err := b.chunk(cur)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		cur = res.Cursors[0]
	}
	var res SyncResult
	if err := b.run(b.acts.IncrementalSync, SyncInput{Mailbox: "alice", Source: b.source, Target: b.target, Cursors: []engine.Cursor{cur}}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Copied != 0 {
		t.Fatalf("incremental pass copied %d; want 0 after 10 chunks of 20", res.Copied)
	}
	if s, g := b.logons(); s != 1 || g != 1 {
		t.Fatalf("logons: source %d, target %d over 13 calls; want 1 and 1", s, g)
	}
	logons, reuses := b.acts.Sessions.Counts()
	if logons != 2 || reuses != 23 {
		t.Fatalf("Counts() = %d logons, %d reuses; want 2 and 23 (12 calls after Connect, CreateFolders on one side)", logons, reuses)
	}
	b.verify(res.Cursors[0])
	// Verify is a move's last call: it logs out.
	waitOpen(t, b.src, 0, "after Verify")
	waitOpen(t, b.tgt, 0, "after Verify")
}

// A session is only reused by the move and the account it was opened for:
// another move, or the same move with another sealed password, logs on.
func TestSessionsAreNotSharedAcrossMovesOrAccounts(t *testing.T) {
	b := newReuseBed(t, time.Minute)
	in := ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}
	if err := b.run(b.acts.Connect, in, nil); err != nil {
		t.Fatal(err)
	}
	b.as("move-b")
	if err := b.run(b.acts.Connect, in, nil); err != nil {
		t.Fatal(err)
	}
	if s, g := b.logons(); s != 2 || g != 2 {
		t.Fatalf("logons after two moves connected: %d, %d; want 2 and 2", s, g)
	}
	b.as("move-a")
	resealed := in
	resealed.Target = boundAccount(t, b.key, failure.SideTarget, b.tgt.Addr())
	if resealed.Target.Password == in.Target.Password {
		t.Fatal("sealing again gave the same value: the test proves nothing")
	}
	if err := b.run(b.acts.Connect, resealed, nil); err != nil {
		t.Fatal(err)
	}
	if s, g := b.logons(); s != 2 || g != 3 {
		t.Fatalf("logons after move-a again with a new target password: %d, %d; want 2 (reused) and 3", s, g)
	}
}

// Faults in twos: a parked session the server dropped is replaced without
// an error; a call that fails, cut or refused, closes its sessions rather than parking them
// mid-command; the retry resumes; nothing is lost or copied twice.
func TestReuseSurvivesDroppedAndFailedSessions(t *testing.T) {
	b := newReuseBed(t, time.Minute)
	cur := b.plan()
	res, err := b.chunk(cur)
	if err != nil {
		t.Fatal(err)
	}
	cur = res.Cursors[0]

	// The servers drop the parked sessions (a restart, an idle cut).
	b.src.DropConnections()
	b.tgt.DropConnections()
	if res, err = b.chunk(cur); err != nil {
		t.Fatalf("chunk after the parked sessions were dropped: %v", err)
	}
	cur = res.Cursors[0]
	if s, g := b.logons(); s != 2 || g != 2 {
		t.Fatalf("logons: %d, %d; want 2 and 2 (one new each)", s, g)
	}

	// The next call's source connection is cut mid-FETCH.
	b.src.CutFetchLiterals(1, 3)
	if _, err := b.chunk(cur); err == nil {
		t.Fatal("chunk with its FETCH cut succeeded; want a failure")
	}
	waitOpen(t, b.tgt, 0, "a failed call's target session")
	waitOpen(t, b.src, 0, "a failed call's source session")
	b.src.Reset()

	// The next one is refused by the target, over connections that stay
	// sound: they are closed all the same, since a failed call may leave
	// a pipeline half read.
	b.full.Store(true)
	if _, err := b.chunk(cur); err == nil {
		t.Fatal("chunk into a full target succeeded; want a failure")
	}
	waitOpen(t, b.tgt, 0, "a refused call's target session")
	waitOpen(t, b.src, 0, "a refused call's source session")
	b.full.Store(false)
	// From the last result, not from what the failed call did: the
	// engine finds the messages it appended on the target.
	for i := 0; i < 20; i++ {
		if res, err = b.chunk(cur); err != nil {
			t.Fatalf("chunk after the failure: %v", err)
		}
		cur = res.Cursors[0]
		if res.Done[0] {
			break
		}
	}
	b.verify(cur)
}

// A call that needs a place in this worker's cap that parked sessions of
// another move hold logs them out instead of waiting behind them.
func TestParkedSessionsGiveTheirPlaceUp(t *testing.T) {
	b := newReuseBed(t, time.Hour)
	b.acts.Connections = engine.NewLimiter(1)
	in := ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}
	if err := b.run(b.acts.Connect, in, nil); err != nil {
		t.Fatal(err)
	}
	b.as("move-b")
	done := make(chan error, 1)
	go func() { done <- b.run(b.acts.Connect, in, nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("move-b's Connect waited behind move-a's parked sessions")
	}
	if s, g := b.logons(); s != 2 || g != 2 {
		t.Fatalf("logons: %d, %d; want 2 and 2", s, g)
	}
	// The proxy counts a connection until it has drained it: move-a's,
	// logged out, goes shortly after.
	waitOpen(t, b.src, 1, "move-b's parked session, move-a's logged out for it")
}

// A parked session unused for the idle time logs out.
func TestParkedSessionsLogOutWhenIdle(t *testing.T) {
	b := newReuseBed(t, 200*time.Millisecond)
	if err := b.run(b.acts.Connect, ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}, nil); err != nil {
		t.Fatal(err)
	}
	waitOpen(t, b.src, 0, "idle parked source session")
	waitOpen(t, b.tgt, 0, "idle parked target session")
}

// Across workers: worker A's parked sessions hold the endpoint's two
// leases; worker B's call waits in line until A hears of it at its next
// renewal and logs them out, long before they would time out.
func TestParkedSessionsGiveTheirLeasesUpToOtherWorkers(t *testing.T) {
	b := newReuseBed(t, time.Hour)
	// One connection to each side: A's parked sessions hold both leases.
	c := &limiters{limiterClient: limiterClient{rng: rand.New(rand.NewSource(1))}, m: map[string]*engine.Leases{}}
	c.leases.Limits = engine.EndpointLimits{MaxConnections: 1}
	workerA := b.acts
	workerB := &Activities{Key: b.key, Sessions: NewSessions(time.Hour)}
	workerB.Sessions.moveOf = workerA.Sessions.moveOf
	t.Cleanup(workerB.Sessions.Close)
	for i, acts := range []*Activities{workerA, workerB} {
		acts.Endpoints = NewEndpoints(c, nil)
		acts.Endpoints.worker = fmt.Sprintf("worker-%d", i)
		acts.Endpoints.renew = 100 * time.Millisecond
		acts.Endpoints.OnCrowded(acts.Sessions.EvictEndpoint)
	}
	in := ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}
	if err := b.run(workerA.Connect, in, nil); err != nil {
		t.Fatal(err)
	}
	b.as("move-b")
	b.acts = workerB
	done := make(chan error, 1)
	go func() { done <- b.run(workerB.Connect, in, nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker B waited behind worker A's parked sessions")
	}
	if s, g := b.logons(); s != 2 || g != 2 {
		t.Fatalf("logons %d, %d; want 2 and 2", s, g)
	}
	// B's parked pair is all that is open: A's gave their leases up.
	waitOpen(t, b.src, 1, "A's parked source session given up for B's")
	waitOpen(t, b.tgt, 1, "A's parked target session given up for B's")
}

// limiters runs a limiter per endpoint, as the workflows do.
type limiters struct {
	limiterClient
	m map[string]*engine.Leases
}

func (c *limiters) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m[o.WorkflowID]
	if !ok {
		l = &engine.Leases{Limits: c.leases.Limits}
		c.m[o.WorkflowID] = l
	}
	return leaseHandle{l.Sync(time.Now(), o.Args[0].(engine.LeaseSync))}, nil
}

package activities

// Adversarial review of session reuse (45d9963): parked sessions against
// the worker's connection cap, the endpoints' leases, silent servers,
// lost leases and servers without UNSELECT. Each "Finding" was a bug the
// review showed with its test, fixed since; the test keeps it fixed.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/memserver"
)

// reviewMoveKey carries the move of one call through the activity's
// background context, so that calls of two moves can run at once (the
// reuseBed's move is one for all calls).
type reviewMoveKey struct{}

// perCallMoves makes b's Sessions read each call's move from its context
// (runAs), falling back to b.move. Call it before any call runs.
func (b *reuseBed) perCallMoves() {
	prev := b.acts.Sessions.moveOf
	b.acts.Sessions.moveOf = func(ctx context.Context) string {
		if m, ok := ctx.Value(reviewMoveKey{}).(string); ok {
			return m
		}
		return prev(ctx)
	}
}

// runAs runs one call of acts as move, in a fresh activity environment.
func runAs(acts *Activities, move string, fn, in, out interface{}) error {
	var env testsuite.WorkflowTestSuite
	env.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	aenv := env.NewTestActivityEnvironment()
	aenv.SetWorkerOptions(worker.Options{BackgroundActivityContext: context.WithValue(context.Background(), reviewMoveKey{}, move)})
	aenv.SetTestTimeout(5 * time.Minute)
	aenv.RegisterActivity(acts)
	val, err := aenv.ExecuteActivity(fn, in)
	if err != nil || out == nil {
		return err
	}
	return val.Get(out)
}

// wireCrowded wires the endpoints' OnCrowded to the sessions'
// EvictEndpoint, as worker.Run does, so the tests judge what the worker
// runs.
func wireCrowded(acts *Activities) {
	acts.Endpoints.OnCrowded(acts.Sessions.EvictEndpoint)
}

// reviewLimiters is a Temporal client that runs one engine.Leases per endpoint
// limiter workflow ID, in process, as the EndpointLimiter workflows do.
// (limiterClient runs one for all IDs: a worker's source and target
// endpoints then release each other's leases, which hides waits.)
type reviewLimiters struct {
	client.Client
	limits engine.EndpointLimits
	down   atomic.Bool // Temporal unreachable: every update fails

	mu     sync.Mutex
	leases map[string]*engine.Leases
}

func newReviewLimiters(l engine.EndpointLimits) *reviewLimiters {
	return &reviewLimiters{limits: l, leases: map[string]*engine.Leases{}}
}

func (c *reviewLimiters) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	p, _ := converter.GetDefaultDataConverter().ToPayload(c.limits)
	info := &workflowpb.WorkflowExecutionInfo{Status: enums.WORKFLOW_EXECUTION_STATUS_RUNNING,
		Memo: &commonpb.Memo{Fields: map[string]*commonpb.Payload{MemoEndpointLimits: p}}}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: info}, nil
}

func (c *reviewLimiters) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	if c.down.Load() {
		return nil, errors.New("fake: unreachable")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.leases[o.WorkflowID]
	if !ok {
		l = &engine.Leases{Limits: c.limits}
		c.leases[o.WorkflowID] = l
	}
	return leaseHandle{l.Sync(time.Now(), o.Args[0].(engine.LeaseSync))}, nil
}

// held is the number of leases granted on side's endpoint at addr.
func (c *reviewLimiters) held(side failure.Side, addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.leases[EndpointWorkflowID(side, addr)]; l != nil {
		return len(l.Held)
	}
	return 0
}

// capFilter is a TCP relay that strips capabilities from the server's
// CAPABILITY lines: a server without UNSELECT, which go-imap's server
// always announces.
func capFilter(t *testing.T, upstream string, drop ...string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(up, c); up.Close() }()
			go func() {
				defer c.Close()
				br := bufio.NewReader(up)
				for {
					line, err := br.ReadString('\n')
					if strings.Contains(line, "CAPABILITY") {
						for _, d := range drop {
							line = strings.ReplaceAll(line, " "+d, "")
						}
					}
					if _, werr := io.WriteString(c, line); werr != nil || err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// waitErr waits d for a call's result; ok false when it did not come.
func waitErr(ch <-chan error, d time.Duration) (err error, ok bool) {
	select {
	case err := <-ch:
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// waitConnections waits until p has accepted n connections.
func waitConnections(t *testing.T, p *faultproxy.Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Connections < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections accepted; want %d", p.Stats().Connections, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Finding: a call that queued for this worker's cap while the place was
// held by another move's session IN USE never gets that place when the
// session is then parked: evict runs only once, before the wait, and
// nothing wakes the waiter when a session parks. With the default idle
// time, move-b waits for as long as move-a keeps calling (each call takes
// the parked session and parks it again): a move can starve behind
// another for the whole of it.
func TestReviewCallQueuedBeforeAParkGetsThePlace(t *testing.T) {
	b := newReuseBed(t, DefaultSessionIdle)
	b.perCallMoves()
	b.acts.Connections = engine.NewLimiter(1)
	in := ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}

	// move-a's Connect is slow, so move-b's arrives while move-a's
	// sessions are in use, not parked.
	b.src.SetLatency(150 * time.Millisecond)
	aDone := make(chan error, 1)
	go func() { aDone <- runAs(b.acts, "move-a", b.acts.Connect, in, nil) }()
	waitConnections(t, b.src, 1)
	bDone := make(chan error, 1)
	go func() { bDone <- runAs(b.acts, "move-b", b.acts.Connect, in, nil) }()

	if err, ok := waitErr(aDone, 30*time.Second); !ok || err != nil {
		t.Fatalf("move-a's Connect = %v (done %v)", err, ok)
	}
	b.src.SetLatency(0)
	// move-a goes on with its calls, 300 ms apart, for 10 s.
	calls := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); calls++ {
		select {
		case err := <-bDone:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(300 * time.Millisecond):
		}
		if err := runAs(b.acts, "move-a", b.acts.Connect, in, nil); err != nil {
			t.Fatalf("move-a's Connect %d: %v", calls+2, err)
		}
	}
	b.acts.Sessions.Close() // lets move-b go, for a clean end
	<-bDone
	_, reuses := b.acts.Sessions.Counts()
	t.Fatalf("move-b's Connect, queued for the cap while move-a's source session was in use, still waited after move-a's %d further calls over 10 s (%d reuses): a waiter is never given a parked session's place", calls, reuses)
}

// Finding: the same for the endpoint's leases on one worker. A call
// queued at the limiter while the lease was held by a session in use
// waited behind that session once it was parked: the limiter's answer
// then counted only other workers' requests, and slot's evict ran before
// the wait.
func TestReviewLeaseWaiterOnTheSameWorkerGetsAParkedSessionsLease(t *testing.T) {
	b := newReuseBed(t, time.Hour)
	b.perCallMoves()
	c := newReviewLimiters(engine.EndpointLimits{MaxConnections: 1})
	b.acts.Endpoints = NewEndpoints(c, nil)
	b.acts.Endpoints.renew = 100 * time.Millisecond
	wireCrowded(b.acts)
	in := ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}

	b.src.SetLatency(150 * time.Millisecond)
	aDone := make(chan error, 1)
	go func() { aDone <- runAs(b.acts, "move-a", b.acts.Connect, in, nil) }()
	waitConnections(t, b.src, 1)
	if n := c.held(failure.SideSource, b.source.Endpoint.Addr); n != 1 {
		t.Fatalf("%d source leases held while move-a connects; want 1", n)
	}
	bDone := make(chan error, 1)
	go func() { bDone <- runAs(b.acts, "move-b", b.acts.Connect, in, nil) }()

	if err, ok := waitErr(aDone, 30*time.Second); !ok || err != nil {
		t.Fatalf("move-a's Connect = %v (done %v)", err, ok)
	}
	b.src.SetLatency(0)
	err, ok := waitErr(bDone, 10*time.Second)
	if !ok {
		b.acts.Sessions.Close()
		<-bDone
		t.Fatal("move-b's Connect, in line at the limiter behind move-a's sessions in use, still waits 10 s after they were parked idle on the same worker")
	}
	if err != nil {
		t.Fatal(err)
	}
}

// freezer is a TCP relay whose existing connections can be made silent
// (Freeze): bytes are read and held, nothing is answered, the sockets
// stay open, as when a firewall or NAT drops an idle connection's state,
// or a server hangs. Connections opened after Freeze flow.
type freezer struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	gates []*gate
	conns []net.Conn
}

type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
}

func (g *gate) wait() {
	g.mu.Lock()
	for g.frozen {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

func (g *gate) set(frozen bool) {
	g.mu.Lock()
	g.frozen = frozen
	g.cond.Broadcast()
	g.mu.Unlock()
}

func startFreezer(t *testing.T, upstream string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, upstream: upstream}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			g := &gate{}
			g.cond = sync.NewCond(&g.mu)
			f.mu.Lock()
			f.gates = append(f.gates, g)
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			go f.pipe(g, up, c)
			go f.pipe(g, c, up)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.Thaw()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	return f
}

func (f *freezer) pipe(g *gate, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			g.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

func (f *freezer) Addr() string { return f.ln.Addr().String() }

// Freeze silences the connections open now.
func (f *freezer) Freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.gates {
		g.set(true)
	}
}

// Thaw lets them talk again.
func (f *freezer) Thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.gates {
		g.set(false)
	}
}

// Finding: the NOOP that checks a parked session has no bound of its own:
// a parked session whose server went silent (a NAT or firewall that
// dropped the idle connection without a reset, a hung server) holds the
// next call until go-imap's read fails on engine.DefaultIdleTimeout, 1 to
// 2 times over (2 to 4 minutes; see internal/engine
// TestReviewIdleTimeoutBoundsACommandAfterAQuietSpell), before it dials
// afresh. The connection it would then dial works at once.
func TestReviewSilentParkedSessionDoesNotStallTheNextCall(t *testing.T) {
	b := newReuseBed(t, time.Minute)
	fz := startFreezer(t, b.src.Addr())
	b.source = boundAccount(t, b.key, failure.SideSource, fz.Addr())
	in := ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}
	if err := b.run(b.acts.Connect, in, nil); err != nil {
		t.Fatal(err)
	}
	// The parked source session's server goes silent.
	fz.Freeze()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- runAs(b.acts, "move-a", b.acts.Connect, in, nil) }()
	err, ok := waitErr(done, 20*time.Second)
	if !ok {
		fz.Thaw()
		<-done
		t.Fatalf("Connect after the parked source session went silent: still waiting after 20 s (it ended %s after it started, once the freeze was lifted); a dead parked session must not hold a call longer than a short NOOP timeout", time.Since(start).Round(time.Second))
	}
	if err != nil {
		t.Fatalf("Connect after the parked source session went silent = %v; want a new session", err)
	}
}

// Finding: a lease lost while its session is parked cuts the socket, but
// the session stays parked: its place in this worker's cap stays taken
// and holds() says so until the idle timer, an evict or a take closes
// it. Close it (and release its slot) when the lease is lost.
func TestReviewLostLeaseReleasesAParkedSessionsPlace(t *testing.T) {
	b := newReuseBed(t, time.Hour)
	c := newReviewLimiters(engine.EndpointLimits{MaxConnections: 10})
	b.acts.Endpoints = NewEndpoints(c, nil)
	b.acts.Endpoints.renew = 50 * time.Millisecond
	b.acts.Endpoints.lostAfter = 300 * time.Millisecond
	b.acts.Connections = engine.NewLimiter(1)
	wireCrowded(b.acts)
	if err := b.run(b.acts.Connect, ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}, nil); err != nil {
		t.Fatal(err)
	}
	waitOpen(t, b.src, 1, "parked source session")
	// Temporal becomes unreachable: the leases cannot be renewed.
	c.down.Store(true)
	waitOpen(t, b.src, 0, "the source connection of a lost lease")

	key := slotKey(failure.SideSource, b.source)
	deadline := time.Now().Add(3 * time.Second)
	for {
		if rel, ok := b.acts.Connections.TryAcquire(key); ok {
			rel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("3 s after its lease was lost and its connection cut, the parked source session still holds this worker's only place (holds() = %v): it stays parked until its idle timer", b.acts.Sessions.holds(key))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b.acts.Sessions.holds(key) {
		t.Fatal("a session whose lease was lost is still parked")
	}
}

// Guard: a target without UNSELECT (IMAP4rev1 only) never gets a CLOSE,
// which would expunge its \Deleted messages: the sessions of a chunk that
// selected a folder are logged out, not parked; the message flagged
// \Deleted on the target survives every call.
func TestReviewNoUnselectTargetIsNeverClosedIntoAnExpunge(t *testing.T) {
	b := newReuseBed(t, time.Minute)
	tu := memserver.NewUser(t, "Work")
	raw := []byte("From: x@example.com\r\nSubject: deleted, not expunged\r\nMessage-ID: <keep@example.com>\r\n\r\nbody\r\n")
	if _, err := tu.Append("Work", reviewLiteral{bytes.NewReader(raw)}, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDeleted}}); err != nil {
		t.Fatal(err)
	}
	srv := memserver.ServeCaps(t, func() imapserver.Session { return memserver.Sessions(tu)() }, imap.CapSet{imap.CapIMAP4rev1: {}})
	tgt := faultproxy.StartForTest(t, capFilter(t, srv, string(imap.CapUnselect)))
	b.tgt = tgt
	b.target = boundAccount(t, b.key, failure.SideTarget, tgt.Addr())

	cur := b.plan()
	for i := 0; i < 3; i++ {
		res, err := b.chunk(cur)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		cur = res.Cursors[0]
	}
	st := tgt.Stats()
	if st.Commands["CLOSE"] != 0 || st.Commands["EXPUNGE"] != 0 {
		t.Fatalf("commands to a target without UNSELECT: %v; want no CLOSE nor EXPUNGE", st.Commands)
	}
	if st.Commands["UNSELECT"] != 0 {
		t.Fatalf("UNSELECT sent to a server that does not offer it: %v", st.Commands)
	}
	// Each chunk's target session was logged out, not parked.
	if st.Connections != 3 {
		t.Fatalf("target connections: %d; want 3 (Connect's, reused by CreateFolders and the first chunk, then one per chunk: a selected session without UNSELECT is not parked)", st.Connections)
	}
	sd, err := tu.Status("Work", &imap.StatusOptions{NumMessages: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := *sd.NumMessages; n != 61 {
		t.Fatalf("target Work holds %d messages; want 61 (60 copied, the \\Deleted one kept)", n)
	}
}

type reviewLiteral struct{ *bytes.Reader }

func (l reviewLiteral) Size() int64 { return l.Reader.Size() }

// Guard: calls of one move at once never share a session. Four Connects
// of move-a run together, three rounds: each round's calls take distinct
// parked sessions or log on; never more than four a side open, no error.
// Run with -race: a shared session races on its fields.
func TestReviewConcurrentCallsOfAMoveNeverShareASession(t *testing.T) {
	b := newReuseBed(t, time.Minute)
	in := ConnectInput{Mailbox: "alice", Source: b.source, Target: b.target}
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- b.run(b.acts.Connect, in, nil)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if o := b.src.Stats().Open; o > 4 {
			t.Fatalf("round %d: %d source connections open for 4 calls", round, o)
		}
	}
	logons, reuses := b.acts.Sessions.Counts()
	if logons+reuses != 24 {
		t.Fatalf("Counts() = %d logons + %d reuses; want 24 sessions handed out over 12 calls", logons, reuses)
	}
	if s, _ := b.logons(); s > 12 {
		t.Fatalf("%d source logons for 12 calls", s)
	}
}

// hangUnselect is a target whose UNSELECT never answers while hang is
// set, as a server gone silent at the end of a call.
type hangUnselect struct {
	*memserver.Session
	hang    *atomic.Bool
	release chan struct{}
}

func (s hangUnselect) Unselect() error {
	if s.hang.Load() {
		<-s.release
	}
	return s.Session.Unselect()
}

// Finding: a call that ended well is held by the UNSELECT that readies
// its sessions for reuse (Reusable), with no bound but go-imap's read
// failing on engine.DefaultIdleTimeout: a target gone silent at the end
// of a chunk delays the chunk's result by up to 2 minutes, for a session
// that is then closed anyway.
func TestReviewSilentUnselectDoesNotHoldAFinishedCall(t *testing.T) {
	b := newReuseBed(t, time.Minute)
	tu := memserver.NewUser(t)
	var hang atomic.Bool
	release := make(chan struct{})
	srv := memserver.Serve(t, func() imapserver.Session {
		return hangUnselect{memserver.Sessions(tu)().(*memserver.Session), &hang, release}
	})
	b.tgt = faultproxy.StartForTest(t, srv)
	b.target = boundAccount(t, b.key, failure.SideTarget, b.tgt.Addr())
	cur := b.plan()
	hang.Store(true)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := b.chunk(cur)
		done <- err
	}()
	err, ok := waitErr(done, 20*time.Second)
	if !ok {
		close(release)
		<-done
		t.Fatalf("a chunk that copied its messages had no result after 20 s (%s): it waits for the UNSELECT that would park its target session", time.Since(start).Round(time.Second))
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Finding: a dry run (workflows.DryRun: one Connect per mailbox, all in
// one workflow, never a second call for the same account) parks every
// pair it opens, though none is ever reused: each holds a connection to
// both servers, and its cap place or lease, for the idle time. Three
// mailboxes' Connects leave three idle connections to each server; a
// batch of thousands at DefaultConcurrency leaves hundreds.
func TestReviewDryRunConnectsLeaveNoIdleSessions(t *testing.T) {
	b := newReuseBed(t, DefaultSessionIdle)
	for i := 0; i < 3; i++ {
		// Another mailbox: another account (sealed again, as another
		// user's password would be).
		in := ConnectInput{Mailbox: "alice", MeasureSizes: true,
			Source: boundAccount(t, b.key, failure.SideSource, b.src.Addr()),
			Target: boundAccount(t, b.key, failure.SideTarget, b.tgt.Addr())}
		if err := b.run(b.acts.Connect, in, nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if o, g := b.src.Stats().Open, b.tgt.Stats().Open; o != 0 || g != 0 {
		t.Fatalf("after a dry run's 3 Connects: %d source and %d target connections open, idle for %s; want none (no dry-run session is ever reused)", o, g, DefaultSessionIdle)
	}
}

// holds reports whether a parked session holds a place in slot.
func (ss *Sessions) holds(slot string) bool {
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, list := range ss.parked {
		for _, p := range list {
			if p.slot == slot {
				return true
			}
		}
	}
	return false
}

package activities

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
)

// limiterClient is a Temporal client that runs one endpoint's limiter
// (engine.Leases, as the workflow does) in process, with random delays
// and lost updates on the way.
type limiterClient struct {
	client.Client
	mu        sync.Mutex
	leases    engine.Leases
	rng       *rand.Rand
	failEvery int // every failEvery-th update fails (0: none)
	updates   atomic.Int64
	describes atomic.Int64
	gone      atomic.Bool // the limiter ended: updates find no workflow
	down      atomic.Bool // Temporal unreachable: every update fails
}

func (c *limiterClient) delay() {
	c.mu.Lock()
	d := time.Duration(c.rng.Intn(30)) * time.Millisecond
	c.mu.Unlock()
	time.Sleep(d)
}

func (c *limiterClient) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	c.describes.Add(1)
	c.mu.Lock()
	l := c.leases.Limits
	c.mu.Unlock()
	info := &workflowpb.WorkflowExecutionInfo{Status: enums.WORKFLOW_EXECUTION_STATUS_RUNNING}
	if l.Limited() {
		p, _ := converter.GetDefaultDataConverter().ToPayload(l)
		info.Memo = &commonpb.Memo{Fields: map[string]*commonpb.Payload{MemoEndpointLimits: p}}
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: info}, nil
}

func (c *limiterClient) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	n := c.updates.Add(1)
	c.delay()
	if c.down.Load() {
		return nil, errors.New("fake: unreachable")
	}
	if c.gone.Load() {
		return nil, serviceerror.NewNotFound("workflow not found")
	}
	if c.failEvery > 0 && n%int64(c.failEvery) == 0 {
		return nil, errors.New("fake: update lost")
	}
	c.mu.Lock()
	res := c.leases.Sync(time.Now(), o.Args[0].(engine.LeaseSync))
	c.mu.Unlock()
	if c.failEvery > 0 && n%int64(c.failEvery) == 1 {
		// Applied, but the answer is lost.
		return nil, errors.New("fake: answer lost")
	}
	c.delay()
	return leaseHandle{res}, nil
}

type leaseHandle struct{ res engine.LeaseSyncResult }

func (leaseHandle) WorkflowID() string { return "" }
func (leaseHandle) RunID() string      { return "" }
func (leaseHandle) UpdateID() string   { return "" }
func (h leaseHandle) Get(_ context.Context, v any) error {
	*v.(*engine.LeaseSyncResult) = h.res
	return nil
}

// TestEndpointsHoldLimitsAcrossWorkers runs three workers' Endpoints
// against one limiter, with 12 copies that ask, wait, give up, take
// spares and let go at random, through delayed and lost updates: never
// more than the cap connected at once, never more dials in a second
// than the rate allows, measured where the dials happen.
func TestEndpointsHoldLimitsAcrossWorkers(t *testing.T) {
	const maxConns, rate = 4, 20.0
	c := &limiterClient{rng: rand.New(rand.NewSource(1)), failEvery: 7}
	c.leases.Limits = engine.EndpointLimits{MaxConnections: maxConns, ConnectionRate: rate}
	var open, peak atomic.Int64
	var mu sync.Mutex
	var dials []time.Time
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for w := range 3 {
		e := NewEndpoints(c, nil)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewSource(int64(w*100 + g)))
				for time.Now().Before(stop) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(200+rng.Intn(3000))*time.Millisecond)
					p, err := e.Acquire(ctx, failure.SideSource, "imap.example:993", []string{"u1", "u2"}[rng.Intn(2)], rng.Intn(4) == 0)
					if err == nil && p == nil {
						t.Error("no permit for a limited endpoint")
					}
					if err == nil {
						err = p.Wait(ctx)
					}
					if err == nil {
						mu.Lock()
						dials = append(dials, time.Now())
						mu.Unlock()
						n := open.Add(1)
						for {
							if m := peak.Load(); n <= m || peak.CompareAndSwap(m, n) {
								break
							}
						}
						time.Sleep(time.Duration(rng.Intn(50)) * time.Millisecond)
						open.Add(-1)
					}
					if p != nil {
						p.Release()
					}
					cancel()
				}
			}()
		}
	}
	wg.Wait()
	if peak.Load() > maxConns {
		t.Fatalf("%d connected at once, cap %d", peak.Load(), maxConns)
	}
	slices.SortFunc(dials, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i := range dials {
		j := i
		for j < len(dials) && dials[j].Sub(dials[i]) < time.Second {
			j++
		}
		most = max(most, j-i)
	}
	if most > int(math.Ceil(rate)) {
		t.Fatalf("%d dials within a second, rate %g", most, rate)
	}
	if len(dials) < 20 {
		t.Fatalf("only %d dials in 3s: the copies starved", len(dials))
	}
	t.Logf("%d dials, peak %d open, peak %d dials in a second, %d updates", len(dials), peak.Load(), most, c.updates.Load())
	// Everything let go reaches the limiter.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		n := len(c.leases.Held)
		c.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leases still held after every copy let go", n)
		}
	}
}

// TestEndpointsWithoutLimitsAskNothing: an endpoint without limits costs
// one describe per limitsTTL, and no update, however many connections.
func TestEndpointsWithoutLimitsAskNothing(t *testing.T) {
	c := &limiterClient{rng: rand.New(rand.NewSource(1))}
	e := NewEndpoints(c, nil)
	for range 100 {
		p, err := e.Acquire(context.Background(), failure.SideTarget, "imap.example:993", "u", false)
		if p != nil || err != nil {
			t.Fatalf("Acquire = %v, %v; want no permit", p, err)
		}
	}
	if c.describes.Load() != 1 || c.updates.Load() != 0 {
		t.Fatalf("%d describes, %d updates; want 1 and 0", c.describes.Load(), c.updates.Load())
	}
	var none *Endpoints
	if p, err := none.Acquire(context.Background(), failure.SideTarget, "x:1", "u", false); p != nil || err != nil {
		t.Fatal("a nil Endpoints must not limit")
	}
}

// TestEndpointsLimiterGoneLimitsNothing: a limiter that ended (its limits
// removed) answers no update; the copies waiting go on without a lease,
// and the worker stops asking.
func TestEndpointsLimiterGoneLimitsNothing(t *testing.T) {
	c := &limiterClient{rng: rand.New(rand.NewSource(1))}
	c.leases.Limits = engine.EndpointLimits{MaxConnections: 1}
	e := NewEndpoints(c, nil)
	ctx := context.Background()
	first, err := e.Acquire(ctx, failure.SideSource, "imap.example:993", "u", false)
	if err != nil || first == nil {
		t.Fatalf("first Acquire = %v, %v; want a lease", first, err)
	}
	got := make(chan error, 1)
	go func() {
		p, err := e.Acquire(ctx, failure.SideSource, "imap.example:993", "u", false)
		if err == nil && p != nil {
			err = errors.New("a lease beyond the cap")
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	c.gone.Store(true)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting copy still waits for a limiter that ended")
	}
	first.Release()
	time.Sleep(300 * time.Millisecond)
	n := c.updates.Load()
	time.Sleep(time.Second)
	if c.updates.Load() != n {
		t.Fatalf("the worker kept asking a limiter that ended: %d updates, then %d", n, c.updates.Load())
	}
}

// TestEndpointsCutConnectionsWhoseLeaseCannotBeRenewed: a worker cut off
// from Temporal ends the connections of its leases before the limiter
// hands them on.
func TestEndpointsCutConnectionsWhoseLeaseCannotBeRenewed(t *testing.T) {
	c := &limiterClient{rng: rand.New(rand.NewSource(1))}
	c.leases.Limits = engine.EndpointLimits{MaxConnections: 2}
	e := NewEndpoints(c, nil)
	e.renew, e.lostAfter = 100*time.Millisecond, 500*time.Millisecond
	p, err := e.Acquire(context.Background(), failure.SideSource, "imap.example:993", "u", false)
	if err != nil || p == nil {
		t.Fatalf("Acquire = %v, %v", p, err)
	}
	select {
	case <-p.Lost():
		t.Fatal("lease lost while renewals work")
	case <-time.After(time.Second):
	}
	c.down.Store(true)
	select {
	case <-p.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("lease not given up after renewals failed")
	}
	p.Release()
}

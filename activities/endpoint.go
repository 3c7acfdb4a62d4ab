package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.uber.org/zap"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
)

// limitsTTL is how long a worker trusts what it read of an endpoint's
// limits: a new setting reaches every worker within it. A worker that
// holds or asks for leases learns it sooner, from each answer.
const limitsTTL = 30 * time.Second

// syncTimeout bounds one lease update.
const syncTimeout = 10 * time.Second

// errSlotMissed: a spare's grant came too late to dial in its slot.
var errSlotMissed = errors.New("connection slot missed")

// errConnLeaseLost cuts a connection whose lease could not be renewed: the
// limiter may have given it to another worker.
var errConnLeaseLost = errors.New("connection lease lost: its endpoint's limiter could not be reached for renewal")

// Endpoints gets this worker connection leases from the endpoints'
// limiter workflows (workflows.EndpointLimiter), so that the limits of
// `batch start --source-max-connections/--source-connection-rate` hold
// across all workers. A lease is asked before the dial and given back
// when the session closes; one update per endpoint carries all this
// worker's asks, renewals and releases, never more than one at a time. An
// endpoint without limits costs one describe call per limitsTTL, not one
// per connection. A nil *Endpoints limits nothing.
type Endpoints struct {
	client client.Client
	worker string
	logger *zap.Logger
	seq    atomic.Int64
	// renew is how often the worker renews the leases it holds, lostAfter
	// how long it goes on without a renewal before it cuts their
	// connections (engine.LeaseRenew, half of engine.LeaseTTL).
	renew, lostAfter time.Duration

	// idle, when set, closes this worker's idle connections to an
	// endpoint other workers wait for (Sessions.evict).
	idle func(side failure.Side, addr string)

	mu  sync.Mutex
	eps map[string]*endpoint
}

// OnCrowded makes the worker close its idle connections to an endpoint
// whose limiter has requests in line that its cap holds up, this
// worker's or others', with f: the parked sessions that would otherwise
// hold their leases until they time out.
func (e *Endpoints) OnCrowded(f func(side failure.Side, addr string)) {
	if e != nil {
		e.idle = f
	}
}

// Crowded reports whether the endpoint's limiter said, at its last
// answer to this worker, that its cap holds requests up: a connection
// that is done should close rather than wait idle for its move.
func (e *Endpoints) Crowded(side failure.Side, addr string) bool {
	if e == nil {
		return false
	}
	e.mu.Lock()
	ep, ok := e.eps[EndpointWorkflowID(side, addr)]
	e.mu.Unlock()
	if !ok {
		return false
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.crowded > 0
}

// NewEndpoints asks the limiters through c; logger may be nil.
func NewEndpoints(c client.Client, logger *zap.Logger) *Endpoints {
	host, _ := os.Hostname()
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Endpoints{client: c, logger: logger, eps: map[string]*endpoint{}, renew: engine.LeaseRenew, lostAfter: engine.LeaseTTL / 2,
		worker: fmt.Sprintf("%s:%d:%x", host, os.Getpid(), time.Now().UnixNano()&0xffffff)}
}

// Acquire waits for a lease to connect to addr on side as user; nil when
// the endpoint has no limits. noWait: a spare connection, refused
// (errSlotMissed or ok false) rather than queued.
func (e *Endpoints) Acquire(ctx context.Context, side failure.Side, addr, user string, noWait bool) (*Permit, error) {
	if e == nil {
		return nil, nil
	}
	ep := e.endpoint(side, addr)
	if !ep.limited(ctx).Limited() {
		return nil, nil
	}
	return ep.acquire(ctx, strings.ToLower(user), noWait)
}

func (e *Endpoints) endpoint(side failure.Side, addr string) *endpoint {
	id := EndpointWorkflowID(side, addr)
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.eps[id]
	if !ok {
		ep = &endpoint{e: e, id: id, side: side, addr: addr, held: map[string]*Permit{}, wake: make(chan struct{}, 1), lead: 200 * time.Millisecond}
		e.eps[id] = ep
	}
	return ep
}

// endpoint is this worker's side of one limiter.
type endpoint struct {
	e    *Endpoints
	id   string
	side failure.Side
	addr string

	// check serialises the reading of the limits.
	check   sync.Mutex
	mu      sync.Mutex
	limits  engine.EndpointLimits
	checked time.Time
	held    map[string]*Permit
	want    []*leaseAsk
	dirty   bool // a release or a dropped ask not told yet
	running bool
	wake    chan struct{}
	lead    time.Duration
	lastOK  time.Time
	crowded int // LeaseSyncResult.Crowded of the last answer
}

// leaseAsk is one Acquire waiting for its answer.
type leaseAsk struct {
	req  engine.LeaseRequest
	done chan *Permit // nil: refused
}

// Permit is one connection's lease: Wait before dialling, Release when
// the connection is closed; Lost is closed when the lease could not be
// renewed in time, and the connection must end.
type Permit struct {
	ep       *endpoint
	id       string
	user     string
	dialAt   time.Time
	noWait   bool
	released bool
	// free: the endpoint lost its limits while this was asked; it waits
	// for nothing and holds no lease.
	free     bool
	lost     chan struct{}
	lostOnce sync.Once
}

// limited returns the endpoint's limits, read from its limiter's memo at
// most once per limitsTTL.
func (ep *endpoint) limited(ctx context.Context) engine.EndpointLimits {
	ep.check.Lock()
	defer ep.check.Unlock()
	ep.mu.Lock()
	l, fresh := ep.limits, time.Since(ep.checked) < limitsTTL
	ep.mu.Unlock()
	if fresh {
		return l
	}
	dctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	d, err := ep.e.client.DescribeWorkflowExecution(dctx, ep.id, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		l = engine.EndpointLimits{}
	case err != nil:
		// Keep what we knew; try again soon.
		ep.e.logger.Warn("read endpoint limits", zap.String("endpoint", ep.id), zap.Error(err))
		ep.mu.Lock()
		ep.checked = time.Now().Add(5*time.Second - limitsTTL)
		ep.mu.Unlock()
		return l
	case d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
		l = engine.EndpointLimits{}
	default:
		l = engine.EndpointLimits{}
		if p := d.GetWorkflowExecutionInfo().GetMemo().GetFields()[MemoEndpointLimits]; p != nil {
			if err := converter.GetDefaultDataConverter().FromPayload(p, &l); err != nil {
				ep.e.logger.Warn("endpoint limits memo", zap.String("endpoint", ep.id), zap.Error(err))
			}
		}
	}
	ep.mu.Lock()
	ep.limits, ep.checked = l, time.Now()
	ep.mu.Unlock()
	return l
}

// acquire queues an ask and waits for its grant, its refusal or ctx.
func (ep *endpoint) acquire(ctx context.Context, user string, noWait bool) (*Permit, error) {
	a := &leaseAsk{req: engine.LeaseRequest{ID: fmt.Sprintf("%s#%d", ep.e.worker, ep.e.seq.Add(1)), User: user, NoWait: noWait}, done: make(chan *Permit, 1)}
	ep.mu.Lock()
	ep.want = append(ep.want, a)
	ep.kick()
	ep.mu.Unlock()
	select {
	case p := <-a.done:
		switch {
		case p == nil:
			return nil, errSlotMissed
		case p.free:
			return nil, nil
		}
		return p, nil
	case <-ctx.Done():
		ep.mu.Lock()
		ep.drop(a)
		ep.mu.Unlock()
		// Granted meanwhile: give it back.
		select {
		case p := <-a.done:
			if p != nil {
				p.Release()
			}
		default:
		}
		return nil, ctx.Err()
	}
}

// drop forgets an ask still waiting; ep.mu held.
func (ep *endpoint) drop(a *leaseAsk) {
	for i, w := range ep.want {
		if w == a {
			ep.want = append(ep.want[:i], ep.want[i+1:]...)
			ep.dirty = true
			ep.kick()
			return
		}
	}
}

// kick has the loop send an update soon, starting it if needed; ep.mu
// held.
func (ep *endpoint) kick() {
	if !ep.running {
		ep.running = true
		go ep.loop()
	}
	select {
	case ep.wake <- struct{}{}:
	default:
	}
}

// loop sends this worker's LeaseSync whenever something changed, when a
// waiting ask should ask again and every engine.LeaseRenew, until it holds
// and wants nothing.
func (ep *endpoint) loop() {
	backoff := 100 * time.Millisecond
	for {
		ep.mu.Lock()
		if len(ep.want) == 0 && len(ep.held) == 0 && !ep.dirty {
			ep.running = false
			ep.mu.Unlock()
			return
		}
		s := engine.LeaseSync{Worker: ep.e.worker, Lead: ep.lead}
		for id := range ep.held {
			s.Held = append(s.Held, id)
		}
		for _, a := range ep.want {
			s.Want = append(s.Want, a.req)
		}
		ep.dirty = false
		ep.mu.Unlock()

		start := time.Now()
		res, err := ep.send(s)
		rtt := time.Since(start)
		next := ep.e.renew
		ep.mu.Lock()
		if err != nil {
			ep.dirty = true
			next, backoff = backoff, min(2*backoff, 5*time.Second)
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				// The limiter ended: no limits any more.
				ep.limits, ep.checked = engine.EndpointLimits{}, time.Now()
				ep.grantAll()
				ep.dirty = false
			} else if time.Since(ep.lastOK) > ep.e.lostAfter && len(ep.held) > 0 {
				for _, p := range ep.held {
					p.markLost()
				}
			}
			ep.e.logger.Warn("endpoint lease update", zap.String("endpoint", ep.id), zap.Error(err))
		} else {
			backoff = 100 * time.Millisecond
			ep.lastOK, ep.limits, ep.checked = time.Now(), res.Limits, time.Now()
			ep.learn(rtt)
			ep.answer(res)
			if res.Retry > 0 && len(ep.want) > 0 {
				next = res.Retry
			}
			ep.crowded = res.Crowded
			if res.Crowded > 0 && ep.e.idle != nil {
				go ep.e.idle(ep.side, ep.addr)
			}
		}
		ep.mu.Unlock()
		t := time.NewTimer(next)
		select {
		case <-ep.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// send is one UpdateLeases call.
func (ep *endpoint) send(s engine.LeaseSync) (engine.LeaseSyncResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	var res engine.LeaseSyncResult
	h, err := ep.e.client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: ep.id, UpdateName: UpdateLeases, Args: []any{s}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	return res, err
}

// learn sets the lead from the round trip: a grant's answer must arrive
// before its DialAt; ep.mu held.
func (ep *endpoint) learn(rtt time.Duration) {
	target := 3*rtt + 20*time.Millisecond
	if target > ep.lead {
		ep.lead = target
	} else {
		ep.lead = (7*ep.lead + target) / 8
	}
	ep.lead = min(max(ep.lead, 50*time.Millisecond), engine.MaxLead)
}

// answer hands grants and refusals to their asks; ep.mu held. A grant
// for an ask dropped meanwhile is left out of the next update, which
// releases it.
func (ep *endpoint) answer(res engine.LeaseSyncResult) {
	for _, g := range res.Granted {
		i := ep.ask(g.ID)
		if i < 0 {
			ep.dirty = true
			continue
		}
		a := ep.want[i]
		ep.want = append(ep.want[:i], ep.want[i+1:]...)
		p := &Permit{ep: ep, id: g.ID, user: a.req.User, dialAt: g.DialAt, noWait: a.req.NoWait, lost: make(chan struct{})}
		ep.held[g.ID] = p
		a.done <- p
	}
	for _, id := range res.Refused {
		if i := ep.ask(id); i >= 0 {
			ep.want[i].done <- nil
			ep.want = append(ep.want[:i], ep.want[i+1:]...)
		}
	}
}

// grantAll answers every ask with a permit that waits for nothing: the
// endpoint has no limits any more; ep.mu held.
func (ep *endpoint) grantAll() {
	for _, a := range ep.want {
		a.done <- &Permit{ep: ep, id: a.req.ID, released: true, free: true, lost: make(chan struct{})}
	}
	ep.want = nil
	clear(ep.held)
}

func (ep *endpoint) ask(id string) int {
	for i, a := range ep.want {
		if a.req.ID == id {
			return i
		}
	}
	return -1
}

// Wait waits until the permit's dial time. A grant that came, or a wait
// that ended, more than engine.DialTolerance late gives its slot up and
// asks for another (a spare gives up: errSlotMissed), so that dials keep
// the endpoint's rate whatever the delays.
func (p *Permit) Wait(ctx context.Context) error {
	for {
		p.ep.mu.Lock()
		at, free := p.dialAt, p.free
		p.ep.mu.Unlock()
		if free || at.IsZero() {
			// No limits any more, or no rate: no slot to keep.
			return nil
		}
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if time.Since(at) <= engine.DialTolerance {
			return nil
		}
		if p.noWait {
			return errSlotMissed
		}
		if err := p.reslot(ctx); err != nil {
			return err
		}
	}
}

// reslot trades the permit's lease for a new one, asked at the end of the
// line: its own would otherwise count against the cap it waits for.
func (p *Permit) reslot(ctx context.Context) error {
	ep := p.ep
	ep.mu.Lock()
	ep.lead = min(2*ep.lead, engine.MaxLead)
	delete(ep.held, p.id)
	ep.dirty = true
	ep.mu.Unlock()
	np, err := ep.acquire(ctx, p.user, false)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if err != nil || np == nil {
		// Refused, or the endpoint lost its limits: nothing to hold.
		p.released, p.free = true, err == nil
		return err
	}
	delete(ep.held, np.id)
	p.id, p.dialAt = np.id, np.dialAt
	ep.held[p.id] = p
	return nil
}

// Release gives the lease back; the next update tells the limiter. It may
// be called more than once.
func (p *Permit) Release() {
	ep := p.ep
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if p.released {
		return
	}
	p.released = true
	delete(ep.held, p.id)
	ep.dirty = true
	ep.kick()
}

// Lost is closed when the lease could not be renewed for half of
// engine.LeaseTTL: the connection must end before the limiter frees it
// (closing a session takes at most 10 s, the next failed update at most
// 5 s).
func (p *Permit) Lost() <-chan struct{} { return p.lost }

func (p *Permit) markLost() { p.lostOnce.Do(func() { close(p.lost) }) }

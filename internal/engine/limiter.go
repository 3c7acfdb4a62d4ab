package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Limiter caps the connections one process holds to each server (any key:
// activities use side and host:port),
// so that a worker running many moves cannot exceed a server's connection
// limit: a copy that would need one more waits for a free slot instead of
// being refused. The zero value and a nil *Limiter impose no cap.
type Limiter struct {
	max int

	mu      sync.Mutex
	slots   map[string]chan struct{}
	waiting map[string]int
}

// NewLimiter allows max connections per server; max <= 0 means no cap.
func NewLimiter(max int) *Limiter {
	return &Limiter{max: max, slots: map[string]chan struct{}{}, waiting: map[string]int{}}
}

// Acquire waits for a free slot for addr, or for ctx to end. The returned
// function gives the slot back; call it exactly once.
func (l *Limiter) Acquire(ctx context.Context, addr string) (release func(), err error) {
	return l.AcquireOr(ctx, addr, nil)
}

// AcquireOr is Acquire calling onWait, when there is no free slot, once
// the caller counts as waiting (Waiting reports it) and before it
// blocks: a holder that checks Waiting after onWait ran sees the caller,
// so idle holders can be told to give their slot up without a gap.
func (l *Limiter) AcquireOr(ctx context.Context, addr string, onWait func()) (release func(), err error) {
	if l == nil || l.max <= 0 {
		return func() {}, nil
	}
	ch := l.slotsOf(addr)
	select {
	case ch <- struct{}{}:
		return releaser(ch), nil
	default:
	}
	l.mu.Lock()
	l.waiting[addr]++
	l.mu.Unlock()
	if onWait != nil {
		onWait()
	}
	defer func() {
		l.mu.Lock()
		l.waiting[addr]--
		l.mu.Unlock()
	}()
	select {
	case ch <- struct{}{}:
		return releaser(ch), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Waiting reports whether a caller waits for a slot for addr: an idle
// connection holding one should give it up.
func (l *Limiter) Waiting(addr string) bool {
	if l == nil || l.max <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting[addr] > 0
}

// TryAcquire takes a free slot for addr if there is one now, without
// waiting: for connections a copy can do without, which must never wait
// while holding others.
func (l *Limiter) TryAcquire(addr string) (release func(), ok bool) {
	if l == nil || l.max <= 0 {
		return func() {}, true
	}
	ch := l.slotsOf(addr)
	select {
	case ch <- struct{}{}:
		return releaser(ch), true
	default:
		return nil, false
	}
}

func (l *Limiter) slotsOf(addr string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.slots[addr]
	if !ok {
		ch = make(chan struct{}, l.max)
		l.slots[addr] = ch
	}
	return ch
}

func releaser(ch chan struct{}) func() {
	var once sync.Once
	return func() { once.Do(func() { <-ch }) }
}

// EndpointLimits are the limits of one endpoint (a server's host:port and
// the side it is on) that hold across every worker and every batch naming
// it: the state of its limiter workflow, whose leases (Leases) the
// workers ask for before they dial. The zero value limits nothing.
type EndpointLimits struct {
	// MaxConnections: connections open at once (0: no cap).
	MaxConnections int `json:",omitempty"`
	// ConnectionRate: new connections per second (0: no cap), spaced
	// evenly, without a burst (Leases.Spacing).
	ConnectionRate float64 `json:",omitempty"`
	// ConnectionsPerUser: connections open at once per user (0: no cap);
	// the provider's per-user cap (internal/profile).
	ConnectionsPerUser int `json:",omitempty"`
}

// Limited reports whether any limit is set: without one, workers ask no
// lease.
func (l EndpointLimits) Limited() bool {
	return l.MaxConnections > 0 || l.ConnectionRate > 0 || l.ConnectionsPerUser > 0
}

func (l EndpointLimits) String() string {
	return fmt.Sprintf("max %d connections, %g new per second, %d per user", l.MaxConnections, l.ConnectionRate, l.ConnectionsPerUser)
}

// Lease timing. A worker renews the leases it holds every LeaseRenew; a
// lease not renewed for LeaseTTL is freed (its worker died or lost
// Temporal; a live worker that cannot renew closes the connection first,
// see activities). A request not asked again for WaiterTTL is forgotten.
const (
	LeaseTTL   = time.Minute
	LeaseRenew = LeaseTTL / 4
	WaiterTTL  = 10 * time.Second
	// DialTolerance is how late after its DialAt a worker may still open
	// the connection; later, it gives the slot up and asks again. It is
	// added to the spacing of grants, so that dials that happen anywhere in
	// [DialAt, DialAt+DialTolerance] still keep the rate (Leases.Spacing).
	DialTolerance = 100 * time.Millisecond
	// DialGuard is added to the spacing too: what may pass between the
	// worker's last look at the clock and the server's accept (the
	// worker's scheduling, the connect) and the skew between workers'
	// clocks, on top of DialTolerance.
	DialGuard = 150 * time.Millisecond
	// GrantHorizon: a request is granted a rate slot at most this far
	// beyond the worker's lead; later slots wait for the next ask, so that
	// no worker holds a permit long without a connection.
	GrantHorizon = 2 * time.Second
	// LeasePoll is how soon a worker asks again for a request waiting for
	// a free connection.
	LeasePoll = 500 * time.Millisecond
	// MaxLead bounds the lead a worker asks for (LeaseSync.Lead).
	MaxLead = 5 * time.Second
)

// Lease is one granted connection: from its grant until its worker
// releases it (the session closed) or it expires.
type Lease struct {
	ID     string
	Worker string
	User   string `json:",omitempty"`
	// DialAt: the worker opens the connection at this time (its clock),
	// at the latest DialTolerance after; zero without a rate: at once.
	DialAt  time.Time `json:",omitempty"`
	Expires time.Time
}

// LeaseWaiter is a request waiting for a lease, in the order asked.
type LeaseWaiter struct {
	ID     string
	Worker string
	User   string `json:",omitempty"`
	Seen   time.Time
	NoWait bool `json:",omitempty"`
}

// LeaseRequest asks for one connection for User.
type LeaseRequest struct {
	ID   string
	User string `json:",omitempty"`
	// NoWait: grant it now or refuse it; it never waits in line (a spare
	// connection, which a copy holding others must never wait for).
	NoWait bool `json:",omitempty"`
}

// LeaseSync is everything one worker says to an endpoint's limiter in one
// update: it is idempotent, so a lost answer is made up by sending again.
type LeaseSync struct {
	Worker string
	// Held are the leases the worker keeps: they are renewed. Every other
	// lease of the worker that is not asked for in Want is released.
	Held []string `json:",omitempty"`
	// Want are the requests not granted yet, in the order asked; a
	// request asked again keeps its place, and one granted before (whose
	// answer was lost) is answered with the same grant.
	Want []LeaseRequest `json:",omitempty"`
	// Lead is how long the worker needs to receive a grant: a grant's
	// DialAt is never sooner than that after it is made.
	Lead time.Duration `json:",omitempty"`
}

// LeaseGrant is a granted request.
type LeaseGrant struct {
	ID string
	// DialAt is Lease.DialAt: zero, dial at once.
	DialAt time.Time `json:",omitempty"`
}

// LeaseSyncResult answers a LeaseSync.
type LeaseSyncResult struct {
	Granted []LeaseGrant `json:",omitempty"`
	// Refused are the NoWait requests that could not be granted now.
	Refused []string `json:",omitempty"`
	// Retry: ask again this soon for the requests still waiting.
	Retry  time.Duration `json:",omitempty"`
	Limits EndpointLimits
	// Crowded counts the requests in line that the connection cap or
	// their user's holds up (not the rate): a worker that keeps idle
	// connections to the endpoint gives them up.
	Crowded int `json:",omitempty"`
}

// Leases is the state of an endpoint's limiter: the limits, the leases
// granted and the requests waiting. It is plain data (carried across
// continue-as-new) and deterministic: time comes in as now, from the
// workflow.
//
// What it keeps, stated once:
//   - a request is granted only while fewer than Limits.MaxConnections
//     leases are held, and fewer than Limits.ConnectionsPerUser of its
//     user's, counting the requests of other workers ahead of it in line
//     as held (they are served at their next ask, in order);
//   - the DialAt of any two grants are at least Spacing apart, so with
//     every dial in [DialAt, DialAt+DialTolerance] and reaching the
//     server within DialGuard, at most ⌈R⌉ connections are opened in any
//     window [t, t+1s), and no more than 1+R·T in any T seconds: no
//     burst;
//   - a lease ends when its worker no longer names it, or LeaseTTL after
//     its last renewal.
//
// Lowering MaxConnections below the leases held grants nothing until they
// fall below it; nothing already open is cut.
type Leases struct {
	Limits   EndpointLimits
	Held     []Lease       `json:",omitempty"`
	Waiting  []LeaseWaiter `json:",omitempty"`
	LastDial time.Time     `json:",omitempty"`
}

// Spacing is the least time between two grants' DialAt: (1s +
// DialTolerance + DialGuard) / ConnectionRate; 0 without a rate.
func (l *Leases) Spacing() time.Duration {
	if l.Limits.ConnectionRate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second+DialTolerance+DialGuard) / l.Limits.ConnectionRate)
}

// Expire frees the leases not renewed in time and forgets the requests
// not asked again.
func (l *Leases) Expire(now time.Time) {
	l.Held = slices.DeleteFunc(l.Held, func(x Lease) bool { return now.After(x.Expires) })
	l.Waiting = slices.DeleteFunc(l.Waiting, func(w LeaseWaiter) bool { return now.Sub(w.Seen) > WaiterTTL })
}

// Sync takes one worker's LeaseSync at now: it renews and releases the
// worker's leases, queues its new requests and grants what the limits
// allow.
func (l *Leases) Sync(now time.Time, s LeaseSync) LeaseSyncResult {
	l.Expire(now)
	held := map[string]bool{}
	for _, id := range s.Held {
		held[id] = true
	}
	want := map[string]LeaseRequest{}
	for _, r := range s.Want {
		want[r.ID] = r
	}
	res := LeaseSyncResult{Limits: l.Limits}
	// The worker's own leases: renewed, granted again, or released.
	l.Held = slices.DeleteFunc(l.Held, func(x Lease) bool {
		return x.Worker == s.Worker && !held[x.ID] && want[x.ID].ID == ""
	})
	granted := map[string]bool{}
	for i := range l.Held {
		x := &l.Held[i]
		if x.Worker != s.Worker {
			continue
		}
		x.Expires = later(now, x.DialAt).Add(LeaseTTL)
		if _, ok := want[x.ID]; ok {
			granted[x.ID] = true
			res.Granted = append(res.Granted, LeaseGrant{ID: x.ID, DialAt: x.DialAt})
		}
	}
	// Its requests: those it no longer asks for are dropped, the others
	// keep their place, new ones queue at the end.
	l.Waiting = slices.DeleteFunc(l.Waiting, func(w LeaseWaiter) bool {
		return w.Worker == s.Worker && want[w.ID].ID == ""
	})
	queued := map[string]bool{}
	for i := range l.Waiting {
		if w := &l.Waiting[i]; w.Worker == s.Worker {
			w.Seen, queued[w.ID] = now, true
		}
	}
	for _, r := range s.Want {
		if r.ID == "" || granted[r.ID] || queued[r.ID] {
			continue
		}
		queued[r.ID] = true
		l.Waiting = append(l.Waiting, LeaseWaiter{ID: r.ID, Worker: s.Worker, User: r.User, Seen: now, NoWait: r.NoWait})
	}
	res.Retry = l.grant(now, s, &res)
	return res
}

// grant serves the line in order at now; only the syncing worker's
// requests are granted, those of others ahead of them are counted as
// held. It returns how soon the worker should ask again for requests
// still waiting (0: none wait).
func (l *Leases) grant(now time.Time, s LeaseSync, res *LeaseSyncResult) time.Duration {
	lead := min(max(s.Lead, 0), MaxLead)
	total, perUser := len(l.Held), map[string]int{}
	for _, x := range l.Held {
		perUser[x.User]++
	}
	lim := l.Limits
	full, retry := false, time.Duration(0)
	kept := l.Waiting[:0]
	for _, w := range l.Waiting {
		mine := w.Worker == s.Worker
		switch {
		case full || lim.MaxConnections > 0 && total >= lim.MaxConnections:
			if lim.MaxConnections > 0 && total >= lim.MaxConnections {
				res.Crowded++
			}
			full = true
		case lim.ConnectionsPerUser > 0 && perUser[w.User] >= lim.ConnectionsPerUser:
			// Its user is at the cap: it does not hold up the others.
			res.Crowded++
		case !mine:
			total++
			perUser[w.User]++
		case l.Spacing() == 0:
			// No rate: dial at once, no slot to keep.
			l.Held = append(l.Held, Lease{ID: w.ID, Worker: w.Worker, User: w.User, Expires: now.Add(LeaseTTL)})
			res.Granted = append(res.Granted, LeaseGrant{ID: w.ID})
			total++
			perUser[w.User]++
			continue
		default:
			at := now.Add(lead)
			if sp := l.Spacing(); l.LastDial.Add(sp).After(at) {
				at = l.LastDial.Add(sp)
			}
			ahead := at.Sub(now.Add(lead))
			if ahead > GrantHorizon || w.NoWait && ahead > 0 {
				// Rate slots go out in order too: nobody behind it is
				// served sooner.
				full = true
				if !w.NoWait {
					retry = ahead - GrantHorizon
				}
				break
			}
			l.LastDial = at
			l.Held = append(l.Held, Lease{ID: w.ID, Worker: w.Worker, User: w.User, DialAt: at, Expires: at.Add(LeaseTTL)})
			res.Granted = append(res.Granted, LeaseGrant{ID: w.ID, DialAt: at})
			total++
			perUser[w.User]++
			continue
		}
		if mine && w.NoWait {
			res.Refused = append(res.Refused, w.ID)
			continue
		}
		kept = append(kept, w)
	}
	l.Waiting = kept
	for _, w := range l.Waiting {
		if w.Worker != s.Worker {
			continue
		}
		if retry > 0 {
			return max(retry, LeasePoll/10)
		}
		return LeasePoll
	}
	return 0
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

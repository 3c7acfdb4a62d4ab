package activities

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
)

// DefaultSessionIdle is how long a parked session waits for its move's
// next call: long enough for the next chunk or the verification, which
// follow within seconds, well short of the minutes after which firewalls
// and NATs drop idle connections, and of a server's autologout (30
// minutes at least, RFC 9051).
const DefaultSessionIdle = 45 * time.Second

// sessionMaxAge: a session this old is logged out rather than parked
// again, so an OAuth2 logon is renewed well before its token expires and a
// server that rebalances users gets each one back within minutes.
const sessionMaxAge = 15 * time.Minute

// Sessions keeps the IMAP sessions of calls that ended well for the next
// call of the same move on this worker: the chunks of a copy, the passes of
// an incremental sync and the verification then log on a few times a move
// instead of once per call (each logon costs a TLS handshake and several
// round trips, and a firewall counts it). A session is only ever reused by
// the move that opened it, with the same account, sealed password and
// server; it is handed over with no folder selected, and asked whether it
// still stands (NOOP) before it is used. A parked session keeps its place
// in this worker's connection cap and its endpoint lease, since it is an
// open connection; a call that needs a place the parked ones hold closes
// them first. A nil *Sessions keeps nothing.
type Sessions struct {
	idle time.Duration
	// moveOf names the move of an activity's context; tests stand in
	// for the workflow ID, which the SDK's test environment fixes.
	moveOf func(context.Context) string

	mu     sync.Mutex
	parked map[sessionKey][]*parkedSession
	closed bool

	logons, reuses atomic.Int64
}

// sessionKey is what a parked session may be reused for: the same move,
// side and account (server, user, credentials, as sealed).
type sessionKey struct {
	move    string
	side    failure.Side
	account [32]byte
}

type parkedSession struct {
	s     *engine.Session
	slot  string // slotKey: its place in this worker's cap
	since time.Time
	timer *time.Timer
}

// NewSessions keeps sessions idle at most idle (DefaultSessionIdle when
// zero).
func NewSessions(idle time.Duration) *Sessions {
	if idle <= 0 {
		idle = DefaultSessionIdle
	}
	return &Sessions{idle: idle, parked: map[sessionKey][]*parkedSession{},
		moveOf: func(ctx context.Context) string { return activity.GetInfo(ctx).WorkflowExecution.ID }}
}

// Counts are the logons and the reuses of parked sessions so far.
func (ss *Sessions) Counts() (logons, reuses int64) {
	if ss == nil {
		return 0, 0
	}
	return ss.logons.Load(), ss.reuses.Load()
}

func (ss *Sessions) loggedOn() {
	if ss != nil {
		ss.logons.Add(1)
	}
}

// key is the key of side's account in the move ctx's activity belongs to;
// ok is false outside an activity (nothing is kept then).
func (ss *Sessions) key(ctx context.Context, side failure.Side, acc Account) (sessionKey, bool) {
	if ss == nil || !activity.IsActivity(ctx) {
		return sessionKey{}, false
	}
	b, err := json.Marshal(acc)
	if err != nil {
		return sessionKey{}, false
	}
	return sessionKey{move: ss.moveOf(ctx), side: side, account: sha256.Sum256(b)}, true
}

// take hands the call the newest session parked for its move's side, bound
// to ctx and checked alive, or nil.
func (ss *Sessions) take(ctx context.Context, side failure.Side, acc Account) *engine.Session {
	k, ok := ss.key(ctx, side, acc)
	if !ok {
		return nil
	}
	for {
		ss.mu.Lock()
		list := ss.parked[k]
		if len(list) == 0 {
			ss.mu.Unlock()
			return nil
		}
		p := list[len(list)-1]
		ss.unpark(k, p)
		ss.mu.Unlock()
		if p.s.Bind(ctx) && p.s.Alive(ctx) {
			ss.reuses.Add(1)
			return p.s
		}
		p.s.Close()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// unpark removes p from the parked sessions; ss.mu held.
func (ss *Sessions) unpark(k sessionKey, p *parkedSession) {
	p.timer.Stop()
	list := ss.parked[k]
	for i, q := range list {
		if q == p {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(ss.parked, k)
	} else {
		ss.parked[k] = list
	}
}

// keep parks s for the next call of ctx's move, or closes it: outside an
// activity, on a worker that keeps nothing, when it is too old, when it
// cannot be left without a folder selected, or when crowded says calls
// wait for its place (asked under the lock evict takes, so that a waiter
// counted before its evict never misses it). Call it only when the call
// that used s ended well: a failed call's sessions may be mid-command.
func (ss *Sessions) keep(ctx context.Context, side failure.Side, acc Account, s *engine.Session, crowded func() bool) {
	k, ok := ss.key(ctx, side, acc)
	if !ok || time.Since(s.Opened) > sessionMaxAge || !s.Reusable(ctx) || !s.Bind(context.Background()) {
		s.Close()
		return
	}
	p := &parkedSession{s: s, slot: slotKey(side, acc), since: time.Now()}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed || crowded != nil && crowded() {
		go s.Close()
		return
	}
	p.timer = time.AfterFunc(ss.idle, func() {
		ss.mu.Lock()
		found := false
		for _, q := range ss.parked[k] {
			found = found || q == p
		}
		if found {
			ss.unpark(k, p)
		}
		ss.mu.Unlock()
		if found {
			p.s.Close()
		}
	})
	ss.parked[k] = append(ss.parked[k], p)
}

// discard logs out s if it is parked (its lease was lost, say) and
// reports whether it was.
func (ss *Sessions) discard(s *engine.Session) bool {
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	var found *parkedSession
	for k, list := range ss.parked {
		for _, p := range list {
			if p.s == s {
				found = p
				ss.unpark(k, p)
				break
			}
		}
		if found != nil {
			break
		}
	}
	ss.mu.Unlock()
	if found == nil {
		return false
	}
	go s.Close()
	return true
}

// evict logs out the parked sessions holding a place in slot (a side and
// server: slotKey), so that a call waiting for one gets it. It reports
// how many it closed.
func (ss *Sessions) evict(slot string) int {
	if ss == nil {
		return 0
	}
	var out []*parkedSession
	ss.mu.Lock()
	for k, list := range ss.parked {
		var rest []*parkedSession
		for _, p := range list {
			if p.slot != slot {
				rest = append(rest, p)
				continue
			}
			p.timer.Stop()
			out = append(out, p)
		}
		if len(rest) == 0 {
			delete(ss.parked, k)
		} else {
			ss.parked[k] = rest
		}
	}
	ss.mu.Unlock()
	closeParked(out)
	return len(out)
}

// EvictEndpoint logs out the parked sessions to addr on side.
func (ss *Sessions) EvictEndpoint(side failure.Side, addr string) {
	ss.evict(endpointSlot(side, addr))
}

// Close logs out every parked session and parks none after: the worker is
// stopping.
func (ss *Sessions) Close() {
	if ss == nil {
		return
	}
	var out []*parkedSession
	ss.mu.Lock()
	ss.closed = true
	for k, list := range ss.parked {
		for _, p := range list {
			out = append(out, p)
			p.timer.Stop()
		}
		delete(ss.parked, k)
	}
	ss.mu.Unlock()
	closeParked(out)
}

// closeParked logs the sessions out in parallel: each may take a round
// trip, or seconds on a server gone silent.
func closeParked(ps []*parkedSession) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.s.Close() }()
	}
	wg.Wait()
}

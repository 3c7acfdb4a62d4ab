// Package faultproxy is a fault-injecting IMAP proxy for integration tests of
// failure handling: failed logons, locked mailboxes, throttling, servers
// that hang up, slow servers and connections dropped in the middle of a
// message.
//
// A Proxy listens on 127.0.0.1 and relays every accepted connection to one
// upstream IMAP server over plain TCP (no TLS, no STARTTLS, no COMPRESS).
// With no fault armed it is a byte-exact relay in both directions,
// pipelining and literals included. It parses only command and response
// boundaries: tags, command names, response names and the literals ({n},
// {n+}, ~{n}) announced at the end of a line.
//
// Faults are armed with methods on Proxy at any time, from any goroutine;
// they apply to new and existing connections alike. Count-based faults
// (FailLogins, ByeNext, RefuseConnections, CutFetchLiterals) are shared by
// all connections: FailLogins(2, ...) fails the next two logins whichever
// connections they come on. Calling an arming method again replaces the
// previous setting; n = 0 or d = 0 disarms it.
package faultproxy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault names a kind of injected failure, as counted in Stats.Injected.
type Fault string

// Fault kinds: one per way of arming a fault, and FaultUpstreamDown for
// connections the proxy closed because it could not reach the upstream.
const (
	FaultFailLogin    Fault = "FailLogins"
	FaultLockMailbox  Fault = "LockMailbox"
	FaultUnavailable  Fault = "Unavailable"
	FaultBye          Fault = "ByeNext"
	FaultRefuse       Fault = "RefuseConnections"
	FaultCutLiteral   Fault = "CutFetchLiterals"
	FaultDropConn     Fault = "DropConnections"
	FaultUpstreamDown Fault = "UpstreamDown"
)

const (
	// dialTimeout bounds the connection to the upstream server.
	dialTimeout = 10 * time.Second
	// drainTimeout bounds how long a closing connection keeps reading
	// what the client still sends; see conn.finish.
	drainTimeout = 2 * time.Second
)

// Stats counts what went through a Proxy since Start.
type Stats struct {
	// Connections counts accepted client connections, refused ones
	// included.
	Connections int
	// Open is the number of client connections whose socket the proxy
	// has not closed yet; a connection it ended stays open until the
	// client closes its side too, or for at most two seconds.
	Open int
	// Commands counts client commands by upper-case name; commands with
	// the UID prefix count as "UID FETCH", "UID STORE"... Commands the
	// proxy answered itself are included.
	Commands map[string]int
	// Injected counts injected failures by kind: answered commands,
	// refused, cut or dropped connections. Latency is not counted.
	Injected map[Fault]int
	// PeakOpen is the most connections Open at once, counted at each
	// accept (the accepted one included).
	PeakOpen int
	// PeakNewPerSecond is the most connections accepted within one
	// second: for each accept at time t, the accepts in (t-1s, t], the
	// one at t included. It is the most in any window [s, s+1s).
	PeakNewPerSecond int
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	upstream string
	ln       net.Listener
	wg       sync.WaitGroup // the accept loop and every connection goroutine
	latency  atomic.Int64   // time.Duration; read for every server line

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{}
	faults faults
	stats  Stats
	// accepts are the accept times of the last second, for
	// Stats.PeakNewPerSecond; acceptLog all of them (AcceptTimes).
	accepts   []time.Time
	acceptLog []time.Time
}

// faults is the armed state; guarded by Proxy.mu.
type faults struct {
	failLogins     int
	failLoginsText string

	lockedUntil time.Time

	unavailableUntil time.Time
	unavailableCode  string
	unavailableText  string

	byeNext int
	byeText string

	refuse     int
	refuseText string

	cuts     int
	cutAfter int64
}

// Start listens on 127.0.0.1 on a free port and relays each connection to
// upstream ("host:port"). The upstream is dialled once per accepted
// connection; if that fails, the client gets "* BYE" and is closed. The
// caller must Close the proxy.
func Start(upstream string) (*Proxy, error) {
	if upstream == "" {
		return nil, errors.New("start fault proxy: empty upstream address")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start fault proxy for %s: %w", upstream, err)
	}
	p := &Proxy{
		upstream: upstream,
		ln:       ln,
		conns:    map[*conn]struct{}{},
		stats:    Stats{Commands: map[string]int{}, Injected: map[Fault]int{}},
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// StartForTest starts a proxy to upstream for the duration of a test: it
// calls t.Fatal if the proxy cannot start, and closes it in t.Cleanup,
// logging its Stats if the test failed.
func StartForTest(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := Start(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			st := p.Stats()
			t.Logf("fault proxy %s -> %s: %d connections, commands %v, injected %v",
				p.Addr(), p.upstream, st.Connections, st.Commands, st.Injected)
		}
		if err := p.Close(); err != nil {
			t.Errorf("close fault proxy: %v", err)
		}
	})
	return p
}

// Addr returns the address clients connect to, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Upstream returns the address of the server behind the proxy.
func (p *Proxy) Upstream() string { return p.upstream }

// Close stops accepting connections, closes every open one at once (clients
// see the connection end without a BYE) and returns when all the proxy's
// goroutines have finished. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()

	for _, c := range conns {
		c.kill()
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close fault proxy: %w", err)
	}
	return nil
}

// FailLogins makes the proxy answer the next n LOGIN or AUTHENTICATE
// commands itself with "TAG NO [AUTHENTICATIONFAILED] text" instead of
// forwarding them; the server never sees them, so the connection stays
// not authenticated and the client may try again on it. Literals in the
// command are read and discarded (the proxy sends "+ Ready" for
// synchronizing ones). An AUTHENTICATE without initial response is answered
// at once, without a continuation request. Empty text means
// "Authentication failed.".
func (p *Proxy) FailLogins(n int, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults.failLogins = max(n, 0)
	p.faults.failLoginsText = orDefault(text, "Authentication failed.")
}

// LockMailbox makes the proxy answer every SELECT and EXAMINE of an
// authenticated connection with "TAG NO [INUSE] Mailbox is locked" for the
// next d, without forwarding them. Unlike a server refusing SELECT, the
// mailbox selected before (if any) stays selected on the server. d <= 0
// lifts the lock.
func (p *Proxy) LockMailbox(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults.lockedUntil = time.Now().Add(d)
}

// Unavailable makes the proxy answer every command of an authenticated
// connection except LOGOUT with "TAG NO [code] text" for the next d,
// without forwarding it. Typical codes are "UNAVAILABLE" (RFC 5530: try
// again later) and "LIMIT" (throttled); an empty code leaves out the
// brackets. LOGIN and AUTHENTICATE still reach the server, so a client can
// reconnect and log in, then fails on its first command. Empty text means
// "Service temporarily unavailable.". d <= 0 disarms.
func (p *Proxy) Unavailable(d time.Duration, code, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults.unavailableUntil = time.Now().Add(d)
	p.faults.unavailableCode = oneLine(code)
	p.faults.unavailableText = orDefault(text, "Service temporarily unavailable.")
}

// ByeNext makes the next n commands of authenticated connections, LOGOUT
// excepted, end their connection: instead of forwarding the command the
// proxy sends "* BYE text", closes the server side and ends the client side
// cleanly (FIN after the BYE), so the client reads the BYE and then end of
// stream. Responses to earlier pipelined commands that the server had not
// yet sent are lost. Empty text means "Server shutting down.".
func (p *Proxy) ByeNext(n int, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults.byeNext = max(n, 0)
	p.faults.byeText = orDefault(text, "Server shutting down.")
}

// RefuseConnections makes the next n accepted connections get "* BYE text"
// as their greeting, then end of stream, as a server with too many
// connections does. The upstream is not dialled for them. Empty text means
// "Too many connections.".
func (p *Proxy) RefuseConnections(n int, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults.refuse = max(n, 0)
	p.faults.refuseText = orDefault(text, "Too many connections.")
}

// SetLatency holds every line the server sends (response lines, including
// the line that follows a literal, and the greeting) for d before relaying
// it, in order. Lines are delayed one after the other, so a response of k
// lines arrives about k*d late: a slow server, not a long wire. Answers the
// proxy injects itself are not delayed. d <= 0 disables it.
func (p *Proxy) SetLatency(d time.Duration) {
	p.latency.Store(int64(max(d, 0)))
}

// CutFetchLiterals cuts the next n FETCH responses from the server that
// carry a literal (BODY[...], BINARY[...], RFC822...) larger than after
// bytes: the proxy relays the literal's announcement and its first after
// bytes, then closes the server side and ends the client side (FIN, so the
// client receives exactly those bytes and then end of stream). That is a
// connection dropped in the middle of a message.
func (p *Proxy) CutFetchLiterals(n int, after int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults.cuts = max(n, 0)
	p.faults.cutAfter = int64(max(after, 0))
}

// DropConnections ends every open connection now, as a network failure or
// a server crash would: the server side is closed, the client side gets end
// of stream without a BYE, in the middle of a response if one was being
// relayed. New connections are accepted as usual. It returns the number of
// connections dropped.
func (p *Proxy) DropConnections() int {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.stats.Injected[FaultDropConn] += len(conns)
	p.mu.Unlock()
	for _, c := range conns {
		c.finish()
	}
	return len(conns)
}

// Reset disarms every fault and the latency. Stats are kept.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = faults{}
	p.latency.Store(0)
}

// Stats returns a copy of the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Open = len(p.conns)
	s.Commands = maps.Clone(p.stats.Commands)
	s.Injected = maps.Clone(p.stats.Injected)
	return s
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: a test machine under
			// load; retry rather than stop relaying.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			nc.Close()
			return
		}
		c := newConn(p, nc)
		p.conns[c] = struct{}{}
		p.stats.Connections++
		p.countPeaks(time.Now())
		var refusal string
		if p.faults.refuse > 0 {
			p.faults.refuse--
			p.stats.Injected[FaultRefuse]++
			refusal = p.faults.refuseText
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c, refusal)
	}
}

// serve runs one connection; refusal, when not empty, is the text of the
// BYE greeting that refuses it.
func (p *Proxy) serve(c *conn, refusal string) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	defer c.drainAndClose()

	if refusal != "" {
		_ = c.writeClient("* BYE " + refusal + "\r\n")
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	srv, err := d.DialContext(c.ctx, "tcp", p.upstream)
	if err != nil {
		if c.ctx.Err() == nil {
			p.inject(FaultUpstreamDown)
			_ = c.writeClient("* BYE [UNAVAILABLE] faultproxy: upstream unreachable\r\n")
		}
		return
	}
	if !c.setServer(srv) {
		srv.Close()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c.relayServer(srv)
		c.finish()
	}()
	c.relayClient(srv)
}

// countPeaks updates the peaks for an accept at now; p.mu held.
func (p *Proxy) countPeaks(now time.Time) {
	p.stats.PeakOpen = max(p.stats.PeakOpen, len(p.conns))
	i := 0
	for i < len(p.accepts) && now.Sub(p.accepts[i]) >= time.Second {
		i++
	}
	p.accepts = append(p.accepts[i:], now)
	if len(p.acceptLog) < maxAcceptLog {
		p.acceptLog = append(p.acceptLog, now)
	}
	p.stats.PeakNewPerSecond = max(p.stats.PeakNewPerSecond, len(p.accepts))
}

// maxAcceptLog bounds AcceptTimes.
const maxAcceptLog = 100000

// AcceptTimes returns when each connection was accepted, in order (the
// first 100,000): to show where a peak was.
func (p *Proxy) AcceptTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.acceptLog)
}

func (p *Proxy) inject(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Injected[f]++
}

// verdict is what the proxy does with a client command.
type verdict struct {
	action action
	// text follows the tag in an answer ("NO [INUSE] ..."), or the BYE.
	text string
}

type action int

const (
	actionForward action = iota
	actionAnswer
	actionBye
)

// judge counts cmd and decides whether an armed fault intercepts it,
// consuming one unit of a count-based fault if so.
func (p *Proxy) judge(cmd command, authenticated bool) verdict {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Commands[cmd.name]++
	f := &p.faults
	switch {
	case cmd.name == "LOGIN" || cmd.name == "AUTHENTICATE":
		if f.failLogins > 0 {
			f.failLogins--
			p.stats.Injected[FaultFailLogin]++
			return verdict{actionAnswer, "NO [AUTHENTICATIONFAILED] " + f.failLoginsText}
		}
	case !authenticated || cmd.name == "LOGOUT":
	case f.byeNext > 0:
		f.byeNext--
		p.stats.Injected[FaultBye]++
		return verdict{actionBye, f.byeText}
	case now.Before(f.unavailableUntil):
		p.stats.Injected[FaultUnavailable]++
		if f.unavailableCode == "" {
			return verdict{actionAnswer, "NO " + f.unavailableText}
		}
		return verdict{actionAnswer, "NO [" + f.unavailableCode + "] " + f.unavailableText}
	case (cmd.name == "SELECT" || cmd.name == "EXAMINE") && now.Before(f.lockedUntil):
		p.stats.Injected[FaultLockMailbox]++
		return verdict{actionAnswer, "NO [INUSE] Mailbox is locked"}
	}
	return verdict{action: actionForward}
}

// takeCut reports whether a FETCH literal of size bytes is to be cut, and
// after how many bytes.
func (p *Proxy) takeCut(size int64) (after int64, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.faults.cuts == 0 || size <= p.faults.cutAfter {
		return 0, false
	}
	p.faults.cuts--
	p.stats.Injected[FaultCutLiteral]++
	return p.faults.cutAfter, true
}

// oneLine keeps a caller's text from breaking the protocol stream.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

func orDefault(text, def string) string {
	if text = oneLine(text); text == "" {
		return def
	}
	return text
}

// Package engine is the IMAP copy engine: sessions, folder planning and the
// copy pipeline. It knows nothing of Temporal; activities drive it and turn
// its typed failures into retry decisions.
package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailmove/mailmove/internal/failure"
)

// Security is how a connection to a server is protected.
type Security string

const (
	SecurityTLS      Security = "tls"      // implicit TLS (port 993)
	SecurityStartTLS Security = "starttls" // STARTTLS upgrade (port 143)
	SecurityNone     Security = "none"     // plain text; test beds and trusted links only
)

// ParseSecurity validates a --source-security/--target-security value.
func ParseSecurity(s string) (Security, error) {
	switch Security(strings.ToLower(s)) {
	case SecurityTLS, "":
		return SecurityTLS, nil
	case SecurityStartTLS:
		return SecurityStartTLS, nil
	case SecurityNone:
		return SecurityNone, nil
	}
	return "", fmt.Errorf("unknown security %q: use tls, starttls or none", s)
}

// Endpoint is one IMAP server.
type Endpoint struct {
	Addr               string   // host:port
	Security           Security // defaults to TLS
	InsecureSkipVerify bool
	// CA is the PEM of the authorities the server's certificate may be
	// signed by, besides the system's (a company's own CA); the CLI reads
	// it from --source-ca-file/--target-ca-file, so it reaches every
	// worker. Certificates are public: it may stand in a history.
	CA string `json:",omitempty"`
	// MinTLS is the oldest TLS version accepted: "1.2" when empty; "1.0"
	// and "1.1" only for old servers, by the admin's choice.
	MinTLS string `json:",omitempty"`
	// Compress deflates the connection (COMPRESS=DEFLATE, RFC 4978) where
	// the server offers it: for links where bandwidth, not latency, is the
	// limit; it costs CPU on both ends.
	Compress bool `json:",omitempty"`
}

// Host is the endpoint's host name or address, without the port.
func (ep Endpoint) Host() string {
	host, _, err := net.SplitHostPort(ep.Addr)
	if err != nil {
		return ep.Addr
	}
	return host
}

// TLSVersions are the values MinTLS accepts.
var TLSVersions = map[string]uint16{"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// tlsConfig is the endpoint's TLS configuration.
func (ep Endpoint) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: ep.Host(), InsecureSkipVerify: ep.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if v, ok := TLSVersions[ep.MinTLS]; ok {
		cfg.MinVersion = v
	}
	if ep.CA != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(ep.CA)) {
			return nil, errors.New("the CA file holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// DefaultIdleTimeout is how long a session waits for a silent server before it
// gives up; go-imap itself waits forever for a response.
const DefaultIdleTimeout = 2 * time.Minute

// Session is a logged-on IMAP connection to one side of a move.
// Callers must Close it.
type Session struct {
	Side   failure.Side
	User   string
	Client *imapclient.Client
	Caps   imap.CapSet
	// Delim is the hierarchy separator of the personal namespace, Prefix
	// its prefix (RFC 2342: "INBOX." on Courier and cPanel, "" on most),
	// and Others the prefixes of the shared and other users' namespaces,
	// whose folders a move leaves out.
	Delim  rune
	Prefix string
	Others []string
	// Compressed: the connection is deflated (Endpoint.Compress).
	Compressed bool
	// Opened is when the session logged on.
	Opened time.Time

	stop    func() bool
	raw     net.Conn
	conn    *idleConn
	onClose func()
}

// AfterClose registers f to run once the session is closed (a Limiter's
// release, say).
func (s *Session) AfterClose(f func()) { s.onClose = f }

// Bytes is the number of bytes read and written so far: a watchdog can tell
// a slow session from a stuck one.
func (s *Session) Bytes() int64 {
	if s == nil || s.conn == nil {
		return 0
	}
	return s.conn.bytes.Load()
}

// Dial connects and logs on. The session is closed when ctx ends, so a
// cancelled activity never leaves a command hanging on a silent server.
func Dial(ctx context.Context, side failure.Side, ep Endpoint, cred Credentials) (*Session, error) {
	op := "connect to " + ep.Addr
	d := &net.Dialer{Timeout: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, failure.Classify(side, op, err)
	}
	conn := &idleConn{Conn: raw, idle: DefaultIdleTimeout}
	tlsConfig, err := ep.tlsConfig()
	if err != nil {
		raw.Close()
		return nil, failure.Classify(side, op, err)
	}
	opts := &imapclient.Options{TLSConfig: tlsConfig}

	var c *imapclient.Client
	switch ep.Security {
	case SecurityNone:
		c = imapclient.New(conn, opts)
	case SecurityStartTLS:
		c, err = imapclient.NewStartTLS(conn, opts)
	default:
		tc := tls.Client(conn, opts.TLSConfig)
		if err = tc.HandshakeContext(ctx); err == nil {
			c = imapclient.New(tc, opts)
		}
	}
	if err != nil {
		raw.Close()
		return nil, failure.Classify(side, op, err)
	}
	s := &Session{Side: side, User: cred.User, Client: c, raw: raw, conn: conn, Opened: time.Now()}
	s.stop = context.AfterFunc(ctx, func() { c.Close() })

	if err := c.WaitGreeting(); err != nil {
		s.Close()
		var ie *imap.Error
		if !errors.As(err, &ie) {
			// go-imap reports a connection that ends before the greeting
			// (a proxy or firewall cutting it, a server shedding load) as
			// a plain error: it is a dropped connection, not a protocol
			// error.
			err = fmt.Errorf("%w: %v", io.ErrUnexpectedEOF, err)
		}
		return nil, failure.Classify(side, op, ctxErr(ctx, err))
	}
	// Which mechanisms the server offers: from its greeting, most often.
	s.Caps = c.Caps()
	if err := s.logon(ctx, cred); err != nil {
		s.Close()
		return nil, err
	}
	// Servers announce more capabilities after logon than in the greeting.
	caps, err := c.Capability().Wait()
	if err != nil {
		s.Close()
		return nil, failure.Classify(side, "capability", ctxErr(ctx, err))
	}
	s.Caps = caps
	if ep.Compress && caps.Has(imap.Cap("COMPRESS=DEFLATE")) {
		// Before the first folder command: everything after is deflated.
		// A server may refuse (RFC 4978: NO [COMPRESSIONACTIVE], or
		// short of resources): the session goes on uncompressed.
		var ie *imap.Error
		switch err := c.Compress(); {
		case err == nil:
			s.Compressed = true
		case !errors.As(err, &ie):
			s.Close()
			return nil, failure.Classify(side, "compress", ctxErr(ctx, err))
		}
	}
	s.readNamespace()
	return s, nil
}

// readNamespace learns the personal namespace, from NAMESPACE where the
// server has it, else the separator LIST "" "" gives.
func (s *Session) readNamespace() {
	var ns *imapclient.NamespaceCommand
	if s.Caps.Has(imap.CapNamespace) || s.Caps.Has(imap.CapIMAP4rev2) {
		ns = s.Client.Namespace()
	}
	list := s.Client.List("", "", nil)
	s.Delim = '/'
	if lists, err := list.Collect(); err == nil && len(lists) > 0 && lists[0].Delim != 0 {
		s.Delim = lists[0].Delim
	}
	if ns == nil {
		return
	}
	data, err := ns.Wait()
	if err != nil {
		return
	}
	if len(data.Personal) > 0 {
		s.Prefix = data.Personal[0].Prefix
		if d := data.Personal[0].Delim; d != 0 {
			s.Delim = d
		}
	}
	for _, o := range append(slices.Clone(data.Other), data.Shared...) {
		if o.Prefix != "" {
			s.Others = append(s.Others, o.Prefix)
		}
	}
}

// AppendLimit is the largest message the server accepts (RFC 7889
// APPENDLIMIT=n), or 0 when it does not say.
func (s *Session) AppendLimit() int64 {
	if limit, ok := s.Caps.AppendLimit(); ok && limit != nil {
		return int64(*limit)
	}
	return 0
}

// Bind ties the session to ctx instead of the context it was dialed or
// last bound with: when ctx ends, the connection closes, so a cancelled
// activity never leaves a command hanging. It reports false when the
// earlier context has already closed it: the session is then unusable.
func (s *Session) Bind(ctx context.Context) bool {
	if s.stop != nil && !s.stop() {
		return false
	}
	c := s.Client
	s.stop = context.AfterFunc(ctx, func() { c.Close() })
	return true
}

// Reusable readies the session for another use: it leaves the selected
// folder without expunging (UNSELECT), so the next user finds it as a
// fresh logon leaves it. False: the server cannot do that or the session
// failed; close it instead.
func (s *Session) Reusable(ctx context.Context) bool {
	switch s.Client.State() {
	case imap.ConnStateAuthenticated:
		return true
	case imap.ConnStateSelected:
		// CLOSE would expunge the messages flagged \Deleted: never that.
		if !s.Caps.Has(imap.CapUnselect) && !s.Caps.Has(imap.CapIMAP4rev2) {
			return false
		}
		// Not the state read again: go-imap records it just after Wait
		// returns.
		return s.brief(ctx, func() error { return s.Client.Unselect().Wait() })
	}
	return false
}

// Alive asks the server whether the session still stands (NOOP, one round
// trip): a parked session may have been logged out by the server, or cut
// silently by a firewall.
func (s *Session) Alive(ctx context.Context) bool {
	return s.brief(ctx, func() error { return s.Client.Noop().Wait() })
}

// BriefTimeout bounds a command that only readies a session for reuse: a
// server or a firewall gone silent must not hold up a call by the
// session's idle timeout (minutes) for a connection it can do without.
const BriefTimeout = 10 * time.Second

// brief runs cmd within BriefTimeout and ctx; past them it cuts the
// connection (the session is then unusable) and reports false.
func (s *Session) brief(ctx context.Context, cmd func() error) bool {
	done := make(chan error, 1)
	go func() { done <- cmd() }()
	t := time.NewTimer(BriefTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err == nil && ctx.Err() == nil
	case <-t.C:
	case <-ctx.Done():
	}
	s.abort()
	return false
}

// uidPlus reports UID EXPUNGE and APPENDUID (RFC 4315, part of IMAP4rev2).
func (s *Session) uidPlus() bool {
	return s.Caps.Has(imap.CapUIDPlus) || s.Caps.Has(imap.CapIMAP4rev2)
}

// Close logs out politely when it can and always releases the connection,
// within a few seconds whatever state the session is in.
func (s *Session) Close() error {
	if s.stop != nil {
		s.stop()
	}
	if f := s.onClose; f != nil {
		s.onClose = nil
		defer f()
	}
	done := make(chan struct{})
	go func() {
		s.Client.Logout().Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.abort()
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Client.Close() }()
	select {
	case err := <-closed:
		return err
	case <-time.After(5 * time.Second):
		// go-imap waits for its reader, which may be stuck handing a
		// literal to a command nobody reads; the socket is closed anyway.
		s.abort()
		return errors.New("close: the IMAP client did not stop")
	}
}

// abort cuts the connection at once. The session is unusable afterwards;
// commands in flight fail quickly instead of being drained, which matters
// when a FETCH of gigabytes is abandoned half way.
func (s *Session) abort() {
	if s.raw != nil {
		s.raw.Close()
	}
}

// Classify wraps err with this session's side.
func (s *Session) classify(op string, err error) error {
	return failure.Classify(s.Side, op, err)
}

// ctxErr prefers the context's error: when ctx ends we close the connection
// ourselves and the resulting "use of closed connection" is not the server's
// fault.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// idleConn bounds the time without progress, not the time of a command:
// every read and every write may wait at most idle for the peer. go-imap
// sets deadlines of its own — 30 s for an answer, 5 min for a literal — that
// would cut a 50 MB message on a link below 170 KB/s, or a server that
// thinks for a minute; and none at all while it waits for the next answer,
// which would hang on a server that never answers. Its deadlines are
// ignored, except one already past, which is how a blocked call is
// interrupted (TLS does that when its context ends).
type idleConn struct {
	net.Conn
	idle  time.Duration
	bytes atomic.Int64
}

func (c *idleConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Read(b)
	c.bytes.Add(int64(n))
	return n, err
}

func (c *idleConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Write(b)
	c.bytes.Add(int64(n))
	return n, err
}

func (c *idleConn) SetReadDeadline(t time.Time) error {
	if interrupts(t) {
		return c.Conn.SetReadDeadline(t)
	}
	return nil
}

func (c *idleConn) SetWriteDeadline(t time.Time) error {
	if interrupts(t) {
		return c.Conn.SetWriteDeadline(t)
	}
	return nil
}

func (c *idleConn) SetDeadline(t time.Time) error {
	if interrupts(t) {
		return c.Conn.SetDeadline(t)
	}
	return nil
}

// interrupts reports a deadline set to stop a blocked call now.
func interrupts(t time.Time) bool { return !t.IsZero() && !t.After(time.Now()) }

// ServerName is the name the server gives in its ID answer (RFC 2971),
// empty when it offers no ID or will not say: how a provider profile is
// told when the capabilities do not show it.
func (s *Session) ServerName(ctx context.Context) string {
	if !s.Caps.Has(imap.CapID) {
		return ""
	}
	data, err := s.Client.ID(&imap.IDData{Name: "mailmove"}).Wait()
	if err != nil || data == nil || ctx.Err() != nil {
		return ""
	}
	return data.Name
}

package faultproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// bufferSize is the read buffer of each direction; most protocol lines fit.
const bufferSize = 64 << 10

// errCut ends a connection whose FETCH literal was cut on purpose.
var errCut = errors.New("fetch literal cut by fault")

// conn is one client connection and its upstream connection. Two goroutines
// relay it: relayClient reads commands from the client and writes only to
// the server, relayServer reads responses from the server and writes to the
// client. The proxy's own answers are written to the client by relayClient,
// so writes to the client are serialised by wmu at response boundaries.
type conn struct {
	p      *Proxy
	client net.Conn
	// ctx is cancelled when the session ends (finish).
	ctx        context.Context
	cancel     context.CancelFunc
	finishOnce sync.Once

	// wmu is held while one whole response (or injected answer) is
	// written to the client, so that they never interleave.
	wmu sync.Mutex

	mu            sync.Mutex
	server        net.Conn // nil until dialled
	authenticated bool
	// loginTags are the tags of forwarded LOGIN and AUTHENTICATE commands
	// whose tagged response has not been seen yet.
	loginTags map[string]bool
	// literalTag is the tag of a forwarded command waiting for the
	// server's "+" before the client may send a synchronizing literal;
	// literalReply then receives true for "+", false when the server
	// answers the command instead (the literal was refused).
	literalTag   string
	literalReply chan bool
}

func newConn(p *Proxy, client net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		p:            p,
		client:       client,
		ctx:          ctx,
		cancel:       cancel,
		loginTags:    map[string]bool{},
		literalReply: make(chan bool, 1),
	}
}

// setServer records the upstream connection; it returns false if the
// session already ended, and the caller must then close srv.
func (c *conn) setServer(srv net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return false
	}
	c.server = srv
	return true
}

// finish ends the session, once: the server side is closed, the client
// side gets FIN after whatever was already written, and further reads from
// the client time out after drainTimeout. It does not close the client
// socket; drainAndClose does once the client has nothing more to send,
// because closing a socket with unread input makes the kernel reset the
// connection, which can destroy the BYE or the partial literal the client
// has not read yet.
func (c *conn) finish() {
	c.finishOnce.Do(func() {
		c.cancel()
		c.mu.Lock()
		srv := c.server
		c.mu.Unlock()
		if srv != nil {
			srv.Close()
		}
		now := time.Now()
		// Unblocks a relay goroutine stuck writing to a client that does
		// not read; bytes already written are still delivered.
		_ = c.client.SetWriteDeadline(now)
		if cw, ok := c.client.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = c.client.SetReadDeadline(now.Add(drainTimeout))
	})
}

// kill ends the session and closes the client socket at once.
func (c *conn) kill() {
	c.finish()
	c.client.Close()
}

// drainAndClose ends the session, reads what the client still sends until
// it closes its side (it sees end of stream after finish) or drainTimeout
// passes, and closes the client socket.
func (c *conn) drainAndClose() {
	c.finish()
	_, _ = io.Copy(io.Discard, c.client)
	c.client.Close()
}

// writeClient writes an answer of the proxy's own between responses.
func (c *conn) writeClient(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := io.WriteString(c.client, s)
	return err
}

func (c *conn) isAuthenticated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.authenticated
}

// relayClient relays commands until the client or the server goes away or
// a fault ends the session.
func (c *conn) relayClient(srv net.Conn) {
	br := bufio.NewReaderSize(c.client, bufferSize)
	for {
		line, err := readLine(br)
		// After finish, what the client still sends is drained, not
		// judged: it must not use up armed faults.
		if err != nil || c.ctx.Err() != nil {
			return
		}
		cmd, ok := parseCommand(line)
		if !ok {
			// Data the server asked for (SASL response, DONE).
			if _, err := srv.Write(line); err != nil {
				return
			}
			continue
		}
		v := c.p.judge(cmd, c.isAuthenticated())
		switch v.action {
		case actionForward:
			err = c.forward(br, srv, cmd, line)
		case actionAnswer:
			if err = c.swallow(br, line); err == nil {
				err = c.writeClient(cmd.tag + " " + v.text + "\r\n")
			}
		case actionBye:
			c.wmu.Lock()
			_, _ = io.WriteString(c.client, "* BYE "+v.text+"\r\n")
			// Still holding wmu: no server output may follow the BYE.
			c.finish()
			c.wmu.Unlock()
			return
		}
		if err != nil {
			return
		}
	}
}

// forward relays one command, starting with its first line, and the
// literals it carries. For a synchronizing literal it waits until the
// server's "+" has been seen, because only then does the client send the
// literal; if the server answers the command instead, the command is over.
func (c *conn) forward(br *bufio.Reader, srv net.Conn, cmd command, line []byte) error {
	if cmd.name == "LOGIN" || cmd.name == "AUTHENTICATE" {
		c.mu.Lock()
		c.loginTags[cmd.tag] = true
		c.mu.Unlock()
	}
	for {
		size, sync, ok := trailingLiteral(line)
		if ok && sync {
			// Before the line goes out, so that the "+" cannot be missed.
			c.mu.Lock()
			c.literalTag = cmd.tag
			c.mu.Unlock()
		}
		if _, err := srv.Write(line); err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if sync {
			select {
			case accepted := <-c.literalReply:
				if !accepted {
					return nil
				}
			case <-c.ctx.Done():
				return c.ctx.Err()
			}
		}
		if _, err := io.CopyN(srv, br, size); err != nil {
			return err
		}
		var err error
		if line, err = readLine(br); err != nil {
			return err
		}
	}
}

// swallow reads and discards the rest of a command the proxy answers
// itself, playing the server's part for synchronizing literals.
func (c *conn) swallow(br *bufio.Reader, line []byte) error {
	for {
		size, sync, ok := trailingLiteral(line)
		if !ok {
			return nil
		}
		if sync {
			if err := c.writeClient("+ Ready\r\n"); err != nil {
				return err
			}
		}
		if _, err := io.CopyN(io.Discard, br, size); err != nil {
			return err
		}
		var err error
		if line, err = readLine(br); err != nil {
			return err
		}
	}
}

// relayServer relays responses until the server or the client goes away or
// a fault ends the session.
func (c *conn) relayServer(srv net.Conn) {
	br := bufio.NewReaderSize(srv, bufferSize)
	for {
		line, err := readLine(br)
		if err != nil {
			if len(line) > 0 && !errors.Is(err, errLineTooLong) {
				// A last line without CRLF: still byte-exact.
				_ = c.writeClient(string(line))
			}
			return
		}
		if !c.delay() {
			return
		}
		resp := parseResponse(line)
		c.observe(resp)
		c.wmu.Lock()
		err = c.relayResponse(br, line, resp)
		c.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// relayResponse writes one response, starting with its first line, and the
// literals it carries to the client. The caller holds wmu.
func (c *conn) relayResponse(br *bufio.Reader, line []byte, resp response) error {
	for {
		if _, err := c.client.Write(line); err != nil {
			return err
		}
		if !resp.hasLiterals() {
			return nil
		}
		size, _, ok := trailingLiteral(line)
		if !ok {
			return nil
		}
		if resp.typ == "FETCH" {
			if after, cut := c.p.takeCut(size); cut {
				_, _ = io.CopyN(c.client, br, after)
				c.finish()
				return errCut
			}
		}
		if _, err := io.CopyN(c.client, br, size); err != nil {
			return err
		}
		var err error
		if line, err = readLine(br); err != nil {
			return err
		}
		if !c.delay() {
			return c.ctx.Err()
		}
	}
}

// observe updates the session from a server response before it is relayed:
// authentication succeeds with the server's OK to LOGIN or AUTHENTICATE
// (or a PREAUTH greeting), and a waiting synchronizing literal is released
// or refused.
func (c *conn) observe(resp response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch resp.tag {
	case "+":
		if c.literalTag != "" {
			c.literalTag = ""
			release(c.literalReply, true)
		}
	case "*":
		if resp.typ == "PREAUTH" {
			c.authenticated = true
		}
	default:
		if resp.tag == c.literalTag {
			c.literalTag = ""
			release(c.literalReply, false)
		}
		if c.loginTags[resp.tag] {
			delete(c.loginTags, resp.tag)
			if resp.typ == "OK" {
				c.authenticated = true
			}
		}
	}
}

// delay waits for the armed latency; it returns false if the session ended
// meanwhile.
func (c *conn) delay() bool {
	d := time.Duration(c.p.latency.Load())
	if d <= 0 {
		return c.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// release answers a waiting synchronizing literal. The channel has room for
// the one answer a waiting literal gets; never block the relay on it.
func release(ch chan bool, accepted bool) {
	select {
	case ch <- accepted:
	default:
	}
}

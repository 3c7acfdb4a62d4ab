package faultproxy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailmove/mailmove/tests/testbed"
)

var (
	// alice's account is seeded once and only read.
	alice = testbed.User{Name: "alice@example.com", Password: "secret-alice"}
	// bob's account receives the APPEND tests, one folder each.
	bob = testbed.User{Name: "bob@example.com", Password: "secret-bob"}
)

const (
	largeSeed = 12
	largeSize = 5 << 20
	// waitClosed bounds how long a client may take to notice that the
	// proxy ended its connection.
	waitClosed = 5 * time.Second
)

// TestProxy runs every scenario in parallel against one Dovecot, since a
// start and stop take about a second. alice's INBOX ends with a 5 MB
// message.
func TestProxy(t *testing.T) {
	srv := testbed.StartForTest(t, testbed.Options{Name: "faultproxy", Users: []testbed.User{alice, bob}})
	corpus := testbed.SampleMailbox(11, 40)
	if corpus[0].Name != "INBOX" {
		t.Fatalf("SampleMailbox()[0] = %q, want INBOX", corpus[0].Name)
	}
	corpus[0].Messages = append(corpus[0].Messages, testbed.LargeMessage(largeSeed, largeSize))
	if err := testbed.Seed(srv.Addr(), alice.Name, alice.Password, corpus); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		run  func(t *testing.T, upstream string)
	}{
		{"Relay", testRelay},
		{"Append", testAppend},
		{"RawLiterals", testRawLiterals},
		{"FailLogins", testFailLogins},
		{"FailLoginsRaw", testFailLoginsRaw},
		{"RefusedCommands", testRefusedCommands},
		{"PipelinedIntercept", testPipelinedIntercept},
		{"ByeNext", testByeNext},
		{"ByeNextRaw", testByeNextRaw},
		{"RefuseConnections", testRefuseConnections},
		{"SetLatency", testSetLatency},
		{"CutFetchLiterals", testCutFetchLiterals},
		{"CutFetchLiteralsRaw", testCutFetchLiteralsRaw},
		{"DropConnections", testDropConnections},
		{"Close", testClose},
		{"UpstreamDown", testUpstreamDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, srv.Addr())
		})
	}
}

// testRelay fetches every message of alice's account directly and through
// the proxy, one pipelined FETCH per message, and compares the bytes.
func testRelay(t *testing.T, upstream string) {
	p := StartForTest(t, upstream)
	want, err := fetchAll(dial(t, upstream, alice))
	if err != nil {
		t.Fatalf("direct: %v", err)
	}
	viaProxy := dial(t, p.Addr(), alice)
	got, err := fetchAll(viaProxy)
	if err != nil {
		t.Fatalf("through proxy: %v", err)
	}

	if len(got) != len(want) {
		t.Fatalf("through proxy fetched %d messages, want %d", len(got), len(want))
	}
	large := testbed.LargeMessage(largeSeed, largeSize).Raw
	sawLarge := false
	for key, w := range want {
		if !bytes.Equal(got[key], w) {
			t.Errorf("%s: %d bytes through proxy differ from %d bytes direct", key, len(got[key]), len(w))
		}
		sawLarge = sawLarge || bytes.Equal(got[key], large)
	}
	if !sawLarge {
		t.Errorf("the %d-byte message did not come through the proxy intact", largeSize)
	}
	if err := viaProxy.Logout().Wait(); err != nil {
		t.Fatalf("Logout() = %v", err)
	}

	st := p.Stats()
	// go-imap sends FETCH ... (UID ...), not UID FETCH, for sequence sets.
	if st.Connections != 1 || st.Commands["LOGIN"] != 1 || st.Commands["FETCH"] != len(want) || len(st.Injected) != 0 {
		t.Errorf("Stats() = %+v, want 1 connection, 1 LOGIN, %d FETCH, nothing injected", st, len(want))
	}
}

// testAppend appends messages on both sides of go-imap's 4 KB limit for
// non-synchronizing literals, pipelined, and reads them back directly.
func testAppend(t *testing.T, upstream string) {
	const mailbox = "Appended"
	p := StartForTest(t, upstream)
	c := dial(t, p.Addr(), bob)
	if err := c.Create(mailbox, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := [][]byte{
		[]byte("From: bob@example.com\r\nSubject: tiny\r\n\r\nhi\r\n"),
		testbed.LargeMessage(21, 4096).Raw, // {4096+}
		testbed.LargeMessage(22, 4097).Raw, // {4097} and a "+" from the server
		testbed.LargeMessage(23, 1<<20).Raw,
	}
	var cmds []*imapclient.AppendCommand
	for i, m := range msgs {
		cmd := c.Append(mailbox, int64(len(m)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
		if _, err := cmd.Write(m); err != nil {
			t.Fatalf("append message %d: %v", i, err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatalf("append message %d: %v", i, err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("append message %d (%d bytes): %v", i, len(msgs[i]), err)
		}
	}

	got, err := fetchMailbox(dial(t, upstream, bob), mailbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%s holds %d messages, want %d", mailbox, len(got), len(msgs))
	}
	for i, m := range msgs {
		if !bytes.Equal(got[i], m) {
			t.Errorf("message %d: stored %d bytes differ from %d bytes appended", i, len(got[i]), len(m))
		}
	}
	if n := p.Stats().Commands["APPEND"]; n != len(msgs) {
		t.Errorf("Stats().Commands[APPEND] = %d, want %d", n, len(msgs))
	}
}

// testRawLiterals sends what go-imap never does: a LOGIN made of a
// synchronizing and a non-synchronizing literal, and a MULTIAPPEND mixing
// both kinds.
func testRawLiterals(t *testing.T, upstream string) {
	const mailbox = "Multi"
	p := StartForTest(t, upstream)
	r := dialRaw(t, p.Addr())
	r.send("a1 LOGIN {%d}\r\n", len(bob.Name))
	r.expectPrefix("+ ")
	r.send("%s {%d+}\r\n%s\r\n", bob.Name, len(bob.Password), bob.Password)
	r.expectTagged("a1", "a1 OK")
	r.send("a2 CREATE %s\r\n", mailbox)
	r.expectTagged("a2", "a2 OK")

	m1 := testbed.LargeMessage(31, 3000).Raw
	m2 := testbed.LargeMessage(32, 9000).Raw
	r.send("a3 APPEND %s (\\Seen) {%d+}\r\n%s (\\Flagged) {%d}\r\n", mailbox, len(m1), m1, len(m2))
	r.expectPrefix("+ ")
	r.send("%s\r\n", m2)
	r.expectTagged("a3", "a3 OK")
	r.send("a4 LOGOUT\r\n")
	r.expectTagged("a4", "a4 OK")
	r.expectEOF()

	got, err := fetchMailbox(dial(t, upstream, bob), mailbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], m1) || !bytes.Equal(got[1], m2) {
		t.Fatalf("%s holds %d messages, not the two appended byte for byte", mailbox, len(got))
	}
}

func testFailLogins(t *testing.T, upstream string) {
	const text = "Invalid credentials (injected)"
	p := StartForTest(t, upstream)
	p.FailLogins(2, text)
	for i := range 3 {
		c, err := testbed.Dial(p.Addr(), alice.Name, alice.Password)
		if i == 2 {
			if err != nil {
				t.Fatalf("login %d: %v", i+1, err)
			}
			if err := c.Noop().Wait(); err != nil {
				t.Fatalf("NOOP after login: %v", err)
			}
			c.Close()
			break
		}
		if err == nil {
			c.Close()
			t.Fatalf("login %d succeeded, want AUTHENTICATIONFAILED", i+1)
		}
		wantIMAPError(t, err, imap.StatusResponseTypeNo, imap.ResponseCodeAuthenticationFailed, text)
	}
	st := p.Stats()
	if st.Commands["LOGIN"] != 3 || st.Injected[FaultFailLogin] != 2 {
		t.Errorf("Stats() = %+v, want 3 LOGIN, 2 FailLogins", st)
	}
}

// testFailLoginsRaw fails a LOGIN carrying synchronizing literals and both
// forms of AUTHENTICATE, then authenticates through the server's
// continuation request on the same connection.
func testFailLoginsRaw(t *testing.T, upstream string) {
	p := StartForTest(t, upstream)
	p.FailLogins(3, "nope")
	r := dialRaw(t, p.Addr())
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + alice.Name + "\x00" + alice.Password))

	r.send("a1 LOGIN {%d}\r\n", len(alice.Name))
	r.expectLine("+ Ready")
	r.send("%s {%d}\r\n", alice.Name, len(alice.Password))
	r.expectLine("+ Ready")
	r.send("%s\r\n", alice.Password)
	r.expectLine("a1 NO [AUTHENTICATIONFAILED] nope")
	r.send("a2 AUTHENTICATE PLAIN %s\r\n", plain)
	r.expectLine("a2 NO [AUTHENTICATIONFAILED] nope")
	r.send("a3 AUTHENTICATE PLAIN\r\n")
	r.expectLine("a3 NO [AUTHENTICATIONFAILED] nope")

	r.send("a4 AUTHENTICATE PLAIN\r\n")
	r.expectPrefix("+")
	r.send("%s\r\n", plain)
	r.expectTagged("a4", "a4 OK")
	r.send("a5 SELECT INBOX\r\n")
	r.expectTagged("a5", "a5 OK")

	st := p.Stats()
	if st.Commands["LOGIN"] != 1 || st.Commands["AUTHENTICATE"] != 3 || st.Injected[FaultFailLogin] != 3 {
		t.Errorf("Stats() = %+v, want 1 LOGIN, 3 AUTHENTICATE, 3 FailLogins", st)
	}
}

// testRefusedCommands covers the faults that answer commands with NO for a
// while: the command fails with the code during the window, LOGIN and
// LOGOUT still work, and the command succeeds once the window is over.
func testRefusedCommands(t *testing.T, upstream string) {
	const window = 300 * time.Millisecond
	selectINBOX := func(c *imapclient.Client) error {
		_, err := c.Select("INBOX", nil).Wait()
		return err
	}
	tests := []struct {
		name     string
		arm      func(p *Proxy)
		do       func(c *imapclient.Client) error
		wantCode imap.ResponseCode
		wantText string
		wantKind Fault
	}{{
		name:     "LockMailbox/SELECT",
		arm:      func(p *Proxy) { p.LockMailbox(window) },
		do:       selectINBOX,
		wantCode: imap.ResponseCodeInUse,
		wantText: "Mailbox is locked",
		wantKind: FaultLockMailbox,
	}, {
		name: "LockMailbox/EXAMINE",
		arm:  func(p *Proxy) { p.LockMailbox(window) },
		do: func(c *imapclient.Client) error {
			_, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
			return err
		},
		wantCode: imap.ResponseCodeInUse,
		wantText: "Mailbox is locked",
		wantKind: FaultLockMailbox,
	}, {
		name:     "Unavailable/UNAVAILABLE",
		arm:      func(p *Proxy) { p.Unavailable(window, "UNAVAILABLE", "Try again later") },
		do:       func(c *imapclient.Client) error { return c.Noop().Wait() },
		wantCode: imap.ResponseCodeUnavailable,
		wantText: "Try again later",
		wantKind: FaultUnavailable,
	}, {
		name: "Unavailable/LIMIT",
		arm:  func(p *Proxy) { p.Unavailable(window, "LIMIT", "Too many requests") },
		do: func(c *imapclient.Client) error {
			_, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
			return err
		},
		wantCode: imap.ResponseCodeLimit,
		wantText: "Too many requests",
		wantKind: FaultUnavailable,
	}, {
		name:     "Unavailable/SELECT beats LockMailbox",
		arm:      func(p *Proxy) { p.LockMailbox(window); p.Unavailable(window, "UNAVAILABLE", "Later") },
		do:       selectINBOX,
		wantCode: imap.ResponseCodeUnavailable,
		wantText: "Later",
		wantKind: FaultUnavailable,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := StartForTest(t, upstream)
			c := dial(t, p.Addr(), alice)
			armed := time.Now()
			tt.arm(p)
			err := tt.do(c)
			if time.Since(armed) >= window {
				t.Fatalf("first attempt took longer than the %v window", window)
			}
			wantIMAPError(t, err, imap.StatusResponseTypeNo, tt.wantCode, tt.wantText)

			// A reconnecting client logs in and out as usual.
			other := dial(t, p.Addr(), alice)
			if err := other.Logout().Wait(); err != nil {
				t.Errorf("Logout() during the window = %v", err)
			}

			time.Sleep(time.Until(armed.Add(window + 20*time.Millisecond)))
			if err := tt.do(c); err != nil {
				t.Fatalf("after the window: %v", err)
			}
			if n := p.Stats().Injected[tt.wantKind]; n != 1 {
				t.Errorf("Stats().Injected[%s] = %d, want 1", tt.wantKind, n)
			}
		})
	}
}

// testPipelinedIntercept answers commands in the middle of a pipeline
// without disturbing the forwarded ones around them.
func testPipelinedIntercept(t *testing.T, upstream string) {
	p := StartForTest(t, upstream)
	r := dialRaw(t, p.Addr())
	r.send("a1 LOGIN %s %s\r\n", alice.Name, alice.Password)
	r.expectTagged("a1", "a1 OK")
	p.LockMailbox(time.Minute)
	r.send("b1 NOOP\r\nb2 SELECT INBOX\r\nb3 EXAMINE {5+}\r\nINBOX\r\nb4 LIST \"\" INBOX\r\nb5 NOOP\r\n")
	want := map[string]string{
		"b1": "b1 OK",
		"b2": "b2 NO [INUSE] Mailbox is locked",
		"b3": "b3 NO [INUSE] Mailbox is locked",
		"b4": "b4 OK",
		"b5": "b5 OK",
	}
	for len(want) > 0 {
		line := r.line()
		if strings.HasPrefix(line, "* ") {
			continue
		}
		tag, _, _ := strings.Cut(line, " ")
		prefix, ok := want[tag]
		if !ok || !strings.HasPrefix(line, prefix) {
			t.Fatalf("got %q, want one of %q", line, want)
		}
		delete(want, tag)
	}
}

func testByeNext(t *testing.T, upstream string) {
	p := StartForTest(t, upstream)
	c := dial(t, p.Addr(), alice)
	p.ByeNext(1, "Server going down (injected)")
	if err := c.Noop().Wait(); err == nil {
		t.Fatalf("NOOP after ByeNext succeeded, want an error")
	}
	waitForClose(t, c)

	c = dial(t, p.Addr(), alice)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT on a new connection: %v", err)
	}
	if n := p.Stats().Injected[FaultBye]; n != 1 {
		t.Errorf("Stats().Injected[ByeNext] = %d, want 1", n)
	}
}

// testByeNextRaw checks the bytes: the BYE and then a clean end of stream,
// even though the client pipelined more commands the proxy never reads.
func testByeNextRaw(t *testing.T, upstream string) {
	p := StartForTest(t, upstream)
	r := dialRaw(t, p.Addr())
	r.send("a1 LOGIN %s %s\r\n", alice.Name, alice.Password)
	r.expectTagged("a1", "a1 OK")
	p.ByeNext(1, "going down")
	r.send("a2 NOOP\r\na3 NOOP\r\n")
	r.expectLine("* BYE going down")
	r.expectEOF()
}

func testRefuseConnections(t *testing.T, upstream string) {
	const text = "Too many connections (injected)"
	p := StartForTest(t, upstream)
	p.RefuseConnections(1, text)
	c, err := imapclient.DialInsecure(p.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantIMAPError(t, c.WaitGreeting(), imap.StatusResponseTypeBye, "", text)

	dial(t, p.Addr(), alice)
	st := p.Stats()
	if st.Connections != 2 || st.Injected[FaultRefuse] != 1 {
		t.Errorf("Stats() = %+v, want 2 connections, 1 refused", st)
	}
}

func testSetLatency(t *testing.T, upstream string) {
	const latency = 150 * time.Millisecond
	p := StartForTest(t, upstream)
	c := dial(t, p.Addr(), alice)
	p.SetLatency(latency)
	start := time.Now()
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < latency {
		t.Fatalf("NOOP round trip with latency %v took %v", latency, rtt)
	}
	p.SetLatency(0)
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}

// testCutFetchLiterals cuts the 5 MB message and checks that a message
// header below the threshold still passes and a new connection works.
func testCutFetchLiterals(t *testing.T, upstream string) {
	const after = 64 << 10
	p := StartForTest(t, upstream)
	c := dial(t, p.Addr(), alice)
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	last := imap.SeqSetNum(sel.NumMessages)
	p.CutFetchLiterals(1, after)

	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	msgs, err := c.Fetch(last, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{header}}).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].FindBodySection(header)) == 0 {
		t.Fatalf("FETCH BODY.PEEK[HEADER] below the threshold = %d messages, %v", len(msgs), err)
	}

	fetch := c.Fetch(last, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	msg := fetch.Next()
	if msg == nil {
		t.Fatalf("FETCH of the cut message returned no message: %v", fetch.Close())
	}
	item, ok := msg.Next().(imapclient.FetchItemDataBodySection)
	if !ok || item.Literal == nil {
		t.Fatalf("FETCH of the cut message returned no BODY[] literal")
	}
	// go-imap v2.0.0-beta.8 reports a literal cut by end of stream as a
	// clean io.EOF: only the byte count tells.
	n, _ := io.Copy(io.Discard, item.Literal)
	if n != after || item.Literal.Size() != largeSize {
		t.Errorf("read %d of %d bytes of the cut literal, want %d of %d", n, item.Literal.Size(), after, largeSize)
	}
	// Wait for go-imap's reader goroutine to end before touching the
	// message again: after a short literal it reads the same buffer as
	// FetchMessageData.Next, a data race inside go-imap.
	waitForClose(t, c)
	if err := fetch.Close(); err == nil {
		t.Errorf("FETCH of the cut message: Close() = nil, want an error")
	}

	bodies, err := fetchRange(dial(t, p.Addr(), alice), "INBOX", last)
	if err != nil {
		t.Fatalf("FETCH on a new connection: %v", err)
	}
	if len(bodies) != 1 || !bytes.Equal(bodies[0], testbed.LargeMessage(largeSeed, largeSize).Raw) {
		t.Fatalf("FETCH on a new connection did not return the large message intact")
	}
	if n := p.Stats().Injected[FaultCutLiteral]; n != 1 {
		t.Errorf("Stats().Injected[CutFetchLiterals] = %d, want 1", n)
	}
}

// testCutFetchLiteralsRaw checks that exactly `after` bytes of the literal
// arrive, followed by a clean end of stream.
func testCutFetchLiteralsRaw(t *testing.T, upstream string) {
	const after = 1000
	p := StartForTest(t, upstream)
	r := dialRaw(t, p.Addr())
	r.send("a1 LOGIN %s %s\r\na2 EXAMINE INBOX\r\n", alice.Name, alice.Password)
	r.expectTagged("a2", "a2 OK")
	p.CutFetchLiterals(1, after)
	r.send("a3 FETCH * (BODY.PEEK[])\r\n")
	line := r.line()
	if size, _, ok := trailingLiteral([]byte(line)); !ok || size != largeSize || !strings.Contains(line, " FETCH ") {
		t.Fatalf("got %q, want the FETCH of the %d-byte message", line, largeSize)
	}
	rest, err := io.ReadAll(r.br)
	if err != nil || len(rest) != after {
		t.Fatalf("after the literal's announcement read %d bytes, %v; want %d bytes and end of stream", len(rest), err, after)
	}
	if want := testbed.LargeMessage(largeSeed, largeSize).Raw[:after]; !bytes.Equal(rest, want) {
		t.Fatalf("the %d bytes relayed are not the message's first bytes", after)
	}
}

func testDropConnections(t *testing.T, upstream string) {
	p := StartForTest(t, upstream)
	c1, c2 := dial(t, p.Addr(), alice), dial(t, p.Addr(), alice)
	if n := p.DropConnections(); n != 2 {
		t.Fatalf("DropConnections() = %d, want 2", n)
	}
	waitForClose(t, c1)
	waitForClose(t, c2)
	if err := dial(t, p.Addr(), alice).Noop().Wait(); err != nil {
		t.Fatalf("NOOP on a new connection: %v", err)
	}
}

// testClose closes the proxy under an open, idle connection; Close must
// not wait for the client.
func testClose(t *testing.T, upstream string) {
	p, err := Start(upstream)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr(), alice)
	r := dialRaw(t, p.Addr()) // never logs in nor reads
	_ = r
	done := make(chan error)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close() = %v", err)
		}
	case <-time.After(waitClosed):
		t.Fatalf("Close() still running after %v", waitClosed)
	}
	waitForClose(t, c)
	if err := p.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	if conn, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Close", p.Addr())
	}
	if st := p.Stats(); st.Open != 0 {
		t.Fatalf("Stats().Open = %d after Close, want 0", st.Open)
	}
}

func testUpstreamDown(t *testing.T, _ string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := StartForTest(t, dead)
	c, err := imapclient.DialInsecure(p.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantIMAPError(t, c.WaitGreeting(), imap.StatusResponseTypeBye, imap.ResponseCodeUnavailable, "")
}

// dial logs in through addr and closes the client at the end of the test.
func dial(t *testing.T, addr string, u testbed.User) *imapclient.Client {
	t.Helper()
	c, err := testbed.Dial(addr, u.Name, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitForClose(t *testing.T, c *imapclient.Client) {
	t.Helper()
	select {
	case <-c.Closed():
	case <-time.After(waitClosed):
		t.Fatalf("client connection still open after %v", waitClosed)
	}
}

// wantIMAPError checks err's status, code and text; an empty text is not
// compared.
func wantIMAPError(t *testing.T, err error, typ imap.StatusResponseType, code imap.ResponseCode, text string) {
	t.Helper()
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Type != typ || imapErr.Code != code || (text != "" && imapErr.Text != text) {
		t.Fatalf("error = %v, want %s [%s] %s", err, typ, code, text)
	}
}

// fetchAll returns the BODY[] of every message in every selectable folder,
// keyed by folder and UID.
func fetchAll(c *imapclient.Client) (map[string][]byte, error) {
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	all := map[string][]byte{}
	for _, mbox := range list {
		if slices.Contains(mbox.Attrs, imap.MailboxAttrNoSelect) {
			continue
		}
		sel, err := c.Select(mbox.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return nil, fmt.Errorf("examine %q: %w", mbox.Mailbox, err)
		}
		// One FETCH per message, all sent before any is read. Dovecot
		// runs pipelined FETCHes in parallel and interleaves their
		// responses, and go-imap hands each literal to its command's
		// reader, so each command needs a reader of its own.
		type result struct {
			msgs []*imapclient.FetchMessageBuffer
			err  error
		}
		results := make([]chan result, sel.NumMessages)
		for i := range results {
			cmd := c.Fetch(imap.SeqSetNum(uint32(i+1)), &imap.FetchOptions{
				UID:         true,
				BodySection: []*imap.FetchItemBodySection{{Peek: true}},
			})
			results[i] = make(chan result, 1)
			go func() {
				msgs, err := cmd.Collect()
				results[i] <- result{msgs, err}
			}()
		}
		for i, ch := range results {
			r := <-ch
			if r.err != nil || len(r.msgs) != 1 {
				return nil, fmt.Errorf("fetch %q seq %d: %d messages, %v", mbox.Mailbox, i+1, len(r.msgs), r.err)
			}
			all[mbox.Mailbox+"/"+strconv.Itoa(int(r.msgs[0].UID))] = r.msgs[0].FindBodySection(&imap.FetchItemBodySection{})
		}
	}
	return all, nil
}

// fetchMailbox returns the BODY[] of every message of mailbox in order.
func fetchMailbox(c *imapclient.Client, mailbox string) ([][]byte, error) {
	return fetchRange(c, mailbox, imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}})
}

func fetchRange(c *imapclient.Client, mailbox string, set imap.SeqSet) ([][]byte, error) {
	if _, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return nil, fmt.Errorf("examine %q: %w", mailbox, err)
	}
	msgs, err := c.Fetch(set, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		return nil, fmt.Errorf("fetch %q: %w", mailbox, err)
	}
	bodies := make([][]byte, len(msgs))
	for i, m := range msgs {
		bodies[i] = m.FindBodySection(&imap.FetchItemBodySection{})
	}
	return bodies, nil
}

// rawConn speaks IMAP by hand, for what go-imap does not send and for
// checking exact bytes.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialRaw connects and reads the greeting.
func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	r.expectPrefix("* OK ")
	return r
}

func (r *rawConn) send(format string, args ...any) {
	r.t.Helper()
	if _, err := fmt.Fprintf(r.c, format, args...); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// line reads one line and returns it without CRLF.
func (r *rawConn) line() string {
	r.t.Helper()
	line, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read line: got %q, %v", line, err)
	}
	return strings.TrimSuffix(line, "\r\n")
}

func (r *rawConn) expectLine(want string) {
	r.t.Helper()
	if got := r.line(); got != want {
		r.t.Fatalf("got %q, want %q", got, want)
	}
}

func (r *rawConn) expectPrefix(prefix string) {
	r.t.Helper()
	if got := r.line(); !strings.HasPrefix(got, prefix) {
		r.t.Fatalf("got %q, want a line starting with %q", got, prefix)
	}
}

// expectTagged skips untagged responses (and their literals) until the
// response tagged tag, which must start with prefix.
func (r *rawConn) expectTagged(tag, prefix string) {
	r.t.Helper()
	for {
		line := r.line()
		if strings.HasPrefix(line, tag+" ") {
			if !strings.HasPrefix(line, prefix) {
				r.t.Fatalf("got %q, want %q...", line, prefix)
			}
			return
		}
		if size, _, ok := trailingLiteral([]byte(line)); ok && strings.HasPrefix(line, "* ") {
			if _, err := io.CopyN(io.Discard, r.br, size); err != nil {
				r.t.Fatalf("read literal: %v", err)
			}
		}
	}
}

// expectEOF checks that the connection ends cleanly with nothing more.
func (r *rawConn) expectEOF() {
	r.t.Helper()
	rest, err := io.ReadAll(r.br)
	if err != nil || len(rest) != 0 {
		r.t.Fatalf("read %q, %v; want a clean end of stream", rest, err)
	}
}

// TestCloseLeavesNoGoroutines closes a proxy whose connections are stuck in
// every way a relay can be: idle, waiting for the server's "+" to a
// synchronizing literal, blocked writing to a client that does not read,
// and holding a line back for the latency. Close must return at once and
// leave no goroutine behind.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	upstream, upstreamStop := startStuckServer(t)
	p, err := Start(upstream)
	if err != nil {
		t.Fatal(err)
	}

	connect := func(send string) net.Conn {
		c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Read(make([]byte, 64)); err != nil { // the greeting
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
		return c
	}
	connect("")                         // idle
	connect("a1 APPEND INBOX {10}\r\n") // waits for a "+" that never comes
	connect("a1 BLAST\r\n")             // never reads the 1 GB literal
	p.SetLatency(time.Hour)             // the next greeting is held back
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Cleanup(func() { c.Close() })
	}
	time.Sleep(200 * time.Millisecond) // let the relays get stuck

	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close() took %v", d)
	}
	upstreamStop()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// startStuckServer runs a minimal IMAP server that greets, never answers a
// command, and answers BLAST with a 1 GB FETCH literal that it writes until
// the connection breaks. stop closes everything and waits for its
// goroutines; it is also called at the end of the test.
func startStuckServer(t *testing.T) (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
		once  sync.Once
	)
	serve := func(c net.Conn) {
		defer wg.Done()
		if _, err := io.WriteString(c, "* OK stuck server ready\r\n"); err != nil {
			return
		}
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if strings.Contains(line, "BLAST") {
				if _, err := io.WriteString(c, "* 1 FETCH (BODY[] {1073741824}\r\n"); err != nil {
					return
				}
				chunk := bytes.Repeat([]byte("x"), 64<<10)
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go serve(c)
		}
	}()
	stop = func() {
		once.Do(func() {
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

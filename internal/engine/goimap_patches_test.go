package engine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// The patched go-imap (third_party/go-imap) sends APPEND literals above
// 4 KB non-synchronizing when the server has LITERAL+: no round trip per
// message. This server never sends a continuation request, so a client
// waiting for one would hang.
func TestAppendUsesLiteralPlusForLargeMessages(t *testing.T) {
	const size = 64 << 10
	got := make(chan string, 1)
	c := scriptedServer(t, "LITERAL+", func(c net.Conn, r *bufio.Reader) {
		line, err := r.ReadString('\n')
		if err != nil {
			got <- err.Error()
			return
		}
		got <- strings.TrimSpace(line)
		if strings.HasSuffix(strings.TrimSpace(line), fmt.Sprintf("{%d+}", size)) {
			io.CopyN(io.Discard, r, size+2)
			tag := strings.Fields(line)[0]
			fmt.Fprintf(c, "%s OK APPEND done\r\n", tag)
		}
	})
	done := make(chan error, 1)
	go func() {
		cmd := c.Append("INBOX", size, &imap.AppendOptions{})
		cmd.Write([]byte(strings.Repeat("x", size)))
		cmd.Close()
		_, err := cmd.Wait()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("APPEND = %v (server saw %q)", err, <-got)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("APPEND of %d bytes waited for a continuation request; the command line was %q", size, <-got)
	}
}

// The patched go-imap sends several messages in one APPEND (RFC 3502
// MULTIAPPEND) and reads the uid-set of its APPENDUID answer.
func TestMultiAppendWireFormat(t *testing.T) {
	got := make(chan string, 1)
	c := scriptedServer(t, "LITERAL+ MULTIAPPEND UIDPLUS", func(c net.Conn, r *bufio.Reader) {
		var b strings.Builder
		for !strings.HasSuffix(b.String(), "world\r\n") {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				break
			}
		}
		got <- b.String()
		tag := strings.Fields(b.String())[0]
		fmt.Fprintf(c, "%s OK [APPENDUID 42 7:8] done\r\n", tag)
	})
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	cmd := c.MultiAppend("INBOX")
	for _, body := range []string{"hello", "world"} {
		w := cmd.Message(int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: date})
		io.WriteString(w, body)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Close()
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("MULTIAPPEND = %v", err)
	}
	const want = `T1 APPEND INBOX (\Seen) " 2-Jan-2020 03:04:05 +0000" {5+}` + "\r\nhello" +
		` (\Seen) " 2-Jan-2020 03:04:05 +0000" {5+}` + "\r\nworld\r\n"
	if w := <-got; w != want {
		t.Fatalf("server read\n%q\nwant\n%q", w, want)
	}
	uids, _ := data.UIDs.Nums()
	if data.UIDValidity != 42 || len(uids) != 2 || uids[0] != 7 || uids[1] != 8 {
		t.Fatalf("APPENDUID = %d %v, want 42 [7 8]", data.UIDValidity, uids)
	}
}

// A server may refuse a MULTIAPPEND before its last message (Dovecot does
// when saving one fails). The client must not then wait for a continuation
// request that never comes: the next message fails at once, and Wait
// returns the server's answer.
func TestMultiAppendRefusedEarlyDoesNotHang(t *testing.T) {
	answered := make(chan struct{})
	c := scriptedServer(t, "MULTIAPPEND", func(c net.Conn, r *bufio.Reader) {
		line, err := r.ReadString('\n') // T1 APPEND INBOX {8192}
		if err != nil {
			return
		}
		fmt.Fprintf(c, "+ go ahead\r\n")
		io.CopyN(io.Discard, r, 8192)
		fmt.Fprintf(c, "%s NO [OVERQUOTA] Quota exceeded\r\n", strings.Fields(line)[0])
		close(answered)
		io.Copy(io.Discard, r)
	})
	cmd := c.MultiAppend("INBOX")
	// Large enough to leave the client's write buffer at once.
	w := cmd.Message(8192, nil)
	io.WriteString(w, strings.Repeat("x", 8192))
	w.Close()
	<-answered
	time.Sleep(50 * time.Millisecond) // let the client read the answer
	done := make(chan error, 1)
	go func() {
		w := cmd.Message(5, nil)
		_, err := io.WriteString(w, "world")
		w.Close()
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a message added after the server's answer was written")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the next message waits for a continuation request that never comes")
	}
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "Quota") {
		t.Fatalf("Wait() = %v, want the server's NO", err)
	}
}

// A server that greets with BYE and hangs up is reported with its words,
// whenever the client looks: the reader closes both of the channels
// WaitGreeting waits on, and stock go-imap picked one at random.
func TestWaitGreetingReportsABye(t *testing.T) {
	addr := serveEach(t, listen(t), func(c net.Conn) {
		fmt.Fprintf(c, "* BYE [UNAVAILABLE] too many connections\r\n")
	})
	for i := 0; i < 20; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := imapclient.New(conn, nil)
		time.Sleep(10 * time.Millisecond) // the reader is done by now
		err = c.WaitGreeting()
		c.Close()
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable {
			t.Fatalf("try %d: WaitGreeting() = %v, want the BYE [UNAVAILABLE]", i, err)
		}
	}
}

// scriptedServer accepts one connection, greets it with caps and hands it to
// serve; it returns a client connected to it.
func scriptedServer(t *testing.T, caps string, serve func(c net.Conn, r *bufio.Reader)) *imapclient.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1 %s] ready\r\n", caps)
		serve(c, bufio.NewReader(c))
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(conn, nil)
	t.Cleanup(func() { c.Close() })
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	return c
}

// Patch 3 must not cancel the continuation request of a command not sent
// yet: AUTHENTICATE registers it before the command, and a server without
// SASL-IR asks for the initial response with a continuation request.
func TestAuthenticateWithoutSASLIR(t *testing.T) {
	c := scriptedServer(t, "AUTH=PLAIN", func(conn net.Conn, r *bufio.Reader) {
		line, _ := r.ReadString('\n')
		tag, _, _ := strings.Cut(line, " ")
		if !strings.Contains(line, "AUTHENTICATE PLAIN") {
			fmt.Fprintf(conn, "%s BAD expected AUTHENTICATE PLAIN\r\n", tag)
			return
		}
		fmt.Fprintf(conn, "+ \r\n")
		resp, _ := r.ReadString('\n')
		if strings.TrimSpace(resp) != "AHVzZXIAc2VjcmV0" { // "\0user\0secret"
			fmt.Fprintf(conn, "%s NO bad response %q\r\n", tag, resp)
			return
		}
		fmt.Fprintf(conn, "%s OK authenticated\r\n", tag)
	})
	done := make(chan error, 1)
	go func() { done <- c.Authenticate(sasl.NewPlainClient("", "user", "secret")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Authenticate() = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Authenticate() hangs")
	}
}

// Patch 6: an empty response to a challenge is an empty line. XOAUTH2
// refusals come as a challenge the client answers with an empty response;
// Dovecot refuses "=" there as invalid base64, and the logon then ends in
// a BAD instead of the NO that makes the worker fetch a fresh token.
func TestEmptySASLResponseIsAnEmptyLine(t *testing.T) {
	c := scriptedServer(t, "AUTH=XOAUTH2 SASL-IR", func(conn net.Conn, r *bufio.Reader) {
		line, _ := r.ReadString('\n')
		tag, _, _ := strings.Cut(line, " ")
		fmt.Fprintf(conn, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n") // {"status":"401"}
		resp, _ := r.ReadString('\n')
		if resp != "\r\n" {
			fmt.Fprintf(conn, "%s BAD Invalid base64 data in continued response %q\r\n", tag, resp)
			return
		}
		fmt.Fprintf(conn, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag)
	})
	err := c.Authenticate(&xoauth2{user: "user", token: "expired"})
	if !isAuthFailure(err) {
		t.Fatalf("Authenticate() = %v, want the server's NO", err)
	}
}

package engine

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/testbed"
)

// compressServer answers every command OK (announcing COMPRESS=DEFLATE)
// until COMPRESS, which it answers with compress(c, tag, r), where r reads
// what the client sent after the command.
func compressServer(t *testing.T, compress func(c net.Conn, tag string, r *bufio.Reader)) string {
	t.Helper()
	return serveEach(t, listen(t), func(c net.Conn) {
		fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] deflating\r\n")
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch verb, _, _ := strings.Cut(strings.ToUpper(cmd), " "); verb {
			case "CAPABILITY":
				fmt.Fprintf(c, "* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE\r\n%s OK done\r\n", tag)
			case "COMPRESS":
				compress(c, tag, r)
				return
			default:
				fmt.Fprintf(c, "%s OK done\r\n", tag)
			}
		}
	})
}

// deflated answers every command OK over a deflated stream, after first.
func deflated(c net.Conn, r *bufio.Reader, first []byte) {
	fw, _ := flate.NewWriter(c, flate.DefaultCompression)
	fw.Write(first)
	fw.Flush()
	cr := bufio.NewReader(flate.NewReader(r))
	for {
		line, err := cr.ReadString('\n')
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(line, " ")
		fmt.Fprintf(fw, "%s OK done\r\n", tag)
		fw.Flush()
	}
}

func dialCompressed(addr string) (*Session, error) {
	// Dial closes the session when its context ends: the tests time out
	// on their own.
	return Dial(context.Background(), failure.SideSource, Endpoint{Addr: addr, Security: SecurityNone, Compress: true}, Credentials{User: "u", Password: "p"})
}

// The server's OK and its first deflated bytes arrive in one packet: they
// are decoded, not lost or taken for plain text.
func TestReviewCompressDataRightAfterTheOK(t *testing.T) {
	addr := compressServer(t, func(c net.Conn, tag string, r *bufio.Reader) {
		var z bytes.Buffer
		fw, _ := flate.NewWriter(&z, flate.DefaultCompression)
		fw.Write([]byte("* OK [ALERT] deflated at once\r\n"))
		fw.Flush()
		c.Write(append([]byte(tag+" OK deflating\r\n"), z.Bytes()...))
		deflated(c, r, nil)
	})
	s, err := dialCompressed(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Compressed {
		t.Fatal("not compressed")
	}
	if err := s.Client.Noop().Wait(); err != nil {
		t.Fatalf("NOOP after COMPRESS = %v", err)
	}
}

// A deflated answer that inflates to an endless line (200 MiB from a few
// hundred KB on the wire) is bounded like a plain one: an error, the
// heap small. (Dial itself succeeds: the LIST that learns the separator
// ignores its error; the next command finds the connection closed.)
func TestReviewCompressBombIsBounded(t *testing.T) {
	addr := compressServer(t, func(c net.Conn, tag string, r *bufio.Reader) {
		fmt.Fprintf(c, "%s OK deflating\r\n", tag)
		fw, _ := flate.NewWriter(c, flate.BestCompression)
		fw.Write([]byte("* OK "))
		line := bytes.Repeat([]byte("a"), 1<<20)
		for range 200 {
			if _, err := fw.Write(line); err != nil {
				return
			}
			if fw.Flush() != nil {
				return
			}
		}
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := dialCompressed(addr)
	if err == nil {
		err = s.Client.Noop().Wait()
		s.Close()
	}
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("Dial/NOOP succeeded over a bomb")
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 128<<20 {
		t.Fatalf("the heap grew by %d MiB reading the answer", grew>>20)
	}
}

// Garbage instead of a deflate stream: an error, never a hang or a panic.
func TestReviewCompressGarbageStreamFails(t *testing.T) {
	addr := compressServer(t, func(c net.Conn, tag string, r *bufio.Reader) {
		fmt.Fprintf(c, "%s OK deflating\r\n", tag)
		junk := make([]byte, 64<<10)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		c.Write(junk)
		io.Copy(io.Discard, r)
	})
	done := make(chan error, 1)
	go func() {
		s, err := dialCompressed(addr)
		if err == nil {
			err = s.Client.Noop().Wait()
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a garbage deflate stream went unnoticed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("hung on a garbage deflate stream")
	}
}

// A server that announces COMPRESS=DEFLATE may still refuse it (RFC 4978:
// NO, e.g. [COMPRESSIONACTIVE] when TLS compresses already, or a proxy
// that cannot): the connection is as good as before, uncompressed. The
// logon must not fail for an optimisation.
func TestReviewCompressRefusedFallsBackToPlain(t *testing.T) {
	addr := compressServer(t, func(c net.Conn, tag string, r *bufio.Reader) {
		fmt.Fprintf(c, "%s NO [COMPRESSIONACTIVE] TLS compression is on\r\n", tag)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, _, _ := strings.Cut(line, " ")
			fmt.Fprintf(c, "%s OK done\r\n", tag)
		}
	})
	s, err := dialCompressed(addr)
	if err != nil {
		fe, _ := failure.As(err)
		t.Fatalf("Dial() = %v (type %s); want an uncompressed session", err, fe.Type)
	}
	defer s.Close()
	if s.Compressed {
		t.Fatal("Compressed after NO")
	}
	if err := s.Client.Noop().Wait(); err != nil {
		t.Fatalf("NOOP after a refused COMPRESS = %v", err)
	}
}

// Large literals both ways over deflated connections to Dovecot: a
// 12 MB message (incompressible, and a compressible one) appended over a
// compressed session, then copied between two compressed sessions,
// arrives byte for byte.
func TestReviewCompressLargeLiteralsToDovecot(t *testing.T) {
	if err := testbed.EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	users := []testbed.User{{Name: testUser, Password: testPass}}
	srcSrv := testbed.StartForTest(t, testbed.Options{Name: "zbigsrc", Users: users, Compress: true})
	tgtSrv := testbed.StartForTest(t, testbed.Options{Name: "zbigtgt", Users: users, Compress: true})
	open := func(side failure.Side, addr string) *Session {
		s, err := Dial(context.Background(), side, Endpoint{Addr: addr, Security: SecurityNone, Compress: true}, Credentials{User: testUser, Password: testPass})
		if err != nil || !s.Compressed {
			t.Fatalf("Dial() = %v (compressed %v)", err, s != nil && s.Compressed)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	src, tgt := open(failure.SideSource, srcSrv.Addr()), open(failure.SideTarget, tgtSrv.Addr())
	rng := rand.New(rand.NewPCG(5, 5))
	noise := make([]byte, 12<<20)
	for i := range noise {
		noise[i] = 'A' + byte(rng.IntN(26))
		if i%77 == 76 {
			noise[i-1], noise[i] = '\r', '\n'
		}
	}
	for i, body := range [][]byte{noise, bytes.Repeat([]byte("same line again\r\n"), 700000)} {
		raw := append([]byte(fmt.Sprintf("From: a@example.com\r\nSubject: big %d\r\nMessage-ID: <big%d@example.com>\r\n\r\n", i, i)), body...)
		cmd := src.Client.Append("INBOX", int64(len(raw)), nil)
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("APPEND %d MB over COMPRESS = %v", len(raw)>>20, err)
		}
	}
	seed(t, src, "INBOX", 0, 20)
	if _, _, err := SyncFolder(context.Background(), src, tgt, Cursor{Source: "INBOX", Target: "INBOX"}, Options{Batch: 3}); err != nil {
		t.Fatal(err)
	}
	assertSame(t, src, tgt, "INBOX", "INBOX")
}

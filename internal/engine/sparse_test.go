package engine

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

// A folder whose every second message was deleted, copied without a
// message limit per call: one FETCH naming all 12,000 UIDs would be a
// 72 KB line, which go-imap's server (50 KiB) and Dovecot (64 KiB) refuse.
// Chunks end at chunkRanges ranges, and every message is copied once.
func TestSparseFolderCopiesInChunksServersAccept(t *testing.T) {
	const n = 12_000
	srcAddr, tgtAddr := sparseFolder(t, n), memServer(t, "Sparse")
	var dialed atomic.Int32
	lane := &Lane{Dial: pairs(srcAddr, tgtAddr, &dialed), Connections: 1}
	p := NewLaneProgress(cursors("Sparse"))
	calls := 0
	for ; !p.Done[0] && calls < 20; calls++ {
		res, err := lane.Run(context.Background(), p)
		if err != nil {
			t.Fatalf("Run() after %d calls = %v", calls, err)
		}
		p = res
	}
	if !p.Done[0] || p.Copied != n || calls != n/chunkRanges {
		t.Fatalf("after %d calls: done %v, %d copied; want %d copied in %d calls", calls, p.Done[0], p.Copied, n, n/chunkRanges)
	}
	tgt := dial(t, failure.SideTarget, tgtAddr)
	st, err := tgt.Client.Status("Sparse", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != n {
		t.Fatalf("target holds %v messages (%v), want %d", st, err, n)
	}
}

// sparseFolder serves a source folder "Sparse" of n messages whose UIDs
// are every second one (the others expunged), and returns its address.
func sparseFolder(t *testing.T, n int) string {
	t.Helper()
	u := memserver.NewUser(t, "Sparse")
	for i := range 2 * n {
		var flags []imap.Flag
		if i%2 == 1 {
			flags = []imap.Flag{imap.FlagDeleted}
		}
		raw := fmt.Appendf(nil, "From: a@example.com\r\nMessage-ID: <%d@sparse.example>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i)
		if _, err := u.Append("Sparse", sized{bytes.NewReader(raw)}, &imap.AppendOptions{Time: time.Date(2015, 1, 1, 0, i, 0, 0, time.UTC), Flags: flags}); err != nil {
			t.Fatal(err)
		}
	}
	addr := memserver.Serve(t, memserver.Sessions(u))
	src := dial(t, failure.SideSource, addr)
	if _, err := src.Client.Select("Sparse", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := src.Client.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	src.Close()
	return addr
}

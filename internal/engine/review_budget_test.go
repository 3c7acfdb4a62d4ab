package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/memserver"
)

// folderBytes is the sum of RFC822.SIZE over a folder's messages.
func folderBytes(t *testing.T, s *Session, folder string) (n int, bytes int64) {
	t.Helper()
	sel, err := s.Client.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", folder, err)
	}
	if sel.NumMessages == 0 {
		return 0, 0
	}
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	msgs, err := s.Client.Fetch(all, &imap.FetchOptions{RFC822Size: true}).Collect()
	if err != nil {
		t.Fatalf("fetch sizes of %s: %v", folder, err)
	}
	for _, m := range msgs {
		bytes += m.RFC822Size
	}
	return len(msgs), bytes
}

// A chunk copied in parallel under a byte grant fails in its first block
// (the main pair's source drops mid-message) while the helper's block has
// already stored hundreds of messages. The call must report (in
// Stats.Downloaded, which the workflow's ledger charges; the rest of the
// grant is refunded) every byte it moved to the target: what the later block
// stored was downloaded and uploaded, and counts against the provider's
// budget even though the next attempt only matches it.
func TestReviewParallelFailureReportsEveryByteItMoved(t *testing.T) {
	srcUser := memserver.NewUser(t, "Work")
	big := 600
	for i := range 1200 {
		body := fmt.Sprintf("body %d\r\n", i)
		if i == big {
			body = strings.Repeat("a big message that the proxy cuts in the middle\r\n", 400)
		}
		raw := []byte(fmt.Sprintf("From: a@example.com\r\nSubject: m %d\r\nMessage-ID: <m%d@example.com>\r\n\r\n%s", i, i, body))
		put(srcUser, raw, time.Date(2020, 1, 1, 0, 0, i%60, 0, time.UTC), nil)
	}
	srcAddr := memserver.Serve(t, memserver.Sessions(srcUser))
	tgtAddr := memServer(t, "Work")
	proxy := faultproxy.StartForTest(t, srcAddr)
	proxy.CutFetchLiterals(1, 10000) // only the big message

	// The main pair (the first block) reads the source through the proxy;
	// the helper (the second block) directly.
	src, tgt := dial(t, failure.SideSource, proxy.Addr()), dial(t, failure.SideTarget, tgtAddr)
	lent := 0
	const grant = 1 << 30
	_, st, err := SyncFolder(context.Background(), src, tgt, fresh("Work"), Options{MaxBytes: grant, Batch: 1,
		Helpers: helpers(t, srcAddr, tgtAddr, "", &lent)})
	if err == nil || lent == 0 {
		t.Fatalf("SyncFolder() = %v with %d helpers, want the first block's cut and a helper", err, lent)
	}
	check := dial(t, failure.SideTarget, tgtAddr)
	n, stored := folderBytes(t, check, "Work")
	// The cut message may be stored short by the in-memory server: allow
	// for one message.
	if charged := max(st.Bytes, st.Downloaded); stored > charged {
		t.Fatalf("the failed call stored %d messages, %d bytes, on the target but reported Copied %d, Bytes %d, Downloaded %d: "+
			"the ledger refunds %d bytes that were transferred", n, stored, st.Copied, st.Bytes, st.Downloaded, stored-charged)
	}
}

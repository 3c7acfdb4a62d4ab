package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/testbed"
)

// Against a target with MULTIAPPEND (Dovecot), messages go in batches, one
// transaction each. A message the target refuses spoils its whole batch:
// the batch is sent again one message per command, the refused message
// becomes the one bad item, and nothing else is lost or stored twice.
func TestSyncFolderBatchesAndIsolatesARefusedMessage(t *testing.T) {
	if err := testbed.EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	dovecot := testbed.StartForTest(t, testbed.Options{Name: "multiappend", MaxMessageBytes: 64 << 10, Users: []testbed.User{{Name: testUser, Password: testPass}}})
	srcAddr := memServer(t, "Work")
	if err := dial(t, failure.SideTarget, dovecot.Addr()).Client.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	src := dial(t, failure.SideSource, srcAddr)
	seed(t, src, "Work", 0, 25)
	big := []byte("Subject: too large\r\nMessage-ID: <big@example.com>\r\n\r\n" + strings.Repeat("x", 100<<10) + "\r\n")
	cmd := src.Client.Append("Work", int64(len(big)), &imap.AppendOptions{Time: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)})
	cmd.Write(big)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	seed(t, src, "Work", 25, 25) // the refused message is UID 26 of 51
	proxy := faultproxy.StartForTest(t, dovecot.Addr())
	tgt := dial(t, failure.SideTarget, proxy.Addr())
	if !tgt.Caps.Has(imap.CapMultiAppend) {
		t.Fatal("the test bed's Dovecot does not advertise MULTIAPPEND")
	}

	cur := Cursor{Source: "Work", Target: "Work"}
	var bad []BadItem
	copied := 0
	for attempt := 1; ; attempt++ {
		next, st, err := SyncFolder(context.Background(), src, tgt, cur, Options{Batch: 10})
		cur = next
		bad = append(bad, st.BadItems...)
		copied += st.Copied + st.Matched
		if err == nil {
			break
		}
		if !errors.Is(err, ErrReconnect) || attempt > 3 {
			t.Fatalf("attempt %d: SyncFolder() = %v, want ErrReconnect then success", attempt, err)
		}
		src.Close()
		tgt.Close()
		src, tgt = dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, proxy.Addr())
	}
	if len(bad) != 1 || bad[0].UID != 26 {
		t.Fatalf("bad items = %+v, want only UID 26", bad)
	}
	// Batches in flight behind the refused one were stored; the next
	// attempt finds them on the target instead of copying them again.
	if copied != 50 {
		t.Fatalf("copied or found %d messages, want 50", copied)
	}
	if n := proxy.Stats().Commands["APPEND"]; n >= 40 {
		t.Fatalf("%d APPEND commands for 51 messages in batches of 10; want batches", n)
	}
	_, firstMapped := cur.Map.Lookup(1)
	_, lastMapped := cur.Map.Lookup(51)
	if cur.LastUID != 51 || !firstMapped || !lastMapped {
		t.Fatalf("cursor = %+v, want every message accounted for and mapped", cur)
	}
	// The target holds every message but the refused one, each once.
	a, b := contents(t, src, "Work"), contents(t, tgt, "Work")
	if len(b) != 50 {
		t.Fatalf("target has %d messages, want 50", len(b))
	}
	a = slices.DeleteFunc(a, func(m msgInfo) bool { return m.date.Year() == 2021 }) // the refused one
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("message %d differs: source %+v, target %+v", i, a[i], b[i])
		}
	}
}

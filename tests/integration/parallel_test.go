package integration

import (
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// A mailbox that is one large INBOX on a server with no other folder: the
// move's three connections per side, which would otherwise serve three folder
// lanes, copy chunks of the INBOX over three pairs at once — still exactly.
func TestLargeFolderIsCopiedOverSeveralConnections(t *testing.T) {
	a := account{user: "bigfolder@example.com", password: "pw-bigfolder"}
	source := testbed.StartForTest(t, testbed.Options{Name: "one-folder", Users: []testbed.User{{Name: a.user, Password: a.password}}})
	if err := env.target.AddUser(testbed.User{Name: a.user, Password: a.password}); err != nil {
		t.Fatal(err)
	}
	inbox := testbed.Folder{Name: "INBOX"}
	for _, f := range testbed.SampleMailbox(2600, 3000) {
		inbox.Messages = append(inbox.Messages, f.Messages...)
	}
	if err := testbed.Seed(source.Addr(), a.user, a.password, []testbed.Folder{inbox}); err != nil {
		t.Fatal(err)
	}
	src := faultproxy.StartForTest(t, source.Addr())
	peakOpen := watchPeakOpen(src)
	startBatchTo(t, "default", "bigfolder", writeCSV(t, []account{a}, func(a account) string { return a.password }), src.Addr(), env.target.Addr(),
		"--connections-per-move", "3", "--chunk-messages", "1500")
	r := waitTerminal(t, "default", "bigfolder", 3*time.Minute)
	peak := peakOpen()
	if m := r.Moves[0]; m.Status != workflows.StatusCompleted {
		t.Fatalf("%s: %s/%s (%s)", m.Mailbox, m.Status, m.StatusDetail, m.Reason)
	}
	srcSnap, err := testbed.TakeSnapshot(source.Addr(), a.user, a.password)
	if err != nil {
		t.Fatal(err)
	}
	tgtSnap, err := testbed.TakeSnapshot(env.target.Addr(), a.user, a.password)
	if err != nil {
		t.Fatal(err)
	}
	if diff := testbed.Diff(srcSnap, tgtSnap, nil); len(diff) > 0 {
		t.Fatalf("target differs from source: %v", diff[:min(len(diff), 10)])
	}
	// One lane holds one connection; the proxy counts one closing while the
	// next opens. Three at once means the INBOX was split.
	if peak < 3 {
		t.Fatalf("at most %d connections to the source at once, want 3 (the INBOX over three pairs)", peak)
	}
}

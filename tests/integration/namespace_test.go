package integration

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// A Courier- or cPanel-style source keeps personal folders below "INBOX."
// (RFC 2342 namespace prefix, '.' separator): "INBOX.Work.2024" is the
// folder Work/2024, not INBOX/Work/2024, on a target without a prefix.
func TestCourierStyleNamespaceSource(t *testing.T) {
	courier, err := testbed.Start(testbed.Options{Name: "courier", Dir: filepath.Join(t.TempDir(), "courier"), Separator: ".", Prefix: "INBOX."})
	if err != nil {
		t.Fatal(err)
	}
	defer courier.Stop()
	a := account{user: "courier@example.com", password: "pw-courier"}
	for _, s := range []*testbed.Server{courier, env.target} {
		if err := s.AddUser(testbed.User{Name: a.user, Password: a.password}); err != nil {
			t.Fatal(err)
		}
	}
	if err := testbed.Seed(courier.Addr(), a.user, a.password, testbed.SampleMailbox(1200, 150)); err != nil {
		t.Fatal(err)
	}
	csv := writeCSV(t, []account{a}, func(a account) string { return a.password })
	startBatchTo(t, "default", "courier", csv, courier.Addr(), env.target.Addr())
	m := onlyMove(t, waitTerminal(t, "default", "courier", 3*time.Minute))
	if m.Status != workflows.StatusCompleted {
		t.Fatalf("%s (%s), want Completed", m.Status, m.Reason)
	}
	src, tgt := snapshots(t, courier.Addr(), env.target.Addr(), a)
	if diff := testbed.Diff(src, tgt, testbed.OutlookName); len(diff) > 0 {
		t.Fatalf("source and target differ:\n%s", strings.Join(diff, "\n"))
	}
	// Diff maps each folder by its name without the prefix:
	// "INBOX.Archive.2024" on the source is Archive/2024 on the target, as
	// a Courier user sees it.
	if _, ok := tgt["Archive/2024"]; !ok {
		t.Fatalf("no folder Archive/2024 on the target; it has %v", keys(tgt))
	}
	t.Logf("%d folders, %d messages copied", len(tgt), m.Copied)
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

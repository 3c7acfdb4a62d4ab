package integration

import (
	"testing"
	"time"

	"github.com/mailmove/mailmove/workflows"
)

// A staged migration: a first batch moves the history (--older-than)
// weeks before the cutover, a second batch of the same users moves the
// rest into the populated targets. Every message lands exactly once: the
// second stage finds the first stage's copies by identity and copies only
// what is left.
func TestStagedMigrationCopiesEveryMessageOnce(t *testing.T) {
	accs := addAccounts(t, 5000, 120, "staged1", "staged2")
	csv := writeCSV(t, accs, func(a account) string { return a.password })
	startBatch(t, "default", "staged-history", csv, "--older-than", "2023-06-01")
	first := waitTerminal(t, "default", "staged-history", 5*time.Minute)
	startBatch(t, "default", "staged-cutover", csv)
	second := waitTerminal(t, "default", "staged-cutover", 5*time.Minute)
	for i, a := range accs {
		h, c := first.Moves[i], second.Moves[i]
		if h.Mailbox != a.user || c.Mailbox != a.user {
			t.Fatalf("moves %s, %s; want %s", h.Mailbox, c.Mailbox, a.user)
		}
		if h.Status != workflows.StatusCompleted || c.Status != workflows.StatusCompleted || c.Grade != workflows.GradePerfect {
			t.Fatalf("%s: history %s (%s), cutover %s grade %s (%s); want both Completed, the cutover Perfect", a.user, h.Status, h.Reason, c.Status, c.Grade, c.Reason)
		}
		if h.Copied == 0 || h.Filtered == 0 {
			t.Errorf("%s: the history stage copied %d and left %d for the cutover; want some of each", a.user, h.Copied, h.Filtered)
		}
		if c.Matched < h.Copied || h.Copied+c.Copied != c.MessagesTotal || c.DuplicatesRemoved != 0 {
			t.Errorf("%s: history copied %d; cutover found %d on the target, copied %d, of %d, removed %d duplicates; want every message copied once",
				a.user, h.Copied, c.Matched, c.Copied, c.MessagesTotal, c.DuplicatesRemoved)
		}
		assertIdentical(t, a)
	}
}

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// Gmail suspends an account that downloads more than 2,500 MB a day; here
// the budget is scaled down to 60% of the mailbox a minute. The move copies
// no more than the budget, waits visibly (WaitingForDailyQuota_Source,
// with the windows the budget needs shown before and during the copy),
// resumes when the window rolls over and ends with both sides identical.
func TestDailyBudgetWaitedOutAndShown(t *testing.T) {
	a := account{user: "budget@example.com", password: "pw-budget"}
	corpus := testbed.SampleMailbox(2300, 120)
	var total int64
	for _, f := range corpus {
		for _, m := range f.Messages {
			total += int64(len(m.Raw))
		}
	}
	limit := total * 6 / 10
	src := testbed.StartForTest(t, testbed.Options{Name: "budgetsrc", Users: []testbed.User{{Name: a.user, Password: a.password}}})
	if err := env.target.AddUser(testbed.User{Name: a.user, Password: a.password}); err != nil {
		t.Fatal(err)
	}
	if err := testbed.Seed(src.Addr(), a.user, a.password, corpus); err != nil {
		t.Fatal(err)
	}
	profiles := filepath.Join(t.TempDir(), "profiles.yaml")
	if err := os.WriteFile(profiles, fmt.Appendf(nil, "gmail:\n  downloadBytesPerWindow: %d\n  window: 1m\n", limit), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	startBatchTo(t, "default", "budget", writeCSV(t, []account{a}, func(a account) string { return a.password }), src.Addr(), env.target.Addr(),
		"--source-profile", "gmail", "--profiles", profiles)

	waiting := workflows.DetailWaitingForDailyQuotaPrefix + "Source"
	deadline := time.Now().Add(2 * time.Minute)
	var st workflows.MoveStatus
	for {
		if len(batchStatus(t, "default", "budget").Moves) > 0 {
			if st = moveStatus(t, "budget", a.user); st.StatusDetail == waiting || st.Status.Terminal() {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wait for the daily budget after 2 minutes: %s/%s", st.Status, st.StatusDetail)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.StatusDetail != waiting {
		t.Fatalf("%s/%s (%s) before any wait, want %s", st.Status, st.StatusDetail, st.Reason, waiting)
	}
	if st.Bytes > limit || st.Bytes == 0 {
		t.Fatalf("%d bytes copied when the move began to wait, budget %d", st.Bytes, limit)
	}
	if st.SourceProfile != "gmail" || st.BudgetWindows != 2 || st.BudgetWindow != time.Minute || !strings.Contains(st.Reason, "daily transfer budget") {
		t.Fatalf("profile %q, %d windows of %v, reason %q; want gmail, 2 windows of 1m and the budget named", st.SourceProfile, st.BudgetWindows, st.BudgetWindow, st.Reason)
	}
	if out := mailmove(t, "default", "batch", "status", "budget"); !strings.Contains(out, "needs 2 windows of 1m0s") || !strings.Contains(out, waiting) {
		t.Fatalf("batch status shows neither the wait nor the windows needed:\n%s", out)
	}
	m := onlyMove(t, waitTerminal(t, "default", "budget", 3*time.Minute))
	if m.Status != workflows.StatusCompleted {
		t.Fatalf("%s (%s), want Completed", m.Status, m.Reason)
	}
	if took := time.Since(start); took < 50*time.Second || m.StallTime[waiting] < 30*time.Second {
		t.Fatalf("done after %v, %v waited for the budget: the move did not wait for the next window", took, m.StallTime[waiting])
	}
	s, g := snapshots(t, src.Addr(), env.target.Addr(), a)
	if diff := testbed.Diff(s, g, testbed.OutlookName); len(diff) > 0 {
		t.Fatalf("source and target differ:\n%s", strings.Join(diff, "\n"))
	}
	t.Logf("%d bytes in %d messages over a budget of %d bytes a minute: waited %v, %d messages copied", total, m.MessagesTotal, limit, m.StallTime[waiting].Round(time.Second), m.Copied)
}

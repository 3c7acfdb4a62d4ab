package workflows

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/profile"
)

// reviewBudgetMove runs a move over the given folders of message sizes with
// budgetServer answering the sync calls, and returns the server.
func reviewBudgetMove(t *testing.T, folders [][]int64, src, tgt string, settings Settings, faults bool, seed uint64) *budgetServer {
	t.Helper()
	env := newEnv(t)
	srv := &budgetServer{env: env, sizes: map[string][]int64{}, copied: map[string]map[int]int{}, rng: rand.New(rand.NewPCG(seed, 5)), faults: faults}
	plan := activities.ConnectResult{SourceProfile: src, TargetProfile: tgt}
	for f, sizes := range folders {
		name := fmt.Sprintf("F%d", f)
		srv.sizes[name] = sizes
		srv.copied[name] = map[int]int{}
		var bytes int64
		for _, s := range sizes {
			bytes += s
		}
		plan.Folders = append(plan.Folders, engine.FolderPlan{Source: name, Target: name, Messages: uint32(len(sizes)), Bytes: bytes})
	}
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(plan, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(srv.sync)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(srv.sync)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.ExecuteWorkflow(MailboxMove, testInput(settings))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	for f, sizes := range srv.sizes {
		for k := range sizes {
			if c := srv.copied[f][k]; c != 1 {
				t.Fatalf("%s message %d copied %d times", f, k, c)
			}
		}
	}
	return srv
}

// maxInWindow is the most bytes the calls copied in any span of d starting
// at a call (a provider's window may start anywhere the move's does).
func maxInWindow(calls []budgetCall, d time.Duration) (most int64, from time.Time) {
	sort.SliceStable(calls, func(i, j int) bool { return calls[i].at.Before(calls[j].at) })
	for i, c := range calls {
		var sum int64
		for _, o := range calls[i:] {
			if o.at.Sub(c.at) >= d {
				break
			}
			sum += o.bytes
		}
		if sum > most {
			most, from = sum, c.at
		}
	}
	return most, from
}

// Budgets on both sides with different windows: a Gmail source's download
// budget per hour and a Dovecot target's upload budget per day, the daily
// one smaller in a day but larger than the hourly one. Both must hold; the
// move picks the smaller number and keeps to it per its own window only.
func TestReviewBudgetBothSidesWithDifferentWindows(t *testing.T) {
	const hourly, daily = 1000, 3000
	var sizes []int64
	for range 80 {
		sizes = append(sizes, 100) // 8,000 bytes: eight hourly windows, three days
	}
	settings := Settings{ConnectionsPerMove: 1, Profiles: map[string]profile.Limits{
		profile.Gmail:   {DownloadBytesPerWindow: hourly, Window: failure.Duration(time.Hour)},
		profile.Dovecot: {UploadBytesPerWindow: daily},
	}}
	srv := reviewBudgetMove(t, [][]int64{sizes}, profile.Gmail, profile.Dovecot, settings, false, 1)
	if most, from := maxInWindow(srv.calls, time.Hour); most > hourly {
		t.Errorf("%d bytes downloaded in the hour from %s, source budget %d per hour", most, from.Format(time.TimeOnly), hourly)
	}
	if most, from := maxInWindow(srv.calls, 24*time.Hour); most > daily {
		t.Errorf("%d bytes uploaded in the day from %s, target budget %d per day", most, from.Format(time.TimeOnly), daily)
	}
}

// Faults in twos: one lane waits for the daily budget while another waits
// out a dropped connection. The two waits save and restore the status each
// over the other: when the budget's window rolls, the move shows
// CopyingMessages with no reason while its only unfinished lane is still
// stalled (and no call runs).
func TestReviewQuotaWaitAndStallWaitKeepTheStatusRight(t *testing.T) {
	env := newEnv(t)
	plan := activities.ConnectResult{SourceProfile: profile.Gmail, Folders: []engine.FolderPlan{
		{Source: "A", Target: "A", Messages: 10, Bytes: 1000},
		{Source: "B", Target: "B", Messages: 1, Bytes: 100},
	}}
	var bFailed bool
	sync := func(_ context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		res := engine.NewLaneProgress(append([]engine.Cursor(nil), in.Cursors...))
		c := &res.Cursors[0]
		if c.Source == "B" {
			if !bFailed {
				bFailed = true
				time.Sleep(200 * time.Millisecond) // after A's result
				return res, failed(failure.TypeServerUnavailable, failure.SideSource, "ConnectionDropped", "", nil)
			}
			if in.MaxBytes < 100 && !in.WholeBudget {
				res.BudgetReached = true
				return res, nil
			}
			res.Copied, res.Bytes, c.LastUID, res.Done[0] = 1, 100, 1, true
			return res, nil
		}
		for c.LastUID < 10 && res.Bytes+100 <= in.MaxBytes {
			c.LastUID++
			res.Copied++
			res.Bytes += 100
		}
		res.Done[0] = c.LastUID == 10
		res.BudgetReached = !res.Done[0]
		return res, nil
	}
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(plan, nil)
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(sync)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(sync)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	seen := map[time.Duration]MoveStatus{}
	for _, at := range []time.Duration{30 * time.Minute, 75 * time.Minute} {
		env.RegisterDelayedCallback(func() { seen[at] = queryStatus(t, env) }, at)
	}
	pol := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: failure.Duration(90 * time.Minute), BackoffCoefficient: 1})
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Policy: pol, ConnectionsPerMove: 2,
		Profiles: map[string]profile.Limits{profile.Gmail: {DownloadBytesPerWindow: 1000, Window: failure.Duration(time.Hour)}}}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	// At 30 minutes both wait; at 75 lane A is done (its second window's
	// share copied) and lane B is still stalled until 90.
	for _, at := range []time.Duration{30 * time.Minute, 75 * time.Minute} {
		st := seen[at]
		t.Logf("at %v: %s / %s: %q", at, st.Status, st.StatusDetail, st.Reason)
	}
	if st := seen[75*time.Minute]; !strings.HasPrefix(st.StatusDetail, DetailStalledPrefix) || st.Reason == "" {
		t.Fatalf("at 75 min, with lane A done and lane B stalled until 90 min: %s / %s, reason %q; want the stall shown", st.Status, st.StatusDetail, st.Reason)
	}
}

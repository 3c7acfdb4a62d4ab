package workflows

import (
	"fmt"
	"math/rand/v2"
	"sort"
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

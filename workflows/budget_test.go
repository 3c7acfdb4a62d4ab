package workflows

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/stretchr/testify/mock"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/profile"
)

// budgetServer imitates the engine's sync calls over folders of messages
// of given sizes: a call copies from its cursor while its grant allows,
// as Lane does, and messages already on the target are matched, not
// copied again. faults makes calls fail after copying part of their share,
// reporting it or not (a worker that died).
type budgetServer struct {
	env    interface{ Now() time.Time }
	sizes  map[string][]int64
	copied map[string]map[int]int // folder → message → copies
	calls  []budgetCall
	rng    *rand.Rand
	faults bool
}

type budgetCall struct {
	at    time.Time
	bytes int64
}

func (b *budgetServer) sync(_ context.Context, in activities.SyncInput) (activities.SyncResult, error) {
	res := engine.NewLaneProgress(append([]engine.Cursor(nil), in.Cursors...))
	failAfter := -1
	if b.faults && b.rng.IntN(4) == 0 {
		failAfter = b.rng.IntN(4)
	}
	n := 0
	for i, c := range res.Cursors {
		sizes := b.sizes[c.Source]
		k := int(c.LastUID)
		for ; k < len(sizes); k++ {
			if n == failAfter {
				res.Cursors[i].LastUID = imap.UID(k)
				b.calls = append(b.calls, budgetCall{b.env.Now(), res.Bytes})
				if b.rng.IntN(2) == 0 {
					return res, failed(failure.TypeServerUnavailable, failure.SideSource, "ConnectionDropped", "", &res)
				}
				return res, failed(failure.TypeServerUnavailable, failure.SideSource, "ConnectionDropped", "", nil)
			}
			if b.copied[c.Source][k] > 0 {
				continue // on the target already: matched, nothing downloaded
			}
			if in.MaxBytes > 0 && res.Bytes+sizes[k] > in.MaxBytes && !(res.Bytes == 0 && in.WholeBudget) {
				res.BudgetReached = true
				break
			}
			res.Bytes += sizes[k]
			res.Copied++
			b.copied[c.Source][k]++
			n++
		}
		res.Cursors[i].LastUID = imap.UID(k)
		res.Done[i] = k == len(sizes)
		if res.BudgetReached {
			break
		}
	}
	b.calls = append(b.calls, budgetCall{b.env.Now(), res.Bytes})
	return res, nil
}

// A Gmail source's daily download budget, scaled down to an hour of 1,000
// bytes: random message sizes (some larger than a whole window), one to
// three lanes, calls failing midway that report what they copied or die
// without a word. Within every window of the budget no more than its
// bytes are copied, except a message larger than the whole budget alone;
// the move waits visibly between windows and copies every message once.
func TestDailyBudgetHoldsUnderFaults(t *testing.T) {
	const limit, window = 1000, time.Hour
	for seed := range 40 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 13))
			env := newEnv(t)
			srv := &budgetServer{env: env, sizes: map[string][]int64{}, copied: map[string]map[int]int{}, rng: rng, faults: seed%4 != 0}
			var plan activities.ConnectResult
			var total int64
			for f := range 1 + rng.IntN(3) {
				name := fmt.Sprintf("F%d", f)
				srv.copied[name] = map[int]int{}
				for range 3 + rng.IntN(10) {
					size := 20 + rng.Int64N(300)
					if rng.IntN(30) == 0 {
						size = limit + rng.Int64N(500) // larger than a whole window
					}
					srv.sizes[name] = append(srv.sizes[name], size)
					total += size
				}
				var bytes int64
				for _, s := range srv.sizes[name] {
					bytes += s
				}
				plan.Folders = append(plan.Folders, engine.FolderPlan{Source: name, Target: name, Messages: uint32(len(srv.sizes[name])), Bytes: bytes})
			}
			plan.SourceProfile = profile.Gmail
			env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(plan, nil)
			env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(nil)
			env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(srv.sync)
			env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(srv.sync)
			env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
			var sawWait bool
			for i := 1; i < 40; i++ {
				env.RegisterDelayedCallback(func() {
					if st := queryStatus(t, env); st.StatusDetail == DetailWaitingForDailyQuotaPrefix+"Source" {
						sawWait = true
					}
				}, time.Duration(i)*17*time.Minute)
			}
			pol := withRule(failure.TypeServerUnavailable, failure.Rule{InitialInterval: failure.Duration(time.Minute), BackoffCoefficient: 1})
			settings := Settings{Policy: pol, ConnectionsPerMove: 1 + rng.IntN(3),
				Profiles: map[string]profile.Limits{profile.Gmail: {DownloadBytesPerWindow: limit, Window: failure.Duration(window)}}}
			env.ExecuteWorkflow(MailboxMove, testInput(settings))
			if err := env.GetWorkflowError(); err != nil {
				t.Fatalf("workflow error = %v", err)
			}
			var rep MoveReport
			env.GetWorkflowResult(&rep)

			for f, sizes := range srv.sizes {
				for k := range sizes {
					if c := srv.copied[f][k]; c != 1 {
						t.Fatalf("%s message %d copied %d times", f, k, c)
					}
				}
			}
			// The ledger's windows: the first starts with the first call,
			// each next one with the first call after the last ended.
			sort.SliceStable(srv.calls, func(i, j int) bool { return srv.calls[i].at.Before(srv.calls[j].at) })
			var start time.Time
			var used int64
			var single int64 // a message larger than the whole budget, copied alone
			for i, c := range srv.calls {
				if i == 0 || c.at.Sub(start) >= window {
					start, used, single = c.at, 0, 0
				}
				used += c.bytes
				if c.bytes > limit {
					single = c.bytes
				}
				if used > limit && used != single {
					t.Fatalf("window from %s: %d bytes copied, budget %d (call %d of %d)", start.Format(time.TimeOnly), used, limit, i, len(srv.calls))
				}
			}
			if windows := int((total + limit - 1) / limit); total > 2*limit {
				if !sawWait || rep.StallTime[DetailWaitingForDailyQuotaPrefix+"Source"] == 0 {
					t.Fatalf("%d bytes over a %d-byte budget, but no visible wait (seen %v, stall time %v)", total, limit, sawWait, rep.StallTime)
				}
				if rep.BudgetWindows != windows || rep.BudgetWindow != window {
					t.Fatalf("BudgetWindows = %d of %v, want %d of %v", rep.BudgetWindows, rep.BudgetWindow, windows, window)
				}
			}
		})
	}
}

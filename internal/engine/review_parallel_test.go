package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

// A chunk copied in parallel over helper pairs fails (a fence closing, a
// block's source cut) and is resumed from any checkpoint it saved, several
// times, with concurrent late writers; then finished and the final pass.
func TestReviewParallelResumeFromCheckpoints(t *testing.T) {
	for seed := uint64(1); seed <= uint64(reviewSeeds()); seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			srcUser := memserver.NewUser(t, "Work")
			var messages [][]byte
			for i := range 1300 {
				k := i
				if i > 0 && rng.IntN(15) == 0 {
					k = rng.IntN(i)
				}
				raw := []byte(fmt.Sprintf("From: a@example.com\r\nSubject: p %d\r\nMessage-ID: <p%d@example.com>\r\n\r\nbody %d\r\n", k, k, k))
				put(srcUser, raw, time.Date(2020, 1, 1, 0, 0, k%60, 0, time.UTC), nil)
				messages = append(messages, raw)
			}
			srcAddr := memserver.Serve(t, memserver.Sessions(srcUser))
			tgtUser := memserver.NewUser(t, "Work")
			tgtAddr := memserver.Serve(t, memserver.Sessions(tgtUser))
			cut := newCutter(srcAddr)
			defer cut.close()

			saved := []Cursor{fresh("Work")}
			var mu sync.Mutex
			for attempt := range 4 {
				from := saved[rng.IntN(len(saved))]
				var writes atomic.Int64
				limit := int64(50 + rng.IntN(1500))
				opts := Options{CheckpointEvery: time.Nanosecond, Batch: 1,
					Fence: func() error {
						if writes.Add(1) > limit {
							return errLeaseLost
						}
						return nil
					},
					Checkpoint: func(c Cursor, _ Stats) {
						mu.Lock()
						defer mu.Unlock()
						if rng.IntN(20) == 0 {
							saved = append(saved, c)
						}
					},
					Helpers: func(_ context.Context, n int) []Pair {
						var ps []Pair
						for i := range n {
							addr := srcAddr
							if i == 0 && attempt%2 == 1 {
								cut.arm(false, 200000+rng.IntN(200000))
								addr = cut.addr()
							}
							ps = append(ps, Pair{Src: dial(t, failure.SideSource, addr), Tgt: dial(t, failure.SideTarget, tgtAddr)})
						}
						return ps
					},
				}
				// A late writer from an older cursor runs alongside.
				var wg sync.WaitGroup
				if rng.IntN(2) == 0 {
					old := saved[rng.IntN(len(saved))]
					wg.Add(1)
					go func() {
						defer wg.Done()
						s, tg := pair(t, srcAddr, tgtAddr)
						SyncFolder(context.Background(), s, tg, old, Options{MaxMessages: 300})
					}()
				}
				s, tg := pair(t, srcAddr, tgtAddr)
				cur, st, err := SyncFolder(context.Background(), s, tg, from, opts)
				wg.Wait()
				cut.arm(false, 0)
				t.Logf("attempt %d from last %d: -> last %d copied %d matched %d removed %d err %v", attempt, from.LastUID, cur.LastUID, st.Copied, st.Matched, st.DuplicatesRemoved, err)
				mu.Lock()
				saved = append(saved, cur)
				mu.Unlock()
			}
			cur, _ := syncAll(t, srcAddr, tgtAddr, saved[len(saved)-1], Options{})
			_, fin := syncAll(t, srcAddr, tgtAddr, cur, Options{Reconcile: true})
			want := map[string]int{}
			for _, m := range messages {
				want[string(m)]++
			}
			tgt := dial(t, failure.SideTarget, tgtAddr)
			if _, err := tgt.Client.Select("Work", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			var all imap.SeqSet
			all.AddRange(1, 0)
			bufs, err := tgt.Client.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, b := range bufs {
				got[string(b.BodySection[0].Bytes)]++
			}
			bad := 0
			for m, n := range want {
				if got[m] != n {
					bad++
				}
			}
			if bad > 0 || len(bufs) != len(messages) {
				t.Fatalf("target holds %d messages for %d; %d distinct messages with the wrong count (final pass removed %d)", len(bufs), len(messages), bad, fin.DuplicatesRemoved)
			}
		})
	}
	_ = imapserver.NumKindUID
}

func reviewSeeds() int {
	if v, err := strconv.Atoi(os.Getenv("MAILMOVE_REVIEW_PARALLEL")); err == nil {
		return v
	}
	return 4
}

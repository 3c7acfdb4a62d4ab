package engine

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
)

// A provider's daily transfer budget holds call by call: with random
// grants, each call copies at most its grant (a message larger than a
// whole window's grant alone), stops before the message that would go
// over, and the calls together copy every message exactly once.
func TestLaneKeepsToItsByteBudget(t *testing.T) {
	for seedN := range 8 {
		rng := rand.New(rand.NewPCG(uint64(seedN), 7))
		srcAddr, tgtAddr := memServer(t, "Work", "Archive"), memServer(t, "Work", "Archive")
		src, tgt := dial(t, failure.SideSource, srcAddr), dial(t, failure.SideTarget, tgtAddr)
		seed(t, src, "Work", 0, 12)
		seed(t, src, "Archive", 100, 12)
		smallest, largest := int64(1<<62), int64(0)
		for i := range 12 {
			for _, n := range []int{i, 100 + i} {
				size := int64(len(testMessage(n)))
				smallest, largest = min(smallest, size), max(largest, size)
			}
		}

		var dialed atomic.Int32
		progress := NewLaneProgress(cursors("Work", "Archive"))
		for call := 0; !progress.Done[0] || !progress.Done[1]; call++ {
			if call > 200 {
				t.Fatalf("seed %d: not done after 200 calls", seedN)
			}
			grant := 1 + rng.Int64N(3*largest)
			whole := rng.IntN(3) == 0
			lane := &Lane{Dial: pairs(srcAddr, tgtAddr, &dialed), Connections: 1, MaxBytes: grant, WholeBudget: whole}
			// Each call starts from zero counters, as the workflow's do.
			from := NewLaneProgress(progress.Cursors)
			from.Done = progress.Done
			res, err := lane.Run(context.Background(), from)
			if err != nil {
				t.Fatalf("seed %d call %d: Run() = %v", seedN, call, err)
			}
			over := max(res.Bytes, res.Downloaded) > grant
			if over && !(whole && res.Copied == 1) {
				t.Fatalf("seed %d call %d: copied %d bytes in %d messages, grant %d (whole %v)", seedN, call, res.Bytes, res.Copied, grant, whole)
			}
			if !res.BudgetReached && (!res.Done[0] || !res.Done[1]) {
				t.Fatalf("seed %d call %d: stopped with folders left but not at its budget", seedN, call)
			}
			if res.BudgetReached && grant >= smallest && res.Bytes+largest <= grant {
				t.Fatalf("seed %d call %d: stopped at %d of %d bytes with room for any message", seedN, call, res.Bytes, grant)
			}
			progress = res
		}
		assertSame(t, src, tgt, "Work", "Work")
		assertSame(t, src, tgt, "Archive", "Archive")
	}
}

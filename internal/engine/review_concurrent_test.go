package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

// jittery is an in-memory session that pauses a little at random in the
// commands reconcile and the copy use, so that concurrent attempts
// interleave inside them.
type jittery struct {
	*memserver.Session
	rng func() time.Duration
}

func (s *jittery) Search(kind imapserver.NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, error) {
	time.Sleep(s.rng())
	return s.Session.Search(kind, c, o)
}

func (s *jittery) Fetch(w *imapserver.FetchWriter, n imap.NumSet, o *imap.FetchOptions) error {
	time.Sleep(s.rng())
	return s.Session.Fetch(w, n, o)
}

func (s *jittery) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	time.Sleep(s.rng())
	return s.Session.Expunge(w, uids)
}

func (s *jittery) Append(mailbox string, r imap.LiteralReader, o *imap.AppendOptions) (*imap.AppendData, error) {
	time.Sleep(s.rng())
	return s.Session.Append(mailbox, r, o)
}

// Attempts that run at the same time (zombies in goroutines, not at one
// interleaving point), up to three at once, each from any saved cursor.
// MAILMOVE_REVIEW_SCHEDULES sets the number of schedules (default 200),
// MAILMOVE_REVIEW_SEED replays one with a trace.
func TestReviewConcurrentAttempts(t *testing.T) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("MAILMOVE_REVIEW_SCHEDULES")); err == nil {
		n = v
	}
	first := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("MAILMOVE_REVIEW_SEED"), 10, 64); err == nil {
		n, first = 1, v
	}
	var stats scheduleStats
	failed := 0
	var mu sync.Mutex
	sem := make(chan struct{}, 3)
	var wg sync.WaitGroup
	for i := range n {
		seed := first + uint64(i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			mu.Lock()
			stop := failed >= 3
			mu.Unlock()
			if stop {
				return
			}
			if err := runConcurrentSchedule(seed, &stats); err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				t.Errorf("schedule %d failed (replay: MAILMOVE_REVIEW_SEED=%d go test -run %s ./internal/engine): %v", seed, seed, t.Name(), err)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d schedules from %d: %s", n, first, stats.String())
}

func runConcurrentSchedule(seed uint64, stats *scheduleStats) error {
	rng := rand.New(rand.NewPCG(seed, 0x7a6f6d62))
	var rmu sync.Mutex
	intn := func(n int) int { rmu.Lock(); defer rmu.Unlock(); return rng.IntN(n) }
	jitter := func() time.Duration { return time.Duration(intn(1500)) * time.Microsecond }

	srcUser := memserver.NewUser(nopT{}, "Work")
	srcAddr, stopSrc, err := serve(func() imapserver.Session {
		return &jittery{Session: memserver.Sessions(srcUser)().(*memserver.Session), rng: jitter}
	})
	if err != nil {
		return err
	}
	defer stopSrc()
	tgtUser := memserver.NewUser(nopT{}, "Work")
	rewrite := intn(4) == 0
	tgtAddr, stopTgt, err := serve(func() imapserver.Session {
		s := memserver.Sessions(tgtUser)().(*memserver.Session)
		if rewrite {
			s.Rewrite = func(b []byte) []byte { return append([]byte(rewriteHeader), b...) }
		}
		return &jittery{Session: s, rng: jitter}
	})
	if err != nil {
		return err
	}
	defer stopTgt()
	s := &schedule{rng: rng, stats: stats, srcAddr: srcAddr, tgtAddr: tgtAddr,
		srcCred: Credentials{User: memserver.User, Password: memserver.Password}}
	s.tgtCred = s.srcCred
	messages, foreign := s.fill(srcUser, tgtUser)

	var smu sync.Mutex
	saved := []Cursor{fresh("Work")}
	var trace []string
	logf := func(format string, args ...any) {
		smu.Lock()
		defer smu.Unlock()
		trace = append(trace, fmt.Sprintf(format, args...))
	}
	pick := func() Cursor {
		smu.Lock()
		defer smu.Unlock()
		if intn(3) == 0 {
			return saved[intn(len(saved))]
		}
		return saved[len(saved)-1]
	}
	for round := range 2 + intn(5) {
		switch intn(8) {
		case 0:
			if err := renumberUser(srcAddr, s.srcCred); err != nil {
				return err
			}
			stats.renumbers.Add(1)
			logf("renumbered the source")
		case 1:
			if err := renumberUser(tgtAddr, s.tgtCred); err != nil {
				return err
			}
			stats.renumbers.Add(1)
			logf("renumbered the target")
		}
		k := 1 + intn(3)
		var wg sync.WaitGroup
		for w := range k {
			from := pick()
			opts := Options{MaxMessages: []int{0, 5, 17, 40}[intn(4)], CheckpointEvery: time.Nanosecond, Batch: 1 + intn(3)}
			if intn(3) == 0 {
				left := intn(40)
				opts.Fence = func() error {
					if left--; left < 0 {
						return errLeaseLost
					}
					time.Sleep(jitter())
					return nil
				}
			} else {
				opts.Fence = func() error { time.Sleep(jitter() / 4); return nil }
			}
			keep := w == 0 // only the first writer of a round holds the lease: only its cursors are saved
			wg.Add(1)
			stats.attempts.Add(1)
			if !keep {
				stats.zombies.Add(1)
			}
			go func() {
				defer wg.Done()
				var cps []Cursor
				cur, st, err := s.run(from, opts, func(c Cursor) { cps = append(cps, c) })
				logf("round %d writer %d from %s max %d -> %s copied %d matched %d removed %d err %v", round, w, cursorString(from), opts.MaxMessages, cursorString(cur), st.Copied, st.Matched, st.DuplicatesRemoved, err)
				if keep {
					smu.Lock()
					for _, c := range cps {
						if intn(3) == 0 {
							saved = append(saved, c)
						}
					}
					if intn(5) != 0 {
						saved = append(saved, cur)
					}
					smu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	cur := saved[len(saved)-1]
	for range 100 {
		next, st, err := s.run(cur, Options{}, nil)
		if err != nil {
			return fmt.Errorf("fault-free attempt: %w", err)
		}
		cur = next
		if !st.More {
			break
		}
	}
	fc, fst, err := s.run(cur, Options{Reconcile: true}, nil)
	if err != nil {
		return fmt.Errorf("final pass: %w", err)
	}
	logf("final %s removed %d", cursorString(fc), fst.DuplicatesRemoved)
	stats.messages.Add(int64(len(messages)))
	if err := s.check(messages, foreign); err != nil {
		if os.Getenv("MAILMOVE_REVIEW_SEED") != "" {
			return fmt.Errorf("%w\n%s", err, strings.Join(trace, "\n"))
		}
		return err
	}
	_ = failure.SideTarget
	return nil
}

// failingExpunge refuses UID EXPUNGE while armed, after the STORE \Deleted
// went through: an attempt cut between the two.
type failingExpunge struct {
	*memserver.Session
	armed *atomic.Bool
}

func (s *failingExpunge) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.armed.Load() {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "cut"}
	}
	return s.Session.Expunge(w, uids)
}

// Holds: reconcile cut between its STORE \Deleted and its UID EXPUNGE
// publishes a cursor whose map already names the kept copies (TargetUIDNext
// not raised); resuming from it, or from the cursor before it, removes the
// marked extras and nothing else, and no kept copy keeps \Deleted.
func TestReviewReconcileCutBeforeExpunge(t *testing.T) {
	srcAddr := memServer(t, "Work")
	u := memserver.NewUser(t, "Work")
	var armed atomic.Bool
	tgtAddr := memserver.Serve(t, func() imapserver.Session {
		return &failingExpunge{Session: memserver.Sessions(u)().(*memserver.Session), armed: &armed}
	})
	src, tgt := pair(t, srcAddr, tgtAddr)
	seed(t, src, "Work", 0, 20)
	seed(t, src, "Work", 3, 2) // 3 and 4 twice
	saved, _, err := SyncFolder(context.Background(), src, tgt, fresh("Work"), Options{MaxMessages: 8})
	if err != nil {
		t.Fatal(err)
	}
	// Two late writers from the saved cursor and from scratch store copies.
	syncAll(t, srcAddr, tgtAddr, saved, Options{})
	syncAll(t, srcAddr, tgtAddr, fresh("Work"), Options{MaxMessages: 15})
	for _, i := range []int{2, 10, 11, 3} { // and writes past their fence check
		raw := testMessage(i)
		cmd := tgt.Client.Append("Work", int64(len(raw)), &imap.AppendOptions{Time: time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC)})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	armed.Store(true)
	s2, t2 := pair(t, srcAddr, tgtAddr)
	published, _, err := SyncFolder(context.Background(), s2, t2, saved, Options{})
	armed.Store(false)
	if err == nil {
		t.Fatal("want the cut")
	}
	for _, from := range []Cursor{published, saved} {
		cur, _ := syncAll(t, srcAddr, tgtAddr, from, Options{})
		syncAll(t, srcAddr, tgtAddr, cur, Options{Reconcile: true})
		assertSame(t, src, dial(t, failure.SideTarget, tgtAddr), "Work", "Work")
	}
}

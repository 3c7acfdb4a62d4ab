package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
)

// Close closes both sessions of the pair.
func (p Pair) Close() {
	p.Src.Close()
	p.Tgt.Close()
}

func (p Pair) bytes() int64 { return p.Src.Bytes() + p.Tgt.Bytes() }

// LaneProgress is where a lane stands: a cursor per folder, the folders
// that are up to date, and the counters of the work done.
type LaneProgress struct {
	Cursors []Cursor
	// Done[i] is true when folder i is up to date.
	Done []bool
	Counters
	// BudgetReached: the run stopped at the lane's MaxBytes.
	BudgetReached bool `json:",omitempty"`
}

// NewLaneProgress is the progress of a lane that has done nothing yet.
func NewLaneProgress(cursors []Cursor) LaneProgress {
	return LaneProgress{Cursors: cursors, Done: make([]bool, len(cursors))}
}

// Clone returns a copy that shares no memory with p.
func (p LaneProgress) Clone() LaneProgress {
	p.Cursors = slices.Clone(p.Cursors)
	for i := range p.Cursors {
		p.Cursors[i] = p.Cursors[i].Clone()
	}
	p.Done = slices.Clone(p.Done)
	p.Counters = p.Counters.Clone()
	return p
}

// DefaultNoProgressTimeout is how long a lane may move no byte at all before
// it is cut. It is well above a session's idle timeout: it catches a copy
// stuck inside the client, not a slow server.
const DefaultNoProgressTimeout = 10 * time.Minute

// Lane copies folders one after the other over one connection pair of a
// mailbox, and lends a large folder's copy more pairs (Options.Helpers) as
// far as Connections allows. It owns its connections: it opens them,
// replaces a pair a copy had to cut, and closes them all before Run returns.
type Lane struct {
	// Dial opens a connection pair, waiting for room under the caller's
	// connection caps.
	Dial func(ctx context.Context) (Pair, error)
	// TryDial opens one more pair only if the caps have room now: a lane
	// that holds connections never waits for more. Nil: no spare pairs.
	TryDial func(ctx context.Context) (Pair, bool)
	// Connections is the most pairs the lane holds at once.
	Connections int
	// MaxMessages bounds the messages one Run copies or matches (0: no
	// bound), so that progress reaches the caller's caller regularly.
	MaxMessages int
	// MaxBytes bounds the progress's Bytes and Downloaded (0: no bound): what the call
	// copied, counted from the zero counters a call starts with, so that a
	// run resumed from a dead one's progress keeps to the same grant.
	// WholeBudget as in Options.
	MaxBytes    int64
	WholeBudget bool
	// Options apply to every folder; the lane sets MaxMessages, MaxBytes,
	// Checkpoint and Helpers.
	Options Options
	// NoProgressTimeout cuts a lane that moves no byte on any of its
	// connections that long (DefaultNoProgressTimeout when zero).
	NoProgressTimeout time.Duration
	// Progress, when set, receives a copy of the lane's progress whenever
	// a copy checkpoints. It runs while the copy waits: keep it quick.
	Progress func(LaneProgress)
	// Keep, when set, receives the pairs of a Run that ended without an
	// error instead of their being closed: the caller may use them again
	// (the next chunk of the same move). A failed Run closes its pairs,
	// whatever state a cut command left them in.
	Keep func(Pair)
}

// laneRun is one Run of a Lane: the connections it holds.
type laneRun struct {
	*Lane
	mu    sync.Mutex
	pairs []Pair // the first is the lane's own, the others spares
}

// errNoProgress cancels a lane that moved no byte for NoProgressTimeout.
var errNoProgress = errors.New("no byte moved on any connection")

// Run brings the folders of from that are not done up to date, in order,
// until all are or MaxMessages messages were handled. It returns the
// progress made, which is also valid after an error: resuming from it
// neither loses nor duplicates a message.
func (lane *Lane) Run(ctx context.Context, from LaneProgress) (_ LaneProgress, err error) {
	l := &laneRun{Lane: lane}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer func() {
		if err != nil || l.Keep == nil || ctx.Err() != nil {
			l.closeAll()
			return
		}
		l.mu.Lock()
		pairs := l.pairs
		l.pairs = nil
		l.mu.Unlock()
		for _, p := range pairs {
			l.Keep(p)
		}
	}()
	go l.watch(ctx, cancel)

	res := from.Clone()
	if err := l.redial(ctx); err != nil {
		return res, l.explain(ctx, err)
	}
	budget := l.MaxMessages
	res.BudgetReached = false
	for i := 0; i < len(res.Cursors); {
		if res.Done[i] {
			i++
			continue
		}
		if l.MaxMessages > 0 && budget <= 0 || res.BudgetReached {
			break
		}
		n, err := l.syncFolder(ctx, &res, i, budget)
		budget -= n
		switch {
		case errors.Is(err, ErrReconnect):
			// The same folder again, after the refused message, over a
			// new pair.
			if err := l.redial(ctx); err != nil {
				return res, l.explain(ctx, err)
			}
		case err != nil:
			return res, l.explain(ctx, err)
		default:
			i++
		}
	}
	return res, nil
}

// syncFolder runs SyncFolder on folder i and adds what it did to res. It
// returns the messages it handled.
func (l *laneRun) syncFolder(ctx context.Context, res *LaneProgress, i, budget int) (int, error) {
	base := res.Counters.Clone()
	var mu sync.Mutex // the checkpoint and the final update may race in a parallel copy
	update := func(c Cursor, st Stats) {
		mu.Lock()
		defer mu.Unlock()
		res.Cursors[i] = c
		res.Counters = base.Plus(st.Counters)
		if l.Progress != nil {
			l.Progress(res.Clone())
		}
	}
	opts := l.Options
	opts.MaxMessages = budget
	if l.MaxBytes > 0 {
		// What the folders before this one copied is spent.
		opts.MaxBytes = max(l.MaxBytes-max(base.Bytes, base.Downloaded), 1)
		opts.WholeBudget = l.WholeBudget && base.Bytes == 0 && base.Downloaded == 0
	}
	opts.Checkpoint = update
	if l.Connections > 1 && l.TryDial != nil {
		opts.Helpers = l.helpers
	}
	cur, st, err := SyncFolder(ctx, l.pair().Src, l.pair().Tgt, res.Cursors[i], opts)
	update(cur, st)
	res.Done[i] = err == nil && !st.More
	res.BudgetReached = res.BudgetReached || st.BudgetReached
	if err != nil {
		// Spare pairs may be mid-command.
		l.closeSpares()
	}
	return st.Copied + st.Matched, err
}

// helpers lends SyncFolder up to n spare pairs: those kept from earlier
// folders and, within Connections, new ones opened at once (each logon
// costs round trips to a distant server).
func (l *laneRun) helpers(ctx context.Context, n int) []Pair {
	l.mu.Lock()
	want := min(n, l.Connections-1) - (len(l.pairs) - 1)
	l.mu.Unlock()
	opened := make(chan Pair, max(want, 0))
	var wg sync.WaitGroup
	for range cap(opened) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p, ok := l.TryDial(ctx); ok {
				opened <- p
			}
		}()
	}
	wg.Wait()
	close(opened)
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range opened {
		l.pairs = append(l.pairs, p)
	}
	spares := l.pairs[1:]
	return slices.Clone(spares[:min(n, len(spares))])
}

// redial replaces the lane's own pair (closing every pair it holds) with a
// new one.
func (l *laneRun) redial(ctx context.Context) error {
	l.closeAll()
	p, err := l.Dial(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.pairs = []Pair{p}
	l.mu.Unlock()
	return nil
}

func (l *laneRun) pair() Pair {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pairs[0]
}

func (l *laneRun) closeSpares() {
	l.mu.Lock()
	spares := l.pairs[min(1, len(l.pairs)):]
	l.pairs = l.pairs[:min(1, len(l.pairs))]
	l.mu.Unlock()
	for _, p := range spares {
		p.Close()
	}
}

func (l *laneRun) closeAll() {
	l.mu.Lock()
	pairs := l.pairs
	l.pairs = nil
	l.mu.Unlock()
	for _, p := range pairs {
		p.Close()
	}
}

// watch cancels the lane when no byte moved on any of its connections for
// NoProgressTimeout: a slow server moves some, a stuck copy none.
func (l *laneRun) watch(ctx context.Context, cancel context.CancelCauseFunc) {
	timeout := l.noProgressTimeout()
	t := time.NewTicker(min(5*time.Second, timeout/4))
	defer t.Stop()
	var last int64
	lastMoved := time.Now()
	for {
		select {
		case <-t.C:
			l.mu.Lock()
			var n int64
			for _, p := range l.pairs {
				n += p.bytes()
			}
			l.mu.Unlock()
			switch {
			case n != last:
				last, lastMoved = n, time.Now()
			case time.Since(lastMoved) > timeout:
				cancel(errNoProgress)
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func (l *Lane) noProgressTimeout() time.Duration {
	if l.NoProgressTimeout > 0 {
		return l.NoProgressTimeout
	}
	return DefaultNoProgressTimeout
}

// explain turns the error of a lane the watchdog cut into the stall it is.
func (l *laneRun) explain(ctx context.Context, err error) error {
	if !errors.Is(context.Cause(ctx), errNoProgress) {
		return err
	}
	return &failure.Error{Type: failure.TypeServerUnavailable, Reason: "NoProgress", Side: failure.SideSource, Op: "copy",
		Hint: fmt.Sprintf("nothing moved for %s; the copy was restarted", l.noProgressTimeout()), Err: errNoProgress}
}

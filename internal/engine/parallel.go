package engine

import (
	"context"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Pair is a source and a target session of one mailbox, lent to SyncFolder
// through Options.Helpers.
type Pair struct{ Src, Tgt *Session }

// minPartMessages is the fewest messages worth a connection pair of its own:
// below that, opening and selecting costs more than the pair saves.
const minPartMessages = 500

// syncParallel copies the messages of one chunk of a large folder over
// several connection pairs at once, each taking a contiguous block of source
// UIDs, when Options.Helpers lends pairs. It returns ok false, having done
// nothing, when the chunk is too small or no helper is available.
//
// The blocks finish in any order, but the cursor only ever covers a prefix:
// the blocks done so far in UID order, then what the first unfinished one
// confirmed. What the blocks stored beyond that prefix is not in the map
// and lies above TargetUIDNext (which no copy raises): after a failure, the
// next attempt's reconcile finds it by identity instead of copying it again.
func syncParallel(ctx context.Context, src, tgt *Session, start Cursor, base Stats, opts Options, metas []meta) (Cursor, Stats, bool, error) {
	var toCopy int
	for _, m := range metas {
		if m.fetch() {
			toCopy++
		}
	}
	want := toCopy / minPartMessages
	if want < 2 {
		return start, base, false, nil
	}
	pairs := append([]Pair{{src, tgt}}, selectHelpers(ctx, opts.Helpers(ctx, want-1), start)...)
	if len(pairs) < 2 {
		return start, base, false, nil
	}
	blocks := splitBlocks(metas, len(pairs))

	p := &parallel{start: start, base: base, opts: opts, parts: make([]part, len(blocks))}
	// Every part exists before any runs: a part that fails at once stops
	// all the others.
	for j := range blocks {
		cur := start.Clone()
		// Each block keeps its own pairs; merged joins them in order.
		cur.Map, cur.Claims = nil, nil
		if j > 0 {
			cur.LastUID = blocks[j-1][len(blocks[j-1])-1].uid
		}
		popts := opts
		popts.Helpers = nil
		popts.Checkpoint = func(c Cursor, st Stats) { p.update(j, c, st, nil, false) }
		p.parts[j] = part{copier: newCopier(pairs[j].Src, pairs[j].Tgt, cur, Stats{}, popts), cur: cur}
		p.parts[j].copier.labelLater = true
	}
	var wg sync.WaitGroup
	for j, block := range blocks {
		c := p.parts[j].copier
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur, st, err := c.result(c.run(ctx, block))
			p.update(j, cur, st, err, true)
			if err != nil {
				p.stopAll()
			}
		}()
	}
	wg.Wait()
	cur, st, err := p.merged()
	if err == nil {
		var missing []meta
		var labels []labelCopy
		for _, pt := range p.parts {
			missing = append(missing, pt.copier.unreturned...)
			labels = append(labels, pt.copier.takeLabels()...)
		}
		st.BadItems, err = unreturned(ctx, src, cur, missing, st.BadItems)
		if err == nil {
			// On the main pair, whose target session has the folder the
			// blocks appended to selected.
			var n int
			n, err = labelCopies(ctx, tgt, labels, opts.fence())
			st.Labelled += n
		}
	}
	return cur, st, true, err
}

// selectHelpers opens the source folder on each lent pair (pipelined) and
// keeps the pairs that see the same UIDs as the main one.
func selectHelpers(ctx context.Context, lent []Pair, cur Cursor) []Pair {
	cmds := make([]*imapclient.SelectCommand, len(lent))
	for i, h := range lent {
		cmds[i] = h.Src.Client.Select(cur.Source, &imap.SelectOptions{ReadOnly: true})
	}
	var ok []Pair
	for i, c := range cmds {
		data, err := c.Wait()
		if err == nil && data.UIDValidity == cur.UIDValidity && ctx.Err() == nil {
			ok = append(ok, lent[i])
		}
	}
	return ok
}

// splitBlocks cuts metas into n contiguous blocks carrying about the same
// bytes to copy.
func splitBlocks(metas []meta, n int) [][]meta {
	var total int64
	for _, m := range metas {
		if m.fetch() {
			total += m.size
		}
	}
	var blocks [][]meta
	from, acc := 0, int64(0)
	for i, m := range metas {
		if m.fetch() {
			acc += m.size
		}
		if len(blocks) < n-1 && acc >= total*int64(len(blocks)+1)/int64(n) && i+1 < len(metas) {
			blocks = append(blocks, metas[from:i+1])
			from = i + 1
		}
	}
	return append(blocks, metas[from:])
}

// parallel tracks the blocks of one parallel chunk.
type parallel struct {
	start Cursor
	base  Stats
	opts  Options

	mu       sync.Mutex
	parts    []part
	firstErr error // the first block to fail, in time: the others fail because it stopped them

	// checkpointing keeps the caller's checkpoints in order: each one's
	// prefix is at least the last one's.
	checkpointing sync.Mutex
}

type part struct {
	copier *copier
	cur    Cursor // confirmed progress of the block
	st     Stats
	err    error
	done   bool
}

// update records a block's progress and passes the merged prefix on to the
// caller's checkpoint.
func (p *parallel) update(j int, cur Cursor, st Stats, err error, done bool) {
	p.mu.Lock()
	p.parts[j].cur, p.parts[j].st, p.parts[j].err, p.parts[j].done = cur, st, err, done
	if p.firstErr == nil {
		p.firstErr = err
	}
	p.mu.Unlock()
	if p.opts.Checkpoint != nil && !done {
		p.checkpointing.Lock()
		defer p.checkpointing.Unlock()
		c, s, _ := p.merged()
		p.opts.Checkpoint(c, s)
	}
}

// stopAll stops every block after one failed. Cutting the sources is
// enough: each copier then fails as for any source cut, collecting the
// target's answers to what it sent completely before it cuts its target, so
// whatever the target confirmed counts.
func (p *parallel) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pt := range p.parts {
		pt.copier.stop.Store(true)
		pt.copier.src.abort()
	}
}

// merged returns the cursor and totals of the prefix of blocks confirmed so
// far, and the first error.
func (p *parallel) merged() (Cursor, Stats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, st := p.start.Clone(), p.base
	st.Counters = st.Counters.Clone()
	complete := true
	downloaded := p.base.Downloaded
	for _, pt := range p.parts {
		cur.SingleUntil = max(cur.SingleUntil, pt.cur.SingleUntil)
		// Every block's download counts, confirmed or not.
		downloaded += pt.st.Downloaded
		if !complete {
			continue
		}
		cur.LastUID = max(cur.LastUID, pt.cur.LastUID)
		cur.Map = append(cur.Map, pt.cur.Map...)
		st.Add(pt.st.Counters)
		complete = pt.done && pt.err == nil
	}
	st.Downloaded = downloaded
	cur.Claims = cur.Claims.After(cur.LastUID)
	if st.Matched > 0 {
		cur.HighestModSeq = 0
	}
	return cur, st, p.firstErr
}

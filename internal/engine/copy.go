package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailmove/mailmove/internal/failure"
)

// Cursor is the resumable progress of one folder. It is small (a few numbers
// and a run-length UID map) so it fits in heartbeats and workflow state.
type Cursor struct {
	Source string
	Target string
	// UIDValidity is the source folder's; a change means its UIDs were
	// reassigned and LastUID means nothing any more.
	UIDValidity uint32
	// LastUID: every source message with a UID up to here is on the target
	// (or recorded as a bad item).
	LastUID imap.UID
	// HighestModSeq is the source's CONDSTORE mod-sequence when the last flag
	// synchronisation began; 0 without CONDSTORE.
	HighestModSeq uint64
	// TargetUIDValidity and TargetUIDNext describe the target folder as last
	// accounted for: target messages below TargetUIDNext are known to be ours
	// or someone else's, those from it on must be checked before copying, so
	// that a copy interrupted after the server stored a message but before we
	// recorded it never stores it twice.
	TargetUIDValidity uint32
	TargetUIDNext     imap.UID
	Map               UIDMap
	// SingleUntil: messages up to this source UID are sent one per APPEND,
	// because a MULTIAPPEND holding them was refused for one of them.
	SingleUntil imap.UID `json:",omitempty"`
}

// Clone returns a copy that shares no memory with c.
func (c Cursor) Clone() Cursor {
	c.Map = slices.Clone(c.Map)
	return c
}

// BadItem is a message the target refused. It is skipped and reported.
type BadItem struct {
	Folder string
	UID    imap.UID
	Size   int64
	Reason string
}

// Stats is what one SyncFolder call did.
type Stats struct {
	Counters
	// More is true when the call stopped at Options.MaxMessages and more
	// messages wait; call again with the returned cursor.
	More bool
	// Remaining is the number of source messages above the cursor after this call.
	Remaining int
}

// Options tunes SyncFolder.
type Options struct {
	// MaxMessages bounds one call, so an activity covers a chunk of a large
	// folder and returns; 0 means no bound.
	MaxMessages int
	// Batch is the most messages one APPEND command carries where the
	// target has MULTIAPPEND (RFC 3502), and BatchBytes the most bytes a
	// command carries unless one message is larger; Batch 1 sends one
	// message per command.
	Batch      int
	BatchBytes int64
	// Window is the number of APPEND commands in flight on the target
	// connection.
	Window int
	// Checkpoint, when set, receives a copy of the cursor and the running
	// totals after messages are confirmed by the target, at most every
	// CheckpointEvery. It runs while the copy waits: keep it quick.
	Checkpoint      func(Cursor, Stats)
	CheckpointEvery time.Duration
	// LatencyThreshold: above this per-message service time of a server, the
	// copy slows down (0: never).
	LatencyThreshold time.Duration
	// PropagateDeletes expunges from the target the copies of messages
	// expunged from the source since they were copied.
	PropagateDeletes bool
	// Rules filter messages by size and date; filtered messages are
	// skipped, not copied, and counted in Stats.Filtered.
	Rules Rules
	// Helpers, when set, lends up to n more connection pairs to the same
	// mailboxes, so that a large chunk of one folder is copied over several
	// pairs at once. It may return fewer, or none. The caller owns the
	// pairs; after an error they may be mid-command and must be closed.
	Helpers func(ctx context.Context, n int) []Pair
}

func (o *Options) defaults() {
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 8 << 20
	}

	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = time.Second
	}
}

// meta is what we know of a source message before copying it.
type meta struct {
	uid   imap.UID
	size  int64
	flags []imap.Flag
	date  time.Time
	id    string // Message-ID header, only fetched when reconciling

	// What the copy does with it, decided by decide before any is sent.
	matched  imap.UID // already on the target as this UID
	filtered bool     // left out by the rules
	rejected string   // not sent: the target said it would refuse it
}

// fetch says whether the message is to be copied.
func (m meta) fetch() bool { return m.matched == 0 && !m.filtered && m.rejected == "" }

// decide settles, for every message, whether it is filtered, too large for
// the target, already there (matched by identity to one of known's
// unaccounted messages) or to be copied. It runs once over a whole chunk, so
// that two source messages with the same identity never claim one target
// copy, however the chunk is then split.
func decide(metas []meta, known map[identity][]imap.UID, rules Rules, appendLimit int64) {
	for i := range metas {
		m := &metas[i]
		if rules.skips(m.size, m.date) {
			m.filtered = true
			continue
		}
		if appendLimit > 0 && m.size > appendLimit {
			// The target said it takes nothing this large: a bad item,
			// without sending it.
			m.rejected = fmt.Sprintf("larger than the target's APPENDLIMIT of %d bytes", appendLimit)
			continue
		}
		if uids := known[m.identity()]; len(uids) > 0 {
			m.matched = uids[0]
			known[m.identity()] = uids[1:]
		}
	}
}

// identity is how a message is recognised on the other side without
// reading it whole: size and INTERNALDATE are preserved by APPEND, and the
// Message-ID tells apart the rare messages that share both.
type identity struct {
	size int64
	date int64
	id   string
}

func (m meta) identity() identity {
	return identity{size: m.size, date: m.date.Unix(), id: m.id}
}

// SyncFolder brings one target folder up to date with its source folder:
// flag changes on already copied messages first, then every source message
// above cur.LastUID, at most opts.MaxMessages of them. It returns the new
// cursor. After an error, the sessions may be in the middle of a command and
// must be closed; the returned cursor is still valid and resuming from it
// neither loses nor duplicates a message.
func SyncFolder(ctx context.Context, src, tgt *Session, cur Cursor, opts Options) (Cursor, Stats, error) {
	opts.defaults()
	cur = cur.Clone()
	var st Stats
	condstore := src.Caps.Has(imap.CapCondStore)
	examine := src.Client.Select(cur.Source, &imap.SelectOptions{ReadOnly: true, CondStore: condstore})
	var early *imapclient.SearchCommand
	if cur.UIDValidity == 0 {
		// A folder never synced, so almost surely something to copy: ask
		// for the list in the same round trip as the EXAMINE.
		early = searchAboveCmd(src, 0)
	}
	sel, err := examine.Wait()
	if err != nil {
		if early != nil {
			early.Wait()
		}
		return cur, st, src.classify("select "+cur.Source, ctxErr(ctx, err))
	}
	if cur.UIDValidity != sel.UIDValidity {
		if cur.UIDValidity != 0 {
			// The source renumbered its messages. Everything on the target is
			// now unaccounted for and will be matched by identity instead of
			// being copied again.
			cur.LastUID, cur.HighestModSeq, cur.TargetUIDNext, cur.Map = 0, 0, 0, nil
		}
		cur.UIDValidity = sel.UIDValidity
	}

	if cur.LastUID > 0 && (sel.HighestModSeq == 0 || sel.HighestModSeq != cur.HighestModSeq) {
		n, err := syncFlags(ctx, src, tgt, &cur, condstore)
		if err != nil {
			return cur, st, err
		}
		st.FlagUpdates = n
	}
	if cur.LastUID > 0 && (sel.HighestModSeq == 0 || sel.HighestModSeq != cur.HighestModSeq) {
		deleted, expunged, err := syncExpunges(ctx, src, tgt, &cur, opts.PropagateDeletes)
		if err != nil {
			return cur, st, err
		}
		st.DeletedOnSource, st.Expunged = deleted, expunged
	}
	cur.HighestModSeq = sel.HighestModSeq

	if sel.UIDNext != 0 && sel.UIDNext <= cur.LastUID+1 {
		if early != nil {
			early.Wait()
		}
		return cur, st, nil
	}
	if early == nil {
		early = searchAboveCmd(src, cur.LastUID)
	}
	pending, err := searchAbove(ctx, src, early, cur.LastUID)
	if err != nil {
		return cur, st, err
	}
	if len(pending) == 0 {
		return cur, st, nil
	}
	if opts.MaxMessages > 0 && len(pending) > opts.MaxMessages {
		st.More = true
		st.Remaining = len(pending) - opts.MaxMessages
		pending = pending[:opts.MaxMessages]
	}

	// The two sides answer at once, one round trip instead of two.
	var known map[identity][]imap.UID
	var filter *flagFilter
	tgtDone := make(chan error, 1)
	go func() {
		var err error
		known, filter, err = targetUnaccounted(ctx, tgt, &cur)
		tgtDone <- err
	}()
	metas, err := fetchMeta(ctx, src, pending)
	if tgtErr := <-tgtDone; tgtErr != nil {
		return cur, st, tgtErr
	}
	if err != nil {
		return cur, st, err
	}
	if len(known) > 0 {
		if err := fetchMessageIDs(ctx, src, metas, known); err != nil {
			return cur, st, err
		}
	}
	for i := range metas {
		metas[i].flags = filter.keep(metas[i].flags, &st)
	}
	decide(metas, known, opts.Rules, tgt.AppendLimit())
	if opts.Helpers != nil {
		if cur, st, ok, err := syncParallel(ctx, src, tgt, cur, st, opts, metas); ok {
			return cur, st, err
		}
	}
	c := newCopier(src, tgt, cur, st, opts)
	err = c.run(ctx, metas)
	return c.result(err)
}

func newCopier(src, tgt *Session, cur Cursor, st Stats, opts Options) *copier {
	c := &copier{src: src, tgt: tgt, cur: cur, st: st, opts: opts, throttle: newThrottle(opts.LatencyThreshold),
		batch: opts.Batch, batchBytes: opts.BatchBytes, singleUntil: cur.SingleUntil}
	if !tgt.Caps.Has(imap.CapMultiAppend) {
		c.batch = 1
	}
	if c.opts.Window <= 0 {
		// Enough messages in flight to cover a round trip to a distant
		// server, whether commands carry one message or many.
		c.opts.Window = 4
		if c.batch == 1 {
			c.opts.Window = 64
		}
	}
	return c
}

// result returns the cursor and totals once run returned err.
func (c *copier) result(err error) (Cursor, Stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Throttled = c.throttle.throttled()
	if c.st.Matched > 0 {
		// Messages found on the target kept the flags they had there; the
		// next pass compares every message's flags, not just changed ones.
		c.cur.HighestModSeq = 0
	}
	return c.cur.Clone(), c.st, err
}

// searchAboveCmd asks for the UIDs above last.
func searchAboveCmd(s *Session, last imap.UID) *imapclient.SearchCommand {
	var set imap.UIDSet
	set.AddRange(imap.UID(last+1), 0) // last+1:*
	return s.Client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil)
}

// searchAbove returns the answer of searchAboveCmd: the UIDs above last in
// ascending order.
func searchAbove(ctx context.Context, s *Session, cmd *imapclient.SearchCommand, last imap.UID) ([]imap.UID, error) {
	data, err := cmd.Wait()
	if err != nil {
		return nil, s.classify("search new messages", ctxErr(ctx, err))
	}
	all, _ := data.All.(imap.UIDSet)
	uids, _ := all.Nums()
	// "n:*" matches the highest UID even when it is below n (RFC 3501 6.4.8).
	uids = slices.DeleteFunc(uids, func(u imap.UID) bool { return u <= last })
	slices.Sort(uids)
	return uids, nil
}

var messageIDSection = &imap.FetchItemBodySection{
	Specifier:    imap.PartSpecifierHeader,
	HeaderFields: []string{"Message-ID"},
	Peek:         true,
}

// fetchMeta reads flags, date and size of the given messages.
func fetchMeta(ctx context.Context, s *Session, uids []imap.UID) ([]meta, error) {
	bufs, err := s.Client.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true}).Collect()
	if err != nil {
		return nil, s.classify("fetch message list", ctxErr(ctx, err))
	}
	metas := make([]meta, 0, len(bufs))
	for _, b := range bufs {
		m := meta{uid: b.UID, size: b.RFC822Size, date: b.InternalDate}
		for _, f := range b.Flags {
			if !isRecent(f) {
				m.flags = append(m.flags, f)
			}
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b meta) int { return cmp.Compare(a.uid, b.uid) })
	return metas, nil
}

// fetchMessageIDs reads the Message-ID of the messages that share size and
// date with a target message in known: the only ones that may be on the
// target already.
func fetchMessageIDs(ctx context.Context, s *Session, metas []meta, known map[identity][]imap.UID) error {
	type sizeDate struct{ size, date int64 }
	candidates := map[sizeDate]bool{}
	for k := range known {
		candidates[sizeDate{k.size, k.date}] = true
	}
	var uids []imap.UID
	for _, m := range metas {
		if candidates[sizeDate{m.size, m.date.Unix()}] {
			uids = append(uids, m.uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	bufs, err := s.Client.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{messageIDSection}}).Collect()
	if err != nil {
		return s.classify("fetch message ids", ctxErr(ctx, err))
	}
	for _, b := range bufs {
		if i, ok := slices.BinarySearchFunc(metas, b.UID, func(m meta, u imap.UID) int { return cmp.Compare(m.uid, u) }); ok {
			metas[i].id = parseMessageID(b.FindBodySection(messageIDSection))
		}
	}
	return nil
}

func parseMessageID(header []byte) string {
	h := strings.ReplaceAll(string(header), "\r\n", "")
	if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[i+1:]
	}
	return strings.Join(strings.Fields(h), " ")
}

// targetUnaccounted selects the target folder and returns, by identity, the
// target messages that arrived since the cursor last accounted for it: on a
// resumed copy they are the messages the interrupted attempt stored. It then
// marks the whole folder as accounted for. It also returns the keywords the
// folder accepts (nil: any).
func targetUnaccounted(ctx context.Context, tgt *Session, cur *Cursor) (map[identity][]imap.UID, *flagFilter, error) {
	// One SELECT tells UIDVALIDITY, UIDNEXT, the message count and the
	// flags the folder keeps.
	st, err := tgt.Client.Select(cur.Target, nil).Wait()
	if err != nil {
		return nil, nil, tgt.classify("select "+cur.Target, ctxErr(ctx, err))
	}
	filter := newFlagFilter(st.PermanentFlags)
	if st.UIDValidity != cur.TargetUIDValidity {
		// A new or recreated target folder: its UIDs are new, so the map is
		// void and everything in it must be checked.
		cur.TargetUIDValidity, cur.TargetUIDNext, cur.Map = st.UIDValidity, 0, nil
	}
	from := max(cur.TargetUIDNext, 1)
	defer func() { cur.TargetUIDNext = max(cur.TargetUIDNext, st.UIDNext) }()
	if st.NumMessages == 0 || (st.UIDNext != 0 && st.UIDNext <= from) {
		return nil, filter, nil
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(from), 0)
	bufs, err := tgt.Client.Fetch(set, &imap.FetchOptions{
		UID: true, InternalDate: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{messageIDSection},
	}).Collect()
	if err != nil {
		return nil, nil, tgt.classify("fetch message list of "+cur.Target, ctxErr(ctx, err))
	}
	// Messages the map already accounts for are ours: after a parallel copy
	// failed, they may lie above TargetUIDNext, and must not be claimed
	// again by another source message of the same identity.
	mapped := cur.Map.targets(from)
	known := make(map[identity][]imap.UID)
	for _, b := range bufs {
		if b.UID < from || mapped(b.UID) {
			continue
		}
		m := meta{uid: b.UID, size: b.RFC822Size, date: b.InternalDate, id: parseMessageID(b.FindBodySection(messageIDSection))}
		known[m.identity()] = append(known[m.identity()], b.UID)
	}
	for k := range known {
		slices.Sort(known[k])
	}
	return known, filter, nil
}

// copier streams messages from a source FETCH into pipelined target APPENDs.
// The fetching goroutine writes; a second goroutine waits for the target's
// answers in order and advances the cursor, so a message counts as copied
// only once the target confirmed it and all before it.
type copier struct {
	src, tgt *Session
	opts     Options
	stop     atomic.Bool // set by confirm on a fatal error: stop sending
	throttle *throttle
	// batch and batchBytes bound one APPEND command; batch is 1 where the
	// target lacks MULTIAPPEND.
	batch       int
	batchBytes  int64
	singleUntil imap.UID // the cursor's, when the call began
	buf         []byte   // for streaming bodies; used by send only

	mu       sync.Mutex
	cur      Cursor
	st       Stats
	lastSave time.Time
}

// step is one source message in UID order: appended by its unit's command,
// or needing no copy (found on the target, filtered, refused up front, or
// expunged from the source since it was listed).
type step struct {
	m        meta
	appended bool
}

// unit is a run of steps in source UID order and the one APPEND command, if
// any, that carries the appended ones: a MULTIAPPEND of many messages where
// the target offers it (one transaction for the server, about 4× cheaper on
// Dovecot than one APPEND each), one message per command otherwise.
type unit struct {
	steps []step
	cmd   *imapclient.MultiAppendCommand
	n     int // messages in cmd
	bytes int64
	sent  time.Time // when cmd was fully written
	// writeErr stops the copy at failed, the message being written; with
	// unfinished, cmd's last literal is incomplete and the target
	// connection must be cut before cmd is closed.
	writeErr   error
	failed     meta
	unfinished bool
}

func (c *copier) run(ctx context.Context, metas []meta) error {
	units := make(chan *unit, c.opts.Window)
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.confirm(units) }()

	sendErr := c.send(ctx, metas, units)
	close(units)
	err := <-waitErr
	if err == nil {
		err = sendErr
	}
	if err == nil && c.opts.Checkpoint != nil {
		c.mu.Lock()
		c.opts.Checkpoint(c.cur.Clone(), c.st)
		c.mu.Unlock()
	}
	return err
}

// send walks the source messages in UID order, writing the ones to copy
// into APPEND commands and handing every message to confirm in a unit.
func (c *copier) send(ctx context.Context, metas []meta, units chan<- *unit) error {
	var toFetch []imap.UID
	for _, m := range metas {
		if m.fetch() {
			toFetch = append(toFetch, m.uid)
		}
	}
	u := &unit{}
	// ship ends the unit's command and hands the unit to confirm.
	ship := func() {
		if u.unfinished {
			// Only when leaving without confirm: no answer matters now,
			// and the incomplete literal must never be completed.
			c.tgt.abort()
			u.steps = nil
		}
		if u.cmd != nil {
			u.cmd.Close()
			u.sent = time.Now()
		}
		if len(u.steps) > 0 {
			units <- u
		}
		u = &unit{}
	}
	// Whatever way this ends, an open command holds whole messages only:
	// end it rather than leave the connection mid-command.
	defer ship()
	next := 0 // index in metas of the next step to queue
	// flushUpTo queues the steps that need no APPEND below UID u. Servers
	// answer FETCH in UID order, so an unmatched message skipped here was
	// expunged since it was listed.
	flushUpTo := func(uid imap.UID) {
		for ; next < len(metas) && metas[next].uid < uid; next++ {
			u.steps = append(u.steps, step{m: metas[next]})
			if u.cmd == nil && len(u.steps) >= 256 {
				ship() // keeps checkpoints coming through a long run of matches
			}
		}
	}
	if len(toFetch) > 0 {
		fetch := c.src.Client.Fetch(imap.UIDSetNum(toFetch...), &imap.FetchOptions{
			UID:         true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}},
		})
		// Leaving before the FETCH ends (a failure on either side) must not
		// drain the rest of it: cut the source connection, then let go-imap
		// finish the command with an error.
		finished := false
		defer func() {
			if !finished {
				c.src.abort()
				fetch.Close()
			}
		}()
		asked := time.Now()
		for msg := fetch.Next(); msg != nil; msg = fetch.Next() {
			if c.stop.Load() {
				// Confirm holds the error, or another block of a parallel
				// copy does; the caller closes the session.
				return errStopped
			}
			c.throttle.observe(failure.SideSource, time.Since(asked))
			uid, body, done, err := c.readBody(ctx, msg)
			if err != nil {
				return err
			}
			i, ok := slices.BinarySearchFunc(metas, uid, func(m meta, u imap.UID) int { return cmp.Compare(m.uid, u) })
			if !ok || i < next {
				done()
				return c.src.classify("fetch "+c.cur.Source, fmt.Errorf("server sent UID %d out of order or unasked", uid))
			}
			flushUpTo(uid)
			m := metas[i]
			// The literal's size is authoritative; RFC822.SIZE may differ
			// on servers that compute it lazily.
			m.size = body.Size()
			alone := c.batch == 1 || uid <= c.singleUntil
			if u.cmd != nil && (alone || u.bytes+m.size > c.batchBytes) {
				ship()
			}
			c.write(ctx, u, m, body)
			done()
			if u.writeErr != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				units <- u // confirm reports it after the APPENDs before it
				u = &unit{}
				return nil
			}
			next++
			_, pause := c.throttle.pause()
			if alone || u.n >= c.batch || u.bytes >= c.batchBytes || pause > 0 {
				ship()
			}
			if pause > 0 {
				select {
				case <-time.After(pause):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			asked = time.Now()
		}
		finished = true
		if err := fetch.Close(); err != nil {
			return c.src.classify("fetch messages of "+c.cur.Source, ctxErr(ctx, err))
		}
	}
	flushUpTo(^imap.UID(0))
	return nil
}

// readBody returns the UID and a reader of the body of one fetched message.
// The body streams from the connection; done releases it.
func (c *copier) readBody(ctx context.Context, msg *imapclient.FetchMessageData) (imap.UID, imap.LiteralReader, func(), error) {
	var uid imap.UID
	var body imap.LiteralReader
	done := func() {}
	for body == nil || uid == 0 {
		item := msg.Next()
		if item == nil {
			break
		}
		switch item := item.(type) {
		case imapclient.FetchItemDataUID:
			uid = item.UID
		case imapclient.FetchItemDataBodySection:
			if uid != 0 {
				body = item.Literal
				continue
			}
			// The server sent the body before the UID: we cannot tell yet
			// where it goes, so park it on disk rather than in memory.
			f, err := os.CreateTemp("", "mailmove-spool-*")
			if err != nil {
				return 0, nil, done, err
			}
			done = func() { f.Close(); os.Remove(f.Name()) }
			n, err := io.Copy(f, item.Literal)
			if err == nil && n != item.Literal.Size() {
				err = fmt.Errorf("message body ended after %d of %d bytes: %w", n, item.Literal.Size(), io.ErrUnexpectedEOF)
			}
			if err == nil {
				_, err = f.Seek(0, io.SeekStart)
			}
			if err != nil {
				done()
				return 0, nil, func() {}, c.src.classify("fetch body of "+c.cur.Source, ctxErr(ctx, err))
			}
			body = sizedReader{f, n}
		}
	}
	if uid == 0 || body == nil {
		done()
		return 0, nil, func() {}, c.src.classify("fetch "+c.cur.Source, fmt.Errorf("server sent a message without UID or body"))
	}
	return uid, body, done, nil
}

// write adds one message to the unit's APPEND command, starting the command
// if needed, and streams its body from the source connection straight into
// the target connection: a large message is never held in memory.
func (c *copier) write(ctx context.Context, u *unit, m meta, body imap.LiteralReader) {
	if u.cmd == nil {
		u.cmd = c.tgt.Client.MultiAppend(c.cur.Target)
	}
	w := u.cmd.Message(m.size, &imap.AppendOptions{Flags: m.flags, Time: m.date})
	r := &errReader{r: body, want: m.size}
	if c.buf == nil {
		c.buf = make([]byte, 64<<10)
	}
	// One buffer for every message: io.Copy would allocate 32 KB per call.
	_, err := io.CopyBuffer(w, r, c.buf)
	if err == nil {
		err = w.Close()
	}
	switch {
	case r.err != nil:
		// The literal is short: the failure is the source's. Whatever we
		// write next on this connection — even the command's closing CRLF
		// or a LOGOUT — the server would take as the rest of the message
		// and store a corrupt copy. So nothing more is written: confirm
		// collects the answers to the commands before this one, then cuts
		// the connection, and the server discards the incomplete APPEND.
		u.writeErr = c.src.classify(fmt.Sprintf("fetch %s uid %d", c.cur.Source, m.uid), ctxErr(ctx, r.err))
	case err != nil:
		u.writeErr = c.tgt.classify(fmt.Sprintf("append %s uid %d", c.cur.Target, m.uid), ctxErr(ctx, err))
	default:
		u.steps = append(u.steps, step{m: m, appended: true})
		u.n++
		u.bytes += m.size
		return
	}
	u.failed, u.unfinished = m, true
}

// errStopped ends a copy stopped from outside, before it was done.
var errStopped = errors.New("copy stopped")

// ErrReconnect is returned by SyncFolder when it stopped only because a
// session had to be cut (the target refused a message before its body was
// sent). The cursor and stats are up to date: reconnect and call again.
var ErrReconnect = errors.New("session cut after a refused message; reconnect and continue")

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// errReader remembers the read error of a message body, and turns a body
// that ends before its announced size into one: go-imap reports a literal
// cut short by a dropped connection as a clean EOF.
type errReader struct {
	r    io.Reader
	want int64
	got  int64
	err  error
}

func (e *errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	e.got += int64(n)
	if err == io.EOF && e.got < e.want {
		err = fmt.Errorf("message body ended after %d of %d bytes: %w", e.got, e.want, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

type sizedReader struct {
	io.Reader
	n int64
}

func (r sizedReader) Size() int64 { return r.n }

// confirm waits for the target's answers in order and advances the cursor.
func (c *copier) confirm(units <-chan *unit) error {
	var firstErr error
	var lastDone time.Time
	fail := func(err error) {
		firstErr = err
		c.stop.Store(true)
	}
	for u := range units {
		if u.unfinished {
			// Every command before this one has been answered (units come
			// in order): now the incomplete one can be abandoned.
			c.tgt.abort()
			u.cmd.Close()
			// If the server answered it before we could finish it (a
			// MULTIAPPEND refused early), its answer is the reason, not
			// the write that failed after it.
			var answer *imap.Error
			if _, err := u.cmd.Wait(); errors.As(err, &answer) && firstErr == nil {
				u.writeErr = c.tgt.classify(fmt.Sprintf("append %s uid %d-%d", c.cur.Source, u.first(), u.failed.uid), err)
			}
		}
		if firstErr != nil {
			// Keep draining so the sender never blocks. Messages stored
			// after a failure are matched by identity on the next attempt.
			if u.cmd != nil && !u.unfinished {
				u.cmd.Wait()
			}
			continue
		}
		var uids []imap.UID
		if u.n > 0 && !u.unfinished {
			data, err := u.cmd.Wait()
			// Service time per message: from when the server could start on
			// this command (sent, and the one before it answered) to its
			// answer.
			now := time.Now()
			c.throttle.observe(failure.SideTarget, now.Sub(maxTime(u.sent, lastDone))/time.Duration(u.n))
			lastDone = now
			if err != nil {
				err = c.tgt.classify(fmt.Sprintf("append %s uid %d-%d (%d messages, %d bytes)", c.cur.Source, u.first(), u.last(), u.n, u.bytes), err)
				if fe, ok := failure.As(err); ok && fe.Type == failure.TypeMessageRejected {
					if u.n == 1 {
						c.confirmSteps(u.steps, nil, all, fe)
						continue
					}
					// One message spoils the whole MULTIAPPEND and the
					// answer does not say which: send these again one by
					// one, over new sessions, to find it.
					c.confirmSteps(u.steps, nil, u.first()-1, nil)
					c.sendAloneUntil(u.last())
					fail(ErrReconnect)
					continue
				}
				fail(err)
				continue
			}
			if got, ok := data.UIDs.Nums(); ok && len(got) == u.n {
				uids = got
			}
		}
		if u.writeErr == nil {
			c.confirmSteps(u.steps, uids, all, nil)
			continue
		}
		c.confirmSteps(u.steps, nil, u.first()-1, nil) // the messages before it in a cut command are not stored
		if fe, ok := failure.As(u.writeErr); ok && fe.Type == failure.TypeMessageRejected && fe.Side == failure.SideTarget {
			// Refused before its body was sent. The target connection was
			// cut to keep the stream sane, so the caller reconnects and
			// goes on: after it if it was alone, else sending it alone.
			if u.n == 0 && (c.batch == 1 || u.failed.uid <= c.singleUntil) {
				c.confirmSteps([]step{{m: u.failed, appended: true}}, nil, all, fe)
			} else {
				c.sendAloneUntil(u.failed.uid)
			}
			fail(ErrReconnect)
			continue
		}
		fail(u.writeErr)
	}
	return firstErr
}

// first and last return the UID range of the messages in u's command.
func (u *unit) first() imap.UID {
	for _, s := range u.steps {
		if s.appended {
			return s.m.uid
		}
	}
	return u.failed.uid
}

func (u *unit) last() imap.UID {
	for _, s := range slices.Backward(u.steps) {
		if s.appended {
			return s.m.uid
		}
	}
	return u.failed.uid
}

const all = ^imap.UID(0)

// confirmSteps advances the cursor over the steps up to source UID upTo, in
// order. Appended messages take their target UIDs from uids (nil: unknown,
// the target lacks UIDPLUS), or are bad items refused for bad.
func (c *copier) confirmSteps(steps []step, uids []imap.UID, upTo imap.UID, bad *failure.Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range steps {
		if s.m.uid > upTo {
			break
		}
		var tgtUID imap.UID
		switch {
		case s.appended && bad != nil:
			c.st.BadItems = append(c.st.BadItems, BadItem{Folder: c.cur.Source, UID: s.m.uid, Size: s.m.size, Reason: bad.Server})
		case s.appended:
			if uids != nil {
				tgtUID = uids[n]
			}
			n++
			c.st.Copied++
			c.st.Bytes += s.m.size
		case s.m.rejected != "":
			c.st.BadItems = append(c.st.BadItems, BadItem{Folder: c.cur.Source, UID: s.m.uid, Size: s.m.size, Reason: s.m.rejected})
		case s.m.matched != 0:
			tgtUID = s.m.matched
			c.st.Matched++
		case s.m.filtered:
			c.st.Filtered++
		}
		c.cur.LastUID = s.m.uid
		if tgtUID != 0 {
			c.cur.Map.Add(s.m.uid, tgtUID)
			c.cur.TargetUIDNext = max(c.cur.TargetUIDNext, tgtUID+1)
		}
	}
	if c.opts.Checkpoint != nil && time.Since(c.lastSave) >= c.opts.CheckpointEvery {
		c.lastSave = time.Now()
		c.opts.Checkpoint(c.cur.Clone(), c.st)
	}
}

// sendAloneUntil makes the next call send the messages up to uid one per
// command, through the cursor.
func (c *copier) sendAloneUntil(uid imap.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur.SingleUntil = max(c.cur.SingleUntil, uid)
}

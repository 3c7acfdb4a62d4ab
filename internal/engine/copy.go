package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailmove/mailmove/internal/failure"
)

// Cursor is the resumable progress of one folder. It is small (a few numbers
// and run-length UID maps) so it fits in heartbeats and workflow state.
//
// Every cursor SyncFolder returns or checkpoints is safe to resume from,
// whatever happens next (docs/exactly-once.md): its promises are
//   - LastUID: every source message up to it is on the target (copied or
//     found there), filtered, refused (a bad item), or gone from the source;
//   - Map and Claims: each pair names a target message that holds a copy of
//     the source message — Map for source UIDs up to LastUID, Claims for the
//     ones above it, found on the target before the copy reached them;
//   - TargetUIDNext: every target message below it has been examined — it is
//     in Map or Claims, or it is not a copy of a source message still to
//     copy. Only reconcile raises it, and only to the UIDNEXT it examined up
//     to; a copy never does, so whatever an attempt stores and fails to
//     record lies at or above it and is examined by the next one;
//   - all target UIDs are in TargetUIDValidity, all source UIDs in
//     UIDValidity: a change of either voids the pairs, and nothing is stored
//     or expunged by a UID planned in another.
type Cursor struct {
	Source string
	Target string
	// UIDValidity is the source folder's; a change means its UIDs were
	// reassigned and LastUID means nothing any more.
	UIDValidity uint32
	LastUID     imap.UID
	// HighestModSeq is the source's CONDSTORE mod-sequence when the last flag
	// synchronisation began; 0 without CONDSTORE.
	HighestModSeq     uint64
	TargetUIDValidity uint32
	TargetUIDNext     imap.UID
	Map               UIDMap
	Claims            UIDMap `json:",omitempty"`
	// SingleUntil: messages up to this source UID are sent one per APPEND,
	// because a MULTIAPPEND holding them was refused for one of them.
	SingleUntil imap.UID `json:",omitempty"`
	// SourceGone: the source folder was not there at the last pass (the
	// user deleted or renamed it): not a failure, the copy stays.
	SourceGone bool `json:",omitempty"`
	// GmailArchive: the source folder is Gmail's All Mail, of which only
	// the messages with none of GmailLabels are copied
	// (FolderPlan.GmailArchive); the others count as filtered.
	GmailArchive bool     `json:",omitempty"`
	GmailLabels  []string `json:",omitempty"`
	// GmailKeywords: the priority rule (GmailLabelPriority) is in use; a
	// message is copied only into the folder of its best-ranked label,
	// GmailOwn being this folder's, and its other labels become keywords.
	GmailKeywords bool   `json:",omitempty"`
	GmailOwn      string `json:",omitempty"`
	// GmailTarget: both sides are Gmail. A message is uploaded once, into
	// the folder of its best-ranked label, and given its other labels by
	// COPY on the target; each label's folder then shows every message
	// with the label, as on the source.
	GmailTarget bool `json:",omitempty"`
}

// Clone returns a copy that shares no memory with c.
func (c Cursor) Clone() Cursor {
	c.Map = slices.Clone(c.Map)
	c.Claims = slices.Clone(c.Claims)
	return c
}

// resetSource forgets the source UIDs: the source folder renumbered its
// messages. Every target message is examined again and matched by identity.
func (c *Cursor) resetSource(validity uint32) {
	c.UIDValidity, c.LastUID, c.HighestModSeq, c.SingleUntil = validity, 0, 0, 0
	c.Map, c.Claims, c.TargetUIDNext = nil, nil, 0
}

// ForRepair is the cursor of a pass that goes through the folder again
// from the start: every source message is looked for on the target, every
// target message examined, what is missing copied and extra copies
// removed. The copies it knows stay claimed, so a copy the user deleted on
// the target is not brought back.
func (c Cursor) ForRepair() Cursor {
	r := Cursor{Source: c.Source, Target: c.Target, UIDValidity: c.UIDValidity, TargetUIDValidity: c.TargetUIDValidity,
		GmailArchive: c.GmailArchive, GmailLabels: c.GmailLabels, GmailKeywords: c.GmailKeywords, GmailOwn: c.GmailOwn, GmailTarget: c.GmailTarget}
	r.Claims = c.Map.Merge(c.Claims)
	return r
}

// resetTarget forgets the target UIDs: the target folder is new, recreated
// (the user deleted it), or renumbered (Exchange does after internal moves).
// The source is gone through again from the start: what is on the target is
// found by identity and matched, what is not is copied, none twice.
func (c *Cursor) resetTarget(validity uint32) {
	c.TargetUIDValidity, c.TargetUIDNext, c.Map, c.Claims = validity, 0, nil, nil
	c.LastUID, c.SingleUntil = 0, 0
	// The flags of messages found again are compared in full next pass.
	c.HighestModSeq = 0
}

// BadItem is a message the target refused. It is skipped and reported.
type BadItem struct {
	Folder      string
	UIDValidity uint32 `json:",omitempty"` // the source folder's
	UID         imap.UID
	Size        int64
	Reason      string
}

// Stats is what one SyncFolder call did.
type Stats struct {
	Counters
	// More is true when the call stopped at Options.MaxMessages and more
	// messages wait; call again with the returned cursor.
	More bool
	// Remaining is the number of source messages above the cursor after this call.
	Remaining int
	// BudgetReached is true when the call stopped at Options.MaxBytes.
	BudgetReached bool
}

// Options tunes SyncFolder.
type Options struct {
	// MaxMessages bounds one call, so an activity covers a chunk of a large
	// folder and returns; 0 means no bound.
	MaxMessages int
	// MaxBytes bounds the bytes of the messages one call copies (0: no
	// bound): a provider's daily transfer budget, of which the caller
	// grants each call a share. The call stops before the message that
	// would go over it. WholeBudget says MaxBytes is a whole window's
	// budget: a message larger than it is then copied alone rather than
	// never.
	MaxBytes    int64
	WholeBudget bool
	// MaxMessageBytes: larger messages are bad items, not sent, as if
	// the target announced it as its APPENDLIMIT (a provider's documented
	// limit; 0: none).
	MaxMessageBytes int64
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
	// Reconcile examines the target folder even when there is nothing to
	// copy (the final pass): an attempt still writing after its lease was
	// gone may have left extra copies.
	Reconcile bool
	// Fence, when set, is asked before every write to the target (each
	// message of an APPEND, the end of each APPEND command, each STORE and
	// EXPUNGE); an error stops the copy before it writes, and an APPEND
	// command it interrupts is abandoned with its connection, never
	// completed. The activity's lease: an attempt Temporal may have given to
	// another worker must not write.
	Fence func() error
	// Helpers, when set, lends up to n more connection pairs to the same
	// mailboxes, so that a large chunk of one folder is copied over several
	// pairs at once. It may return fewer, or none. The caller owns the
	// pairs; after an error they may be mid-command and must be closed.
	Helpers func(ctx context.Context, n int) []Pair
	// Gmail ranks the labels of a Gmail source's messages where the
	// priority rule is in use (Cursor.GmailKeywords).
	Gmail GmailRanking
}

// fence is Fence, or a fence that never closes.
func (o *Options) fence() func() error {
	if o.Fence == nil {
		return func() error { return nil }
	}
	return o.Fence
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

	// What the copy does with it, decided by decide before any is sent.
	matched  imap.UID // already on the target as this UID (claimed)
	filtered bool     // left out by the rules
	labelled bool     // a Gmail message copied into another folder (Cursor.elsewhere)
	copyTo   []string // on a Gmail target, the folders of its other labels
	// shown: labelled, and on a Gmail target, which shows it here once its
	// home folder's copy is labelled.
	shown    bool
	rejected string // not sent: the target said it would refuse it
}

// fetch says whether the message is to be copied.
func (m meta) fetch() bool { return m.matched == 0 && !m.filtered && m.rejected == "" }

// decide settles, for every message, whether it is already on the target
// (claimed by reconcile), filtered, too large for the target, or to be
// copied. It runs once over a whole chunk, however the chunk is then split.
func decide(metas []meta, claims UIDMap, rules Rules, appendLimit int64) {
	for i := range metas {
		m := &metas[i]
		tooLarge := appendLimit > 0 && m.size > appendLimit
		switch t, ok := claims.Lookup(m.uid); {
		case ok:
			m.matched = t
		case m.shown && tooLarge && !rules.Skips(m.size, m.date):
			// Refused at home, so never shown here either: a bad item of
			// this folder too, or its verification would miss it.
			m.rejected = fmt.Sprintf("larger than the target takes (%d bytes): not copied to its first label's folder", appendLimit)
		case rules.Skips(m.size, m.date) || m.labelled:
			m.filtered = true
		case tooLarge:
			// The target said it takes nothing this large: a bad item,
			// without sending it.
			m.rejected = fmt.Sprintf("larger than the target's APPENDLIMIT of %d bytes", appendLimit)
		}
	}
}

// withinBudget returns how many of metas, from the first, a call may take
// without copying more than budget bytes (0: no budget). Messages already
// on the target, filtered or refused cost nothing.
func withinBudget(metas []meta, budget int64, whole bool) int {
	if budget <= 0 {
		return len(metas)
	}
	var sum int64
	for k, m := range metas {
		if !m.fetch() {
			continue
		}
		if sum+m.size > budget && !(sum == 0 && whole) {
			return k
		}
		sum += m.size
	}
	return len(metas)
}

// SyncFolder brings one target folder up to date with its source folder:
// flag changes and deletions of already copied messages first, then every
// source message above cur.LastUID, at most opts.MaxMessages of them. It
// returns the new cursor. After an error, the sessions may be in the middle
// of a command and must be closed; the returned cursor is still valid and
// resuming from it neither loses nor duplicates a message.
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
		early = src.Client.UIDSearch(&imap.SearchCriteria{}, src.esearch())
	}
	sel, err := examine.Wait()
	if early != nil && err != nil {
		early.Wait()
	}
	if err = src.classify("select "+cur.Source, ctxErr(ctx, err)); isNotFound(err) {
		cur.SourceGone = true
		return cur, st, nil
	}
	if err != nil {
		return cur, st, err
	}
	cur.SourceGone = false
	if cur.UIDValidity != sel.UIDValidity {
		cur.resetSource(sel.UIDValidity)
	}
	changed := cur.LastUID > 0 && (sel.HighestModSeq == 0 || sel.HighestModSeq != cur.HighestModSeq)
	newMail := sel.UIDNext == 0 || sel.UIDNext > cur.LastUID+1
	if !changed && !newMail && !opts.Reconcile {
		if early != nil {
			early.Wait()
		}
		return cur, st, nil
	}
	// The target's SELECT goes out with the source's message list.
	tselCmd := tgt.Client.Select(cur.Target, nil)
	all, err := listUIDs(ctx, src, cur.Source, early)
	tsel, tErr := selectTarget(ctx, tgt, &cur, tselCmd, opts.fence())
	if err != nil {
		return cur, st, err
	}
	if tErr != nil {
		return cur, st, tErr
	}
	fence := opts.fence()
	filter := newFlagFilter(tsel.PermanentFlags)
	// First account for the target as it is: after it renumbered, the map
	// is rebuilt here before flags and deletions use it.
	if err := reconcile(ctx, src, tgt, &cur, tsel, opts.Gmail, fence, &st); err != nil {
		return cur, st, err
	}
	if changed {
		var moved map[imap.UID]bool
		if st.FlagUpdates, moved, err = syncFlags(ctx, src, tgt, &cur, condstore, filter, opts.Gmail, fence); err != nil {
			return cur, st, err
		}
		var present imap.UIDSet
		present.AddNum(slices.DeleteFunc(slices.Clone(all), func(u imap.UID) bool { return u > cur.LastUID || moved[u] })...)
		if st.DeletedOnSource, st.Expunged, err = syncExpunges(ctx, tgt, &cur, present, opts.PropagateDeletes, fence); err != nil {
			return cur, st, err
		}
	}
	cur.HighestModSeq = sel.HighestModSeq
	if opts.Reconcile && cur.GmailTarget && cur.GmailOwn != "" {
		n, err := labelMissing(ctx, src, tgt, cur, all, opts.Gmail, fence)
		st.Labelled += n
		if err != nil {
			return cur, st, err
		}
	}

	pending := slices.DeleteFunc(all, func(u imap.UID) bool { return u <= cur.LastUID })
	if len(pending) == 0 {
		return cur, st, nil
	}
	if opts.MaxMessages > 0 && len(pending) > opts.MaxMessages {
		st.More = true
		st.Remaining = len(pending) - opts.MaxMessages
		pending = pending[:opts.MaxMessages]
	}
	// The bodies are asked for in one FETCH naming every UID: in a folder
	// with many deleted messages that line would outgrow what servers take
	// (Dovecot 64 KiB, go-imap 50 KiB). A chunk ends at chunkRanges ranges;
	// the rest is the next call's.
	if k := withinRanges(pending, chunkRanges); k < len(pending) {
		st.More = true
		st.Remaining += len(pending) - k
		pending = pending[:k]
	}
	metas, err := fetchMeta(ctx, src, pending, cur, opts.Gmail)
	if err != nil {
		return cur, st, err
	}
	for i := range metas {
		metas[i].flags = filter.keep(metas[i].flags, &st)
	}
	limit := tgt.AppendLimit()
	if opts.MaxMessageBytes > 0 && (limit == 0 || opts.MaxMessageBytes < limit) {
		limit = opts.MaxMessageBytes
	}
	decide(metas, cur.Claims, opts.Rules, limit)
	if k := withinBudget(metas, opts.MaxBytes, opts.WholeBudget); k < len(metas) {
		st.More, st.BudgetReached = true, true
		st.Remaining += len(metas) - k
		metas = metas[:k]
	}
	if opts.Helpers != nil {
		if cur, st, ok, err := syncParallel(ctx, src, tgt, cur, st, opts, metas); ok {
			return cur, st, err
		}
	}
	c := newCopier(src, tgt, cur, st, opts)
	err = c.run(ctx, metas)
	cur, st, err = c.result(err)
	if err == nil {
		st.BadItems, err = unreturned(ctx, src, cur, c.unreturned, st.BadItems)
	}
	return cur, st, err
}

// chunkRanges bounds the ranges of UIDs one chunk of a copy names: at
// most 21 bytes each, under 44 KB whatever the UIDs.
const chunkRanges = 2000

// withinRanges is how many of uids, ascending, from the first, make at
// most max ranges of consecutive UIDs.
func withinRanges(uids []imap.UID, max int) int {
	ranges := 0
	for i, u := range uids {
		if i == 0 || u != uids[i-1]+1 {
			if ranges == max {
				return i
			}
			ranges++
		}
	}
	return len(uids)
}

// unreturned adds to bad the messages a FETCH answer left out that are
// still in the source folder: a server that cannot read a message may skip
// it silently, and it must not pass for expunged.
func unreturned(ctx context.Context, src *Session, cur Cursor, metas []meta, bad []BadItem) ([]BadItem, error) {
	if len(metas) == 0 {
		return bad, nil
	}
	uids := make([]imap.UID, len(metas))
	for i, m := range metas {
		uids[i] = m.uid
	}
	var present imap.UIDSet
	for _, part := range splitUIDs(imap.UIDSetNum(uids...)) {
		data, err := src.Client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{part}}, src.esearch()).Wait()
		if err != nil {
			return bad, src.classify("search messages of "+cur.Source, ctxErr(ctx, err))
		}
		if all, ok := data.All.(imap.UIDSet); ok {
			present = append(present, all...)
		}
	}
	for _, m := range metas {
		if present.Contains(m.uid) {
			bad = append(bad, BadItem{Folder: cur.Source, UIDValidity: cur.UIDValidity, UID: m.uid, Size: m.size,
				Reason: "the source server did not send this message"})
		}
	}
	return bad, nil
}

// isNotFound reports a folder that does not exist.
func isNotFound(err error) bool {
	fe, ok := failure.As(err)
	return ok && fe.Type == failure.TypeNotFound
}

// listUIDs returns every UID of the selected folder, ascending, from cmd
// when it was sent already. The answer must account for every message the
// folder has: a short or empty one (a server under stress, a reply cut by a
// proxy) would read as deletions, let the cursor pass messages never
// copied, or raise TargetUIDNext over copies nobody looked at. It is
// counted before it is expanded: a few bytes of ESEARCH can name billions
// of UIDs.
func listUIDs(ctx context.Context, s *Session, folder string, cmd *imapclient.SearchCommand) ([]imap.UID, error) {
	if cmd == nil {
		cmd = s.Client.UIDSearch(&imap.SearchCriteria{}, s.esearch())
	}
	data, err := cmd.Wait()
	if err != nil {
		return nil, s.classify("search messages of "+folder, ctxErr(ctx, err))
	}
	all, _ := data.All.(imap.UIDSet)
	var want uint32
	if mb := s.Client.Mailbox(); mb != nil {
		want = mb.NumMessages
	}
	if n, ok := setSize(all); !ok || n != uint64(want) {
		return nil, s.classify("search messages of "+folder,
			fmt.Errorf("the server listed %s UIDs for a folder of %d messages; trying again later", sizeString(n, ok), want))
	}
	uids, _ := all.Nums()
	slices.Sort(uids)
	return uids, nil
}

// setSize counts the UIDs of a set without expanding it; ok is false for
// an open range (n:*) or overlapping ranges.
func setSize(set imap.UIDSet) (n uint64, ok bool) {
	ranges := slices.Clone(set)
	slices.SortFunc(ranges, func(a, b imap.UIDRange) int { return cmp.Compare(min(a.Start, a.Stop), min(b.Start, b.Stop)) })
	var last imap.UID
	for _, r := range ranges {
		lo, hi := min(r.Start, r.Stop), max(r.Start, r.Stop)
		if lo == 0 || lo <= last {
			return n, false
		}
		n += uint64(hi-lo) + 1
		last = hi
	}
	return n, true
}

func sizeString(n uint64, ok bool) string {
	if !ok {
		return "an open or overlapping range of"
	}
	return strconv.FormatUint(n, 10)
}

// selectTarget waits for the target folder's SELECT — making the folder
// again if the user deleted it — and voids the cursor's target UIDs if
// they are no longer the folder's.
func selectTarget(ctx context.Context, tgt *Session, cur *Cursor, cmd *imapclient.SelectCommand, fence func() error) (*imap.SelectData, error) {
	sel, err := cmd.Wait()
	if err = tgt.classify("select "+cur.Target, ctxErr(ctx, err)); isNotFound(err) {
		if err := fence(); err != nil {
			return nil, err
		}
		if err := tgt.Client.Create(cur.Target, nil).Wait(); err != nil && !isAlreadyExists(err) {
			return nil, tgt.classify("create folder "+cur.Target, ctxErr(ctx, err))
		}
		sel, err = tgt.Client.Select(cur.Target, nil).Wait()
		err = tgt.classify("select "+cur.Target, ctxErr(ctx, err))
	}
	if err != nil {
		return nil, err
	}
	if sel.UIDValidity != cur.TargetUIDValidity {
		cur.resetTarget(sel.UIDValidity)
	}
	return sel, nil
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

// fetchMeta reads flags, date and size of the given messages, and on a
// Gmail source their labels where they decide the copy.
func fetchMeta(ctx context.Context, s *Session, uids []imap.UID, cur Cursor, g GmailRanking) ([]meta, error) {
	// Pipelined: every part's FETCH is sent before the first answer is
	// read, each naming at most rangesPerCommand ranges of UIDs.
	parts := splitUIDs(imap.UIDSetNum(uids...))
	cmds := make([]*imapclient.FetchCommand, len(parts))
	for i, part := range parts {
		cmds[i] = s.Client.Fetch(part, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, GmailLabels: cur.readsLabels()})
	}
	var bufs []*imapclient.FetchMessageBuffer
	var err error
	for _, cmd := range cmds {
		got, cerr := cmd.Collect()
		bufs = append(bufs, got...)
		err = cmp.Or(err, cerr)
	}
	if err != nil {
		return nil, s.classify("fetch message list", ctxErr(ctx, err))
	}
	metas := make([]meta, 0, len(bufs))
	for _, b := range bufs {
		m := meta{uid: b.UID, size: b.RFC822Size, date: b.InternalDate, labelled: cur.elsewhere(b.GmailLabels, g)}
		for _, f := range b.Flags {
			if !isRecent(f) {
				m.flags = append(m.flags, f)
			}
		}
		m.flags = append(m.flags, cur.labelFlags(b.GmailLabels)...)
		m.copyTo = cur.labelFolders(b.GmailLabels, g)
		m.shown = m.labelled && cur.GmailTarget && !cur.notHere(b.GmailLabels, g)
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b meta) int { return cmp.Compare(a.uid, b.uid) })
	return metas, nil
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

	mu         sync.Mutex
	cur        Cursor
	st         Stats
	lastSave   time.Time
	unreturned []meta
	labels     []labelCopy // confirmed copies to label (Gmail target)
	// labelLater: the copier is one block of a parallel copy, whose
	// target session has no folder selected; the main session labels.
	labelLater bool
}

// labelCopy is a copy on a Gmail target and the folders of its other
// labels.
type labelCopy struct {
	uid imap.UID
	to  []string
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
	if err == nil {
		// Copies whose labels are lost with an attempt that dies here are
		// labelled at the final pass (labelMissing).
		err = c.label(ctx)
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
	fence := c.opts.fence()
	fenced := false
	// abandon hands confirm a unit whose command must never be completed:
	// confirm collects the answers to the commands before it, then cuts the
	// connection, and the server discards it.
	abandon := func(err error) {
		u.writeErr, u.unfinished = err, true
		units <- u
		u = &unit{}
		fenced = true
	}
	// ship ends the unit's command, which commits it on the server, and
	// hands the unit to confirm; past the fence, it abandons it instead.
	ship := func() {
		if u.cmd != nil && !u.unfinished {
			if err := fence(); err != nil {
				abandon(err)
				return
			}
		}
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
		// The source may send every body asked for, whatever happens next.
		var want int64
		for _, m := range metas {
			if m.fetch() {
				want += m.size
			}
		}
		c.mu.Lock()
		c.st.Downloaded += want
		c.mu.Unlock()
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
			if err := fence(); err != nil && !fenced {
				if u.cmd != nil {
					abandon(err)
				} else {
					fenced = true
					done()
					return err
				}
			}
			if fenced {
				done()
				return nil // confirm reports why
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
				if fenced {
					return nil // confirm reports why
				}
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
	// The last byte waits for the fence: some servers store a message as
	// soon as they have read it whole, before the command ends, and a
	// message one byte short is one every server throws away.
	_, err := io.CopyBuffer(w, io.LimitReader(r, max(m.size-1, 0)), c.buf)
	var fenced error
	if err == nil && r.err == nil {
		fenced = c.opts.fence()()
	}
	if err == nil && fenced == nil {
		_, err = io.CopyBuffer(w, r, c.buf)
	}
	if err == nil && fenced == nil {
		err = w.Close()
	}
	switch {
	case fenced != nil:
		u.writeErr = fenced
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
			if n, ok := setSize(data.UIDs); ok && n == uint64(u.n) {
				uids, _ = data.UIDs.Nums()
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
			c.st.BadItems = append(c.st.BadItems, BadItem{Folder: c.cur.Source, UIDValidity: c.cur.UIDValidity, UID: s.m.uid, Size: s.m.size, Reason: bad.Server})
		case s.appended:
			if uids != nil {
				tgtUID = uids[n]
				if len(s.m.copyTo) > 0 {
					c.labels = append(c.labels, labelCopy{uid: tgtUID, to: s.m.copyTo})
				}
			}
			n++
			c.st.Copied++
			c.st.Bytes += s.m.size
		case s.m.rejected != "":
			c.st.BadItems = append(c.st.BadItems, BadItem{Folder: c.cur.Source, UIDValidity: c.cur.UIDValidity, UID: s.m.uid, Size: s.m.size, Reason: s.m.rejected})
		case s.m.matched != 0:
			tgtUID = s.m.matched
			c.st.Matched++
		case s.m.filtered:
			c.st.Filtered++
		case s.m.fetch():
			// Left out of the FETCH answer: expunged since it was listed,
			// or a message the server cannot read (see unreturned).
			c.unreturned = append(c.unreturned, s.m)
		}
		c.cur.LastUID = s.m.uid
		if tgtUID != 0 {
			c.cur.Map.Add(s.m.uid, tgtUID)
		}
	}
	// Claims the cursor passed are copies now. TargetUIDNext stays: what
	// this copy stored is accounted for in the map, and anything else at
	// or above it is for the next reconcile to examine.
	c.cur.Claims = c.cur.Claims.After(c.cur.LastUID)
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

package engine

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// reconcile accounts for every target message at or above
// cur.TargetUIDNext that neither the map nor the claims name, in the target
// folder selected in tgt (tsel), then raises TargetUIDNext to the folder's
// UIDNEXT. Such messages were stored by an attempt that died before it
// recorded them, by an attempt still writing after its lease was gone, by
// an earlier run of the same users, by a server without UIDPLUS (no UID
// came back), or they are other mail. Each is, by identity (see identity):
//
//  1. a copy of a source message the cursor passed without a target UID:
//     it goes into the map;
//  2. a copy of a source message the cursor has not reached: it is claimed
//     (Cursor.Claims), and that message will be matched, not copied;
//  3. an extra copy of a message the map already holds, whose mapped copy
//     is still there: it is removed (UID EXPUNGE) and counted, or, where the
//     target lacks UIDPLUS, left for the verification to report; if the
//     mapped copy is gone, this one takes its place in the map;
//  4. anything else: other mail, left alone.
//
// One target message pairs with at most one source message and the other
// way round, so messages sharing an identity are never claimed twice. The
// cursor is only changed in memory: an attempt that dies here has
// published nothing.
func reconcile(ctx context.Context, src, tgt *Session, cur *Cursor, tsel *imap.SelectData, fence func() error, st *Stats) error {
	from := max(cur.TargetUIDNext, 1)
	if tsel.NumMessages == 0 || (tsel.UIDNext != 0 && tsel.UIDNext <= from) {
		cur.TargetUIDNext = max(cur.TargetUIDNext, tsel.UIDNext)
		return nil
	}
	uids, err := searchUIDs(ctx, tgt, cur.Target, from)
	if err != nil {
		return err
	}
	next := tsel.UIDNext
	if len(uids) > 0 {
		next = max(next, uids[len(uids)-1]+1)
	}
	known := cur.Map.TargetSet()
	known.AddSet(cur.Claims.TargetSet())
	unmapped := slices.DeleteFunc(uids, func(u imap.UID) bool { return known.Contains(u) })
	if len(unmapped) > 0 {
		if err := account(ctx, src, tgt, cur, unmapped, fence, st); err != nil {
			return err
		}
	}
	cur.TargetUIDNext = max(cur.TargetUIDNext, next)
	return nil
}

// account sorts the unmapped target messages into the four cases of
// reconcile.
func account(ctx context.Context, src, tgt *Session, cur *Cursor, unmapped []imap.UID, fence func() error, st *Stats) error {
	targets, err := fetchIdentities(ctx, tgt, cur.Target, unmapped)
	if err != nil {
		return err
	}
	dates := map[int64]bool{}
	for _, t := range targets {
		dates[t.id.date] = true
	}
	candidates, err := sourceCandidates(ctx, src, cur.Source, dates)
	if err != nil {
		return err
	}
	sources, err := fetchIdentities(ctx, src, cur.Source, candidates)
	if err != nil {
		return err
	}
	p := pairing{cur: cur, mappedOf: map[identity][]UIDRun{}, free: map[identity][]imap.UID{}}
	p.index(sources)
	var excess []identified
	for _, t := range targets {
		if !p.pair(t) {
			if len(p.mappedOf[t.id]) > 0 {
				excess = append(excess, t)
			}
		}
	}
	if len(excess) > 0 {
		if err := p.settleExcess(ctx, tgt, excess, fence, st); err != nil {
			return err
		}
	}
	cur.Map = cur.Map.Merge(mapOf(p.copies))
	cur.Claims = cur.Claims.Merge(mapOf(p.claims))
	return nil
}

// identified is a message and its identity.
type identified struct {
	uid imap.UID
	id  identity
}

// pairing matches target messages to source messages of one identity.
type pairing struct {
	cur *Cursor
	// free source messages by identity, ascending: not in the map, not
	// claimed.
	free map[identity][]imap.UID
	// mappedOf: the map's pairs of source messages with that identity.
	mappedOf map[identity][]UIDRun
	// copies (case 1 and 3) and claims (case 2) found, one pair each.
	copies, claims []UIDRun
}

func (p *pairing) index(sources []identified) {
	claimed := p.cur.Claims.sources()
	for _, s := range sources {
		switch t, ok := p.cur.Map.Lookup(s.uid); {
		case ok:
			p.mappedOf[s.id] = append(p.mappedOf[s.id], UIDRun{Src: s.uid, Tgt: t, N: 1})
		case claimed.Contains(s.uid):
		default:
			p.free[s.id] = append(p.free[s.id], s.uid)
		}
	}
}

// pair gives t to the first free source message of its identity: one the
// cursor passed first (a copy made without a UID coming back must not be
// mistaken for one still to make), then one still to copy.
func (p *pairing) pair(t identified) bool {
	free := p.free[t.id]
	if len(free) == 0 {
		return false
	}
	s := free[0]
	p.free[t.id] = free[1:]
	if s <= p.cur.LastUID {
		p.copies = append(p.copies, UIDRun{Src: s, Tgt: t.uid, N: 1})
	} else {
		p.claims = append(p.claims, UIDRun{Src: s, Tgt: t.uid, N: 1})
	}
	return true
}

// settleExcess handles the target messages whose identity the map already
// holds (case 3): where a mapped copy is gone, the extra one replaces it;
// the others are removed where the target can remove exactly them.
func (p *pairing) settleExcess(ctx context.Context, tgt *Session, excess []identified, fence func() error, st *Stats) error {
	var mapped imap.UIDSet
	for _, t := range excess {
		for _, r := range p.mappedOf[t.id] {
			mapped.AddNum(r.Tgt)
		}
	}
	present, err := presentUIDs(ctx, tgt, p.cur.Target, mapped)
	if err != nil {
		return err
	}
	var remove imap.UIDSet
	removed := 0
	for _, t := range excess {
		runs := p.mappedOf[t.id]
		if i := slices.IndexFunc(runs, func(r UIDRun) bool { return !present.Contains(r.Tgt) }); i >= 0 {
			p.copies = append(p.copies, UIDRun{Src: runs[i].Src, Tgt: t.uid, N: 1})
			runs[i].Tgt = t.uid
			continue
		}
		if tgt.uidPlus() {
			remove.AddNum(t.uid)
			removed++
		}
	}
	if removed == 0 {
		return nil
	}
	if err := expungeUIDs(ctx, tgt, p.cur.Target, remove, fence); err != nil {
		return err
	}
	st.DuplicatesRemoved += removed
	return nil
}

// mapOf builds a map of single pairs given in any order.
func mapOf(pairs []UIDRun) UIDMap {
	slices.SortFunc(pairs, func(a, b UIDRun) int { return cmp.Compare(a.Src, b.Src) })
	var m UIDMap
	for _, p := range pairs {
		m.Add(p.Src, p.Tgt)
	}
	return m
}

// sources returns the set of source UIDs of m.
func (m UIDMap) sources() imap.UIDSet {
	var s imap.UIDSet
	for _, r := range m {
		s.AddRange(r.Src, r.end()-1)
	}
	return s
}

// searchUIDs lists the UIDs of the selected folder from from on, ascending.
func searchUIDs(ctx context.Context, s *Session, folder string, from imap.UID) ([]imap.UID, error) {
	var set imap.UIDSet
	set.AddRange(from, 0)
	data, err := s.Client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, s.esearch()).Wait()
	if err != nil {
		return nil, s.classify("search "+folder, ctxErr(ctx, err))
	}
	all, _ := data.All.(imap.UIDSet)
	uids, _ := all.Nums()
	// "n:*" matches the highest UID even when it is below n (RFC 3501 6.4.8).
	uids = slices.DeleteFunc(uids, func(u imap.UID) bool { return u < from })
	slices.Sort(uids)
	return uids, nil
}

// presentUIDs returns which of uids the selected folder holds.
func presentUIDs(ctx context.Context, s *Session, folder string, uids imap.UIDSet) (imap.UIDSet, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	data, err := s.Client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{uids}}, s.esearch()).Wait()
	if err != nil {
		return nil, s.classify("search "+folder, ctxErr(ctx, err))
	}
	all, _ := data.All.(imap.UIDSet)
	return all, nil
}

// esearch asks for compact UID SEARCH answers where the server can give
// them (ESEARCH, part of IMAP4rev2): ranges instead of every UID.
func (s *Session) esearch() *imap.SearchOptions {
	if s.Caps.Has(imap.CapESearch) || s.Caps.Has(imap.CapIMAP4rev2) {
		return &imap.SearchOptions{ReturnAll: true}
	}
	return nil
}

// identityChunk bounds one FETCH of identities, and with it the memory its
// answers take.
const identityChunk = 2000

// fetchIdentities reads the identities of the given messages of the
// selected folder, in UID order. Messages expunged meanwhile are left out.
func fetchIdentities(ctx context.Context, s *Session, folder string, uids []imap.UID) ([]identified, error) {
	out := make([]identified, 0, len(uids))
	for chunk := range slices.Chunk(uids, identityChunk) {
		cmd := s.Client.Fetch(imap.UIDSetNum(chunk...), &imap.FetchOptions{
			UID: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{identitySection},
		})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			b, err := msg.Collect()
			if err != nil {
				cmd.Close()
				return nil, s.classify("fetch headers of "+folder, ctxErr(ctx, err))
			}
			out = append(out, identified{uid: b.UID, id: identityOf(b.InternalDate, b.FindBodySection(identitySection))})
		}
		if err := cmd.Close(); err != nil {
			return nil, s.classify("fetch headers of "+folder, ctxErr(ctx, err))
		}
	}
	slices.SortFunc(out, func(a, b identified) int { return cmp.Compare(a.uid, b.uid) })
	return out, nil
}

// sourceCandidates lists the source messages whose INTERNALDATE falls in
// one of the given seconds: the only ones that can share an identity with
// them. INTERNALDATE is all the server sends for each message.
func sourceCandidates(ctx context.Context, s *Session, folder string, dates map[int64]bool) ([]imap.UID, error) {
	var all imap.UIDSet
	all.AddRange(1, 0)
	cmd := s.Client.Fetch(all, &imap.FetchOptions{UID: true, InternalDate: true})
	var out []imap.UID
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var uid imap.UID
		var date time.Time
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = item.UID
			case imapclient.FetchItemDataInternalDate:
				date = item.Time
			}
		}
		if uid != 0 && dates[date.Unix()] {
			out = append(out, uid)
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, s.classify("fetch dates of "+folder, ctxErr(ctx, err))
	}
	return out, nil
}

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
// came back), or they are other mail. They are told apart by identity
// (see identity): for each identity, the source messages that have it and
// the target's copies of it (the unrecorded ones, and those the cursor
// holds) are paired, and
//
//   - the k source messages of an identity keep its k lowest-numbered
//     copies: a copy the cursor holds stays its message's if it is among
//     them, the others go to messages the cursor passed without a copy
//     (into the map), then to messages it has not reached (claims: they
//     will be matched, not copied);
//   - copies beyond the k lowest are extra, stored twice by attempts that
//     overlapped: they are removed (UID EXPUNGE, exactly those), or left
//     for the verification to report where the target lacks UIDPLUS;
//   - messages of no source identity are other mail, left alone.
//
// Keeping the lowest-numbered copies is what makes two attempts that
// overlap agree on which copy stays: a server only ever numbers new
// messages higher, so the lowest copy of a message stays the lowest. The
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

// identified is a message and its identity.
type identified struct {
	uid imap.UID
	id  identity
}

// copyGroup is one identity: its source messages and its target copies.
type copyGroup struct {
	sources []groupSource
	copies  []imap.UID // unrecorded, then the recorded ones still present
}

type groupSource struct {
	uid imap.UID
	tgt imap.UID // its copy in the map or the claims; 0: none
}

// account pairs the unrecorded target messages with source messages, as
// reconcile says.
func account(ctx context.Context, src, tgt *Session, cur *Cursor, unmapped []imap.UID, fence func() error, st *Stats) error {
	targets, err := fetchIdentities(ctx, tgt, cur.Target, unmapped)
	if err != nil {
		return err
	}
	groups := map[identity]*copyGroup{}
	dates := map[int64]bool{}
	for _, t := range targets {
		g := groups[t.id]
		if g == nil {
			g = &copyGroup{}
			groups[t.id] = g
		}
		g.copies = append(g.copies, t.uid)
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
	var recorded imap.UIDSet
	for _, s := range sources {
		if g := groups[s.id]; g != nil {
			t, ok := cur.Map.Lookup(s.uid)
			if !ok {
				t, _ = cur.Claims.Lookup(s.uid)
			}
			g.sources = append(g.sources, groupSource{uid: s.uid, tgt: t})
			if t != 0 {
				recorded.AddNum(t)
			}
		}
	}
	present, err := presentUIDs(ctx, tgt, cur.Target, recorded)
	if err != nil {
		return err
	}
	var pairs, claims []UIDRun
	var extra imap.UIDSet
	removable := tgt.uidPlus()
	for _, g := range groups {
		for _, s := range g.sources {
			if s.tgt != 0 && present.Contains(s.tgt) {
				g.copies = append(g.copies, s.tgt)
			}
		}
		for _, a := range g.settle(removable) {
			if a.Src <= cur.LastUID {
				pairs = append(pairs, a)
			} else {
				claims = append(claims, a)
			}
		}
		for _, t := range g.extra(removable) {
			extra.AddNum(t)
		}
	}
	cur.Map = cur.Map.Merge(mapOf(pairs))
	cur.Claims = cur.Claims.Merge(mapOf(claims))
	if n := countUIDs(extra); n > 0 {
		if err := expungeUIDs(ctx, tgt, cur.Target, extra, fence); err != nil {
			return err
		}
		st.DuplicatesRemoved += n
	}
	return nil
}

// kept is the copies of the group that stay: one per source message, the
// lowest-numbered; all of them where extra ones cannot be removed.
func (g *copyGroup) kept(removable bool) []imap.UID {
	slices.Sort(g.copies)
	g.copies = slices.Compact(g.copies)
	if !removable || len(g.sources) == 0 {
		// Other mail, or nothing can be removed: all stay.
		return g.copies
	}
	return g.copies[:min(len(g.sources), len(g.copies))]
}

// settle returns the new pairs of the group: each source message without a
// kept copy gets a kept copy no other has — first those whose recorded copy
// is an extra one or gone, then those without one, in UID order.
func (g *copyGroup) settle(removable bool) []UIDRun {
	kept := g.kept(removable)
	taken := map[imap.UID]bool{}
	var need []groupSource
	for _, s := range g.sources {
		if s.tgt != 0 && slices.Contains(kept, s.tgt) && !taken[s.tgt] {
			taken[s.tgt] = true
			continue
		}
		if s.tgt != 0 && !removable {
			continue // its copy stays its own
		}
		need = append(need, s)
	}
	slices.SortStableFunc(need, func(a, b groupSource) int {
		return cmp.Compare(b2i(a.tgt == 0), b2i(b.tgt == 0))
	})
	var out []UIDRun
	for _, t := range kept {
		if taken[t] || len(need) == 0 {
			continue
		}
		taken[t] = true
		out = append(out, UIDRun{Src: need[0].uid, Tgt: t, N: 1})
		need = need[1:]
	}
	return out
}

// extra returns the group's copies beyond the kept ones.
func (g *copyGroup) extra(removable bool) []imap.UID {
	return g.copies[len(g.kept(removable)):]
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func countUIDs(s imap.UIDSet) int {
	uids, _ := s.Nums()
	return len(uids)
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
		err := eachIdentity(ctx, s, folder, imap.UIDSetNum(chunk...), func(uid imap.UID, _ int64, id identity, _ time.Time) {
			out = append(out, identified{uid: uid, id: id})
		})
		if err != nil {
			return nil, err
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

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
func reconcile(ctx context.Context, src, tgt *Session, cur *Cursor, tsel *imap.SelectData, g GmailRanking, fence func() error, st *Stats) error {
	from := max(cur.TargetUIDNext, 1)
	if tsel.NumMessages == 0 || (tsel.UIDNext != 0 && tsel.UIDNext <= from) {
		cur.TargetUIDNext = max(cur.TargetUIDNext, tsel.UIDNext)
		return nil
	}
	// The whole folder, checked against its message count, rather than
	// the UIDs from TargetUIDNext on: those cannot be checked, and a short
	// answer would raise TargetUIDNext over copies nobody looked at.
	all, err := listUIDs(ctx, tgt, cur.Target, nil)
	if err != nil {
		return err
	}
	next := tsel.UIDNext
	if len(all) > 0 {
		next = max(next, all[len(all)-1]+1)
	}
	known := cur.Map.TargetSet()
	known.AddSet(cur.Claims.TargetSet())
	unmapped := slices.DeleteFunc(slices.Clone(all), func(u imap.UID) bool { return u < from || known.Contains(u) })
	if len(unmapped) > 0 {
		if err := account(ctx, src, tgt, cur, unmapped, all, g, fence, st); err != nil {
			return err
		}
	}
	cur.TargetUIDNext = max(cur.TargetUIDNext, next)
	return nil
}

// copyGroup is one identity: its source messages and its target copies.
type copyGroup struct {
	sources []groupSource
	copies  []imap.UID // unrecorded, then the recorded ones still present
}

type groupSource struct {
	uid imap.UID
	tgt imap.UID // its copy in the map or the claims; 0: none
	// away: its copy belongs in another folder (Gmail's priority rule);
	// it owns none here.
	away bool
}

// account pairs the unrecorded target messages with source messages, as
// reconcile says.
func account(ctx context.Context, src, tgt *Session, cur *Cursor, unmapped, all []imap.UID, g GmailRanking, fence func() error, st *Stats) error {
	var targets []identified
	if err := eachIdentity(ctx, tgt, cur.Target, unmapped, func(m identified) { targets = append(targets, m) }); err != nil {
		return err
	}
	var dates []int64
	for _, t := range targets {
		dates = append(dates, t.date.Unix())
	}
	candidates, err := sourceCandidates(ctx, src, cur.Source, dates)
	if err != nil {
		return err
	}
	var away map[imap.UID]bool
	if cur.readsLabels() && len(candidates) > 0 {
		// Gmail messages copied into another folder: a copy here is a
		// twin's (All Mail's archived one, or one the priority rule keeps
		// here), never theirs. Under the priority rule a copy of theirs is
		// an extra one, stored by an attempt that ranked the labels
		// otherwise (a label folder it did not know yet): they stay in
		// their groups, owning no copy.
		labelled, err := gmailNotHere(ctx, src, candidates, *cur, g)
		if err != nil {
			return err
		}
		if cur.ranksHere() {
			away = labelled
		} else {
			candidates = slices.DeleteFunc(candidates, func(u imap.UID) bool { return labelled[u] })
		}
	}
	groups := map[identity]*copyGroup{}
	err = eachIdentity(ctx, src, cur.Source, candidates, func(s identified) {
		t, ok := cur.Map.Lookup(s.uid)
		if !ok {
			t, _ = cur.Claims.Lookup(s.uid)
		}
		g := groups[s.key()]
		if g == nil {
			g = &copyGroup{}
			groups[s.key()] = g
		}
		g.sources = append(g.sources, groupSource{uid: s.uid, tgt: t, away: away[s.uid]})
	})
	if err != nil {
		return err
	}
	known := func(id identity) bool { return groups[id] != nil }
	for _, t := range targets {
		k := t.keyAmong(known)
		if g := groups[k]; g != nil {
			g.copies = append(g.copies, t.uid)
		}
		// Other mail: no group, never touched.
	}
	present := func(u imap.UID) bool { _, ok := slices.BinarySearch(all, u); return ok }
	var list []*copyGroup
	for _, g := range groups {
		for _, s := range g.sources {
			if s.tgt != 0 && present(s.tgt) {
				g.copies = append(g.copies, s.tgt)
			}
		}
		if len(g.copies) > 0 {
			list = append(list, g)
		}
	}
	if list, err = refineByBody(ctx, src, tgt, cur, list); err != nil {
		return err
	}
	var pairs, claims []UIDRun
	var extra imap.UIDSet
	removable := tgt.uidPlus()
	for _, g := range list {
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
	// A message whose copy belongs elsewhere keeps none here.
	cur.Map, cur.Claims = cur.Map.Remove(away), cur.Claims.Remove(away)
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

// refineByBody splits the groups of several source messages by the start
// of their bodies: two messages with the same headers are two messages,
// and each keeps its own copy. A group is left whole where a copy's body
// matches none of its sources' (the target rewrites bodies).
func refineByBody(ctx context.Context, src, tgt *Session, cur *Cursor, groups []*copyGroup) ([]*copyGroup, error) {
	var srcUIDs, tgtUIDs []imap.UID
	for _, g := range groups {
		if len(g.sources) > 1 {
			for _, s := range g.sources {
				srcUIDs = append(srcUIDs, s.uid)
			}
			tgtUIDs = append(tgtUIDs, g.copies...)
		}
	}
	if len(srcUIDs) == 0 {
		return groups, nil
	}
	sd, err := bodyDigests(ctx, src, cur.Source, srcUIDs)
	if err != nil {
		return nil, err
	}
	td, err := bodyDigests(ctx, tgt, cur.Target, tgtUIDs)
	if err != nil {
		return nil, err
	}
	var out []*copyGroup
	for _, g := range groups {
		parts := map[identity]*copyGroup{}
		whole := len(g.sources) < 2
		for _, s := range g.sources {
			p := parts[sd[s.uid]]
			if p == nil {
				p = &copyGroup{}
				parts[sd[s.uid]] = p
			}
			p.sources = append(p.sources, s)
		}
		for _, c := range g.copies {
			p := parts[td[c]]
			if p == nil {
				whole = true
				break
			}
			p.copies = append(p.copies, c)
		}
		if whole {
			out = append(out, g)
			continue
		}
		for _, p := range parts {
			out = append(out, p)
		}
	}
	return out, nil
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
	here := 0
	for _, s := range g.sources {
		if !s.away {
			here++
		}
	}
	return g.copies[:min(here, len(g.copies))]
}

// settle returns the new pairs of the group: each source message without a
// kept copy gets a kept copy no other has — first those whose recorded copy
// is an extra one or gone, then those without one, in UID order.
func (g *copyGroup) settle(removable bool) []UIDRun {
	kept := g.kept(removable)
	taken := map[imap.UID]bool{}
	var need []groupSource
	for _, s := range g.sources {
		if s.away {
			continue
		}
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

// esearch asks for compact UID SEARCH answers where the server can give
// them (ESEARCH, part of IMAP4rev2): ranges instead of every UID.
func (s *Session) esearch() *imap.SearchOptions {
	if s.Caps.Has(imap.CapESearch) || s.Caps.Has(imap.CapIMAP4rev2) {
		return &imap.SearchOptions{ReturnAll: true}
	}
	return nil
}

// sourceCandidates lists the source messages whose INTERNALDATE lies
// within a day of one of the given ones: the only ones that can share an
// identity with them (a server that ignores the zone of APPEND's date
// shifts INTERNALDATE by hours, never by days). INTERNALDATE is all the
// server sends for each message.
func sourceCandidates(ctx context.Context, s *Session, folder string, dates []int64) ([]imap.UID, error) {
	const window = 26 * 60 * 60
	slices.Sort(dates)
	near := func(d int64) bool {
		i, _ := slices.BinarySearch(dates, d-window)
		return i < len(dates) && dates[i] <= d+window
	}
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
		if uid != 0 && near(date.Unix()) {
			out = append(out, uid)
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, s.classify("fetch dates of "+folder, ctxErr(ctx, err))
	}
	slices.Sort(out)
	return out, nil
}

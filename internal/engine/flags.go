package engine

import (
	"context"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// isRecent reports the session flag \Recent, which no client can set and
// which therefore is never copied.
func isRecent(f imap.Flag) bool { return strings.EqualFold(string(f), `\Recent`) }

// flagKey is a canonical form of a flag set for comparison: keywords are
// case-insensitive (RFC 3501 2.3.2) and order carries no meaning.
func flagKey(flags []imap.Flag) string {
	keys := make([]string, 0, len(flags))
	for _, f := range flags {
		if !isRecent(f) {
			keys = append(keys, strings.ToLower(string(f)))
		}
	}
	slices.Sort(keys)
	return strings.Join(keys, " ")
}

// syncFlags makes the flags of already copied messages equal to the
// source's, on the target folder selected in tgt with the UIDVALIDITY the
// cursor's map was made in (selectTarget checked it). With CONDSTORE only
// messages changed since the cursor's mod-sequence are read; without it
// every copied message is compared. Under Gmail's priority rule, a
// message's other labels are part of its flags (Cursor.labelFlags), and
// it returns the copied messages that got a better-ranked label: they
// have moved to that label's folder, as a message moved between folders
// on another server, and leave this one as expunged ones do.
func syncFlags(ctx context.Context, src, tgt *Session, cur *Cursor, condstore bool, filter *flagFilter, g GmailRanking, fence func() error) (int, map[imap.UID]bool, error) {
	if len(cur.Map) == 0 {
		return 0, nil, nil
	}
	var set imap.UIDSet
	set.AddRange(1, cur.LastUID)
	opts := &imap.FetchOptions{UID: true, Flags: true, GmailLabels: cur.GmailKeywords}
	if condstore && cur.HighestModSeq > 0 {
		opts.ChangedSince = cur.HighestModSeq
	}
	bufs, err := src.Client.Fetch(set, opts).Collect()
	if err != nil {
		return 0, nil, src.classify("fetch flags of "+cur.Source, ctxErr(ctx, err))
	}
	want := make(map[imap.UID][]imap.Flag, len(bufs))
	var tgtSet imap.UIDSet
	var ignored Stats
	var moved map[imap.UID]bool
	for _, b := range bufs {
		t, ok := cur.Map.Lookup(b.UID)
		if !ok {
			continue
		}
		if cur.ranksHere() && g.outranked(b.GmailLabels, cur.GmailOwn) {
			if moved == nil {
				moved = map[imap.UID]bool{}
			}
			moved[b.UID] = true
			continue
		}
		// Compare only what the target can keep, or a refused keyword would
		// be stored again at every pass; the copy reported it already.
		want[t] = filter.keep(append(b.Flags, cur.labelFlags(b.GmailLabels)...), &ignored)
		tgtSet.AddNum(t)
	}
	if len(want) == 0 {
		return 0, moved, nil
	}
	have, err := tgt.Client.Fetch(tgtSet, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		return 0, nil, tgt.classify("fetch flags of "+cur.Target, ctxErr(ctx, err))
	}
	// One STORE per distinct flag set instead of one per message.
	type group struct {
		flags []imap.Flag
		uids  imap.UIDSet
	}
	groups := make(map[string]*group)
	var order []string
	changed := 0
	for _, h := range have {
		w, ok := want[h.UID]
		if !ok || flagKey(w) == flagKey(h.Flags) {
			continue
		}
		k := flagKey(w)
		g := groups[k]
		if g == nil {
			g = &group{flags: slices.DeleteFunc(slices.Clone(w), isRecent)}
			groups[k] = g
			order = append(order, k)
		}
		g.uids.AddNum(h.UID)
		changed++
	}
	for _, k := range order {
		if err := fence(); err != nil {
			return 0, nil, err
		}
		g := groups[k]
		for _, part := range splitUIDs(g.uids) {
			store := tgt.Client.Store(part, &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: g.flags}, nil)
			if err := store.Close(); err != nil {
				return 0, nil, tgt.classify("store flags in "+cur.Target, ctxErr(ctx, err))
			}
		}
	}
	return changed, moved, nil
}

// flagFilter drops the flags a target folder does not keep. A server lists
// them in PERMANENTFLAGS; "\*" there means it creates keywords on demand.
type flagFilter struct {
	any     bool
	allowed map[string]bool
}

func newFlagFilter(permanent []imap.Flag) *flagFilter {
	f := &flagFilter{allowed: map[string]bool{}}
	if len(permanent) == 0 {
		// Some servers send no PERMANENTFLAGS: assume they keep everything
		// rather than drop every flag.
		f.any = true
	}
	for _, p := range permanent {
		if p == imap.FlagWildcard {
			f.any = true
		}
		f.allowed[strings.ToLower(string(p))] = true
	}
	return f
}

// keep returns the flags the folder keeps and counts the others in st.
func (f *flagFilter) keep(flags []imap.Flag, st *Stats) []imap.Flag {
	if f == nil || f.any {
		return flags
	}
	out := flags[:0:0]
	for _, fl := range flags {
		if f.allowed[strings.ToLower(string(fl))] {
			out = append(out, fl)
			continue
		}
		if st.RefusedKeywords == nil {
			st.RefusedKeywords = map[string]int{}
		}
		st.RefusedKeywords[string(fl)]++
	}
	return out
}

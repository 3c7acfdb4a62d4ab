package engine

import (
	"cmp"
	"iter"
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"
)

// UIDRun maps N consecutive source UIDs starting at Src to N consecutive
// target UIDs starting at Tgt.
type UIDRun struct {
	Src imap.UID `json:"s"`
	Tgt imap.UID `json:"t"`
	N   uint32   `json:"n"`
}

// end is the source UID after the run.
func (r UIDRun) end() imap.UID { return r.Src + imap.UID(r.N) }

// All yields the run's source UIDs with their target UIDs.
func (r UIDRun) All() iter.Seq2[imap.UID, imap.UID] {
	return func(yield func(src, tgt imap.UID) bool) {
		for i := imap.UID(0); i < imap.UID(r.N); i++ {
			if !yield(r.Src+i, r.Tgt+i) {
				return
			}
		}
	}
}

// UIDMap maps copied source UIDs to target UIDs for flag synchronisation. It
// is stored as runs, not one entry per message: a folder copied in order onto
// a server with UIDPLUS is a handful of runs however large it is, which keeps
// workflow state and heartbeats small.
type UIDMap []UIDRun

// Add records that source UID src is target UID tgt. UIDs must be added in
// ascending source order.
func (m *UIDMap) Add(src, tgt imap.UID) {
	if n := len(*m); n > 0 {
		last := &(*m)[n-1]
		if last.Src+imap.UID(last.N) == src && last.Tgt+imap.UID(last.N) == tgt {
			last.N++
			return
		}
	}
	*m = append(*m, UIDRun{Src: src, Tgt: tgt, N: 1})
}

// Lookup returns the target UID of source UID src.
func (m UIDMap) Lookup(src imap.UID) (imap.UID, bool) {
	i := sort.Search(len(m), func(i int) bool { return m[i].end() > src })
	if i < len(m) && m[i].Src <= src {
		return m[i].Tgt + (src - m[i].Src), true
	}
	return 0, false
}

// Len is the number of mapped messages.
func (m UIDMap) Len() int {
	n := 0
	for _, r := range m {
		n += int(r.N)
	}
	return n
}

// Remove drops the given source UIDs, splitting runs as needed.
func (m UIDMap) Remove(gone map[imap.UID]bool) UIDMap {
	if len(gone) == 0 {
		return m
	}
	var out UIDMap
	for _, r := range m {
		for src, tgt := range r.All() {
			if !gone[src] {
				out.Add(src, tgt)
			}
		}
	}
	return out
}

// Merge returns m with the pairs of o added (o wins where both map a
// source UID), in source order: claims are found in any order.
func (m UIDMap) Merge(o UIDMap) UIDMap {
	if len(o) == 0 {
		return m
	}
	type pair struct{ src, tgt imap.UID }
	var pairs []pair
	for _, mm := range []UIDMap{o, m} {
		for _, r := range mm {
			for src, tgt := range r.All() {
				pairs = append(pairs, pair{src, tgt})
			}
		}
	}
	// Stable: of two pairs for one source UID, o's (listed first) stays first.
	slices.SortStableFunc(pairs, func(a, b pair) int { return cmp.Compare(a.src, b.src) })
	var out UIDMap
	for i, p := range pairs {
		if i > 0 && pairs[i-1].src == p.src {
			continue
		}
		out.Add(p.src, p.tgt)
	}
	return out
}

// TargetSet is the set of mapped target UIDs.
func (m UIDMap) TargetSet() imap.UIDSet {
	var s imap.UIDSet
	for _, r := range m {
		s.AddRange(r.Tgt, r.Tgt+imap.UID(r.N)-1)
	}
	return s
}

// After returns the part of m for source UIDs above last.
func (m UIDMap) After(last imap.UID) UIDMap {
	i := sort.Search(len(m), func(i int) bool { return m[i].end() > last+1 })
	if i == len(m) {
		return nil
	}
	out := slices.Clone(m[i:])
	if r := &out[0]; r.Src <= last {
		skip := last + 1 - r.Src
		r.Src, r.Tgt, r.N = r.Src+skip, r.Tgt+skip, r.N-uint32(skip)
	}
	return out
}

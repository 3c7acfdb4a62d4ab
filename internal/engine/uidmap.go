package engine

import "sort"

// UIDRun maps N consecutive source UIDs starting at Src to N consecutive
// target UIDs starting at Tgt.
type UIDRun struct {
	Src uint32 `json:"s"`
	Tgt uint32 `json:"t"`
	N   uint32 `json:"n"`
}

// UIDMap maps copied source UIDs to target UIDs for flag synchronisation. It
// is stored as runs, not one entry per message: a folder copied in order onto
// a server with UIDPLUS is a handful of runs however large it is, which keeps
// workflow state and heartbeats small.
type UIDMap []UIDRun

// Add records that source UID src is target UID tgt. UIDs must be added in
// ascending source order.
func (m *UIDMap) Add(src, tgt uint32) {
	if n := len(*m); n > 0 {
		last := &(*m)[n-1]
		if last.Src+last.N == src && last.Tgt+last.N == tgt {
			last.N++
			return
		}
	}
	*m = append(*m, UIDRun{Src: src, Tgt: tgt, N: 1})
}

// Lookup returns the target UID of source UID src.
func (m UIDMap) Lookup(src uint32) (uint32, bool) {
	i := sort.Search(len(m), func(i int) bool { return m[i].Src+m[i].N > src })
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
func (m UIDMap) Remove(gone map[uint32]bool) UIDMap {
	if len(gone) == 0 {
		return m
	}
	var out UIDMap
	for _, r := range m {
		for i := uint32(0); i < r.N; i++ {
			if !gone[r.Src+i] {
				out.Add(r.Src+i, r.Tgt+i)
			}
		}
	}
	return out
}

// targets returns a test of whether a target UID at or above from is mapped.
func (m UIDMap) targets(from uint32) func(uint32) bool {
	var runs []UIDRun
	for _, r := range m {
		if r.Tgt+r.N > from {
			runs = append(runs, r)
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Tgt < runs[j].Tgt })
	return func(tgt uint32) bool {
		i := sort.Search(len(runs), func(i int) bool { return runs[i].Tgt+runs[i].N > tgt })
		return i < len(runs) && runs[i].Tgt <= tgt
	}
}

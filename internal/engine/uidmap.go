package engine

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

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
//
// A folder whose source UIDs have gaps (years of deletions) is a run per
// message, and the map travels whole in every payload that carries its
// Cursor (activity inputs and results, heartbeats, failure details,
// continue-as-new input), each refused by Temporal above 2 MB. So beyond
// uidMapArrayRuns runs its JSON is compact (MarshalJSON). Before
// compression it takes at most 15 bytes a run whatever the UIDs, and 3
// bytes a run while no gap between runs reaches 64 UIDs and no run 128
// messages; a run maps at least one message, so that is at most 15 and 3
// bytes a message, where the array of runs took 20 to 47. Measured
// (TestUIDMapJSONSizeOfSparseFolders, docs/sync.md), the cursor of
// 250,000 messages with every second source UID deleted is 1,150 bytes of
// JSON, with random gaps of 1 to 16 UIDs 176,011 bytes; as arrays, 7.3 MB.
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

// The JSON of a UIDMap. Up to uidMapArrayRuns runs it is the array of runs
// every version wrote ([{"s":1,"t":1,"n":2}], null when empty): readable
// in the Web UI, and readable by a worker not yet upgraded. Longer maps are
// a string:
//
//	"v1:" + base64(deflate(raw))
//	raw = uvarint(runs) ds[0] … ds[runs-1] dt[0] … dt[runs-1] n[0] … n[runs-1]
//
// column by column, so that deflate finds each column's repeats. ds[i] is
// the zig-zag varint of Src minus the end (Src+N) of run i-1 (of 0 for the
// first), dt[i] the same of Tgt (target UIDs need not ascend in source
// order: Merge, reconcile), n[i] the uvarint of N. Each field is 1 byte
// while a gap stays within -64..63 UIDs (n: below 128 messages) and one
// more for each further factor of 128, 5 at most: hence UIDMap's bound.
// Deflate adds a few bytes a block where it cannot compress (it stores
// the block), base64 a third.
//
// UnmarshalJSON reads both forms (recorded histories and running moves
// carry arrays) and null. It refuses a string that decodes to more than
// maxUIDMapRuns runs, a UID or run beyond 32 bits, or bytes after the last
// run, with an error rather than a panic or an unbounded allocation.
const (
	uidMapArrayRuns = 16
	uidMapPrefix    = "v1:"
	// maxUIDMapRuns bounds what a compact map may decode to: deflate
	// expands up to a thousandfold, and a hostile payload of a few hundred
	// KiB must not become gigabytes. A folder sparse enough to reach it
	// has 10 million messages.
	maxUIDMapRuns = 10_000_000
	// maxDelta bounds a decoded gap: a UID and the end of a run (at most
	// 2^32) are at most 2^32 apart.
	maxDelta = 1 << 32
)

// flateWriters reuses deflate state (about a megabyte each) between the
// maps of a heartbeat and the next.
var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestCompression)
	return w
}}

// MarshalJSON writes m as the array of its runs when it has up to
// uidMapArrayRuns of them, else as the compact string described above.
// It refuses a run beyond 32-bit UIDs (Src+N or Tgt+N above 2^32), which
// UnmarshalJSON would refuse to read back.
func (m UIDMap) MarshalJSON() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if len(m) <= uidMapArrayRuns {
		return json.Marshal([]UIDRun(m))
	}
	var z bytes.Buffer
	w := flateWriters.Get().(*flate.Writer)
	defer flateWriters.Put(w)
	w.Reset(&z)
	// Writes to a bytes.Buffer do not fail.
	w.Write(m.appendRaw(nil))
	w.Close()
	out := make([]byte, 0, 2+len(uidMapPrefix)+base64.StdEncoding.EncodedLen(z.Len()))
	out = append(out, '"')
	out = append(out, uidMapPrefix...)
	out = base64.StdEncoding.AppendEncode(out, z.Bytes())
	return append(out, '"'), nil
}

// appendRaw appends the uncompressed form of m to b.
func (m UIDMap) appendRaw(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	var end int64
	for _, r := range m {
		b = binary.AppendVarint(b, int64(r.Src)-end)
		end = int64(r.Src) + int64(r.N)
	}
	end = 0
	for _, r := range m {
		b = binary.AppendVarint(b, int64(r.Tgt)-end)
		end = int64(r.Tgt) + int64(r.N)
	}
	for _, r := range m {
		b = binary.AppendUvarint(b, uint64(r.N))
	}
	return b
}

// UnmarshalJSON reads either form MarshalJSON writes, and the array of any
// length older versions wrote; null is an empty map.
func (m *UIDMap) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0:
		return errors.New("uid map: no JSON value")
	case string(data) == "null":
		*m = nil
		return nil
	case data[0] != '"':
		var runs UIDMap
		if err := json.Unmarshal(data, (*[]UIDRun)(&runs)); err != nil {
			return fmt.Errorf("uid map: %w", err)
		}
		if err := runs.check(); err != nil {
			return err
		}
		*m = runs
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("uid map: %w", err)
	}
	if s == "" {
		*m = nil
		return nil
	}
	enc, ok := strings.CutPrefix(s, uidMapPrefix)
	if !ok {
		return fmt.Errorf("uid map: unknown encoding %q", s[:min(len(s), 8)])
	}
	z, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return fmt.Errorf("uid map: %w", err)
	}
	fr := flate.NewReader(bytes.NewReader(z))
	defer fr.Close()
	runs, err := readRaw(bufio.NewReader(fr))
	if err != nil {
		return fmt.Errorf("uid map: %w", err)
	}
	*m = runs
	return nil
}

// readRaw reads what appendRaw wrote, and nothing after it. What it
// allocates grows with the bytes it read, never with the count the stream
// announces.
func readRaw(r *bufio.Reader) (UIDMap, error) {
	count, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, rawErr(err)
	}
	if count > maxUIDMapRuns {
		return nil, fmt.Errorf("%d runs, more than the %d a map may have", count, maxUIDMapRuns)
	}
	n := int(count)
	ds := make([]int64, 0, min(n, 4096))
	for range n {
		d, err := readDelta(r)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	dt := make([]int64, 0, n)
	for range n {
		d, err := readDelta(r)
		if err != nil {
			return nil, err
		}
		dt = append(dt, d)
	}
	out := make(UIDMap, 0, n)
	var srcEnd, tgtEnd int64
	for i := range n {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, rawErr(err)
		}
		src, tgt := srcEnd+ds[i], tgtEnd+dt[i]
		if !inUIDRange(src, tgt, l) {
			return nil, runErr(i, src, tgt, l)
		}
		out = append(out, UIDRun{Src: imap.UID(src), Tgt: imap.UID(tgt), N: uint32(l)})
		srcEnd, tgtEnd = src+int64(l), tgt+int64(l)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		if err == nil {
			return nil, errors.New("data after the last run")
		}
		return nil, rawErr(err)
	}
	return out, nil
}

// check refuses a map with a run beyond 32-bit UIDs.
func (m UIDMap) check() error {
	for i, r := range m {
		if !inUIDRange(int64(r.Src), int64(r.Tgt), uint64(r.N)) {
			return fmt.Errorf("uid map: %w", runErr(i, int64(r.Src), int64(r.Tgt), uint64(r.N)))
		}
	}
	return nil
}

// inUIDRange says whether the run of n UIDs from src to tgt is within
// 32-bit UIDs: its last UIDs at most 2^32-1 on either side.
func inUIDRange(src, tgt int64, n uint64) bool {
	return n <= math.MaxUint32 && src >= 0 && tgt >= 0 && src+int64(n) <= 1<<32 && tgt+int64(n) <= 1<<32
}

func runErr(i int, src, tgt int64, n uint64) error {
	return fmt.Errorf("run %d (source %d, target %d, %d messages) is beyond 32-bit UIDs", i, src, tgt, n)
}

// readDelta reads one zig-zag varint gap and checks it can be one.
func readDelta(r *bufio.Reader) (int64, error) {
	d, err := binary.ReadVarint(r)
	if err != nil {
		return 0, rawErr(err)
	}
	if d > maxDelta || d < -maxDelta {
		return 0, fmt.Errorf("a gap of %d UIDs", d)
	}
	return d, nil
}

// rawErr says what a read error of the stream means.
func rawErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("truncated: the stream ends before its last run")
	}
	return err
}

// rangesPerCommand bounds the UID ranges one command names: each is at
// most 21 bytes ("4294967295:4294967294,"), so a command stays near 20 KB,
// below the line limits of servers (Dovecot 64 KiB, go-imap 50 KiB)
// whatever the gaps between the UIDs.
const rangesPerCommand = 1000

// splitUIDs cuts set into sets of at most rangesPerCommand ranges.
func splitUIDs(set imap.UIDSet) []imap.UIDSet {
	if len(set) <= rangesPerCommand {
		return []imap.UIDSet{set}
	}
	var out []imap.UIDSet
	for part := range slices.Chunk(set, rangesPerCommand) {
		out = append(out, part)
	}
	return out
}

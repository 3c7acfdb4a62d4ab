package engine

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/failure"
)

// randomUIDMap builds a map of about runs runs the way the engine does:
// Add in source order with random gaps on both sides, some of them large,
// then Merge with pairs found in any order (target UIDs then need not
// ascend in source order) and Remove of a few.
func randomUIDMap(r *rand.Rand, runs int) UIDMap {
	gap := func() imap.UID {
		switch r.IntN(10) {
		case 0:
			return imap.UID(r.Uint32N(1 << 24))
		case 1, 2, 3:
			return 0 // the same run goes on
		default:
			return imap.UID(1 + r.IntN(16))
		}
	}
	var m UIDMap
	src, tgt := imap.UID(1+r.IntN(100)), imap.UID(1+r.IntN(100))
	for len(m) < runs && src < math.MaxUint32-1<<25 && tgt < math.MaxUint32-1<<25 {
		m.Add(src, tgt)
		src, tgt = src+1+gap(), tgt+1+gap()
	}
	if r.IntN(2) == 0 {
		var found UIDMap
		for range r.IntN(runs/4 + 1) {
			found.Add(imap.UID(1+r.Uint32N(math.MaxUint32-1)), imap.UID(1+r.Uint32N(math.MaxUint32-1)))
		}
		m = m.Merge(mapOf(found))
	}
	if r.IntN(3) == 0 && len(m) > 0 {
		gone := map[imap.UID]bool{}
		for range r.IntN(8) {
			gone[m[r.IntN(len(m))].Src] = true
		}
		m = m.Remove(gone)
	}
	return m
}

// roundTrip encodes m as a Cursor's Map and Claims and decodes it back.
func roundTrip(t *testing.T, m UIDMap) (UIDMap, []byte) {
	t.Helper()
	data, err := json.Marshal(Cursor{Source: "INBOX", Map: m, Claims: m})
	if err != nil {
		t.Fatalf("Marshal(%d runs) = %v", len(m), err)
	}
	var c Cursor
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("Unmarshal(Marshal(%d runs)) = %v", len(m), err)
	}
	if !slices.Equal(c.Claims, c.Map) {
		t.Fatalf("Claims = %v, Map %v: one map, two results", c.Claims, c.Map)
	}
	return c.Map, data
}

func TestUIDMapJSONRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 14))
	compact := 0
	for i := range 500 {
		runs := []int{0, 1, uidMapArrayRuns, uidMapArrayRuns + 1, r.IntN(64), r.IntN(5000)}[i%6]
		m := randomUIDMap(r, runs)
		got, data := roundTrip(t, m)
		if !slices.Equal(got, m) {
			t.Fatalf("seed %d, map %d: round trip of %d runs = %v, want %v", seed, i, len(m), got, m)
		}
		if strings.Contains(string(data), `"Map":"v1:`) {
			compact++
		}
	}
	if compact == 0 {
		t.Fatalf("no map was written in the compact form")
	}
	// What Add never makes but the encoding must carry: runs out of source
	// order, overlapping, of no message, at the ends of the UID space.
	edge := UIDMap{{Src: 1, Tgt: math.MaxUint32, N: 1}, {Src: math.MaxUint32, Tgt: 1, N: 1}, {Src: 1, Tgt: 1, N: math.MaxUint32},
		{Src: 5, Tgt: 7, N: 0}, {Src: 4, Tgt: 2, N: 10}, {Src: 4, Tgt: 2, N: 10}}
	for len(edge) <= uidMapArrayRuns {
		edge = append(edge, edge...)
	}
	for _, m := range []UIDMap{edge[:3], edge} {
		if got, _ := roundTrip(t, m); !slices.Equal(got, m) {
			t.Fatalf("round trip of %v = %v", m, got)
		}
	}
}

// An empty map is null as before; an empty Claims is left out of the
// Cursor (omitempty sees the slice's length before MarshalJSON).
func TestUIDMapJSONEmpty(t *testing.T) {
	for want, c := range map[string]Cursor{`"Map":null`: {}, `"Map":[]`: {Map: UIDMap{}, Claims: UIDMap{}}} {
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), want) || strings.Contains(string(data), "Claims") {
			t.Fatalf("Marshal(%+v) = %s, want %s and no Claims", c, data, want)
		}
	}
	for _, in := range []string{`null`, ` null `, `""`, `[]`} {
		m := UIDMap{{Src: 1, Tgt: 1, N: 1}}
		if err := json.Unmarshal([]byte(in), &m); err != nil || len(m) != 0 {
			t.Fatalf("Unmarshal(%s) = %v, %v; want an empty map", in, m, err)
		}
	}
	// A cursor reused for a payload without Claims keeps none of its own.
	c := Cursor{Map: UIDMap{{Src: 1, Tgt: 1, N: 1}}}
	if err := json.Unmarshal([]byte(`{"Map":null,"Claims":null}`), &c); err != nil || c.Map != nil || c.Claims != nil {
		t.Fatalf("Unmarshal(null maps) = %+v, %v; want nil maps", c, err)
	}
}

// Recorded histories and moves running when the compact form came carry
// the array of runs, of any length.
func TestUIDMapJSONReadsTheArrayForm(t *testing.T) {
	var long strings.Builder
	long.WriteString(`[`)
	var want UIDMap
	for i := range 100 {
		if i > 0 {
			long.WriteString(",")
		}
		fmt.Fprintf(&long, `{"s":%d,"t":%d,"n":%d}`, 2*i+1, 1000-i, i%3+1)
		want = append(want, UIDRun{Src: imap.UID(2*i + 1), Tgt: imap.UID(1000 - i), N: uint32(i%3 + 1)})
	}
	long.WriteString(`]`)
	for in, want := range map[string]UIDMap{
		`[{"s":1,"t":1,"n":2}]`:                       {{Src: 1, Tgt: 1, N: 2}},
		`[{"s":1,"t":10,"n":3},{"s":9,"t":30,"n":1}]`: {{Src: 1, Tgt: 10, N: 3}, {Src: 9, Tgt: 30, N: 1}},
		long.String():                                 want,
	} {
		var got UIDMap
		if err := json.Unmarshal([]byte(in), &got); err != nil || !slices.Equal(got, want) {
			t.Fatalf("Unmarshal(%.60s) = %v, %v; want %v", in, got, err, want)
		}
		if back, _ := roundTrip(t, got); !slices.Equal(back, want) {
			t.Fatalf("round trip of %v = %v", want, back)
		}
	}

	// Every cursor of the recorded histories decodes to the runs its array
	// names, and survives a round trip.
	files, _ := filepath.Glob("../../tests/testdata/histories/*.json")
	cursors := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var history any
		if err := json.Unmarshal(raw, &history); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walkJSON(history, func(v any) {
			s, ok := v.(map[string]any)["data"].(string)
			if !ok {
				return
			}
			payload, err := base64.StdEncoding.DecodeString(s)
			var p any
			if err != nil || json.Unmarshal(payload, &p) != nil {
				return
			}
			walkJSON(p, func(v any) {
				obj := v.(map[string]any)
				if _, ok := obj["TargetUIDNext"]; !ok {
					return
				}
				cursors++
				b, _ := json.Marshal(obj)
				var c Cursor
				var plain struct{ Map, Claims []UIDRun }
				if err := json.Unmarshal(b, &c); err != nil {
					t.Fatalf("%s: Unmarshal(%s) = %v", f, b, err)
				}
				if err := json.Unmarshal(b, &plain); err != nil {
					t.Fatalf("%s: %s is not the array form: %v", f, b, err)
				}
				if !slices.Equal(c.Map, plain.Map) || !slices.Equal(c.Claims, plain.Claims) {
					t.Fatalf("%s: %s decoded as %v, %v", f, b, c.Map, c.Claims)
				}
				if back, _ := roundTrip(t, c.Map); !slices.Equal(back, c.Map) {
					t.Fatalf("%s: round trip of %v = %v", f, c.Map, back)
				}
			})
		})
	}
	if cursors == 0 {
		t.Fatalf("no cursor in %d recorded histories", len(files))
	}
	t.Logf("%d cursors of %d recorded histories", cursors, len(files))
}

// walkJSON calls f on every object within v.
func walkJSON(v any, f func(any)) {
	switch v := v.(type) {
	case map[string]any:
		f(v)
		for _, e := range v {
			walkJSON(e, f)
		}
	case []any:
		for _, e := range v {
			walkJSON(e, f)
		}
	}
}

// compactJSON is the JSON string of a raw stream, deflated.
func compactJSON(raw []byte) string {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestSpeed)
	w.Write(raw)
	w.Close()
	return `"v1:` + base64.StdEncoding.EncodeToString(z.Bytes()) + `"`
}

// rawStream is uvarint(count) followed by the given signed and unsigned
// varints, in order.
func rawStream(count uint64, fields ...int64) []byte {
	b := binary.AppendUvarint(nil, count)
	for _, f := range fields {
		b = binary.AppendVarint(b, f)
	}
	return b
}

// A hostile or damaged payload is an error, never a panic, a hang or an
// allocation out of proportion with what was read.
func TestUIDMapJSONRefusesHostileInput(t *testing.T) {
	valid, err := json.Marshal(randomUIDMap(rand.New(rand.NewPCG(1, 2)), 1000))
	if err != nil || !bytes.HasPrefix(valid, []byte(`"v1:`)) {
		t.Fatalf("Marshal() = %.20s, %v; want the compact form", valid, err)
	}
	z, _ := base64.StdEncoding.DecodeString(string(valid[4 : len(valid)-1]))
	bomb := binary.AppendUvarint(nil, maxUIDMapRuns+1)
	bomb = append(bomb, make([]byte, 3*(maxUIDMapRuns+1))...)
	overlong := binary.AppendUvarint(nil, 1)
	overlong = append(overlong, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	cases := map[string]string{
		"not JSON":                     `{`,
		"a number":                     `42`,
		"unknown version":              `"v2:AAAA"`,
		"no version":                   `"AAAA"`,
		"garbage base64":               `"v1:!!!not base64!!!"`,
		"base64 of garbage":            `"v1:` + base64.StdEncoding.EncodeToString([]byte("not a deflate stream at all")) + `"`,
		"truncated deflate":            `"v1:` + base64.StdEncoding.EncodeToString(z[:len(z)/2]) + `"`,
		"deflate without its end":      `"v1:` + base64.StdEncoding.EncodeToString(z[:len(z)-1]) + `"`,
		"truncated base64":             string(valid[:len(valid)/2]) + `"`,
		"empty stream":                 compactJSON(nil),
		"fewer runs than announced":    compactJSON(rawStream(9_000_000, 2, 0, 2)),
		"runs without lengths":         compactJSON(rawStream(2, 2, 2, 0, 0)),
		"expansion bomb":               compactJSON(bomb),
		"gap beyond 2^32":              compactJSON(rawStream(1, 1<<40, 0, 1)),
		"varint beyond 64 bits":        compactJSON(overlong),
		"run of 2^32 messages":         compactJSON(append(rawStream(1, 2, 2), binary.AppendUvarint(nil, 1<<32)...)),
		"source beyond 2^32":           compactJSON(append(rawStream(1, math.MaxUint32, 2), 2)),
		"target beyond 2^32":           compactJSON(append(rawStream(1, 2, math.MaxUint32), 2)),
		"negative source":              compactJSON(append(rawStream(2, 2, -4, 2, 2), 1, 1)),
		"negative target":              compactJSON(append(rawStream(2, 2, 2, 2, -4), 1, 1)),
		"bytes after the last run":     compactJSON(append(rawStream(1, 2, 2), 1, 0)),
		"array: source beyond 2^32":    `[{"s":4294967295,"t":1,"n":2}]`,
		"array: UID beyond 32 bits":    `[{"s":4294967296,"t":1,"n":1}]`,
		"array: not runs":              `[1,2,3]`,
		"a string that is not one":     `"v1:AAAA`,
		"a JSON string of bad escapes": `"\x"`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			var m UIDMap
			start := time.Now()
			err := json.Unmarshal([]byte(in), &m)
			if err == nil {
				t.Fatalf("Unmarshal(%.60s) = %v, want an error", in, m)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("Unmarshal(%.60s) took %v", in, d)
			}
			t.Logf("%v", err)
		})
	}
	// A map whose runs leave 32-bit UIDs is not written either: it could
	// not be read back.
	for _, m := range []UIDMap{{{Src: math.MaxUint32, Tgt: 1, N: 2}}, {{Src: 1, Tgt: math.MaxUint32 - 1, N: 3}}} {
		if data, err := json.Marshal(m); err == nil {
			t.Fatalf("Marshal(%v) = %s, want an error", m, data)
		}
	}
}

// FuzzUIDMapJSON: whatever UnmarshalJSON reads, without panicking, it
// writes back and reads again to the same runs.
func FuzzUIDMapJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 40, 300} {
		data, _ := json.Marshal(randomUIDMap(r, n))
		f.Add(data)
	}
	f.Add([]byte(compactJSON(rawStream(3, 2, 0, 2, 1, -1, 1, 1, 2, 3))))
	f.Add([]byte(`[{"s":1,"t":1,"n":2}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m UIDMap
		if err := json.Unmarshal(data, &m); err != nil {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(Unmarshal(%q)) = %v", data, err)
		}
		var back UIDMap
		if err := json.Unmarshal(again, &back); err != nil || !slices.Equal(back, m) {
			t.Fatalf("Unmarshal(%s) = %v, %v; want %v", again, back, err, m)
		}
	})
}

// sparseMap maps n source UIDs, each gap() after the one before, to the
// target UIDs 1 to n: a folder with deletions copied in order.
func sparseMap(n int, gap func() imap.UID) UIDMap {
	var m UIDMap
	src := imap.UID(1)
	for i := range n {
		m.Add(src, imap.UID(i+1))
		src += gap()
	}
	return m
}

// The sizes the cursor of a sparse folder takes in a payload, against the
// array of runs it took before, and the bound of the raw stream: 15 bytes
// a run at most, 3 where gaps are below 64 UIDs and runs below 128
// messages.
func TestUIDMapJSONSizeOfSparseFolders(t *testing.T) {
	r := rand.New(rand.NewPCG(250_000, 16))
	// Runs of two, one UID deleted after each: issue 14's 100,000 messages
	// in 50,000 runs.
	var twos UIDMap
	for i := range 100_000 {
		twos.Add(imap.UID(i+1+i/2), imap.UID(i+1))
	}
	cases := []struct {
		name  string
		m     UIDMap
		small bool // every gap below 64 UIDs, every run below 128 messages
		limit int  // bytes of the cursor's JSON
	}{
		{"100,000 messages in runs of two", twos, true, 16 << 10},
		{"100,000 messages, every second UID deleted", sparseMap(100_000, func() imap.UID { return 2 }), true, 16 << 10},
		{"250,000 messages, every second UID deleted", sparseMap(250_000, func() imap.UID { return 2 }), true, 16 << 10},
		{"250,000 messages, random gaps of 1 to 16 UIDs", sparseMap(250_000, func() imap.UID { return imap.UID(2 + r.IntN(16)) }), true, 256 << 10},
		{"250,000 messages spread over 32-bit UIDs", sparseMap(250_000, func() imap.UID { return imap.UID(1 + r.IntN(32_000)) }), false, 1 << 20},
	}
	for _, c := range cases {
		runs := len(c.m)
		old, err := json.Marshal([]UIDRun(c.m))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		data, err := json.Marshal(Cursor{Source: "Archive", Target: "Archive", UIDValidity: 1, LastUID: c.m[runs-1].Src, Map: c.m})
		encode := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		var back Cursor
		if err := json.Unmarshal(data, &back); err != nil || !slices.Equal(back.Map, c.m) {
			t.Fatalf("%s: round trip = %d runs, %v", c.name, len(back.Map), err)
		}
		decode := time.Since(start)
		raw := len(c.m.appendRaw(nil))
		t.Logf("%s: %d runs; array %d bytes, raw %d (%.2f a run), cursor JSON %d bytes (%.3f a message); encoded in %v, decoded in %v",
			c.name, runs, len(old), raw, float64(raw)/float64(runs), len(data), float64(len(data))/float64(c.m.Len()), encode.Round(time.Millisecond), decode.Round(time.Millisecond))
		if raw > 15*runs+4 {
			t.Errorf("%s: raw stream %d bytes, above 15 a run", c.name, raw)
		}
		if c.small && raw > 3*runs+4 {
			t.Errorf("%s: raw stream %d bytes, above 3 a run", c.name, raw)
		}
		if len(data) > c.limit {
			t.Errorf("%s: cursor JSON %d bytes, want at most %d", c.name, len(data), c.limit)
		}
	}
}

// A real copy of a folder whose source UIDs are every second one (the
// others expunged), in 5,000-message chunks as a move's activities copy
// it (or chunkRanges, fewer, where the UIDs are this sparse), each chunk
// resumed from the JSON of the one before: every message
// lands once, one run each, and no progress payload the lane would
// heartbeat comes near Temporal's limits.
//
// 50,000 messages by default (about 15 s); MAILMOVE_SPARSE_MESSAGES=250000
// copies issue 14's 250,000 (about 6 minutes on 2 cores: without
// CONDSTORE every chunk compares the flags of all messages copied before
// it, and the in-memory server parses every message for each SEARCH).
func TestSparseFolderCopyKeepsCursorsSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("copies 50,000 messages")
	}
	n := 50_000
	if v, err := strconv.Atoi(os.Getenv("MAILMOVE_SPARSE_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	start := time.Now()
	srcAddr, tgtAddr := sparseFolder(t, n), memServer(t, "Sparse")
	seeded := time.Since(start)

	start = time.Now()
	var largest atomic.Int64
	note := func(p LaneProgress) {
		data, err := json.Marshal(p)
		if err != nil {
			t.Errorf("Marshal(progress) = %v", err)
		}
		if l := int64(len(data)); l > largest.Load() {
			largest.Store(l)
		}
	}
	var dialed atomic.Int32
	lane := &Lane{Dial: pairs(srcAddr, tgtAddr, &dialed), Connections: 1, MaxMessages: 5000, Progress: note}
	p := NewLaneProgress(cursors("Sparse"))
	calls := 0
	for ; !p.Done[0] && calls < n/min(5000, chunkRanges)+2; calls++ {
		res, err := lane.Run(context.Background(), p)
		if err != nil {
			t.Fatalf("Run() after %d calls = %v", calls, err)
		}
		note(res)
		// As Temporal carries it to the next activity.
		data, _ := json.Marshal(res)
		p = LaneProgress{}
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatalf("Unmarshal(progress) = %v", err)
		}
	}
	copied := time.Since(start)
	cur := p.Cursors[0]
	if !p.Done[0] || cur.Map.Len() != n || len(cur.Map) != n || cur.LastUID != imap.UID(2*n-1) {
		t.Fatalf("after %d calls: done %v, LastUID %d, %d mapped in %d runs; want done, LastUID %d, %d runs of one", calls, p.Done[0], cur.LastUID, cur.Map.Len(), len(cur.Map), 2*n-1, n)
	}
	for _, src := range []imap.UID{1, 3, imap.UID(n | 1), imap.UID(2*n - 1)} {
		if tgt, ok := cur.Map.Lookup(src); !ok || tgt != (src+1)/2 {
			t.Fatalf("Lookup(%d) = %d, %v; want %d", src, tgt, ok, (src+1)/2)
		}
	}
	tgt := dial(t, failure.SideTarget, tgtAddr)
	st, err := tgt.Client.Status("Sparse", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != uint32(n) {
		t.Fatalf("target holds %v messages (%v), want %d", st, err, n)
	}
	final, _ := json.Marshal(cur)
	t.Logf("seeded %d messages, expunged every second one in %v; copied in %d calls in %v; largest progress JSON %d bytes, final cursor %d bytes (as an array of runs: %d bytes)",
		2*n, seeded.Round(time.Millisecond), calls, copied.Round(time.Millisecond), largest.Load(), len(final), len(mustJSON(t, []UIDRun(cur.Map))))
	if largest.Load() > 16<<10 {
		t.Fatalf("largest progress JSON %d bytes, want at most 16 KiB", largest.Load())
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

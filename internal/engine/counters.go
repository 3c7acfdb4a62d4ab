package engine

import (
	"maps"
	"slices"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
)

// Counters count what copies did. It is the one set of counters: a
// SyncFolder call, an activity's result, a move's state and its status all
// embed it, so a new counter is one field here (and its line in Add,
// which TestCountersAddSumsEveryField holds to it).
type Counters struct {
	Copied int   // messages appended
	Bytes  int64 // bytes appended
	// Downloaded is the bytes of the message bodies asked of the source:
	// at least what it sent, also when a copy failed before the target
	// confirmed them. A daily transfer budget is charged with it.
	Downloaded int64 `json:",omitempty"`
	Matched    int   // messages found already on the target (resumed copy)
	Filtered   int   // messages skipped by the size and date rules
	// FlagUpdates counts target messages whose flags were changed.
	FlagUpdates int
	// DeletedOnSource counts copied messages found gone from the source;
	// Expunged those of them removed from the target (PropagateDeletes).
	DeletedOnSource int
	Expunged        int
	// DuplicatesRemoved counts extra copies of copied messages found on the
	// target and removed: stored by an attempt that wrote after Temporal
	// gave its task to another (docs/exactly-once.md).
	DuplicatesRemoved int `json:",omitempty"`
	// Labelled counts labels given on a Gmail target: a copy put into
	// another label's folder with COPY, not uploaded again.
	Labelled int `json:",omitempty"`
	// BadItems are the messages the target refused, skipped and reported.
	BadItems []BadItem
	// RefusedKeywords counts, by keyword, the messages that lost a keyword
	// because the target folder does not keep it (PERMANENTFLAGS).
	RefusedKeywords map[string]int `json:",omitempty"`
	// Throttled is the time the copy slowed itself down, by side, because
	// the server answered slower than Options.LatencyThreshold.
	Throttled map[failure.Side]time.Duration `json:",omitempty"`
}

// Add sums o into c. The order of map keys does not matter to a sum, so a
// workflow may call it (.ci/workflowcheck.yaml says so).
func (c *Counters) Add(o Counters) {
	c.Copied += o.Copied
	c.Bytes += o.Bytes
	c.Downloaded += o.Downloaded
	c.Matched += o.Matched
	c.Filtered += o.Filtered
	c.FlagUpdates += o.FlagUpdates
	c.DeletedOnSource += o.DeletedOnSource
	c.Expunged += o.Expunged
	c.DuplicatesRemoved += o.DuplicatesRemoved
	c.Labelled += o.Labelled
	for _, b := range o.BadItems {
		// A pass that walks a folder again (after the target renumbered
		// it, or to repair it) meets the same refused messages again.
		if !slices.ContainsFunc(c.BadItems, b.same) {
			c.BadItems = append(c.BadItems, b)
		}
	}
	c.RefusedKeywords = addMap(c.RefusedKeywords, o.RefusedKeywords)
	c.Throttled = addMap(c.Throttled, o.Throttled)
}

// Clone returns a copy that shares no memory with c: counters are read
// while a copy goes on adding to them.
func (c Counters) Clone() Counters {
	c.BadItems = slices.Clone(c.BadItems)
	c.RefusedKeywords = maps.Clone(c.RefusedKeywords)
	c.Throttled = maps.Clone(c.Throttled)
	return c
}

// Plus returns c + o, sharing no memory with either.
func (c Counters) Plus(o Counters) Counters {
	sum := c.Clone()
	sum.Add(o)
	return sum
}

func addMap[K comparable, V int | time.Duration](dst, src map[K]V) map[K]V {
	for k, v := range src {
		if dst == nil {
			dst = make(map[K]V, len(src))
		}
		dst[k] += v
	}
	return dst
}

// same reports the same source message.
func (b BadItem) same(o BadItem) bool {
	return b.Folder == o.Folder && b.UIDValidity == o.UIDValidity && b.UID == o.UID
}

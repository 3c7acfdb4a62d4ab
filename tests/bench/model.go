package main

import (
	"fmt"
	"math"
	"time"
)

// A model of a whole tenant's migration, from what a scale run measured
// per move and what docs/throughput.md measured per connection. It is
// arithmetic, not a simulation: each line says what it assumes.

// tenantShape is the tenant the model is asked about.
type tenantShape struct {
	Mailboxes    int
	Bytes        float64 // all mailboxes
	MessageBytes float64 // average message
	Folders      int     // per mailbox, on average
	LargestBytes float64 // the largest mailbox
	Lanes        int     // --connections-per-move
	TargetHours  float64 // the window the admin has, e.g. a weekend
}

// defaultTenant is 10,000 mailboxes holding 2 TB: 200 MB each on average,
// of 75 KB messages (mail with attachments; docs/throughput.md's corpus
// averages 23 KiB), 20 folders, the largest 100 times the average.
var defaultTenant = tenantShape{Mailboxes: 10000, Bytes: 2e12, MessageBytes: 75e3, Folders: 20, LargestBytes: 20e9, Lanes: 3, TargetHours: 48}

// link is how fast the servers serve one connection pair, and how far
// away they are.
type link struct {
	Name   string
	RTT    time.Duration
	PairMB float64 // MiB/s through one source→target connection pair
}

// links are the scenarios: the per-pair rates are docs/throughput.md's
// (13 MiB/s: 579 messages/s of 23 KiB over a 20 ms link; 8 MiB/s: a
// source serving each connection at 8 MiB/s). The round trips
// (10–80 ms) are notes/imap-throughput.md's range for real migrations;
// 1 and 0.25 MiB/s are assumptions for busy or throttling hosted servers.
var links = []link{
	{"13 MiB/s a pair (measured at 20 ms)", 10 * time.Millisecond, 13},
	{"13 MiB/s a pair, far away", 80 * time.Millisecond, 13},
	{"8 MiB/s a connection (measured)", 40 * time.Millisecond, 8},
	{"1 MiB/s a connection (assumed)", 80 * time.Millisecond, 1},
	{"0.25 MiB/s a connection (assumed)", 80 * time.Millisecond, 0.25},
}

// Round trips a move costs besides streaming: logons, capabilities,
// listing and creating folders, the final pass and verification (fixed);
// per folder: examine and search, the last append's answer, the
// verification's fetch on both sides. Estimates from the commands
// docs/throughput.md counts (37 for an unchanged 16-folder mailbox).
const (
	fixedRoundTrips     = 20
	perFolderRoundTrips = 5
	// Temporal's own latency per activity on a real cluster: a workflow
	// task and an activity task dispatched (assumed, not measured here).
	perActivityLatency = 50 * time.Millisecond
	// Worker CPU per GiB copied: docs/throughput.md's 0.04 CPU-s per
	// 1,000 messages of 23 KiB, plus TLS on both sides (assumed 1 CPU-s
	// per GiB with AES-NI).
	workerCPUPerGiB = 1.8 + 1.0
	// What the sync activities send while they copy (activities package):
	// a heartbeat every 5 s per lane, a progress signal every 30 s.
	heartbeatEvery = 5.0
	progressEvery  = 30.0
	// Bytes a progress signal adds to a history (its event and the
	// workflow task it wakes), estimated.
	progressSignalBytes = 1200.0
	// Temporal Cloud's list price of the first tier of actions, in US$
	// per million (temporal.io/pricing; check it, it changes).
	dollarsPerMillionActions = 50.0
	// The link (and the servers behind it) carry at most this much, all
	// moves together: 1 Gbit/s, assumed.
	linkBytes = 1e9 / 8
)

// documentedScale is the scale run docs/deploy.md reports, for -model
// without a run: 1,000 mailboxes of 50 messages, all completed, on 2
// cores running nothing else; per move.
var documentedScale = scaleFigures{
	Moves: 1000, Messages: 50, Workers: 3, Concurrency: 100, Cores: 2, Executions: 1003,
	Wall:      13*time.Minute + 14287*time.Millisecond,
	ServerCPU: 500.4, WorkerCPU: 160.5, SourceCPU: 410.1, TargetCPU: 399.5, CLICPU: 1.1,
	WorkerPeakRSS: 90 << 20,
	SourceLogons:  4.29, TargetLogons: 4.46,
	Actions:       actionCounts{Starts: 1.00, Activities: 10.14, Signals: 3.30, Timers: 0.26, Upserts: 12.38, Heartbeats: 20.00},
	HistoryEvents: 119, HistoryBytes: 48.3 * 1024, DBBytes: 84.7 * 1024,
}

// printModel prints the model of defaultTenant from the figures f.
func printModel(f scaleFigures, from string) {
	t := defaultTenant
	n := float64(t.Mailboxes)
	avg := t.Bytes / n
	gib := t.Bytes / (1 << 30)
	moves := float64(f.Moves)
	lanes := float64(t.Lanes)
	fmt.Printf("Model: %d mailboxes, %.1f TB (%.0f MB average, %.0f messages of %.0f KB, %d folders; the largest %.0f GB), %d connections per move and server;\n",
		t.Mailboxes, t.Bytes/1e12, avg/1e6, avg/t.MessageBytes, t.MessageBytes/1e3, t.Folders, t.LargestBytes/1e9, t.Lanes)
	fmt.Printf("  per-move figures from %s; a link of %.0f Mbit/s carries the whole copy (assumed)\n", from, linkBytes*8/1e6)
	if f.Wall <= 0 {
		fmt.Println("  no figures: run the scale run first (go run ./tests/bench -scale 1000)")
		return
	}
	target := t.TargetHours * 3600
	need := t.Bytes / target
	base := f.Actions
	fmt.Printf("  to finish in %.0f h the copy must average %.1f MB/s (%.0f Mbit/s), more for the tail\n", t.TargetHours, need/1e6, need*8/1e6)
	fmt.Printf("  measured per small move (%d moves of %d messages): %.1f actions (%.1f of them heartbeats), %.1f KiB of history, %.1f KiB of SQLite, %.1f logons per server, %.3f worker CPU-s\n",
		f.Moves, f.Messages, base.total(), base.Heartbeats, f.HistoryBytes/1024, f.DBBytes/1024, (f.SourceLogons+f.TargetLogons)/2, f.WorkerCPU/moves)
	fmt.Println()
	fmt.Printf("  %-46s %6s %6s %6s %6s %6s %7s %6s %6s %8s %8s %8s\n",
		"link", "move", "h@10", "h@100", "conc", "conn", "Mbit/s", "wrkrs", "cores", "act/move", "Mactions", "hist MiB")
	for _, l := range links {
		pair := l.PairMB * (1 << 20)
		copySecs := avg / (lanes * pair)
		rtts := fixedRoundTrips + perFolderRoundTrips*math.Ceil(float64(t.Folders)/lanes)
		move := copySecs + rtts*l.RTT.Seconds() + base.Activities*perActivityLatency.Seconds()
		largest := t.LargestBytes / (lanes * pair)
		// Hours at concurrency c: the moves at c at once, or the link,
		// whichever is slower, and the largest mailbox last at worst.
		hours := func(c float64) float64 { return (math.Max(n*move/c, t.Bytes/linkBytes) + largest) / 3600 }
		// Moves at once to copy in half the window (the other half is for
		// waits, retries and the final passes), the largest mailbox last.
		window := target/2 - largest
		conc := math.Ceil(n * move / window)
		if window <= 0 || t.Bytes/linkBytes > window {
			conc = math.Inf(1)
		}
		rate := t.Bytes / (n * move / conc)
		// Workers: CPU for the bytes and each move's bookkeeping at that
		// rate, on 2-core machines at most half busy; two at least, so
		// that one can be upgraded or lost.
		cores := (gib*workerCPUPerGiB + n*f.WorkerCPU/moves) / (n * move / conc)
		workers := math.Max(2, math.Ceil(cores))
		// Temporal: the small move's actions, plus what a long copy adds
		// per lane: heartbeats, progress signals (and their history).
		beats := lanes * copySecs / heartbeatEvery
		signals := lanes * math.Floor(copySecs/progressEvery)
		perMove := base.total() + beats + signals
		hist := n * (f.HistoryBytes + signals*progressSignalBytes)
		fmt.Printf("  %-46s %5.0fs %6.1f %6.1f %6.0f %6.0f %7.0f %6.0f %6.2f %8.0f %8.2f %8.0f\n",
			fmt.Sprintf("%s, %v", l.Name, l.RTT), move, hours(10), hours(100), conc, conc*lanes, rate*8/1e6, workers, cores, perMove, n*perMove/1e6, hist/(1<<20))
	}
	fmt.Println("  move: one average mailbox, seconds; h@C: hours at --concurrency C; conc: --concurrency to copy in half the target, and conn: the connections")
	fmt.Println("  each server then sees; wrkrs, cores: worker processes (2-core machines, at most half busy) and the cores they use; act/move, Mactions:")
	fmt.Println("  Temporal actions per move and in millions for the tenant; hist: history the moves leave")
	fmt.Println()
	actionsRun := moves * base.total()
	perAction := f.ServerCPU / actionsRun
	fmt.Printf("  Temporal Cloud: about US$%.0f per million actions (first tier, temporal.io/pricing; check it); storage is the history above while it is retained\n", dollarsPerMillionActions)
	fmt.Printf("  the dev server used %.1f ms of CPU per action in this run; a million actions is %.1f CPU-hours, %.2f cores over %.0f h\n",
		1000*perAction, 1e6*perAction/3600, 1e6*perAction/target, t.TargetHours)
	fmt.Printf("  logons: %.0f per server for the tenant (%.0f an hour over %.0f h); a Gmail source's daily budget (2,500 MB a day a user) alone\n",
		n*(f.SourceLogons+f.TargetLogons)/2, n*(f.SourceLogons+f.TargetLogons)/2/t.TargetHours, t.TargetHours)
	fmt.Printf("  holds the largest mailbox for %.0f days: move such mailboxes weeks ahead (staged migration, docs/batches.md)\n", t.LargestBytes/2500e6)
	rate := moves / f.Wall.Seconds()
	fmt.Printf("  this run's rate, %.1f moves/s with everything on %d cores, is %.1f h of bookkeeping for %d moves at concurrency %d: a floor on one such machine\n",
		rate, f.Cores, n/rate/3600, t.Mailboxes, f.Concurrency)
	fmt.Println()
}

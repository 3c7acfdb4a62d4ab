// Command bench measures the copy engine and a whole move on real Dovecot
// servers: the initial sync of a mailbox, an incremental pass over the same
// mailbox unchanged (commands sent and wall time), and the Temporal history a
// move leaves after its initial sync and many incremental passes. It prints
// figures; it asserts nothing. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

func main() {
	messages := flag.Int("messages", 20000, "messages in the mailbox")
	passes := flag.Int("passes", 20, "incremental passes of the Temporal move (0: skip the Temporal part)")
	rtt := flag.Duration("rtt", 20*time.Millisecond, "round trip of the simulated remote link (0: skip that part)")
	remote := flag.Int("remote-messages", 1000, "messages copied over the simulated remote link")
	batchSize := flag.Int("batch-mailboxes", 20, "mailboxes of the batch moved through Temporal (0: skip)")
	batchMessages := flag.Int("batch-messages", 1000, "messages in each mailbox of the batch")
	tenant := flag.Int("tenant", 0, "run only a tenant-sized batch of this many 2-message mailboxes through the CLI (batch start, status, report timed)")
	tenantConcurrency := flag.Int("tenant-concurrency", 200, "--concurrency of the tenant batch")
	tenantWait := flag.Duration("tenant-wait", 2*time.Hour, "how long to watch the tenant batch before reporting")
	scale := flag.Int("scale", 0, "run only the scale run: this many mailboxes through the CLI, several worker processes, figures per move, then the tenant model (docs/deploy.md)")
	scaleMessages := flag.Int("scale-messages", 50, "messages in each mailbox of the scale run (a few KB each)")
	scaleWorkers := flag.Int("scale-workers", 3, "worker processes of the scale run")
	scaleConcurrency := flag.Int("scale-concurrency", 100, "--concurrency of the scale run's batch")
	scaleWait := flag.Duration("scale-wait", 2*time.Hour, "how long the scale run waits for its batch to end")
	model := flag.Bool("model", false, "print only the model of a 10,000-mailbox, 2 TB tenant, from the figures of the last documented scale run")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the engine's initial sync to this file (go tool pprof)")
	flag.StringVar(&imapsync, "imapsync", "auto", "imapsync to compare with on the same corpus (auto: the one on PATH, if any; \"\": skip)")
	flag.Parse()
	profile = *cpuProfile
	if imapsync == "auto" {
		imapsync, _ = exec.LookPath("imapsync")
	}
	if *model {
		printModel(documentedScale, "the documented scale run (docs/deploy.md)")
		return
	}
	if *scale > 0 {
		fig, err := scaleRun(*scale, *scaleMessages, *scaleWorkers, *scaleConcurrency, *scaleWait)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		printModel(fig, "this run")
		return
	}
	if *tenant > 0 {
		if err := tenantRun(*tenant, *tenantConcurrency, *tenantWait); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*messages, *passes, *rtt, *remote, *batchSize, *batchMessages); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const pw = "bench-password"

func run(messages, passes int, rtt time.Duration, remote, batchSize, batchMessages int) error {
	if err := testbed.EnsureDovecot(); err != nil {
		return err
	}
	users := []testbed.User{{Name: "engine@example.com", Password: pw}, {Name: "counted@example.com", Password: pw}, {Name: "temporal@example.com", Password: pw}, {Name: "remote@example.com", Password: pw}, {Name: "imapsync@example.com", Password: pw}}
	var batchUsers []string
	for i := 0; i < batchSize; i++ {
		u := fmt.Sprintf("batch%02d@example.com", i)
		batchUsers = append(batchUsers, u)
		users = append(users, testbed.User{Name: u, Password: pw})
	}
	src, tgt, err := testbed.StartPair("bench", users)
	if err != nil {
		return err
	}
	defer src.Stop()
	defer tgt.Stop()

	fmt.Printf("Seeding %d messages into each source mailbox...\n", messages)
	start := time.Now()
	for _, u := range users[:3] {
		if err := seed(src.Addr(), u.Name, messages); err != nil {
			return err
		}
	}
	if err := seed(src.Addr(), users[3].Name, remote); err != nil {
		return err
	}
	if imapsync != "" {
		if err := seed(src.Addr(), users[4].Name, messages); err != nil {
			return err
		}
	}
	for _, u := range batchUsers {
		if err := seed(src.Addr(), u, batchMessages); err != nil {
			return err
		}
	}
	fmt.Printf("seeded in %v\n\n", time.Since(start).Round(time.Millisecond))

	// The engine alone, direct connections: speed. The seeding's garbage
	// goes first, so the peak heap is the copy's.
	runtime.GC()
	debug.FreeOSMemory()
	before := usage()
	peak := watchHeap()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	initial, err := engineRun(src.Addr(), tgt.Addr(), users[0].Name)
	if profile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	cpu, heap := usage()-before, peak()
	before = usage()
	again, err := engineRun(src.Addr(), tgt.Addr(), users[0].Name)
	if err != nil {
		return err
	}
	againCPU := usage() - before
	// The same through counting proxies: commands sent.
	sp, err := faultproxy.Start(src.Addr())
	if err != nil {
		return err
	}
	defer sp.Close()
	tp, err := faultproxy.Start(tgt.Addr())
	if err != nil {
		return err
	}
	defer tp.Close()
	initialC, err := engineRun(sp.Addr(), tp.Addr(), users[1].Name)
	if err != nil {
		return err
	}
	s0, t0 := sp.Stats(), tp.Stats()
	againC, err := engineRun(sp.Addr(), tp.Addr(), users[1].Name)
	if err != nil {
		return err
	}
	s1, t1 := sp.Stats(), tp.Stats()

	fmt.Printf("Engine, one connection per side, %d messages in %d folders (%.1f MiB):\n", initial.messages, initial.folders, float64(initial.bytes)/(1<<20))
	fmt.Printf("  initial sync:               %8v  %6.0f messages/s  %6.1f MiB/s\n", initial.took.Round(time.Millisecond),
		float64(initial.messages)/initial.took.Seconds(), float64(initial.bytes)/(1<<20)/initial.took.Seconds())
	fmt.Printf("  incremental pass, no change: %7v  %.3f CPU seconds\n", again.took.Round(time.Millisecond), againCPU.Seconds())
	fmt.Printf("  our process: %.2f CPU seconds per 1,000 messages, peak Go heap %.0f MiB during the copy\n",
		cpu.Seconds()/float64(initial.messages)*1000, float64(heap)/(1<<20))
	fmt.Printf("  %s\n", verify(src.Addr(), tgt.Addr(), users[0].Name))
	fmt.Printf("Commands sent (through a counting proxy; initial sync %v, pass %v):\n", initialC.took.Round(time.Millisecond), againC.took.Round(time.Millisecond))
	fmt.Printf("  initial sync:               source %s\n                              target %s\n", commands(s0.Commands, nil), commands(t0.Commands, nil))
	fmt.Printf("  incremental pass, no change: source %s\n                              target %s\n\n", commands(s1.Commands, s0.Commands), commands(t1.Commands, t0.Commands))

	if rtt > 0 {
		sl, err := startDelayLine(src.Addr(), rtt/2)
		if err != nil {
			return err
		}
		defer sl.Close()
		tl, err := startDelayLine(tgt.Addr(), rtt/2)
		if err != nil {
			return err
		}
		defer tl.Close()
		r, err := engineRun(sl.Addr(), tl.Addr(), users[3].Name)
		if err != nil {
			return err
		}
		fmt.Printf("Engine over a link with %v round trip, one connection per side: %d messages in %v, %.0f messages/s\n",
			rtt, r.messages, r.took.Round(time.Millisecond), float64(r.messages)/r.took.Seconds())
		fmt.Println()
		// Servers that throttle each connection (Exchange Online, Gmail)
		// are where several connections on one folder pay.
		st, err := startDelayLine(src.Addr(), 0)
		if err != nil {
			return err
		}
		defer st.Close()
		st.rate = 8 << 20
		if err := oneFolderRun(src, tgt, st.Addr(), tgt.Addr(), 2*remote, " from a source serving each connection at 8 MiB/s"); err != nil {
			return err
		}
	}

	if err := largeRun(src, tgt); err != nil {
		return err
	}
	if err := oneFolderRun(src, tgt, src.Addr(), tgt.Addr(), messages, ""); err != nil {
		return err
	}

	if imapsync != "" {
		if err := imapsyncRun(imapsync, src.Addr(), tgt.Addr(), users[4].Name, messages); err != nil {
			return err
		}
	} else {
		fmt.Printf("imapsync: not on PATH, no comparison (tests/bench/install-imapsync installs it)\n\n")
	}

	if passes == 0 && batchSize == 0 {
		return nil
	}
	env, w, _, stop, err := startTemporal("mailmove-bench-*")
	if err != nil {
		return err
	}
	defer stop()
	if batchSize > 0 {
		if err := batchRun(env, w, src.Addr(), tgt.Addr(), batchUsers, batchMessages); err != nil {
			return err
		}
	}
	if passes > 0 {
		if err := temporalRun(env, w, src.Addr(), tgt.Addr(), users[2].Name, passes); err != nil {
			return err
		}
	}
	return nil
}

// account is one side of a bench move, its password sealed for it.
func account(key *secret.Key, side failure.Side, addr, user string) (activities.Account, error) {
	acc := activities.Account{Endpoint: engine.Endpoint{Addr: addr, Security: engine.SecurityNone}, User: user}
	var err error
	acc.Password, err = key.SealFor(acc.Endpoint.SecretBinding(side, secret.UsePassword, user), pw)
	return acc, err
}

// batchRun moves many mailboxes at once through a Batch workflow and one
// worker, as an admin's batch does.
func batchRun(env *temporaltest.Env, w *workerProc, srcAddr, tgtAddr string, users []string, perMailbox int) error {
	ctx := context.Background()
	in := workflows.BatchInput{Name: "bench-batch", Concurrency: len(users)}
	for _, u := range users {
		mv := workflows.MailboxMoveInput{Mailbox: u}
		var err error
		if mv.Source, err = account(env.Key, failure.SideSource, srcAddr, u); err != nil {
			return err
		}
		if mv.Target, err = account(env.Key, failure.SideTarget, tgtAddr, u); err != nil {
			return err
		}
		in.Moves = append(in.Moves, mv)
	}
	cpu0, srv0, busy0, start := w.cpu(), procCPU(env.Server.Pid()), machineBusy(), time.Now()
	run, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.BatchWorkflowID(in.Name), TaskQueue: workflows.TaskQueue}, workflows.Batch, in)
	if err != nil {
		return err
	}
	var st workflows.BatchStatus
	if err := run.Get(ctx, &st); err != nil {
		return err
	}
	took, cpu, srv, busy := time.Since(start), w.cpu()-cpu0, procCPU(env.Server.Pid())-srv0, machineBusy()-busy0
	var events, size int64
	for _, e := range st.Entries {
		if e.Error != "" {
			return fmt.Errorf("%s: %s", e.Mailbox, e.Error)
		}
		d, err := env.Client.DescribeWorkflowExecution(ctx, e.WorkflowID, "")
		if err != nil {
			return err
		}
		events += d.GetWorkflowExecutionInfo().GetHistoryLength()
		size += d.GetWorkflowExecutionInfo().GetHistorySizeBytes()
	}
	n, moves := len(users)*perMailbox, float64(len(users))
	fmt.Printf("Batch through Temporal: %d mailboxes × %d messages, all at once, one worker process: %v, %.0f messages/s\n",
		len(users), perMailbox, took.Round(time.Millisecond), float64(n)/took.Seconds())
	fmt.Printf("  machine busy %.0f%% of its %d cores (Dovecot, the worker, the dev server and the bench together)\n",
		100*busy.Seconds()/took.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU())
	fmt.Printf("  worker: %.2f CPU seconds per 1,000 messages, peak RSS %.0f MiB\n", cpu.Seconds()/float64(n)*1000, float64(w.peakRSS())/(1<<20))
	fmt.Printf("  Temporal bookkeeping per mailbox: %.0f history events (%.0f KiB), %.2f CPU seconds of the dev server\n",
		float64(events)/moves, float64(size)/1024/moves, srv.Seconds()/moves)
	fmt.Printf("  %s (first mailbox)\n\n", verify(srcAddr, tgtAddr, users[0]))
	return nil
}

// largeRun copies one 100 MiB message with the engine: it streams from one
// connection to the other, so the heap stays far below the message's size.
func largeRun(src, tgt *testbed.Server) error {
	const user, size = "large@example.com", 100 << 20
	for _, s := range []*testbed.Server{src, tgt} {
		if err := s.AddUser(testbed.User{Name: user, Password: pw}); err != nil {
			return err
		}
	}
	if err := testbed.Seed(src.Addr(), user, pw, []testbed.Folder{{Name: "INBOX", Messages: []testbed.Message{testbed.LargeMessage(7, size)}}}); err != nil {
		return err
	}
	runtime.GC()
	debug.FreeOSMemory()
	peak := watchHeap()
	r, err := engineRun(src.Addr(), tgt.Addr(), user)
	heap := peak()
	if err != nil {
		return err
	}
	fmt.Printf("Engine, one %d MiB message: %v, peak Go heap %.0f MiB; %s\n\n", size>>20, r.took.Round(time.Millisecond), float64(heap)/(1<<20), verify(src.Addr(), tgt.Addr(), user))
	return nil
}

// oneFolderRun copies a mailbox that is one large INBOX, over one
// connection pair and then over three (chunks of one folder in parallel),
// reaching src and tgt at the given addresses.
func oneFolderRun(src, tgt *testbed.Server, srcAddr, tgtAddr string, messages int, label string) error {
	var inbox testbed.Folder
	for _, f := range testbed.SampleMailbox(1000, messages) {
		inbox.Messages = append(inbox.Messages, f.Messages...)
	}
	inbox.Name = "INBOX"
	fmt.Printf("Engine, one folder of %d messages%s:", len(inbox.Messages), label)
	for _, pairs := range []int{1, 3} {
		user := fmt.Sprintf("inbox%d-%d@example.com", pairs, len(label))
		for _, s := range []*testbed.Server{src, tgt} {
			if err := s.AddUser(testbed.User{Name: user, Password: pw}); err != nil {
				return err
			}
		}
		if err := testbed.Seed(src.Addr(), user, pw, []testbed.Folder{inbox}); err != nil {
			return err
		}
		r, err := engineRunWith(srcAddr, tgtAddr, user, pairs)
		if err != nil {
			return err
		}
		if diff := verify(src.Addr(), tgt.Addr(), user); !strings.HasPrefix(diff, "verified") {
			return fmt.Errorf("%s: %s", user, diff)
		}
		fmt.Printf(" %d connection pair(s) %v, %.0f messages/s;", pairs, r.took.Round(time.Millisecond), float64(r.messages)/r.took.Seconds())
	}
	fmt.Printf(" verified\n\n")
	return nil
}

// machineBusy is the CPU time all processes have used, from /proc/stat.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	// cpu user nice system idle iowait irq softirq steal ...
	fields := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])[1:]
	var busy int64
	for i, f := range fields {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 && i < 8 {
			busy += v
		}
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(busy) * time.Second / ticks
}

// usage is the CPU time this process has used.
func usage() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// watchHeap samples the Go heap until the returned function is called, and
// returns the peak.
func watchHeap() func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(stop); return peak.Load() }
}

// seed appends messages in batches, so the corpus is never all in memory.
func seed(addr, user string, messages int) error {
	const batch = 2000
	for i := 0; i < messages; i += batch {
		n := min(batch, messages-i)
		if err := testbed.Seed(addr, user, pw, testbed.SampleMailbox(int64(1000+i), n)); err != nil {
			return err
		}
	}
	return nil
}

type result struct {
	took     time.Duration
	messages int
	bytes    int64
	folders  int
}

// engineRun syncs every folder of the mailbox once, as the activities do,
// over one connection per side.
func engineRun(srcAddr, tgtAddr, user string) (result, error) {
	return engineRunWith(srcAddr, tgtAddr, user, 1)
}

// engineRunWith is engineRun lending the engine pairs-1 more connection
// pairs, for large folders.
func engineRunWith(srcAddr, tgtAddr, user string, pairs int) (result, error) {
	ctx := context.Background()
	start := time.Now()
	first, err := dialPair(ctx, srcAddr, tgtAddr, user)
	if err != nil {
		return result{}, err
	}
	s, t := first.Src, first.Tgt
	lent := []engine.Pair{first}
	defer func() {
		for _, p := range lent {
			p.Src.Close()
			p.Tgt.Close()
		}
	}()
	plans, _, err := engine.Plan(ctx, s, t, engine.Rules{})
	if err != nil {
		return result{}, err
	}
	if err := t.CreateFolders(ctx, plans); err != nil {
		return result{}, err
	}
	opts := engine.Options{}
	if pairs > 1 {
		opts.Helpers = func(ctx context.Context, n int) []engine.Pair {
			for len(lent)-1 < min(n, pairs-1) {
				p, err := dialPair(ctx, srcAddr, tgtAddr, user)
				if err != nil {
					break
				}
				lent = append(lent, p)
			}
			return lent[1:min(n+1, len(lent))]
		}
	}
	var res result
	res.folders = len(plans)
	for _, p := range plans {
		cur, ok := cursors[user+p.Source]
		if !ok {
			cur = engine.Cursor{Source: p.Source, Target: p.Target}
		}
		cur, st, err := engine.SyncFolder(ctx, s, t, cur, opts)
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", p.Source, err)
		}
		cursors[user+p.Source] = cur
		res.messages += st.Copied
		res.bytes += st.Bytes
	}
	res.took = time.Since(start)
	return res, nil
}

// dialPair logs user on to both servers.
func dialPair(ctx context.Context, srcAddr, tgtAddr, user string) (engine.Pair, error) {
	cred := engine.Credentials{User: user, Password: pw}
	s, err := engine.Dial(ctx, failure.SideSource, engine.Endpoint{Addr: srcAddr, Security: engine.SecurityNone}, cred)
	if err != nil {
		return engine.Pair{}, err
	}
	t, err := engine.Dial(ctx, failure.SideTarget, engine.Endpoint{Addr: tgtAddr, Security: engine.SecurityNone}, cred)
	if err != nil {
		s.Close()
		return engine.Pair{}, err
	}
	return engine.Pair{Src: s, Tgt: t}, nil
}

// profile is the -cpuprofile file.
var profile string

// imapsync is the imapsync to compare with, if any.
var imapsync string

// cursors keeps each folder's cursor between two runs, as workflow state does.
var cursors = map[string]engine.Cursor{}

// commands formats the commands sent since before.
func commands(now, before map[string]int) string {
	var names []string
	total := 0
	for k, v := range now {
		if d := v - before[k]; d > 0 {
			names = append(names, fmt.Sprintf("%s %d", k, d))
			total += d
		}
	}
	sort.Strings(names)
	return fmt.Sprintf("%d commands (%s)", total, strings.Join(names, ", "))
}

// temporalRun moves the mailbox through a Temporal dev server with manual
// completion, lets it run incremental passes, completes it, and reports the
// history it left.
func temporalRun(env *temporaltest.Env, w *workerProc, srcAddr, tgtAddr, user string, passes int) error {
	c, ctx := env.Client, context.Background()
	src, err := account(env.Key, failure.SideSource, srcAddr, user)
	if err != nil {
		return err
	}
	tgt, err := account(env.Key, failure.SideTarget, tgtAddr, user)
	if err != nil {
		return err
	}
	id := workflows.MoveWorkflowID("bench", user)
	in := workflows.MailboxMoveInput{Batch: "bench", Mailbox: user, Source: src, Target: tgt,
		Settings: workflows.Settings{Complete: workflows.CompleteManual, IncrementalInterval: time.Second},
	}
	cpu0, srv0, start := w.cpu(), procCPU(env.Server.Pid()), time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue}, workflows.MailboxMove, in)
	if err != nil {
		return err
	}
	var synced time.Duration
	for {
		st, err := query(ctx, c, id)
		if err == nil && !st.SyncedAt.IsZero() && synced == 0 {
			synced = time.Since(start)
			n, cpu, srv := float64(st.Copied), w.cpu()-cpu0, procCPU(env.Server.Pid())-srv0
			fmt.Printf("Through Temporal (dev server, one worker process): initial sync of %d messages in %v, %.0f messages/s\n",
				st.Copied, synced.Round(time.Millisecond), n/synced.Seconds())
			fmt.Printf("  worker %.2f and dev server %.2f CPU seconds per 1,000 messages; worker peak RSS %.0f MiB\n",
				cpu.Seconds()/n*1000, srv.Seconds()/n*1000, float64(w.peakRSS())/(1<<20))
		}
		if err == nil && st.IncrementalPasses >= passes {
			break
		}
		if err == nil && st.Status.Terminal() {
			return fmt.Errorf("move ended: %s %s", st.Status, st.Reason)
		}
		time.Sleep(500 * time.Millisecond)
	}
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: workflows.UpdateComplete, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		return err
	}
	if err := h.Get(ctx, nil); err != nil {
		return err
	}
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		return err
	}
	_ = run
	runs, events, size := 0, int64(0), int64(0)
	it, err := c.ListWorkflow(ctx, listRequest(id))
	if err != nil {
		return err
	}
	for _, e := range it.GetExecutions() {
		d, err := c.DescribeWorkflowExecution(ctx, id, e.GetExecution().GetRunId())
		if err != nil {
			return err
		}
		runs++
		events += d.GetWorkflowExecutionInfo().GetHistoryLength()
		size += d.GetWorkflowExecutionInfo().GetHistorySizeBytes()
	}
	fmt.Printf("History of the move through its initial sync, %d incremental passes and completion: %d events, %.0f KiB, in %d run(s)\n",
		passes, events, float64(size)/1024, runs)
	if d, n := passTimes(ctx, c, id); n > 0 {
		fmt.Printf("Incremental pass over the unchanged mailbox through Temporal (replan, then the lanes' sync activities): median %v over %d passes\n", d.Round(time.Millisecond), n)
	}
	return nil
}

// passTimes reads the move's history and returns the median time of its
// incremental passes: from the replanning Connect activity being scheduled
// to the pass's last activity completing. The first pass (initial sync) and
// the last (completion and verification) are left out.
func passTimes(ctx context.Context, c client.Client, id string) (time.Duration, int) {
	var starts, ends []time.Time
	it := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return 0, 0
		}
		switch e.GetEventType() {
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			if e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == "Connect" {
				starts = append(starts, e.GetEventTime().AsTime())
				ends = append(ends, time.Time{})
			}
		case enums.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if len(ends) > 0 {
				ends[len(ends)-1] = e.GetEventTime().AsTime()
			}
		}
	}
	if len(starts) < 3 {
		return 0, 0
	}
	var ds []time.Duration
	for i := 1; i < len(starts)-1; i++ {
		ds = append(ds, ends[i].Sub(starts[i]))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], len(ds)
}

func query(ctx context.Context, c client.Client, id string) (workflows.MoveStatus, error) {
	var st workflows.MoveStatus
	v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

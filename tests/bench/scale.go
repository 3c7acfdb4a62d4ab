package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	enums "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/tests/testbed"
)

// scaleBatch is the scale run's batch name.
const scaleBatch = "scale"

// scaleFigures are what a scale run measured, per move where it says so:
// the model of a whole tenant (model.go) is built from them.
type scaleFigures struct {
	Moves, Messages, Workers, Concurrency int
	Bytes                                 int64 // seeded into the source, all mailboxes
	Wall                                  time.Duration
	Executions                            int // workflow runs, the batch's included
	// CPU seconds over the run, whole processes.
	ServerCPU, WorkerCPU, SourceCPU, TargetCPU, CLICPU float64
	Cores                                              int
	WorkerPeakRSS                                      int64 // the largest worker's, bytes
	// Per move.
	SourceLogons, TargetLogons float64
	Actions                    actionCounts // per move: the batch's share included
	HistoryEvents              float64      // per move, from the visibility store; the batch's share included
	HistoryBytes               float64
	DBBytes                    float64 // the dev server's SQLite files at the end, per move
	DBBaseBytes                int64   // the same before the batch started
}

// actionCounts are Temporal Cloud's billable actions
// (docs.temporal.io/cloud/actions), counted from histories, plus the
// heartbeats the workers sent (not in histories: from their metrics).
type actionCounts struct {
	Starts, Activities, Signals, Timers, Upserts, Markers, Updates, Heartbeats float64
}

func (a actionCounts) total() float64 {
	return a.Starts + a.Activities + a.Signals + a.Timers + a.Upserts + a.Markers + a.Updates + a.Heartbeats
}

func (a actionCounts) add(b actionCounts, f float64) actionCounts {
	return actionCounts{a.Starts + f*b.Starts, a.Activities + f*b.Activities, a.Signals + f*b.Signals, a.Timers + f*b.Timers,
		a.Upserts + f*b.Upserts, a.Markers + f*b.Markers, a.Updates + f*b.Updates, a.Heartbeats + f*b.Heartbeats}
}

// scaleRun moves n mailboxes of messages small messages each through the
// CLI, one dev server and several worker processes, and measures what a
// tenant-sized run costs: wall time, CPU of every process, logons, Temporal
// actions and storage per move. It does not assert; it returns the figures
// for the model.
func scaleRun(n, messages, workers, concurrency int, wait time.Duration) (scaleFigures, error) {
	fig := scaleFigures{Moves: n, Messages: messages, Workers: workers, Concurrency: concurrency, Cores: runtime.NumCPU()}
	if err := testbed.EnsureDovecot(); err != nil {
		return fig, err
	}
	users := make([]testbed.User, n)
	for i := range users {
		users[i] = testbed.User{Name: fmt.Sprintf("s%05d@example.com", i), Password: pw}
	}
	src, tgt, err := testbed.StartPair("scale", users)
	if err != nil {
		return fig, err
	}
	defer src.Stop()
	defer tgt.Stop()
	start := time.Now()
	if fig.Bytes, err = seedScale(src, users, messages); err != nil {
		return fig, err
	}
	fmt.Printf("Scale run: %d mailboxes × %d messages (%.1f MiB, %.1f KiB per message) seeded in %v\n",
		n, messages, float64(fig.Bytes)/(1<<20), float64(fig.Bytes)/float64(n*messages)/1024, time.Since(start).Round(time.Millisecond))

	env, first, dir, stop, err := startTemporal("mailmove-scale-*")
	if err != nil {
		return fig, err
	}
	defer stop()
	// startTemporal's worker serves no metrics; the run's workers do (their
	// heartbeats are actions that no history shows), from the same binary.
	first.stop()
	procs, err := startWorkers(filepath.Join(dir, "mailmove-worker"), env, workers)
	defer func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Add(1)
			go func() { defer wg.Done(); p.stop() }()
		}
		wg.Wait()
	}()
	if err != nil {
		return fig, err
	}
	cli, err := buildCLI(dir)
	if err != nil {
		return fig, err
	}
	csvFile := filepath.Join(dir, "scale.csv")
	var csv strings.Builder
	csv.WriteString("EmailAddress,UserName,Password\n")
	for _, u := range users {
		fmt.Fprintf(&csv, "%s,%s,%s\n", u.Name, u.Name, pw)
	}
	if err := os.WriteFile(csvFile, []byte(csv.String()), 0o600); err != nil {
		return fig, err
	}
	dbFile := filepath.Join(dir, "temporal.db")
	fig.DBBaseBytes = sqliteSize(dbFile)

	ctx := context.Background()
	srcLogons, tgtLogons := countLogons(src.LogPath()), countLogons(tgt.LogPath())
	srv0, src0, tgt0 := procCPU(env.Server.Pid()), dovecotCPU(src), dovecotCPU(tgt)
	var w0 time.Duration
	for _, p := range procs {
		w0 += p.cpu()
	}
	t0 := time.Now()
	cmd := exec.Command(cli, "batch", "start", "--name", scaleBatch, "--csv", csvFile, "--source", src.Addr(), "--target", tgt.Addr(),
		"--source-security", "none", "--target-security", "none", "--concurrency", strconv.Itoa(concurrency),
		"--address", env.Server.Addr, "--secret-key-file", env.KeyFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fig, fmt.Errorf("mailmove batch start: %w\n%s", err, out)
	}
	fig.CLICPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	fmt.Printf("  batch start (%d moves started by the CLI, concurrency %d, %d worker processes): %v\n",
		n, concurrency, workers, time.Since(t0).Round(time.Millisecond))

	// Wait until no run of the batch is running: every move ended, and the
	// batch after them.
	count := func(q string) (int, error) {
		resp, err := env.Client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: "MailmoveBatch = '" + scaleBatch + "' AND " + q})
		return int(resp.GetCount()), err
	}
	deadline, report := t0.Add(wait), time.Now()
	partial := false
	for {
		running, err := count("ExecutionStatus = 'Running'")
		if err != nil {
			return fig, err
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			// Figures of the moves done so far beat none.
			fmt.Printf("  stopped waiting after %v with %d runs running: the figures below are per completed move\n", wait, running)
			partial = true
			break
		}
		if time.Since(report) > 30*time.Second {
			done, _ := count("WorkflowType = 'MailboxMove' AND ExecutionStatus = 'Completed'")
			fmt.Printf("  %v: %d moves completed, %d runs running\n", time.Since(t0).Round(time.Second), done, running)
			report = time.Now()
		}
		time.Sleep(2 * time.Second)
	}
	srv1, src1, tgt1 := procCPU(env.Server.Pid()), dovecotCPU(src), dovecotCPU(tgt)
	var w1 time.Duration
	for _, p := range procs {
		w1 += p.cpu()
	}
	fig.ServerCPU, fig.WorkerCPU = (srv1 - srv0).Seconds(), (w1 - w0).Seconds()
	for _, p := range procs {
		fig.WorkerPeakRSS = max(fig.WorkerPeakRSS, p.peakRSS())
	}
	fig.SourceCPU, fig.TargetCPU = (src1 - src0).Seconds(), (tgt1 - tgt0).Seconds()
	stopped := time.Now()
	srcLogons, tgtLogons = countLogons(src.LogPath())-srcLogons, countLogons(tgt.LogPath())-tgtLogons

	// The runs, from the visibility store: how many, how they ended, when
	// the last move closed, their histories' sizes.
	runs, err := listRuns(ctx, env.Client, "MailmoveBatch = '"+scaleBatch+"'")
	if err != nil {
		return fig, err
	}
	var last time.Time
	ended := map[string]int{}
	var moveRuns, batchRuns []*workflowpb.WorkflowExecutionInfo
	var events, size int64
	for _, r := range runs {
		if r.GetType().GetName() == "Batch" {
			batchRuns = append(batchRuns, r)
		} else {
			ended[r.GetStatus().String()]++
			if r.GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
				continue
			}
			moveRuns = append(moveRuns, r)
			if c := r.GetCloseTime().AsTime(); c.After(last) {
				last = c
			}
		}
		events += r.GetHistoryLength()
		size += r.GetHistorySizeBytes()
	}
	fig.Executions = len(runs)
	fig.Wall = last.Sub(t0)
	done := ended[enums.WORKFLOW_EXECUTION_STATUS_COMPLETED.String()]
	switch {
	case partial && done > 0:
		fig.Moves, fig.Wall = done, stopped.Sub(t0)
	case done != n:
		return fig, fmt.Errorf("of %d moves, runs ended %v", n, ended)
	}
	moves := float64(fig.Moves)
	fig.SourceLogons, fig.TargetLogons = float64(srcLogons)/moves, float64(tgtLogons)/moves
	fig.HistoryEvents, fig.HistoryBytes = float64(events)/moves, float64(size)/moves

	// Actions: every run of the batch, and a sample of the moves' runs,
	// scaled to all of them.
	const sample = 200
	step := max(1, len(moveRuns)/sample)
	var sampled actionCounts
	read := 0
	for i := 0; i < len(moveRuns); i += step {
		a, err := historyActions(ctx, env.Client, moveRuns[i])
		if err != nil {
			return fig, err
		}
		sampled, read = sampled.add(a, 1), read+1
	}
	fig.Actions = fig.Actions.add(sampled, float64(len(moveRuns))/float64(read)/moves)
	for _, r := range batchRuns {
		a, err := historyActions(ctx, env.Client, r)
		if err != nil {
			return fig, err
		}
		fig.Actions = fig.Actions.add(a, 1/moves)
	}
	var beats float64
	for _, p := range procs {
		b, err := p.heartbeats()
		if err != nil {
			return fig, err
		}
		beats += b
	}
	fig.Actions.Heartbeats = beats / moves
	fig.DBBytes = float64(sqliteSize(dbFile)) / moves

	printScale(fig, len(batchRuns), read)
	if partial {
		fmt.Printf("  (%d of %d moves completed in the time given: CPU, logons and heartbeats of the moves still copying are counted too)\n", fig.Moves, n)
		return fig, nil
	}
	for _, i := range []int{0, n / 2, n - 1} {
		fmt.Printf("  %s: %s\n", users[i].Name, verify(src.Addr(), tgt.Addr(), users[i].Name))
	}
	fmt.Println()
	return fig, nil
}

func printScale(f scaleFigures, batchRuns, sampled int) {
	wall, moves := f.Wall.Seconds(), float64(f.Moves)
	share := func(cpu float64) string {
		return fmt.Sprintf("%5.1f CPU-s, %3.0f%% of the machine (%.3f CPU-s per move)", cpu, 100*cpu/wall/float64(f.Cores), cpu/moves)
	}
	fmt.Printf("  %d moves Completed in %v (from batch start to the last move closed)\n", f.Moves, f.Wall.Round(time.Millisecond))
	fmt.Printf("  %.1f moves/s, %.0f messages/s; %d workflow runs (%d of the batch, continue-as-new) = %.1f workflow executions/s\n",
		moves/wall, moves*float64(f.Messages)/wall, f.Executions, batchRuns, float64(f.Executions)/wall)
	fmt.Printf("  CPU over the run, %d cores:\n", f.Cores)
	fmt.Printf("    Temporal dev server %s\n", share(f.ServerCPU))
	fmt.Printf("    %d workers          %s; peak RSS %.0f MiB (the largest)\n", f.Workers, share(f.WorkerCPU), float64(f.WorkerPeakRSS)/(1<<20))
	fmt.Printf("    source Dovecot      %s\n", share(f.SourceCPU))
	fmt.Printf("    target Dovecot      %s\n", share(f.TargetCPU))
	fmt.Printf("    CLI (batch start)   %s\n", share(f.CLICPU))
	fmt.Printf("  logons per move (Dovecot's log): source %.2f, target %.2f\n", f.SourceLogons, f.TargetLogons)
	a := f.Actions
	fmt.Printf("  Temporal actions per move (histories of the batch and %d moves; heartbeats from the workers' metrics): %.1f\n", sampled, a.total())
	fmt.Printf("    workflow starts %.2f, activity attempts %.2f, signals %.2f, timers %.2f, search-attribute upserts %.2f, markers %.2f, updates %.2f, heartbeats %.2f\n",
		a.Starts, a.Activities, a.Signals, a.Timers, a.Upserts, a.Markers, a.Updates, a.Heartbeats)
	fmt.Printf("  history per move (the batch's share included): %.0f events, %.1f KiB\n", f.HistoryEvents, f.HistoryBytes/1024)
	fmt.Printf("  dev server's SQLite files at the end: %.1f MiB, %.1f KiB per move (%.1f MiB before the batch)\n",
		f.DBBytes*moves/(1<<20), f.DBBytes/1024, float64(f.DBBaseBytes)/(1<<20))
}

// seedScale gives every source mailbox messages of a few KB (1.5 to 8 KiB,
// most near 3), written as Maildir files; it returns the bytes written.
func seedScale(src *testbed.Server, users []testbed.User, messages int) (int64, error) {
	date := time.Now().UTC().Format(time.RFC1123Z)
	const line = "The quick brown fox jumps over the lazy dog; mail moves by the thousand.\r\n"
	var total int64
	for i, u := range users {
		r := rand.New(rand.NewPCG(uint64(i), 42))
		msgs := make([][]byte, messages)
		for j := range msgs {
			size := 1536 + int(r.ExpFloat64()*1536)
			size = min(size, 8192)
			m := fmt.Appendf(nil, "From: sender%d@example.org\r\nTo: %s\r\nSubject: scale message %d\r\nMessage-ID: <s%d.%d@bench.example>\r\nDate: %s\r\n\r\n",
				j%7, u.Name, j, i, j, date)
			for len(m) < size {
				m = append(m, line...)
			}
			msgs[j] = m
			total += int64(len(m))
		}
		if err := src.SeedMaildir(u.Name, msgs); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// scaleWorker is a worker process of the scale run, with its metrics page.
type scaleWorker struct {
	*workerProc
	metrics string
}

// startWorkers starts n worker processes of bin on env, each serving its
// metrics on a port of its own.
func startWorkers(bin string, env *temporaltest.Env, n int) ([]scaleWorker, error) {
	var procs []scaleWorker
	for range n {
		port, err := temporaltest.FreePort()
		if err != nil {
			return procs, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cmd := exec.Command(bin, "--address", env.Server.Addr, "--secret-key-file", env.KeyFile, "--metrics-address", addr)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return procs, err
		}
		procs = append(procs, scaleWorker{&workerProc{cmd: cmd}, "http://" + addr + "/metrics"})
	}
	return procs, nil
}

// heartbeats is the number of heartbeat calls the worker sent Temporal,
// the SDK's throttled ones and the activities' own, from its metrics.
func (w scaleWorker) heartbeats() (float64, error) {
	resp, err := http.Get(w.metrics)
	if err != nil {
		return 0, fmt.Errorf("worker metrics: %w", err)
	}
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "temporal_request{") && strings.Contains(l, `operation="RecordActivityTaskHeartbeat`) {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			n += v
		}
	}
	return n, sc.Err()
}

// listRuns lists every run the query matches.
func listRuns(ctx context.Context, c client.Client, query string) ([]*workflowpb.WorkflowExecutionInfo, error) {
	var runs []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 1000, NextPageToken: token})
		if err != nil {
			return nil, err
		}
		runs = append(runs, resp.GetExecutions()...)
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return runs, nil
		}
	}
}

// historyActions counts a run's billable actions as Temporal Cloud counts
// them (docs.temporal.io/cloud/actions): its start (client or
// continue-as-new), each activity attempt, each signal it received (one per
// signal sent, from a client or another workflow), timers, search-attribute
// upserts, updates, side-effect markers and one per workflow task that
// recorded local activities. Queries and heartbeats are not in histories.
func historyActions(ctx context.Context, c client.Client, run *workflowpb.WorkflowExecutionInfo) (actionCounts, error) {
	var a actionCounts
	localTasks := map[int64]bool{}
	it := c.GetWorkflowHistory(ctx, run.GetExecution().GetWorkflowId(), run.GetExecution().GetRunId(), false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return a, err
		}
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, enums.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			a.Starts++
		case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			// Only the last attempt is written; its number counts them all.
			a.Activities += float64(max(1, ev.GetActivityTaskStartedEventAttributes().GetAttempt()))
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			a.Signals++
		case enums.EVENT_TYPE_TIMER_STARTED:
			a.Timers++
		case enums.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
			a.Upserts++
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
			a.Updates++
		case enums.EVENT_TYPE_MARKER_RECORDED:
			a.Markers += markerActions(ev.GetMarkerRecordedEventAttributes(), localTasks)
		}
	}
	return a, nil
}

// markerActions: a side effect is one action, the local activities of one
// workflow task one together, a version marker none.
func markerActions(m *historypb.MarkerRecordedEventAttributes, localTasks map[int64]bool) float64 {
	switch m.GetMarkerName() {
	case "SideEffect", "MutableSideEffect":
		return 1
	case "LocalActivity":
		if task := m.GetWorkflowTaskCompletedEventId(); !localTasks[task] {
			localTasks[task] = true
			return 1
		}
	}
	return 0
}

// dovecotCPU is the CPU time of a Dovecot server: its master, the
// processes it has reaped and those still running.
func dovecotCPU(s *testbed.Server) time.Duration {
	var total time.Duration
	for _, pid := range s.SessionProcesses() {
		total += procCPU(pid)
		if pid == s.PID() {
			total += procChildrenCPU(pid)
		}
	}
	return total
}

// procChildrenCPU is the CPU time of a process's reaped children, from
// /proc (cutime and cstime).
func procChildrenCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	cutime, _ := strconv.ParseInt(fields[13], 10, 64)
	cstime, _ := strconv.ParseInt(fields[14], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(cutime+cstime) * time.Second / ticks
}

// countLogons counts the successful logons in a Dovecot log (Dovecot logs
// one "Login: user=<...>" line for each).
func countLogons(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "imap-login: Info: Login: user=<") {
			n++
		}
	}
	return n
}

// sqliteSize is the size of an SQLite database with its journal files.
func sqliteSize(db string) int64 {
	var n int64
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if fi, err := os.Stat(db + suffix); err == nil {
			n += fi.Size()
		} else if !errors.Is(err, os.ErrNotExist) {
			return -1
		}
	}
	return n
}

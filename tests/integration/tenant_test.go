package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/pty"
	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/workflows"
)

// A batch of 40 mailboxes at --concurrency 5, through a source that
// refuses logons for a while and a target that throttles: never more than
// 5 moves copy at once (from the moves' own histories), paused and
// resumed (nothing starts while paused), a mailbox added while it runs,
// completed by `batch complete`, every mailbox compared exactly.
func TestBatchOfFortyHoldsItsConcurrencyThroughFaults(t *testing.T) {
	var names []string
	for i := 1; i <= 41; i++ {
		names = append(names, fmt.Sprintf("forty%02d", i))
	}
	accs := addAccounts(t, 4000, 12, names...)
	late := accs[40]
	accs = accs[:40]
	src := faultproxy.StartForTest(t, env.source.Addr())
	tgt := faultproxy.StartForTest(t, env.target.Addr())
	src.FailLogins(12, "[UNAVAILABLE] Too many connections, try later")
	tgt.SetLatency(2 * time.Millisecond)
	pol := writePolicy(t, "rules:\n  LogonFailed:\n    initialInterval: 1s\n    maximumInterval: 2s\n    maximumAttempts: 20\n"+
		"  ServerUnavailable:\n    initialInterval: 1s\n    maximumInterval: 2s\n")
	password := func(a account) string { return a.password }
	startBatchTo(t, "default", "forty", writeCSV(t, accs, password), src.Addr(), tgt.Addr(),
		"--concurrency", "5", "--complete", "manual", "--incremental-interval", "15s", "--policy", pol, "--connections-per-move", "2")

	// Throttled for a while once moves copy.
	waitStatus(t, "forty", func(r report) bool { return count(r, workflows.StatusSynced) >= 3 })
	tgt.Unavailable(3*time.Second, "UNAVAILABLE", "Server busy, try later")
	watchUnderPTY(t, "forty")

	mailmove(t, "default", "batch", "pause", "forty")
	pausedAt := time.Now()
	time.Sleep(8 * time.Second)
	resumedAt := time.Now()
	mailmove(t, "default", "batch", "resume", "forty")

	mailmove(t, "default", "batch", "add", "forty", "--csv", writeCSV(t, []account{late}, password))
	accs = append(accs, late)
	waitStatus(t, "forty", func(r report) bool { return len(r.Moves) == 41 && count(r, workflows.StatusSynced) == 41 })
	mailmove(t, "default", "batch", "complete", "forty")
	r := waitTerminal(t, "default", "forty", 5*time.Minute)
	if len(r.Moves) != 41 {
		t.Fatalf("%d moves, want 41", len(r.Moves))
	}
	for _, m := range r.Moves {
		if m.Status != workflows.StatusCompleted {
			t.Errorf("%s: %s (%s), want Completed", m.Mailbox, m.Status, m.Reason)
		}
	}
	for _, a := range accs {
		assertIdentical(t, a)
	}
	// Counted, as a batch above a few hundred mailboxes is shown, it is
	// the same batch as listed.
	var totals [2]struct {
		Totals struct {
			Mailboxes int
			ByStatus  map[string]int
		}
	}
	for i, list := range []string{"all", "active"} {
		if err := json.Unmarshal([]byte(mailmove(t, "default", "batch", "status", "forty", "--json", "--list", list)), &totals[i]); err != nil {
			t.Fatal(err)
		}
	}
	if totals[1].Totals.Mailboxes != 41 || !maps.Equal(totals[0].Totals.ByStatus, totals[1].Totals.ByStatus) {
		t.Errorf("batch status --list active counts %+v, --list all %+v", totals[1].Totals, totals[0].Totals)
	}
	if out := mailmove(t, "default", "batch", "report", "forty"); !strings.Contains(out, "no failures or warnings among 41 mailboxes") {
		t.Errorf("batch report:\n%s", out)
	}
	if got := src.Stats().Injected[faultproxy.FaultFailLogin]; got != 12 {
		t.Errorf("the source refused %d logons, want 12", got)
	}

	// The worker's metrics count the batch's messages and the refused
	// logons.
	resp, err := http.Get("http://" + env.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range [][]string{
		{"mailmove_messages_copied{", `batch="forty"`},
		{"mailmove_failures{", `batch="forty"`, `reason="LogonFailed"`},
		{"temporal_activity_execution_latency_seconds_bucket{"},
	} {
		if !slices.ContainsFunc(strings.Split(string(scrape), "\n"), func(line string) bool {
			return strings.HasPrefix(line, want[0]) && !slices.ContainsFunc(want[1:], func(w string) bool { return !strings.Contains(line, w) })
		}) {
			t.Errorf("the worker's metrics have no line %q", want)
		}
	}

	spans := activitySpans(t, "forty", names)
	peak, when := peakMoves(spans)
	if peak > 5 {
		t.Errorf("%d moves ran activities at once at %s, want at most 5 (--concurrency 5)", peak, when.Format(time.StampMilli))
	}
	// The pause takes effect at each move's next safe point: a call under
	// way finishes, none starts.
	for _, s := range spans {
		if s.start.After(pausedAt.Add(3*time.Second)) && s.start.Before(resumedAt) {
			t.Errorf("%s started %s at %s, while the batch was paused (%s to %s); its history then:\n%s", s.mailbox, s.activity,
				s.start.Format(time.StampMilli), pausedAt.Format(time.StampMilli), resumedAt.Format(time.StampMilli),
				historyAround(t, workflows.MoveWorkflowID("forty", s.mailbox+"@example.com"), pausedAt.Add(-10*time.Second), resumedAt))
		}
	}
	t.Logf("%d activity calls, at most %d moves at once", len(spans), peak)
}

func count(r report, s workflows.Status) int {
	n := 0
	for _, m := range r.Moves {
		if m.Status == s {
			n++
		}
	}
	return n
}

func waitStatus(t *testing.T, batch string, ok func(report) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		r := batchStatus(t, "default", batch)
		if ok(r) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s: condition not reached: %+v\nworker log (end):\n%s", batch, r.Moves, workerLogTail("default"))
		}
		time.Sleep(time.Second)
	}
}

type span struct {
	mailbox, activity string
	start, end        time.Time
}

// activitySpans are the activity calls of the moves' runs, from their
// histories: when a worker took each, and when it ended.
func activitySpans(t *testing.T, batch string, names []string) []span {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Logger: temporaltest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var spans []span
	for _, n := range names {
		id := workflows.MoveWorkflowID(batch, n+"@example.com")
		it := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		types := map[int64]string{}
		started := map[int64]time.Time{}
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			switch a := ev; a.GetEventType() {
			case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
				types[ev.GetEventId()] = a.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
				started[a.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] = ev.GetEventTime().AsTime()
			case enums.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, enums.EVENT_TYPE_ACTIVITY_TASK_FAILED, enums.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT, enums.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
				var sched int64
				switch {
				case a.GetActivityTaskCompletedEventAttributes() != nil:
					sched = a.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()
				case a.GetActivityTaskFailedEventAttributes() != nil:
					sched = a.GetActivityTaskFailedEventAttributes().GetScheduledEventId()
				case a.GetActivityTaskTimedOutEventAttributes() != nil:
					sched = a.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId()
				default:
					sched = a.GetActivityTaskCanceledEventAttributes().GetScheduledEventId()
				}
				if s, ok := started[sched]; ok {
					spans = append(spans, span{mailbox: n, activity: types[sched], start: s, end: ev.GetEventTime().AsTime()})
				}
			}
		}
	}
	return spans
}

// peakMoves is the most moves with an activity call running at one time.
func peakMoves(spans []span) (int, time.Time) {
	type edge struct {
		at      time.Time
		mailbox string
		delta   int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.start, s.mailbox, 1}, edge{s.end, s.mailbox, -1})
	}
	// Ends before starts at the same instant: a slot handed on.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	calls := map[string]int{}
	peak, when := 0, time.Time{}
	for _, e := range edges {
		calls[e.mailbox] += e.delta
		if calls[e.mailbox] == 0 {
			delete(calls, e.mailbox)
		}
		if len(calls) > peak {
			peak, when = len(calls), e.at
		}
	}
	return peak, when
}

// watchUnderPTY runs `batch status --watch` under a pseudo-terminal, where
// it redraws one screen, and through a pipe, where it prints lines.
func watchUnderPTY(t *testing.T, batch string) {
	t.Helper()
	ptmx, pts, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	args := []string{"batch", "status", batch, "--watch", "--interval", "1s", "--address", env.temporal.Addr, "--secret-key-file", env.keyFile}
	watch := func(stdout *os.File, out *strings.Builder) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, env.mailmove, args...)
		if stdout != nil {
			cmd.Stdout = stdout
		} else {
			cmd.Stdout = out
		}
		_ = cmd.Run() // killed at the timeout: the batch runs on
	}
	var lines strings.Builder
	screen := pty.Capture(ptmx, pts, func(pts *os.File) { watch(pts, nil) })
	watch(nil, &lines)
	if s := screen; strings.Count(s, "\x1b[H\x1b[2J") < 2 || !strings.Contains(s, "mailmove batch "+batch) || !strings.Contains(s, "ETA") {
		t.Errorf("under a pseudo-terminal, --watch drew:\n%q", s[:min(len(s), 3000)])
	}
	if l := lines.String(); strings.Contains(l, "\x1b[") || strings.Count(l, " "+batch+": ") < 2 {
		t.Errorf("through a pipe, --watch printed:\n%s", l)
	}
}

// historyAround lists a workflow's events between from and to, for a
// failure's message: signals with their names, activities, timers.
func historyAround(t *testing.T, id string, from, to time.Time) string {
	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Logger: temporaltest.QuietLogger()})
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	var b strings.Builder
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return err.Error()
		}
		at := ev.GetEventTime().AsTime()
		if at.Before(from) || at.After(to) {
			continue
		}
		what := strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_")
		switch {
		case ev.GetWorkflowExecutionSignaledEventAttributes() != nil:
			what += " " + ev.GetWorkflowExecutionSignaledEventAttributes().GetSignalName()
		case ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes() != nil:
			what += " " + ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes().GetSignalName()
		case ev.GetActivityTaskScheduledEventAttributes() != nil:
			what += " " + ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		}
		fmt.Fprintf(&b, "  %s %d %s\n", at.Format(time.StampMilli), ev.GetEventId(), what)
	}
	return b.String()
}

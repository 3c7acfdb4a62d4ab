package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/workflows"
)

// limitsNamespace has no worker of its own: the limits test runs three.
const limitsNamespace = "limits"

// TestLimitsHoldAcrossThreeWorkers: three worker processes move a batch of
// 12 mailboxes whose source sits behind a fault proxy, with the source's
// limits across all workers at 4 connections and 2 new connections per
// second. The proxy counts what reaches it: never more than 4 connections
// open at once (counted at each accept), never more than 2 accepted in
// any second (for each accept at t, the accepts in (t-1s, t]); the batch
// completes and every mailbox compares exactly.
func TestLimitsHoldAcrossThreeWorkers(t *testing.T) {
	const maxConns, rate = 4, 2
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("lim%02d", i))
	}
	accs := addAccounts(t, 1500, 50, names...)
	csv := writeCSV(t, accs, func(a account) string { return a.password })
	for range 3 {
		w, err := startWorker(limitsNamespace)
		if err != nil {
			t.Fatal(err)
		}
		defer stopWorker(w)
	}
	proxy := faultproxy.StartForTest(t, env.source.Addr())
	// A slow source keeps connections open long enough for the cap, not
	// only the rate, to bind.
	proxy.SetLatency(20 * time.Millisecond)
	start := time.Now()
	startBatchTo(t, limitsNamespace, "limits", csv, proxy.Addr(), env.target.Addr(),
		"--concurrency", "12", "--connections-per-move", "3",
		"--source-max-connections", fmt.Sprint(maxConns), "--source-connection-rate", fmt.Sprint(rate))
	r := waitTerminal(t, limitsNamespace, "limits", 8*time.Minute)
	elapsed := time.Since(start)
	for _, m := range r.Moves {
		if m.Status != workflows.StatusCompleted {
			t.Fatalf("%s: %s (%s), want Completed", m.Mailbox, m.Status, m.Reason)
		}
	}
	for _, a := range accs {
		assertIdentical(t, a)
	}
	st := proxy.Stats()
	t.Logf("12 mailboxes in %v through 3 workers: %d source connections, peak %d open, peak %d new in a second",
		elapsed.Round(time.Second), st.Connections, st.PeakOpen, st.PeakNewPerSecond)
	if st.PeakOpen > maxConns || st.PeakNewPerSecond > rate {
		t.Fatalf("source peaks: %d open, %d new in a second; want at most %d and %d\nbusiest second: %s", st.PeakOpen, st.PeakNewPerSecond, maxConns, rate, busiest(proxy.AcceptTimes()))
	}
	if st.PeakOpen < maxConns || st.PeakNewPerSecond < rate {
		t.Fatalf("source peaks: %d open, %d new in a second; the limits never bound, the test proves nothing", st.PeakOpen, st.PeakNewPerSecond)
	}
	// The cap held across workers, not within one: the copies ran on
	// several of them.
	if ws := activityWorkers(t, limitsNamespace, "limits", r); len(ws) < 2 {
		t.Fatalf("activities ran on %v; want several workers", ws)
	}
	// What the leases cost: the limiter's history, the updates that failed.
	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Namespace: limitsNamespace, Logger: temporaltest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.DescribeWorkflowExecution(context.Background(), workflows.EndpointWorkflowID("source", proxy.Addr()), "")
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := os.ReadFile(filepath.Join(env.dir, "worker-"+limitsNamespace+".log"))
	t.Logf("source limiter: %d history events in its run, %s; failed lease updates in the workers' log: %d",
		d.GetWorkflowExecutionInfo().GetHistoryLength(), d.GetWorkflowExecutionInfo().GetStatus(), strings.Count(string(logs), "endpoint lease update"))
}

// activityWorkers lists the worker identities that started the batch's
// activities.
func activityWorkers(t *testing.T, namespace, batch string, r report) []string {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Namespace: namespace, Logger: temporaltest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]bool{}
	for _, m := range r.Moves {
		it := c.GetWorkflowHistory(context.Background(), workflows.MoveWorkflowID(batch, m.Mailbox), "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
				seen[a.GetIdentity()] = true
			}
		}
	}
	var ws []string
	for w := range seen {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	return ws
}

// busiest shows the accepts of the busiest second, as offsets from the
// first of them.
func busiest(ts []time.Time) string {
	best, at := 0, 0
	for i := range ts {
		j := i
		for j < len(ts) && ts[j].Sub(ts[i]) < time.Second {
			j++
		}
		if j-i > best {
			best, at = j-i, i
		}
	}
	var parts []string
	for _, x := range ts[at : at+best] {
		parts = append(parts, fmt.Sprintf("%s +%v", x.Format("15:04:05.000"), x.Sub(ts[at]).Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

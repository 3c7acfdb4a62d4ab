package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// chaosNamespace is the chaos test's own: it starts and kills its workers.
const chaosNamespace = "chaos"

// TestChaos moves a batch while everything around it fails: two worker
// processes, one killed (SIGKILL) every few seconds and started again, one
// stopped (SIGSTOP) past its heartbeat timeout and woken, so that its old
// attempts wake after Temporal gave their tasks away; the Temporal dev
// server restarted once on the same database; the source Dovecot stopped
// and started once; connections cut on both sides. Then every mailbox is
// compared message by message, and the same users again in a new batch must
// still be exact.
//
// `make test` runs the short form (20 mailboxes); `make chaos`
// (MAILMOVE_CHAOS=full) a larger batch for longer.
func TestChaos(t *testing.T) {
	mailboxes, messages := 20, 60
	if os.Getenv("MAILMOVE_CHAOS") == "full" {
		messages = 400
	}
	var names []string
	for i := range mailboxes {
		names = append(names, fmt.Sprintf("chaos%02d", i))
	}
	accs := addAccounts(t, 900, messages, names...)
	csv := writeCSV(t, accs, func(a account) string { return a.password })
	srcProxy := faultproxy.StartForTest(t, env.source.Addr())
	tgtProxy := faultproxy.StartForTest(t, env.target.Addr())
	// Each answer of the target is held a little, so the batch lasts long
	// enough for the chaos to land in the middle of copies.
	tgtProxy.SetLatency(2 * time.Millisecond)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	fast := "{initialInterval: 1s, backoffCoefficient: 1.5, maximumInterval: 5s}"
	if err := os.WriteFile(policy, []byte("rules:\n  ServerUnavailable: "+fast+"\n  ConnectFailed: "+fast+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	workers := &chaosWorkers{t: t}
	workers.start(0)
	workers.start(1)
	defer workers.stopAll()

	startBatchTo(t, chaosNamespace, "chaos-1", csv, srcProxy.Addr(), tgtProxy.Addr(),
		"--heartbeat-timeout", "4s", "--chunk-messages", "40", "--concurrency", "10", "--policy", policy)
	events := chaos(t, workers, srcProxy, tgtProxy, func() bool { return allEnded(t, "chaos-1") })
	r := waitTerminalTolerant(t, chaosNamespace, "chaos-1", 10*time.Minute)
	tgtProxy.SetLatency(0)
	compared := 0
	for _, m := range r.Moves {
		if m.Status != workflows.StatusCompleted || m.Grade != workflows.GradePerfect {
			t.Errorf("%s: %s, grade %q (%s); want Completed and Perfect", m.Mailbox, m.Status, m.Grade, m.Reason)
		}
	}
	for _, a := range accs {
		assertIdentical(t, a)
		compared += countOn(t, a)
	}
	t.Logf("chaos: %s; %d messages compared, 0 lost, 0 duplicated", events, compared)

	// The same users again: everything is found, nothing copied twice.
	startBatchTo(t, chaosNamespace, "chaos-2", csv, srcProxy.Addr(), tgtProxy.Addr(), "--policy", policy)
	r = waitTerminalTolerant(t, chaosNamespace, "chaos-2", 5*time.Minute)
	copied := 0
	for _, m := range r.Moves {
		copied += m.Copied
		if m.Status != workflows.StatusCompleted {
			t.Errorf("re-run %s: %s (%s)", m.Mailbox, m.Status, m.Reason)
		}
	}
	for _, a := range accs {
		assertIdentical(t, a)
	}
	if copied != 0 {
		t.Fatalf("the re-run copied %d messages; want every one found on the target", copied)
	}
}

// chaosEvents counts what the chaos did.
type chaosEvents struct {
	kills, stops, cuts, temporalRestarts, dovecotRestarts int
}

func (e chaosEvents) String() string {
	return fmt.Sprintf("%d worker kills, %d worker stops past the heartbeat timeout, %d connection cuts, %d Temporal restarts, %d source Dovecot restarts",
		e.kills, e.stops, e.cuts, e.temporalRestarts, e.dovecotRestarts)
}

// chaos does harm every two seconds until done says the batch ended (three
// minutes at most), and restarts Temporal and the source Dovecot once each
// on the way.
func chaos(t *testing.T, w *chaosWorkers, srcProxy, tgtProxy *faultproxy.Proxy, done func() bool) chaosEvents {
	var e chaosEvents
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	t.Logf("chaos seed: %v", rng.Uint64())
	for tick := 0; tick < 90 && !done(); tick++ {
		switch {
		case tick == 4:
			if err := env.temporal.Restart(); err != nil {
				t.Fatalf("restart Temporal: %v", err)
			}
			e.temporalRestarts++
		case tick == 8:
			restartSource(t)
			e.dovecotRestarts++
		default:
			switch rng.IntN(4) {
			case 0:
				w.kill(rng.IntN(2))
				e.kills++
			case 1:
				if w.stop(rng.IntN(2), 6*time.Second) {
					e.stops++
				}
			default:
				e.cuts += srcProxy.DropConnections() + tgtProxy.DropConnections()
			}
		}
		time.Sleep(2 * time.Second)
	}
	w.wakeAll()
	return e
}

// restartSource stops the source Dovecot for a few seconds and starts it
// again on the same port and mail.
func restartSource(t *testing.T) {
	t.Helper()
	addr, dir := env.source.Addr(), env.source.Dir()
	if err := env.source.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	port, _ := strconv.Atoi(addr[len("127.0.0.1:"):])
	s, err := testbed.Start(testbed.Options{Name: "source", Dir: dir, Port: port, SpecialUse: testbed.StandardSpecialUse()})
	if err != nil {
		t.Fatalf("start the source again: %v", err)
	}
	env.source = s
}

// allEnded reports a batch whose moves have all ended; a CLI call that
// fails (Temporal restarting) is not an answer.
func allEnded(t *testing.T, name string) bool {
	args := []string{"batch", "status", name, "--json", "--address", env.temporal.Addr, "--namespace", chaosNamespace, "--secret-key-file", env.keyFile}
	out, err := exec.Command(env.mailmove, args...).Output()
	if err != nil && !statusExit(args, err) {
		return false
	}
	r, err := parseReport(out)
	if err != nil || len(r.Moves) == 0 {
		return false
	}
	for _, m := range r.Moves {
		if !m.Status.Terminal() {
			return false
		}
	}
	return true
}

// waitTerminalTolerant is waitTerminal for a server that may still be
// coming back.
func waitTerminalTolerant(t *testing.T, namespace, name string, timeout time.Duration) report {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !allEnded(t, name) && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	return waitTerminal(t, namespace, name, 10*time.Second)
}

// countOn counts the account's messages on the target.
func countOn(t *testing.T, a account) int {
	n, err := countTarget(a)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// chaosWorkers are the two worker processes of the chaos namespace.
type chaosWorkers struct {
	t       *testing.T
	mu      sync.Mutex
	procs   [2]*exec.Cmd
	stopped [2]bool
}

func (w *chaosWorkers) start(i int) {
	cmd, err := startWorker(chaosNamespace)
	if err != nil {
		w.t.Fatal(err)
	}
	w.procs[i] = cmd
}

// kill ends worker i at once, as a crash does, and starts a new one.
func (w *chaosWorkers) kill(i int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped[i] {
		return
	}
	w.procs[i].Process.Kill()
	w.procs[i].Wait()
	w.start(i)
}

// stop freezes worker i for d, past its heartbeat timeout: Temporal gives
// its copies to the other worker while it sleeps, and it wakes still
// holding them.
func (w *chaosWorkers) stop(i int, d time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped[i] {
		return false
	}
	w.stopped[i] = true
	p := w.procs[i].Process
	p.Signal(syscall.SIGSTOP)
	time.AfterFunc(d, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		p.Signal(syscall.SIGCONT)
		w.stopped[i] = false
	})
	return true
}

func (w *chaosWorkers) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, p := range w.procs {
		if w.stopped[i] {
			p.Process.Signal(syscall.SIGCONT)
		}
	}
}

func (w *chaosWorkers) stopAll() {
	w.wakeAll()
	for _, p := range w.procs {
		stopWorker(p)
	}
}

package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/workflows"
)

// Servers at their worst, through a real worker: one answers the logon
// with an endless line, one announces a 4 GB literal. Each move fails
// with a reason that names the bound (after the policy's attempts), and
// the worker's memory stays bounded: its peak RSS is far below what
// reading either answer whole would take.
func TestHostileServersFailClearlyWithBoundedMemory(t *testing.T) {
	w, err := startWorker(crashNamespace)
	if err != nil {
		t.Fatal(err)
	}
	defer stopWorker(w)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("rules:\n  Protocol: {initialInterval: 1s, maximumAttempts: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, answer := range map[string]func(io.Writer){
		"endless": func(w io.Writer) {
			io.WriteString(w, "* OK ")
			line := bytes.Repeat([]byte("a"), 1<<20)
			for range 1024 { // 1 GiB without an end
				if _, err := w.Write(line); err != nil {
					return
				}
			}
		},
		"literal": func(w io.Writer) {
			io.WriteString(w, "* LIST () \"/\" {4000000000}\r\n")
			chunk := bytes.Repeat([]byte("b"), 1<<20)
			for range 1024 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		},
	} {
		addr := faultproxy.Hostile(t, answer)
		a := account{user: "hostile-" + name + "@example.com", password: "pw"}
		startBatchTo(t, crashNamespace, "hostile-"+name, writeCSV(t, []account{a}, func(a account) string { return a.password }), addr, env.target.Addr(),
			"--policy", policy)
		m := waitTerminal(t, crashNamespace, "hostile-"+name, 2*time.Minute).Moves[0]
		if m.Status != workflows.StatusFailed || !strings.Contains(m.Reason, "bytes") {
			t.Errorf("%s: %s (%s); want Failed with the bound named", name, m.Status, m.Reason)
		}
		t.Logf("%s: %s: %s", name, m.Status, m.Reason)
	}
	peak, err := peakRSS(w.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if peak > 256<<20 {
		t.Fatalf("worker peak RSS %d MiB after two hostile servers", peak>>20)
	}
	t.Logf("worker peak RSS %d MiB", peak>>20)
}

// peakRSS is a process's peak resident set (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/pty"
	"github.com/mailmove/mailmove/workflows"
)

func watchReport(copied int, statuses ...workflows.Status) batchReport {
	rep := batchReport{Batch: "w1", State: "Running", Concurrency: 2, Totals: totals{ByStatus: map[workflows.Status]int{}}}
	for i, s := range statuses {
		m := workflows.MoveStatus{Batch: "w1", Mailbox: fmt.Sprintf("m%d@x", i), Status: s, MessagesTotal: 100}
		switch s {
		case workflows.StatusInProgress:
			m.StatusDetail, m.PercentComplete, m.Copied = workflows.DetailCopyingMessages, 40, copied
		case workflows.StatusFailed:
			m.Reason = "wrong password"
		case workflows.StatusQueued:
			m.StatusDetail, m.Reason = workflows.DetailStalledPrefix+"Source_Unavailable", "source unavailable"
		}
		rep.Moves = append(rep.Moves, m)
	}
	rep.total()
	return rep
}

// Not a terminal (a pipe, a log): a line per refresh with throughput and
// ETA, and each failure once.
func TestBatchWatchPrintsPlainLinesWhenNotATerminal(t *testing.T) {
	var out strings.Builder
	v := newWatchView(&out)
	if v.tty {
		t.Fatal("a strings.Builder taken for a terminal")
	}
	t0 := time.Date(2026, 11, 29, 20, 0, 0, 0, time.Local)
	v.draw(watchReport(0, workflows.StatusInProgress, workflows.StatusCompleted, workflows.StatusFailed, workflows.StatusQueued), t0)
	v.draw(watchReport(50, workflows.StatusInProgress, workflows.StatusCompleted, workflows.StatusFailed, workflows.StatusCompleted), t0.Add(10*time.Second))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || strings.Contains(out.String(), "\x1b[") {
		t.Fatalf("want 2 refresh lines and one failure, no escape codes:\n%s", out.String())
	}
	for _, want := range []string{
		"20:00:00 w1: 4 mailboxes: 1 Queued, 1 InProgress, 1 Completed, 1 Failed; 0 messages",
		"20:00:00 m2@x: Failed: wrong password",
		"20:00:10 w1: 4 mailboxes: 1 InProgress, 2 Completed, 1 Failed; 50 messages, 0 B copied; 5 messages/s",
		"ETA 10s", // one mailbox ended in 10 s, one left
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lacks %q:\n%s", want, out.String())
		}
	}
}

// On a terminal: one screen, redrawn, with a bar per move copying and the
// waits with their reason.
func TestBatchWatchRedrawsOneScreenOnATerminal(t *testing.T) {
	var out strings.Builder
	v := &watchView{out: &out, tty: true, rows: 15, failed: map[string]bool{}}
	v.draw(watchReport(40, workflows.StatusInProgress, workflows.StatusFailed, workflows.StatusQueued), time.Now())
	s := out.String()
	for _, want := range []string{"\x1b[H\x1b[2J", "mailmove batch w1 — Running, 2 at a time", "COPYING (1)", "m0@x", "[########------------]  40%  40/100 messages",
		"WAITING (1)", "StalledDueToSource_Unavailable: source unavailable", "FAILED (1)", "m1@x", "wrong password"} {
		if !strings.Contains(s, want) {
			t.Errorf("screen lacks %q:\n%s", want, s)
		}
	}
}

// Under a real pseudo-terminal the CLI takes its output for a terminal
// (and redraws), and for lines through a pipe.
func TestBatchWatchKnowsAPseudoTerminal(t *testing.T) {
	if os.Getenv("MAILMOVE_TTY_CHILD") == "1" {
		fmt.Print(isTerminal(os.Stdout))
		return
	}
	ptmx, pts, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	child := func(stdout *os.File) string {
		cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run", "^TestBatchWatchKnowsAPseudoTerminal$")
		cmd.Env = append(os.Environ(), "MAILMOVE_TTY_CHILD=1")
		if stdout != nil {
			return pty.Capture(ptmx, stdout, func(pts *os.File) {
				cmd.Stdout = pts
				if err := cmd.Run(); err != nil {
					t.Error(err)
				}
			})
		}
		b, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := child(pts); !strings.HasPrefix(got, "true") {
		t.Errorf("under a pseudo-terminal: %q, want true", got)
	}
	if got := child(nil); !strings.HasPrefix(got, "false") {
		t.Errorf("through a pipe: %q, want false", got)
	}
}

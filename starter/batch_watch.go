package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/workflows"
)

// isTerminal: w is a terminal, where `batch status --watch` redraws one
// screen; elsewhere (a pipe, a file, a CI log) it prints lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// watchView draws `batch status --watch`: the batch's throughput and ETA
// come from what changed between two refreshes.
type watchView struct {
	out    io.Writer
	tty    bool
	rows   int // moves listed on the screen
	first  time.Time
	done0  int // mailboxes ended at the first refresh
	last   time.Time
	copied map[string]progress // by mailbox, at the last refresh
	failed map[string]bool     // failures printed already (plain mode)
}

// progress is what a move had copied at a refresh.
type progress struct {
	msgs  int
	bytes int64
}

func newWatchView(out io.Writer) *watchView {
	return &watchView{out: out, tty: isTerminal(out), rows: 15, copied: map[string]progress{}, failed: map[string]bool{}}
}

// done counts the mailboxes with nothing left to copy.
func done(rep batchReport) int {
	n := 0
	for s, c := range rep.Totals.ByStatus {
		if s.Terminal() || s == workflows.StatusSynced {
			n += c
		}
	}
	return n
}

// rates are messages and bytes per second since the last refresh, and the
// ETA of the batch from the mailboxes ended since the first. The rates sum
// what each move listed at both refreshes copied in between: a large
// batch lists only the moves copying, so the batch's totals are not
// known, and a move that ended in between adds its last moments to none.
func (v *watchView) rates(rep batchReport, now time.Time) (msgs, bytes float64, eta string) {
	eta = "–"
	copied := make(map[string]progress, len(rep.Moves))
	var dm, db float64
	for _, m := range rep.Moves {
		p := progress{m.Copied, m.Bytes}
		copied[m.Mailbox] = p
		if l, ok := v.copied[m.Mailbox]; ok {
			dm += float64(max(p.msgs-l.msgs, 0))
			db += float64(max(p.bytes-l.bytes, 0))
		}
	}
	if v.first.IsZero() {
		v.first, v.done0 = now, done(rep)
	} else if dt := now.Sub(v.last).Seconds(); dt > 0 {
		msgs, bytes = dm/dt, db/dt
	}
	if d, left := done(rep)-v.done0, rep.Totals.Mailboxes-done(rep); d > 0 && left > 0 {
		eta = (time.Duration(float64(now.Sub(v.first)) / float64(d) * float64(left))).Round(time.Second).String()
	} else if left == 0 {
		eta = "done"
	}
	v.last, v.copied = now, copied
	return msgs, bytes, eta
}

func (v *watchView) draw(rep batchReport, now time.Time) {
	msgs, bytes, eta := v.rates(rep, now)
	copied := fmt.Sprintf("%d messages, %s copied", rep.Totals.MessagesCopied, humanize.Bytes(rep.Totals.BytesCopied))
	if rep.Listed != "" && rep.Listed != listAll {
		copied = fmt.Sprintf("%d moves listed", len(rep.Moves))
	}
	summary := fmt.Sprintf("%d mailboxes: %s; %s; %.0f messages/s, %s/s; ETA %s",
		rep.Totals.Mailboxes, byStatus(rep), copied, msgs, humanize.Bytes(int64(bytes)), eta)
	if !v.tty {
		fmt.Fprintf(v.out, "%s %s: %s\n", now.Format("15:04:05"), rep.Batch, summary)
		for _, m := range rep.Moves {
			if m.Status == workflows.StatusFailed && !v.failed[m.Mailbox] {
				v.failed[m.Mailbox] = true
				fmt.Fprintf(v.out, "%s %s: Failed: %s\n", now.Format("15:04:05"), m.Mailbox, oneLine(m.Reason))
			}
		}
		return
	}
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J") // home, clear: one screen, redrawn
	fmt.Fprintf(&b, "mailmove batch %s — %s, %d at a time · %s (Ctrl-C stops watching, not the batch)\n", rep.Batch, cmpOr(rep.State, "Running"), rep.Concurrency, now.Format("15:04:05"))
	fmt.Fprintln(&b, summary)
	if rep.Paused {
		fmt.Fprintf(&b, "Paused: no move copies until `mailmove batch resume %s`\n", rep.Batch)
	}
	if rep.OutsideWindow {
		fmt.Fprintf(&b, "Outside the allowed hours (--window) until %s\n", rep.WindowChange.Local().Format("Mon 15:04"))
	}
	var running, waiting, failed []workflows.MoveStatus
	for _, m := range rep.Moves {
		switch {
		case m.Status == workflows.StatusFailed:
			failed = append(failed, m)
		case strings.HasPrefix(m.StatusDetail, workflows.DetailStalledPrefix) || m.Status == workflows.StatusSuspended ||
			m.StatusDetail == workflows.DetailWaitingForLogonRetry || m.StatusDetail == workflows.DetailRelinquishedLocked:
			waiting = append(waiting, m)
		case m.Status == workflows.StatusInProgress || m.Status == workflows.StatusCompleting:
			running = append(running, m)
		}
	}
	section(&b, "COPYING", running, v.rows, func(m workflows.MoveStatus) string {
		return fmt.Sprintf("%-32s %s %3d%%  %d/%d messages  %s", m.Mailbox, bar(m.PercentComplete, 20), m.PercentComplete, m.Copied+m.Matched, m.MessagesTotal, m.StatusDetail)
	})
	section(&b, "WAITING", waiting, v.rows, func(m workflows.MoveStatus) string {
		return fmt.Sprintf("%-32s %s: %s", m.Mailbox, m.StatusDetail, oneLine(m.Reason))
	})
	section(&b, "FAILED", failed, v.rows, func(m workflows.MoveStatus) string {
		return fmt.Sprintf("%-32s %s", m.Mailbox, oneLine(m.Reason))
	})
	io.WriteString(v.out, b.String())
}

func section(b *strings.Builder, title string, moves []workflows.MoveStatus, rows int, line func(workflows.MoveStatus) string) {
	if len(moves) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%s (%d)\n", title, len(moves))
	for i, m := range moves {
		if i == rows {
			fmt.Fprintf(b, "  … and %d more (mailmove batch status %s)\n", len(moves)-rows, m.Batch)
			break
		}
		fmt.Fprintln(b, "  "+line(m))
	}
}

// bar is a progress bar of width cells.
func bar(percent, width int) string {
	full := min(max(percent, 0), 100) * width / 100
	return "[" + strings.Repeat("#", full) + strings.Repeat("-", width-full) + "]"
}

func byStatus(rep batchReport) string {
	var parts []string
	for _, s := range statusOrder {
		if n := rep.Totals.ByStatus[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	return strings.Join(parts, ", ")
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Exit statuses of `batch status` that scripts wait on.
const (
	exitStillRunning = 4 // moves are queued or copying
	exitMovesFailed  = 5 // nothing runs, and moves failed
)

// batchExit is how `batch status` ends: 0 when every move is synced or
// ended well, exitStillRunning while moves are queued or copying,
// exitMovesFailed when none is and some failed.
func batchExit(rep batchReport) error {
	if !settled(rep) {
		n := rep.Totals.Mailboxes - done(rep)
		return &exitError{code: exitStillRunning, err: fmt.Errorf("%d moves still queued or copying", n)}
	}
	if n := rep.Totals.ByStatus[workflows.StatusFailed]; n > 0 {
		return &exitError{code: exitMovesFailed, err: fmt.Errorf("%d moves failed: see `mailmove batch report %s`, then `mailmove batch retry %s --failed`", n, rep.Batch, rep.Batch)}
	}
	return nil
}

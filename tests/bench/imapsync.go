package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/mailmove/mailmove/tests/testbed"
)

// imapsyncRun copies a mailbox with imapsync, the tool admins use today, then
// runs it again over the unchanged mailbox, and prints the same figures as
// for the engine. imapsync is a Perl script, not in Debian:
// tests/bench/install-imapsync puts it on PATH.
func imapsyncRun(bin, srcAddr, tgtAddr, user string, messages int) error {
	dir, err := os.MkdirTemp("", "mailmove-imapsync-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	h1, p1, _ := net.SplitHostPort(srcAddr)
	h2, p2, _ := net.SplitHostPort(tgtAddr)
	args := []string{
		"--host1", h1, "--port1", p1, "--user1", user, "--password1", pw,
		"--host2", h2, "--port2", p2, "--user2", user, "--password2", pw,
		"--nossl1", "--nossl2", "--notls1", "--notls2", "--automap",
		"--nolog", "--nousecache", "--noreleasecheck", "--pidfile", "", "--tmpdir", dir,
	}
	version := "imapsync"
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		version += " " + strings.TrimSpace(string(out))
	}
	type run struct {
		took, cpu   time.Duration
		rss         int64
		transferred string
	}
	once := func() (run, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return run{}, err
		}
		// Peak RSS from /proc while it runs: the rusage of a child also
		// counts the pages of the parent it was forked from.
		var r run
		done := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				r.rss = max(r.rss, procPeakRSS(cmd.Process.Pid))
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		err := cmd.Wait()
		close(done)
		<-sampled
		r.took = time.Since(start)
		out := buf.Bytes()
		if err != nil {
			return r, fmt.Errorf("%s: %v\n%s", bin, err, tail(out, 20))
		}
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if m := regexp.MustCompile(`Messages transferred\s*:\s*(\d+)`).FindSubmatch(out); m != nil {
			r.transferred = string(m[1])
		}
		return r, nil
	}
	first, err := once()
	if err != nil {
		return err
	}
	again, err := once()
	if err != nil {
		return err
	}
	fmt.Printf("%s, same corpus, one connection per side (its default):\n", version)
	fmt.Printf("  initial sync:               %8v  %6.0f messages/s (%s transferred), %.2f CPU seconds per 1,000 messages, peak RSS %.0f MiB\n",
		first.took.Round(time.Millisecond), float64(messages)/first.took.Seconds(), first.transferred,
		first.cpu.Seconds()/float64(messages)*1000, float64(first.rss)/(1<<20))
	fmt.Printf("  re-run, no change:          %8v  (%s transferred)\n", again.took.Round(time.Millisecond), again.transferred)
	fmt.Printf("  %s\n\n", verify(srcAddr, tgtAddr, user))
	return nil
}

// verify compares the mailbox on both servers and says whether the target
// holds exactly the source's messages, flags and dates.
func verify(srcAddr, tgtAddr, user string) string {
	src, err := testbed.TakeSnapshot(srcAddr, user, pw)
	if err != nil {
		return "not verified: " + err.Error()
	}
	tgt, err := testbed.TakeSnapshot(tgtAddr, user, pw)
	if err != nil {
		return "not verified: " + err.Error()
	}
	if diff := testbed.Diff(src, tgt, testbed.OutlookName); len(diff) > 0 {
		return fmt.Sprintf("target differs from the source in %d ways, first: %s", len(diff), diff[0])
	}
	return "verified: the target holds exactly the source's messages, flags and dates"
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

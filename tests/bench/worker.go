package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/tests/testbed"
)

// workerProc is a mailmove-worker process started by the bench.
type workerProc struct {
	cmd *exec.Cmd
}

func startWorker(dir string, env *temporaltest.Env) (*workerProc, error) {
	root, err := temporaltest.RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "mailmove-worker")
	build := exec.Command("go", "build", "-o", bin, "./worker/cmd/mailmove-worker")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the worker: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--address", env.Server.Addr, "--secret-key-file", env.KeyFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &workerProc{cmd: cmd}, nil
}

func (w *workerProc) stop() {
	w.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		w.cmd.Process.Kill()
	}
}

// cpu is the worker's CPU time so far.
func (w *workerProc) cpu() time.Duration { return procCPU(w.cmd.Process.Pid) }

// peakRSS is the worker's peak resident set size in bytes.
func (w *workerProc) peakRSS() int64 { return procPeakRSS(w.cmd.Process.Pid) }

// procCPU is a process's CPU time so far, from /proc.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// procPeakRSS is a process's peak resident set size (VmHWM) in bytes.
func procPeakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// startTemporal starts a dev server with its files in a new temporary
// directory and a worker process on it; stop stops both and removes the
// directory. The directory is in memory where it can be: on this VM's disk
// the dev server's SQLite waits for a sync at every commit, and a batch of
// 10,000 moves got 2 workflow tasks a second dispatched, with the worker
// idle.
func startTemporal(pattern string) (env *temporaltest.Env, w *workerProc, dir string, stop func(), err error) {
	dir, err = os.MkdirTemp(testbed.ScratchDir(), pattern)
	if err != nil {
		return nil, nil, "", nil, err
	}
	env, err = temporaltest.StartEnv(dir, false)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, "", nil, err
	}
	// The worker runs as its own process, as in production, so its CPU
	// time and peak RSS are its own.
	w, err = startWorker(dir, env)
	if err != nil {
		env.Stop()
		os.RemoveAll(dir)
		return nil, nil, "", nil, err
	}
	return env, w, dir, func() { w.stop(); env.Stop(); os.RemoveAll(dir) }, nil
}

package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat returns the state letter and session id of pid from
// /proc/PID/stat, or ok=false when the process does not exist.
func procStat(pid int) (state byte, sid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name in parentheses may contain spaces; the fields that
	// follow it are "state ppid pgrp session ...".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 4 {
		return 0, 0, false
	}
	sid, err = strconv.Atoi(fields[3])
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], sid, true
}

// processAlive reports whether pid runs. Zombies count as gone: in a
// container the init process may reap orphans late or never.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	state, _, ok := procStat(pid)
	if !ok {
		// Without /proc (not Linux), fall back to signal 0.
		if _, err := os.Stat("/proc/self/stat"); err != nil {
			return syscall.Kill(pid, 0) == nil
		}
		return false
	}
	return state != 'Z' && state != 'X'
}

func processCmdline(pid int) []byte {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return b
}

// sessionProcesses lists the live processes whose session id is sid.
func sessionProcesses(sid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, s, ok := procStat(pid)
		if ok && s == sid && state != 'Z' && state != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killSession waits briefly for the processes of session sid to exit, then
// SIGKILLs the rest and waits until none is left.
func killSession(sid int, timeout time.Duration) error {
	if sid <= 0 {
		return nil
	}
	// The master signals its children and exits without waiting for them;
	// give the log process time to flush the last lines.
	grace := time.Now().Add(time.Second)
	for len(sessionProcesses(sid)) > 0 && time.Now().Before(grace) {
		time.Sleep(10 * time.Millisecond)
	}
	deadline := time.Now().Add(timeout)
	for {
		pids := sessionProcesses(sid)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of session %d survived SIGKILL", pids, sid)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill pid %d: %w", pid, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SessionProcesses returns the pids of live processes in the session led by
// the master pid: the master and everything it spawned. After Stop it must
// be empty.
func (s *Server) SessionProcesses() []int {
	return sessionProcesses(s.pid)
}

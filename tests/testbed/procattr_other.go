//go:build !linux

package testbed

import "syscall"

// sysProcAttr puts the master in its own session. Outside Linux a test
// binary killed by a timeout leaves the instance running.
func sysProcAttr(bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}

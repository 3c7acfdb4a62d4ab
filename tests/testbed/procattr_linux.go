package testbed

import "syscall"

// sysProcAttr puts the master in its own session, so that Stop can find
// every process it spawned and a terminal's signals do not reach it.
func sysProcAttr(dieWithParent bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setsid: true}
	if dieWithParent {
		attr.Pdeathsig = syscall.SIGTERM
	}
	return attr
}

// Package pty opens pseudo-terminals for tests of what mailmove prints on
// a terminal (batch status --watch), with no dependency: /dev/ptmx and two
// ioctls.
package pty

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Open returns a new pseudo-terminal: the side a test reads (ptmx) and the
// terminal a command writes to (pts).
func Open() (ptmx, pts *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0)
	}
	if err == nil {
		pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	}
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, pts, nil
}

// Capture runs run with pts as its terminal and returns all it wrote. It
// reads while run runs and closes pts when it returns, which ends the read
// (a pseudo-terminal's read takes no deadline).
func Capture(ptmx, pts *os.File, run func(pts *os.File)) string {
	got := make(chan string)
	go func() {
		var b strings.Builder
		buf := make([]byte, 64<<10)
		for {
			k, err := ptmx.Read(buf)
			b.Write(buf[:k])
			if err != nil {
				got <- b.String()
				return
			}
		}
	}()
	run(pts)
	pts.Close()
	return <-got
}

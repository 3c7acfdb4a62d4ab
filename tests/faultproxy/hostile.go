package faultproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
)

// Hostile serves a server at its worst: it greets, reads the first command
// and answers it with answer (an endless line, a literal of gigabytes),
// until the test ends. It returns the address.
func Hostile(t testing.TB, answer func(w io.Writer)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "* OK [CAPABILITY IMAP4rev1] hostile\r\n")
				if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					answer(c)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

package faultproxy

import (
	"net"
	"testing"
	"time"
)

func TestPeaksCountOpenAndNewConnections(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("* OK ready\r\n"))
		}
	}()
	p := StartForTest(t, up.Addr().String())
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	waitOpen := func(n int) {
		for deadline := time.Now().Add(5 * time.Second); p.Stats().Open != n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("open = %d, want %d", p.Stats().Open, n)
			}
		}
	}
	// Three at once, then one closed and two more, 1.1s later: at most
	// four open, three new within a second.
	a, b, c := dial(), dial(), dial()
	waitOpen(3)
	a.Close()
	waitOpen(2)
	time.Sleep(1100 * time.Millisecond)
	d, e := dial(), dial()
	waitOpen(4)
	for _, x := range []net.Conn{b, c, d, e} {
		x.Close()
	}
	waitOpen(0)
	if st := p.Stats(); st.PeakOpen != 4 || st.PeakNewPerSecond != 3 || st.Connections != 5 {
		t.Fatalf("peaks open %d, new per second %d, connections %d; want 4, 3, 5", st.PeakOpen, st.PeakNewPerSecond, st.Connections)
	}
}

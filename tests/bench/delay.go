package main

import (
	"io"
	"net"
	"sync"
	"time"
)

// delayLine relays TCP connections to an upstream server and delays every
// chunk of bytes by a fixed one-way delay in each direction: a link with a
// round trip of twice the delay. It is a delay line, not a throttle — bytes
// in flight keep flowing — so it shows what pipelining saves.
type delayLine struct {
	ln       net.Listener
	upstream string
	delay    time.Duration
	// rate, when positive, caps each connection's bytes per second in each
	// direction, as servers that throttle every connection do.
	rate float64
	wg   sync.WaitGroup
}

func startDelayLine(upstream string, oneWay time.Duration) (*delayLine, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &delayLine{ln: ln, upstream: upstream, delay: oneWay}
	d.wg.Add(1)
	go d.accept()
	return d, nil
}

func (d *delayLine) Addr() string { return d.ln.Addr().String() }

func (d *delayLine) Close() {
	d.ln.Close()
	d.wg.Wait()
}

func (d *delayLine) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", d.upstream)
		if err != nil {
			c.Close()
			continue
		}
		go d.pipe(c, u)
		go d.pipe(u, c)
	}
}

type chunk struct {
	data []byte
	at   time.Time
}

// pipe copies src to dst, each chunk leaving delay after it arrived.
func (d *delayLine) pipe(src, dst net.Conn) {
	ch := make(chan chunk, 4096)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	var free time.Time // when the throttled link is free again
	for c := range ch {
		at := c.at.Add(d.delay)
		if d.rate > 0 {
			free = maxTime(free, c.at).Add(time.Duration(float64(len(c.data)) / d.rate * float64(time.Second)))
			at = maxTime(at, free)
		}
		time.Sleep(time.Until(at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	// Let the other direction see the end too.
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
	io.Copy(io.Discard, src)
	src.Close()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

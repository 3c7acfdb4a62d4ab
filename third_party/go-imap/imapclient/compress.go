package imapclient

// mailmove patch 7: COMPRESS=DEFLATE (RFC 4978), modelled on STARTTLS.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"io"
)

// Compress sends a COMPRESS DEFLATE command; once the server has said OK,
// everything both ways is deflated. The server must announce
// COMPRESS=DEFLATE.
//
// Unlike other commands, this method blocks until the command completes.
func (c *Client) Compress() error {
	upgradeDone := make(chan struct{})
	cmd := &compressCommand{upgradeDone: upgradeDone}
	enc := c.beginCommand("COMPRESS", cmd)
	enc.SP().Atom("DEFLATE")
	enc.flush()
	defer enc.end()

	if err := cmd.wait(); err != nil {
		return err
	}
	// The decoder goroutine will invoke Client.upgradeCompress
	<-upgradeDone
	return nil
}

// upgradeCompress switches both directions to DEFLATE after the server's
// OK. It runs in the decoder goroutine, while Compress holds the encoder.
func (c *Client) upgradeCompress(cmd *compressCommand) {
	defer close(cmd.upgradeDone)

	// Whatever the server sent after its OK is already deflated.
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, c.br, int64(c.br.Buffered())); err != nil {
		panic(err) // unreachable
	}
	var raw io.Reader = c.conn
	if buf.Len() > 0 {
		raw = io.MultiReader(&buf, c.conn)
	}
	fw, _ := flate.NewWriter(c.conn, flate.DefaultCompression) // cannot fail with a valid level
	rw := c.options.wrapReadWriter(struct {
		io.Reader
		io.Writer
	}{flate.NewReader(raw), syncFlushWriter{fw}})
	c.br.Reset(rw)
	c.bw = bufio.NewWriter(rw)
}

// syncFlushWriter ends every write with a sync flush: the peer must be able
// to decode each command and each literal as soon as it is sent.
type syncFlushWriter struct{ fw *flate.Writer }

func (w syncFlushWriter) Write(p []byte) (int, error) {
	n, err := w.fw.Write(p)
	if err != nil {
		return n, err
	}
	return n, w.fw.Flush()
}

type compressCommand struct {
	commandBase
	upgradeDone chan<- struct{}
}

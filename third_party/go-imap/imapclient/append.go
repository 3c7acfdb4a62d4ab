package imapclient

import (
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal"
)

// Append sends an APPEND command.
//
// The caller must call AppendCommand.Close.
//
// The options are optional.
func (c *Client) Append(mailbox string, size int64, options *imap.AppendOptions) *AppendCommand {
	cmd := &AppendCommand{}
	cmd.enc = c.beginCommand("APPEND", cmd)
	cmd.enc.SP().Mailbox(mailbox).SP()
	if options != nil && len(options.Flags) > 0 {
		cmd.enc.List(len(options.Flags), func(i int) {
			cmd.enc.Flag(options.Flags[i])
		}).SP()
	}
	if options != nil && !options.Time.IsZero() {
		cmd.enc.String(options.Time.Format(internal.DateTimeLayout)).SP()
	}
	// TODO: literal8 for BINARY
	// TODO: UTF8 data ext for UTF8=ACCEPT, with literal8
	cmd.wc = cmd.enc.Literal(size)
	return cmd
}

// AppendCommand is an APPEND command.
//
// Callers must write the message contents, then call Close.
type AppendCommand struct {
	commandBase
	enc  *commandEncoder
	wc   io.WriteCloser
	data imap.AppendData
}

func (cmd *AppendCommand) Write(b []byte) (int, error) {
	return cmd.wc.Write(b)
}

func (cmd *AppendCommand) Close() error {
	err := cmd.wc.Close()
	if cmd.enc != nil {
		cmd.enc.end()
		cmd.enc = nil
	}
	return err
}

func (cmd *AppendCommand) Wait() (*imap.AppendData, error) {
	return &cmd.data, cmd.wait()
}

// MultiAppend starts an APPEND command that carries several messages
// (RFC 3502 MULTIAPPEND). The server stores all of them or none, as one
// transaction, which is much cheaper for servers than one APPEND per message.
//
// For each message, the caller calls Message, writes the message contents
// and closes the returned writer. After the last message, the caller must
// call MultiAppendCommand.Close. The server must advertise MULTIAPPEND for
// more than one message.
func (c *Client) MultiAppend(mailbox string) *MultiAppendCommand {
	cmd := &MultiAppendCommand{client: c}
	cmd.enc = c.beginCommand("APPEND", cmd)
	cmd.enc.SP().Mailbox(mailbox)
	return cmd
}

// MultiAppendCommand is an APPEND command with one or more messages.
type MultiAppendCommand struct {
	commandBase
	client *Client
	enc    *commandEncoder
	data   MultiAppendData
}

// MultiAppendData is the data returned by a MULTIAPPEND command.
type MultiAppendData struct {
	// UIDValidity and UIDs are set if the server has UIDPLUS. A server
	// assigns the messages of one command ascending UIDs, so the set, which
	// is sorted, lists them in the order the messages were sent.
	UIDValidity uint32
	UIDs        imap.UIDSet
}

// Message starts the next message of the command. The caller must write
// exactly size bytes to the returned writer, then close it.
//
// The options are optional.
//
// If the server has already answered the command (it refused it before the
// last message), nothing is written and the returned writer fails: the
// server would not read this message as part of the command. Wait returns
// the server's answer.
func (cmd *MultiAppendCommand) Message(size int64, options *imap.AppendOptions) io.WriteCloser {
	if cmd.client.findPendingCmdFunc(func(pc command) bool { return pc == command(cmd) }) == nil {
		return errWriter{fmt.Errorf("imapclient: the server answered the APPEND before its last message")}
	}
	cmd.enc.SP()
	if options != nil && len(options.Flags) > 0 {
		cmd.enc.List(len(options.Flags), func(i int) {
			cmd.enc.Flag(options.Flags[i])
		}).SP()
	}
	if options != nil && !options.Time.IsZero() {
		cmd.enc.String(options.Time.Format(internal.DateTimeLayout)).SP()
	}
	return cmd.enc.Literal(size)
}

// Close ends the command after its last message.
func (cmd *MultiAppendCommand) Close() error {
	if cmd.enc != nil {
		cmd.enc.end()
		cmd.enc = nil
	}
	return nil
}

func (cmd *MultiAppendCommand) Wait() (*MultiAppendData, error) {
	return &cmd.data, cmd.wait()
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }
func (w errWriter) Close() error              { return w.err }

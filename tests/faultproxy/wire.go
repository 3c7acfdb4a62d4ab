package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// The proxy parses just enough of RFC 9051's syntax to find command and
// response boundaries: tags, command and response names, and literals
// announced at the end of a line. Everything else is relayed untouched.

// maxLineLength bounds a single protocol line, which the proxy holds in
// memory whole. Commands stay far below it (Dovecot refuses lines above
// 64 KB), but a SEARCH response for a large mailbox can run to megabytes.
const maxLineLength = 64 << 20

// trimCRLF returns line without its line ending.
func trimCRLF(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// trailingLiteral reports the literal announced at the end of line:
// "{n}" (synchronizing), "{n+}" (non-synchronizing, RFC 7888), each
// optionally preceded by "~" (literal8, RFC 3516). Servers never send "{n+}",
// so on the server side sync is meaningless.
func trailingLiteral(line []byte) (size int64, sync, ok bool) {
	line = trimCRLF(line)
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	digits := line[open+1 : len(line)-1]
	sync = true
	if d, found := bytes.CutSuffix(digits, []byte("+")); found {
		digits, sync = d, false
	}
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false, false
	}
	for _, b := range digits {
		if b < '0' || b > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, false, false
	}
	return n, sync, true
}

// command is the first line of a client command.
type command struct {
	tag string
	// name is upper-case; commands with the UID prefix are named
	// "UID FETCH", "UID STORE" and so on.
	name string
}

// parseCommand reads the tag and name from the first line of a command. It
// returns false for lines that are not commands but data the client sends
// on the server's request: SASL responses after AUTHENTICATE, "DONE" after
// IDLE, "*" cancelling an authentication. None of those contain a space,
// while every command has one between tag and name.
func parseCommand(line []byte) (command, bool) {
	line = trimCRLF(line)
	tag, rest, found := bytes.Cut(line, []byte(" "))
	if !found || len(tag) == 0 {
		return command{}, false
	}
	name, rest, _ := bytes.Cut(rest, []byte(" "))
	cmd := command{tag: string(tag), name: strings.ToUpper(string(name))}
	if cmd.name == "UID" {
		sub, _, _ := bytes.Cut(rest, []byte(" "))
		cmd.name += " " + strings.ToUpper(string(sub))
	}
	return cmd, true
}

// response is the first line of a server response.
type response struct {
	// tag is "*" for untagged responses, "+" for continuation requests.
	tag string
	// typ is the upper-case response name after the tag and an optional
	// message number: "OK", "BYE", "FETCH", "LIST"...
	typ string
}

// hasLiterals reports whether the response may carry literals. Status
// responses and continuation requests end in free text, in which a "{5}"
// is just text.
func (r response) hasLiterals() bool {
	if r.tag != "*" {
		return false
	}
	switch r.typ {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return false
	}
	return true
}

func parseResponse(line []byte) response {
	line = trimCRLF(line)
	if len(line) > 0 && line[0] == '+' {
		return response{tag: "+"}
	}
	tag, rest, _ := bytes.Cut(line, []byte(" "))
	typ, rest, _ := bytes.Cut(rest, []byte(" "))
	if len(typ) > 0 && typ[0] >= '0' && typ[0] <= '9' {
		typ, _, _ = bytes.Cut(rest, []byte(" "))
	}
	return response{tag: string(tag), typ: strings.ToUpper(string(typ))}
}

// errLineTooLong is returned by readLine for lines above maxLineLength.
var errLineTooLong = errors.New("protocol line longer than 64 MB")

// readLine returns the next line including its line ending. At the end of
// the stream it returns what was left with the reader's error.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
		if len(line) > maxLineLength {
			return line, errLineTooLong
		}
	}
}

package faultproxy

import (
	"bufio"
	"strings"
	"testing"
)

func TestTrailingLiteral(t *testing.T) {
	tests := []struct {
		line     string
		wantSize int64
		wantSync bool
		wantOK   bool
	}{
		{"a1 APPEND INBOX {310}\r\n", 310, true, true},
		{"a1 APPEND INBOX (\\Seen) {12+}\r\n", 12, false, true},
		{"a1 APPEND INBOX ~{12+}\r\n", 12, false, true},
		{"* 1 FETCH (UID 4 BODY[] {5242880}\r\n", 5242880, true, true},
		{"* 1 FETCH (BINARY[] ~{7}\r\n", 7, true, true},
		{"a1 LOGIN {0}\n", 0, true, true},
		{"a1 NOOP\r\n", 0, false, false},
		{"a1 SEARCH TEXT \"{5}\"\r\n", 0, false, false},
		{"a1 X {}\r\n", 0, false, false},
		{"a1 X {+}\r\n", 0, false, false},
		{"a1 X {1a}\r\n", 0, false, false},
		{"a1 X {-1}\r\n", 0, false, false},
		{"a1 X {99999999999999999999}\r\n", 0, false, false},
		{"}\r\n", 0, false, false},
	}
	for _, tt := range tests {
		size, sync, ok := trailingLiteral([]byte(tt.line))
		if size != tt.wantSize || sync != tt.wantSync || ok != tt.wantOK {
			t.Errorf("trailingLiteral(%q) = %d, %v, %v; want %d, %v, %v", tt.line, size, sync, ok, tt.wantSize, tt.wantSync, tt.wantOK)
		}
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line   string
		want   command
		wantOK bool
	}{
		{"a1 NOOP\r\n", command{"a1", "NOOP"}, true},
		{"T12 login alice {5}\r\n", command{"T12", "LOGIN"}, true},
		{"a2 uid fetch 1:* (BODY.PEEK[])\r\n", command{"a2", "UID FETCH"}, true},
		{"a3 UID\r\n", command{"a3", "UID "}, true},
		{"a4 SELECT {5+}\r\n", command{"a4", "SELECT"}, true},
		{"DONE\r\n", command{}, false},
		{"AGFsaWNlAHNlY3JldA==\r\n", command{}, false},
		{"*\r\n", command{}, false},
		{"\r\n", command{}, false},
		{" NOOP\r\n", command{}, false},
	}
	for _, tt := range tests {
		got, ok := parseCommand([]byte(tt.line))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseCommand(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		line         string
		want         response
		wantLiterals bool
	}{
		{"* OK [CAPABILITY IMAP4rev1] ready {5}\r\n", response{"*", "OK"}, false},
		{"* 3 FETCH (BODY[] {12}\r\n", response{"*", "FETCH"}, true},
		{"* 3 fetch (FLAGS ())\r\n", response{"*", "FETCH"}, true},
		{"* LIST () \"/\" {5}\r\n", response{"*", "LIST"}, true},
		{"* 4 EXISTS\r\n", response{"*", "EXISTS"}, true},
		{"* BYE bye {3}\r\n", response{"*", "BYE"}, false},
		{"+ Ready for {5}\r\n", response{"+", ""}, false},
		{"+\r\n", response{"+", ""}, false},
		{"a1 OK LOGIN done {5}\r\n", response{"a1", "OK"}, false},
		{"a1 no [INUSE] locked\r\n", response{"a1", "NO"}, false},
	}
	for _, tt := range tests {
		got := parseResponse([]byte(tt.line))
		if got != tt.want || got.hasLiterals() != tt.wantLiterals {
			t.Errorf("parseResponse(%q) = %+v (literals %v); want %+v (literals %v)",
				tt.line, got, got.hasLiterals(), tt.want, tt.wantLiterals)
		}
	}
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 100_000) + "\r\n"
	br := bufio.NewReaderSize(strings.NewReader("a1 NOOP\r\n"+long+"tail"), 16)
	for _, want := range []string{"a1 NOOP\r\n", long} {
		got, err := readLine(br)
		if string(got) != want || err != nil {
			t.Fatalf("readLine() = %.20q (%d bytes), %v; want %.20q (%d bytes)", got, len(got), err, want, len(want))
		}
	}
	if got, err := readLine(br); string(got) != "tail" || err == nil {
		t.Fatalf("readLine() at end = %q, %v; want \"tail\" and an error", got, err)
	}
}

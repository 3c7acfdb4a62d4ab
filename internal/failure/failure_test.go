package failure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func imapErr(typ imap.StatusResponseType, code imap.ResponseCode, text string) error {
	return &imap.Error{Type: typ, Code: code, Text: text}
}

// Exchange Online says how long a throttled session should wait.
func TestSuggestedBackoff(t *testing.T) {
	for text, want := range map[string]time.Duration{
		"Request is throttled. Suggested Backoff Time: 141 milliseconds": 141 * time.Millisecond,
		"Request is throttled. Suggested Backoff Time: 63796 ms":         63796 * time.Millisecond,
		"Server busy. Suggested backoff time: 30 seconds":                30 * time.Second,
		"Suggested Backoff Time: 999999999 seconds":                      time.Hour,
		"Server Unavailable. 15":                                         0,
	} {
		fe, _ := As(Classify(SideSource, "fetch", imapErr(imap.StatusResponseTypeNo, "", text)))
		if fe.Type != TypeServerUnavailable || fe.RetryAfter != want || DetailsOf(fe).RetryAfter != Duration(want) {
			t.Errorf("Classify(%q) = %s with RetryAfter %v, want ServerUnavailable after %v", text, fe.Type, fe.RetryAfter, want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   string
		err  error
		want Type
	}{
		{"dovecot bad password", "login alice", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeAuthenticationFailed, "Authentication failed."), TypeLogonFailed},
		{"courier bad password", "login alice", imapErr(imap.StatusResponseTypeNo, "", "Login failed."), TypeLogonFailed},
		{"dovecot mailbox in use", "select INBOX", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeInUse, "Mailbox is locked, will abort in 30 seconds"), TypeMailboxLocked},
		{"exchange throttled", "fetch", imapErr(imap.StatusResponseTypeNo, "", "Server Unavailable. 15"), TypeServerUnavailable},
		{"unavailable code", "fetch", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "try later"), TypeServerUnavailable},
		{"too many connections", "login alice", imapErr(imap.StatusResponseTypeBye, "", "Too many connections"), TypeServerUnavailable},
		{"cyrus over quota text", "append", imapErr(imap.StatusResponseTypeNo, "", "Over quota"), TypeTargetFull},
		{"folder missing", "select Foo", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeNonExistent, "Mailbox doesn't exist: Foo"), TypeNotFound},
		{"message too big", "append", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeTooBig, "Message too large"), TypeMessageRejected},
		{"dovecot lock timeout", "select INBOX", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeInUse, "Timeout while waiting for lock"), TypeMailboxLocked},
		{"dovecot connection limit", "login alice", imapErr(imap.StatusResponseTypeBye, "", "Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)"), TypeServerUnavailable},
		{"dovecot over quota", "append", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeOverQuota, "Quota exceeded (mailbox for user is full)"), TypeTargetFull},
		{"cyrus bad password", "login alice", imapErr(imap.StatusResponseTypeNo, "", "Login failed: authentication failure"), TypeLogonFailed},
		{"cyrus missing folder", "select Foo", imapErr(imap.StatusResponseTypeNo, "", "Mailbox does not exist"), TypeNotFound},
		{"exchange bad password", "login alice", imapErr(imap.StatusResponseTypeNo, "", "LOGIN failed."), TypeLogonFailed},
		{"exchange throttled", "fetch", imapErr(imap.StatusResponseTypeNo, "", "Request is throttled. Suggested Backoff Time: 141 milliseconds"), TypeServerUnavailable},
		{"gmail bad password", "login alice", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeAuthenticationFailed, "Invalid credentials (Failure)"), TypeLogonFailed},
		{"gmail bandwidth limit", "fetch", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeOverQuota, "Account exceeded command or bandwidth limits. (Failure)"), TypeServerUnavailable},
		{"gmail too many connections", "login alice", imapErr(imap.StatusResponseTypeBye, "", "Too many simultaneous connections. (Failure)"), TypeServerUnavailable},
		{"zimbra bad password", "login alice", imapErr(imap.StatusResponseTypeNo, "", "LOGIN failed"), TypeLogonFailed},
		{"zimbra over quota", "append", imapErr(imap.StatusResponseTypeNo, "", "APPEND failed: mailbox quota exceeded"), TypeTargetFull},
		{"courier over quota", "append", imapErr(imap.StatusResponseTypeNo, "", "[ALERT] You exceeded your mail quota."), TypeTargetFull},
		{"dovecot max mail size", "append INBOX uid 16 (3145728 bytes)", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeLimit, "Mail size is larger than the maximum size allowed by server configuration"), TypeMessageRejected},
		{"limit outside append is a stall", "fetch", imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeLimit, "Too many commands"), TypeServerUnavailable},
		{"refused", "connect", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, TypeConnectFailed},
		{"unknown host", "connect", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "imap.nowhere"}}, TypeConnectFailed},
		{"dropped", "fetch", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), TypeServerUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe, ok := As(Classify(SideSource, tc.op, tc.err))
			if !ok || fe.Type != tc.want {
				t.Fatalf("Classify(%v) = %v, want %s", tc.err, fe, tc.want)
			}
		})
	}
}

func TestClassifyKeepsContextErrors(t *testing.T) {
	if err := Classify(SideTarget, "append", context.Canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Classify(context.Canceled) = %v", err)
	}
	if _, ok := As(Classify(SideTarget, "append", context.Canceled)); ok {
		t.Fatal("a cancelled context was classified as a server failure")
	}
}

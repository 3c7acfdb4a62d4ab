// Package failure classifies what goes wrong during a move — IMAP responses
// and network errors — into a small set of typed failures. Retry behaviour is
// decided from these types in one place (the workflow's policy), never from
// error strings scattered through the code.
package failure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Side says which server a failure came from.
type Side string

const (
	SideSource Side = "source"
	SideTarget Side = "target"
)

// Error is a classified failure. It keeps the server's own words so an admin
// reads what the server said, not our paraphrase.
type Error struct {
	Type   Type
	Side   Side
	Op     string // what we were doing, e.g. "login alice@example.com"
	Server string // the server's response text, when there was one
	Hint   string // what the admin should check
	// Reason is a short CamelCase cause within the type, e.g. "Unavailable",
	// "ConnectionDropped", "TooManyConnections"; it names stalls in the
	// move's StatusDetail.
	Reason string
	// RetryAfter is the wait the server asked for ("Suggested Backoff
	// Time: 141 milliseconds" from Exchange Online), 0 when it named none.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: %s", e.Side, e.Op)
	if e.Err != nil {
		fmt.Fprintf(&sb, ": %v", e.Err)
	}
	if e.Hint != "" {
		fmt.Fprintf(&sb, " (%s)", e.Hint)
	}
	return sb.String()
}

func (e *Error) Unwrap() error { return e.Err }

// As returns the classified failure inside err, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}

// Classify turns err, returned while doing op on side, into a typed *Error.
// An err that is already classified is returned unchanged. Context
// cancellation is returned as is: it is not the server's fault.
func Classify(side Side, op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := As(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	fe := &Error{Side: side, Op: op, Err: err, Type: TypeProtocol}
	var ie *imap.Error
	if errors.As(err, &ie) {
		fe.Server = ie.Text
		classifyIMAP(fe, (*imap.StatusResponse)(ie), op)
		if fe.Type == TypeServerUnavailable {
			fe.RetryAfter = suggestedBackoff(ie.Text)
		}
		if fe.Reason == "" {
			fe.Reason = string(fe.Type)
		}
	} else {
		classifyNetwork(fe, err)
	}
	if fe.Type == TypeProtocol {
		fe.Reason = "ProtocolError"
	}
	if fe.Hint == "" {
		c, _ := ClassOf(fe.Type)
		fe.Hint = c.Hint
	}
	return fe
}

// classifyIMAP classifies by RFC 5530 response code first and falls back on
// the texts of servers that send no code.
func classifyIMAP(fe *Error, resp *imap.StatusResponse, op string) {
	text := strings.ToLower(resp.Text)
	if strings.HasPrefix(op, "append") && resp.Type == imap.StatusResponseTypeNo &&
		(resp.Code == imap.ResponseCodeLimit || resp.Code == imap.ResponseCodeTooBig ||
			strings.Contains(text, "too large") || strings.Contains(text, "too big") || strings.Contains(text, "maximum size")) {
		// A limit met by one message (Dovecot's quota_max_mail_size answers
		// [LIMIT]): that message is a bad item, the server is fine.
		fe.Type, fe.Reason, fe.Hint = TypeMessageRejected, "MessageTooLarge", "the target refuses messages this large"
		return
	}
	switch resp.Code {
	case imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed, imap.ResponseCodeExpired:
		fe.Type = TypeLogonFailed
		return
	case imap.ResponseCodeInUse:
		fe.Type = TypeMailboxLocked
		return
	case imap.ResponseCodeUnavailable, imap.ResponseCodeLimit:
		fe.Type, fe.Reason = TypeServerUnavailable, camel(string(resp.Code))
		return
	case imap.ResponseCodeOverQuota:
		if strings.Contains(text, "bandwidth") || strings.Contains(text, "command") {
			// Gmail says OVERQUOTA for its per-account transfer limits: a
			// throttle that lifts by itself, not a full mailbox.
			fe.Type, fe.Hint, fe.Reason = TypeServerUnavailable, "the server's transfer limits are reached; the move waits and resumes", "Throttled"
			return
		}
		fe.Type = TypeTargetFull
		return
	case imap.ResponseCodeNonExistent, imap.ResponseCodeTryCreate:
		fe.Type = TypeNotFound
		return
	case imap.ResponseCodeTooBig, imap.ResponseCodeParse, imap.ResponseCodeUnknownCTE:
		fe.Type = TypeMessageRejected
		return
	}
	switch {
	case resp.Type == imap.StatusResponseTypeBye && (strings.Contains(text, "too many") || strings.Contains(text, "maximum number of connections")):
		fe.Type, fe.Hint, fe.Reason = TypeServerUnavailable, "the server refuses more connections; lower --connections-per-move or --concurrency", "TooManyConnections"
	case resp.Type == imap.StatusResponseTypeBye:
		fe.Type, fe.Hint, fe.Reason = TypeServerUnavailable, "the server closed the connection; the move waits and resumes", "Bye"
	case strings.HasPrefix(op, "login") && resp.Type == imap.StatusResponseTypeNo:
		// Many servers (Courier, older Exchange) answer a bad password with a
		// bare NO and a text of their own.
		fe.Type = TypeLogonFailed
	case strings.Contains(text, "quota"):
		fe.Type = TypeTargetFull
	case strings.Contains(text, "in use") || strings.Contains(text, "locked") || strings.Contains(text, "lock timeout"):
		fe.Type = TypeMailboxLocked
	case strings.Contains(text, "too many") || strings.Contains(text, "maximum number of connections"):
		fe.Type, fe.Hint, fe.Reason = TypeServerUnavailable, "the server refuses more connections or commands; the move waits and resumes", "TooManyConnections"
	case strings.Contains(text, "unavailable") || strings.Contains(text, "try again later") || strings.Contains(text, "throttl") || strings.Contains(text, "server busy") || strings.Contains(text, "backoff time"):
		fe.Type, fe.Reason = TypeServerUnavailable, "Throttled"
	case strings.Contains(text, "doesn't exist") || strings.Contains(text, "does not exist") || strings.Contains(text, "not found") || strings.Contains(text, "unknown mailbox"):
		fe.Type = TypeNotFound
	}
}

// backoffRE finds the wait a throttled Exchange Online session is told to
// keep: "Request is throttled. Suggested Backoff Time: 141 milliseconds".
var backoffRE = regexp.MustCompile(`(?i)backoff time:\s*(\d{1,9})\s*(ms|milliseconds|s|sec|seconds)\b`)

// suggestedBackoff is the server's suggested wait in text, at most an hour
// (a garbled number must not park a move for days), 0 when there is none.
func suggestedBackoff(text string) time.Duration {
	m := backoffRE.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	d := time.Duration(n) * time.Millisecond
	if !strings.HasPrefix(strings.ToLower(m[2]), "m") {
		d = time.Duration(n) * time.Second
	}
	return min(d, time.Hour)
}

func classifyNetwork(fe *Error, err error) {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var tlsErr *tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &dnsErr):
		fe.Type, fe.Hint, fe.Reason = TypeConnectFailed, "the host name does not resolve; check --source/--target", "UnknownHost"
	case errors.As(err, &certErr), errors.As(err, &tlsErr), isTLSAlert(err):
		fe.Type, fe.Hint, fe.Reason = TypeConnectFailed, tlsHint(fe.Side, err), "TLSFailed"
	case errors.Is(err, syscall.ECONNREFUSED):
		fe.Type, fe.Hint, fe.Reason = TypeConnectFailed, "connection refused; check host and port, and that a firewall's flood protection is not refusing bursts of connections", "ConnectionRefused"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		fe.Type, fe.Reason = TypeConnectFailed, "Unreachable"
	case isTimeout(err):
		fe.Type, fe.Hint, fe.Reason = TypeServerUnavailable, "the server stopped answering; the move waits and resumes", "Timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		fe.Type, fe.Hint, fe.Reason = TypeServerUnavailable, "the server dropped the connection; the move waits and resumes", "ConnectionDropped"
	}
}

// tlsHint says what to pass when a TLS handshake with side fails.
func tlsHint(side Side, err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var header *tls.RecordHeaderError
	switch {
	case errors.As(err, &unknown):
		return fmt.Sprintf("the %s server's certificate is signed by an authority this worker does not trust: pass --%s-ca-file with that authority's certificate, "+
			"or --%s-insecure-skip-verify for a test server", side, side, side)
	case errors.As(err, &host):
		return fmt.Sprintf("the %s server's certificate is for another name (%s): give --%s the name it was issued for", side, host.Host, side)
	case errors.As(err, &header):
		return fmt.Sprintf("the %s server does not speak TLS on this port: check --%s-security (starttls, none) and the port", side, side)
	case strings.Contains(err.Error(), "protocol version"):
		return fmt.Sprintf("the %s server speaks only a TLS version older than 1.2: pass --%s-min-tls 1.0 to accept TLS 1.0 and 1.1 (insecure)", side, side)
	}
	return fmt.Sprintf("TLS with the %s server failed; check --%s-security, --%s-ca-file and --%s-min-tls", side, side, side, side)
}

// isTLSAlert reports an alert the server sent during the handshake.
func isTLSAlert(err error) bool {
	var alert tls.AlertError
	return errors.As(err, &alert) || strings.Contains(err.Error(), "tls: ")
}

// camel turns a response code such as "UNAVAILABLE" into "Unavailable".
func camel(code string) string {
	if code == "" {
		return ""
	}
	return code[:1] + strings.ToLower(code[1:])
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

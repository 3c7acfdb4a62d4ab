package engine

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
)

// reviewServer greets with caps and answers each command line — with the
// literals it carries read into it — as reply says; a reply ending in
// "\x00" closes the connection after it is written, "" answers nothing.
func reviewServer(t *testing.T, caps string, reply func(tag, line string) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	lit := regexp.MustCompile(`\{(\d+)\+?\}$`)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "* OK [CAPABILITY %s] review\r\n", strings.TrimSpace("IMAP4rev1 "+caps))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					for {
						m := lit.FindStringSubmatch(line)
						if m == nil {
							break
						}
						n, _ := strconv.Atoi(m[1])
						if !strings.HasSuffix(line, "+}") {
							fmt.Fprintf(c, "+ go on\r\n")
						}
						buf := make([]byte, n)
						if _, err := io.ReadFull(r, buf); err != nil {
							return
						}
						rest, err := r.ReadString('\n')
						if err != nil {
							return
						}
						line += string(buf) + strings.TrimRight(rest, "\r\n")
					}
					tag, cmd, _ := strings.Cut(line, " ")
					verb, _, _ := strings.Cut(cmd, " ")
					if strings.EqualFold(verb, "LOGOUT") {
						fmt.Fprintf(c, "* BYE\r\n%s OK bye\r\n", tag)
						return
					}
					if strings.EqualFold(verb, "AUTHENTICATE") && !strings.Contains(caps, "SASL-IR") {
						fmt.Fprintf(c, "+ \r\n")
						resp, err := r.ReadString('\n')
						if err != nil {
							return
						}
						line += " " + strings.TrimRight(resp, "\r\n")
					}
					out := reply(tag, line)
					if out == "" {
						continue
					}
					closeAfter := strings.HasSuffix(out, "\x00")
					fmt.Fprintf(c, "%s\r\n", strings.TrimSuffix(out, "\x00"))
					if closeAfter {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// everything is every text a failure shows: its message, its details,
// and each error it wraps, IMAP ones with their status and code.
func everything(err error) string {
	d := failure.DetailsOf(err)
	texts := []string{err.Error(), fmt.Sprintf("%+v", err), d.String(), d.Server, d.Error, d.Op, d.Hint}
	for e := err; e != nil; e = errors.Unwrap(e) {
		texts = append(texts, e.Error())
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		texts = append(texts, ie.Error(), string(ie.Code), ie.Text)
	}
	return strings.Join(texts, "\n")
}

// holdsSecret reports whether text holds pw as it is, in any case, or in
// base64 that decodes to it at any alignment.
func holdsSecret(text, pw string) bool {
	if strings.Contains(strings.ToLower(text), strings.ToLower(pw)) {
		return true
	}
	for _, run := range regexp.MustCompile(`[A-Za-z0-9+/_-]{2,}`).FindAllString(text, -1) {
		run = strings.NewReplacer("-", "+", "_", "/").Replace(run)
		for off := 0; off < 4 && off < len(run); off++ {
			seg := run[off:]
			if len(seg)%4 == 1 {
				seg = seg[:len(seg)-1]
			}
			if dec, err := base64.RawStdEncoding.DecodeString(seg); err == nil && strings.Contains(string(dec), pw) {
				return true
			}
		}
	}
	return false
}

// Servers that echo what they were sent in ways the first tests did not
// try: upper-cased, in an untagged BYE before they hang up, as the
// response code, a short password in base64, the password sent as a
// literal, a master-user LOGIN, a short OAuth2 token. None of it leaves
// the logon, and the failure is still a refused logon.
func TestReviewSecretEchoesNeverLeaveTheLogon(t *testing.T) {
	tok := func(v string) func(context.Context, bool) (string, error) {
		return func(context.Context, bool) (string, error) { return v, nil }
	}
	no := func(tag, line string) string { return tag + " NO [AUTHENTICATIONFAILED] you said: " + line }
	for _, c := range []struct {
		name, caps, secret string
		cred               Credentials
		reply              func(tag, line string) string
		want               failure.Type
	}{
		{"upper-cased", "", "Hunter2-Secret", Credentials{User: "alice", Password: "Hunter2-Secret", Mechanism: AuthLogin},
			func(tag, line string) string {
				return tag + " NO [AUTHENTICATIONFAILED] " + strings.ToUpper("bad command "+line)
			}, failure.TypeLogonFailed},
		{"lower-cased", "AUTH=PLAIN", "Hunter2-Secret", Credentials{User: "alice", Password: "Hunter2-Secret", Mechanism: AuthLogin},
			func(tag, line string) string { return tag + " NO [AUTHENTICATIONFAILED] " + strings.ToLower(line) }, failure.TypeLogonFailed},
		{"short password in PLAIN", "AUTH=PLAIN SASL-IR", "pin7", Credentials{User: "alice", Password: "pin7"}, no, failure.TypeLogonFailed},
		{"short password, no SASL-IR", "AUTH=PLAIN", "abc", Credentials{User: "al", Password: "abc"}, no, failure.TypeLogonFailed},
		{"short admin password", "AUTH=PLAIN SASL-IR", "r00t", Credentials{User: "alice", Admin: "root", Password: "r00t"}, no, failure.TypeLogonFailed},
		{"short xoauth2 token", "AUTH=XOAUTH2 SASL-IR", "t0k", Credentials{User: "alice", Mechanism: AuthXOAuth2, Token: tok("t0k")}, no, failure.TypeLogonFailed},
		{"short oauthbearer token", "AUTH=OAUTHBEARER SASL-IR", "t0k", Credentials{User: "alice", Mechanism: AuthOAuthBearer, Token: tok("t0k")}, no, failure.TypeLogonFailed},
		{"as a literal", "LITERAL+", "pässwörd\"x", Credentials{User: "alice", Password: "pässwörd\"x", Mechanism: AuthLogin}, no, failure.TypeLogonFailed},
		{"master user", "", "Master-Secret", Credentials{User: "alice*root", Password: "Master-Secret", Mechanism: AuthLogin}, no, failure.TypeLogonFailed},
		{"untagged BYE", "", "Hunter2-Secret", Credentials{User: "alice", Password: "Hunter2-Secret", Mechanism: AuthLogin},
			func(tag, line string) string { return "* BYE you said: " + line + "\x00" }, ""},
		{"as the response code", "", "Hunter2-Secret", Credentials{User: "alice", Password: "Hunter2-Secret", Mechanism: AuthLogin},
			func(tag, line string) string {
				return tag + " NO [" + strings.Trim(line[strings.LastIndexByte(line, ' ')+1:], `"`) + "] refused"
			}, failure.TypeLogonFailed},
		{"malformed reply", "", "Hunter2-Secret", Credentials{User: "alice", Password: "Hunter2-Secret", Mechanism: AuthLogin},
			func(tag, line string) string { return tag + " NO [" + line + "\x00" }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := reviewServer(t, c.caps, c.reply)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := Dial(ctx, failure.SideSource, Endpoint{Addr: addr, Security: SecurityNone}, c.cred)
			if err == nil {
				s.Close()
				t.Fatal("Dial() logged on to a server that refuses everyone")
			}
			if all := everything(err); holdsSecret(all, c.secret) {
				t.Fatalf("the failure holds the secret %q:\n%s", c.secret, all)
			}
			if d := failure.DetailsOf(err); c.want != "" && d.Type != c.want {
				t.Fatalf("Dial() = %v (%s); want %s", err, d.Type, c.want)
			}
		})
	}
}

// Taking a secret out never changes what a failure is: a password that
// is a word of the server's refusal, of the operation or of a
// cancellation leaves a LogonFailed a LogonFailed, and a cancelled logon a
// cancellation (context.Canceled), which callers test with errors.Is.
func TestReviewSecretRedactionKeepsTheClass(t *testing.T) {
	for _, pw := range []string{"AUTHENTICATIONFAILED", "Authentication failed", "login", "alice"} {
		addr := reviewServer(t, "", func(tag, line string) string { return tag + " NO [AUTHENTICATIONFAILED] Authentication failed" })
		_, err := Dial(context.Background(), failure.SideSource, Endpoint{Addr: addr, Security: SecurityNone}, Credentials{User: "alice", Password: pw, Mechanism: AuthLogin})
		if d := failure.DetailsOf(err); d.Type != failure.TypeLogonFailed || d.Side != failure.SideSource {
			t.Errorf("password %q: Dial() = %v (%+v); want LogonFailed on the source", pw, err, d)
		}
	}
	for _, pw := range []string{"cancel", "context", "deadline exceeded"} {
		addr := reviewServer(t, "", func(tag, line string) string { return "" }) // never answers
		ctx, cancel := context.WithCancel(context.Background())
		want := context.Canceled
		if strings.HasPrefix(pw, "deadline") {
			ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
			want = context.DeadlineExceeded
		} else {
			time.AfterFunc(300*time.Millisecond, cancel)
		}
		_, err := Dial(ctx, failure.SideSource, Endpoint{Addr: addr, Security: SecurityNone}, Credentials{User: "alice", Password: pw, Mechanism: AuthLogin})
		cancel()
		if !errors.Is(err, want) {
			t.Errorf("password %q: a logon cut by its context = %v (%T); want %v", pw, err, err, want)
		}
	}
}

// Two endpoints Dial reaches differently never share a binding: a value
// sealed for one never opens for the other. Host names are compared as
// DNS compares them, in ASCII: the Kelvin sign (U+212A) is no "k", and an
// IPv6 zone (an interface name) keeps its case.
func TestReviewSecretBindingNeverSharedByTwoDestinations(t *testing.T) {
	bind := func(ep Endpoint) secret.Binding {
		return ep.SecretBinding(failure.SideSource, secret.UsePassword, "alice")
	}
	for _, pair := range [][2]Endpoint{
		{{Addr: "imap.kelvin.example:993"}, {Addr: "imap.\u212Aelvin.example:993"}},
		{{Addr: "[fe80::1%eth0]:993"}, {Addr: "[fe80::1%ETH0]:993"}},
		{{Addr: "imap.example.com:993"}, {Addr: "imap.example.com:143"}},
		{{Addr: "imap.example.com:993"}, {Addr: "imap.example.com.:993"}},
		{{Addr: "[::1]:993"}, {Addr: "[::2]:993"}},
		{{Addr: "[::1]:993"}, {Addr: "::1:993"}},
		{{Addr: "h:993", Security: "NONE"}, {Addr: "h:993", Security: SecurityNone}},
		{{Addr: "h:993", Security: SecurityStartTLS}, {Addr: "h:993", Security: SecurityStartTLS, InsecureSkipVerify: true}},
		{{Addr: "h:993", MinTLS: "1.0"}, {Addr: "h:993", MinTLS: "1.1"}},
		{{Addr: "h:993", CA: "a"}, {Addr: "h:993", CA: "b"}},
		{{Addr: "h:993", CA: "a"}, {Addr: "h:993"}},
	} {
		if a, b := bind(pair[0]), bind(pair[1]); a == b {
			t.Errorf("SecretBinding(%+v) = SecretBinding(%+v) = %+v", pair[0], pair[1], a)
		}
	}
	// What Dial reads alike may bind alike.
	for _, pair := range [][2]Endpoint{
		{{Addr: "IMAP.Example.COM:993"}, {Addr: "imap.example.com:993"}},
		{{Addr: "h:993", Security: "NONE"}, {Addr: "h:993"}},
		{{Addr: "h:993", MinTLS: "bogus"}, {Addr: "h:993", MinTLS: "1.2"}},
		{{Addr: "h:143", Security: SecurityNone, CA: "x", MinTLS: "1.0", InsecureSkipVerify: true}, {Addr: "h:143", Security: SecurityNone}},
	} {
		if a, b := bind(pair[0]), bind(pair[1]); a != b {
			t.Errorf("SecretBinding(%+v) = %+v, SecretBinding(%+v) = %+v; want them alike", pair[0], a, pair[1], b)
		}
	}
}

// The CA an endpoint trusts is bound by at least 128 bits of its hash: a
// PEM of the attacker's own CA whose hash starts like the real one's
// (48 bits take a GPU hours, not years, to match by varying a comment
// line in it) would let an on-path server read the password.
func TestReviewSecretBindingCAHashIsLong(t *testing.T) {
	b := Endpoint{Addr: "h:993", CA: "-----BEGIN CERTIFICATE-----\n"}.SecretBinding(failure.SideSource, secret.UsePassword, "alice")
	_, h, ok := strings.Cut(b.Security, "+ca:")
	if !ok {
		t.Fatalf("SecretBinding() = %+v: no CA in it", b)
	}
	h, _, _ = strings.Cut(h, "+")
	if len(h)*4 < 128 {
		t.Fatalf("SecretBinding() binds the CA by %d bits of its hash (%s); want at least 128", len(h)*4, h)
	}
}

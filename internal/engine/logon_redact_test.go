package engine

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
)

// echoServer refuses every logon, repeating in its refusal what it was
// sent — the raw command line, the SASL response and that response
// decoded — as some servers do. caps is its greeting's capabilities.
func echoServer(t *testing.T, caps string) string {
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
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "* OK [CAPABILITY %s] echo\r\n", strings.TrimSpace("IMAP4rev1 "+caps))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					tag, cmd, _ := strings.Cut(line, " ")
					verb, args, _ := strings.Cut(cmd, " ")
					switch strings.ToUpper(verb) {
					case "LOGOUT":
						fmt.Fprintf(c, "* BYE\r\n%s OK bye\r\n", tag)
						return
					case "AUTHENTICATE":
						mech, resp, ok := strings.Cut(args, " ")
						if !ok {
							fmt.Fprintf(c, "+ \r\n")
							if resp, err = r.ReadString('\n'); err != nil {
								return
							}
							resp = strings.TrimRight(resp, "\r\n")
						}
						dec, _ := base64.StdEncoding.DecodeString(resp)
						fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] %s: bad response %s, that is %q\r\n", tag, mech, resp, dec)
					default:
						fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] you said: %s\r\n", tag, line)
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// A refusal that echoes the password, the admin's password or a token —
// as sent, quoted, or in base64 — leaves the logon as a LogonFailed
// failure without it.
func TestLogonFailureNeverCarriesTheSecret(t *testing.T) {
	const pw, token = "hunter2-Secret", "tok-Secret-9f8e7d"
	for _, c := range []struct {
		name, caps string
		cred       Credentials
	}{
		{"login", "", Credentials{User: "alice", Password: pw, Mechanism: AuthLogin}},
		{"plain with SASL-IR", "AUTH=PLAIN SASL-IR", Credentials{User: "alice", Password: pw}},
		{"plain", "AUTH=PLAIN", Credentials{User: "alice", Password: pw}},
		{"plain, long user", "AUTH=PLAIN", Credentials{User: "alice.smith@example.com", Password: pw, Mechanism: AuthPlain}},
		{"admin", "AUTH=PLAIN SASL-IR", Credentials{User: "alice", Admin: "migrator", Password: pw}},
		{"xoauth2", "AUTH=XOAUTH2 SASL-IR", Credentials{User: "alice", Mechanism: AuthXOAuth2,
			Token: func(context.Context, bool) (string, error) { return token, nil }}},
		{"oauthbearer", "AUTH=OAUTHBEARER", Credentials{User: "alice", Mechanism: AuthOAuthBearer,
			Token: func(context.Context, bool) (string, error) { return token, nil }}},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := echoServer(t, c.caps)
			s, err := Dial(context.Background(), failure.SideSource, Endpoint{Addr: addr, Security: SecurityNone}, c.cred)
			if err == nil {
				s.Close()
				t.Fatal("Dial() logged on to a server that refuses everyone")
			}
			d := failure.DetailsOf(err)
			if d.Type != failure.TypeLogonFailed {
				t.Fatalf("Dial() = %v; want LogonFailed", err)
			}
			texts := []string{err.Error(), fmt.Sprintf("%+v", err), d.String(), d.Server, d.Error, d.Op}
			all := strings.Join(texts, "\n")
			if !strings.Contains(all, secret.Redacted) {
				t.Fatalf("Dial() = %v: nothing redacted; the server echoed the secret", err)
			}
			for _, s := range []string{pw, token, "Secret"} {
				if strings.Contains(all, s) {
					t.Fatalf("the failure holds the secret %q:\n%s", s, all)
				}
			}
			for _, p := range []string{"\x00" + c.cred.User + "\x00" + pw, c.cred.User + "\x00" + c.cred.Admin + "\x00" + pw, pw, token} {
				enc := base64.StdEncoding.EncodeToString([]byte(p))
				if strings.Contains(all, enc[4:len(enc)-4]) {
					t.Fatalf("the failure holds the secret in base64:\n%s", all)
				}
			}
			if !strings.Contains(all, "AUTHENTICATIONFAILED") && !strings.Contains(d.Server, "you said") && !strings.Contains(d.Server, "bad response") {
				t.Fatalf("the server's own words are gone: %s", all)
			}
		})
	}
}

// SecretBinding reads the endpoint as Dial does: what changes where the
// secret goes or who may read it on the way changes the binding; what
// does not, does not.
func TestSecretBinding(t *testing.T) {
	base := Endpoint{Addr: "IMAP.Example.com:993", Security: SecurityTLS}
	b := base.SecretBinding(failure.SideSource, secret.UsePassword, "alice")
	if b.Server != "imap.example.com:993" || b.Security != "tls" || b.Side != "source" || b.User != "alice" || b.Use != secret.UsePassword {
		t.Fatalf("SecretBinding() = %+v", b)
	}
	same := []Endpoint{{Addr: "imap.example.com:993"}, {Addr: "imap.example.com:993", Security: SecurityTLS, MinTLS: "1.2", Compress: true}}
	for _, ep := range same {
		if got := ep.SecretBinding(failure.SideSource, secret.UsePassword, "alice"); got != b {
			t.Errorf("SecretBinding(%+v) = %+v; want %+v", ep, got, b)
		}
	}
	other := []Endpoint{{Addr: "imap.example.com:143", Security: SecurityTLS}, {Addr: "evil.example:993"},
		{Addr: "imap.example.com:993", Security: SecurityNone}, {Addr: "imap.example.com:993", Security: SecurityStartTLS},
		{Addr: "imap.example.com:993", InsecureSkipVerify: true}, {Addr: "imap.example.com:993", CA: "-----BEGIN CERTIFICATE-----"},
		{Addr: "imap.example.com:993", MinTLS: "1.0"}}
	seen := map[secret.Binding]bool{b: true}
	for _, ep := range other {
		got := ep.SecretBinding(failure.SideSource, secret.UsePassword, "alice")
		if seen[got] {
			t.Errorf("SecretBinding(%+v) = %+v, the same as another endpoint's", ep, got)
		}
		seen[got] = true
	}
	if none := (Endpoint{Addr: "h:143", Security: SecurityNone, InsecureSkipVerify: true, CA: "x"}).SecretBinding(failure.SideTarget, secret.UseTokenCommand, ""); none.Security != "none" {
		t.Fatalf("without TLS, TLS settings bind nothing: %+v", none)
	}
}

package activities

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/tests/memserver"
)

// boundAccount is the memserver account on addr with its password sealed
// for it.
func boundAccount(t *testing.T, key *secret.Key, side failure.Side, addr string) Account {
	t.Helper()
	acc := Account{Endpoint: engine.Endpoint{Addr: addr, Security: engine.SecurityNone}, User: memserver.User}
	pw, err := key.SealFor(acc.Endpoint.SecretBinding(side, secret.UsePassword, acc.User), memserver.Password)
	if err != nil {
		t.Fatal(err)
	}
	acc.Password = pw
	return acc
}

// recorder is a listener that keeps every byte sent to it: where a
// password must never arrive.
type recorder struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	got   bytes.Buffer
}

func listenRecorder(t *testing.T) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
			go func() {
				defer c.Close()
				// Greet, so that a client would go on to log on.
				fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n")
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					r.mu.Lock()
					r.got.Write(buf[:n])
					r.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return r
}

func activityEnv(acts *Activities) *testsuite.TestActivityEnvironment {
	var env testsuite.WorkflowTestSuite
	env.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	aenv := env.NewTestActivityEnvironment()
	aenv.RegisterActivity(acts)
	return aenv
}

// connectFailure runs Connect and returns its ApplicationError and details.
func connectFailure(t *testing.T, acts *Activities, in ConnectInput) (*temporal.ApplicationError, failure.Details) {
	t.Helper()
	_, err := activityEnv(acts).ExecuteActivity(acts.Connect, in)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("Connect() = %v; want an ApplicationError", err)
	}
	var d failure.Details
	if err := appErr.Details(&d); err != nil {
		t.Fatal(err)
	}
	return appErr, d
}

// A sealed password copied into a move whose source is another server,
// security none, or whose side or user differs, is refused before anything
// is dialled: the move fails (SecretKeyMismatch, final) with an error that
// names what differs, and the other server never hears of it.
func TestSealedSecretCopiedToAnotherMoveIsRefused(t *testing.T) {
	key, _ := secret.NewKey(bytes.Repeat([]byte{7}, 32))
	real := memserver.Start(t, "Work")
	good := boundAccount(t, key, failure.SideSource, real)
	good.Endpoint.Security = engine.SecurityTLS
	// Never sent anywhere: the test looks for it where it must not be.
	const pw = "hunter2-Xq7"
	good.Password, _ = key.SealFor(good.Endpoint.SecretBinding(failure.SideSource, secret.UsePassword, good.User), pw)
	evil := listenRecorder(t)

	for _, c := range []struct {
		name string
		acc  func() Account
		side failure.Side
		want string
	}{
		{"another server, security none", func() Account {
			a := good
			a.Endpoint = engine.Endpoint{Addr: evil.ln.Addr().String(), Security: engine.SecurityNone}
			return a
		}, failure.SideSource, `server "127.0.0.1:`},
		{"security none", func() Account { a := good; a.Endpoint.Security = engine.SecurityNone; return a }, failure.SideSource, `security "tls", not "none"`},
		{"no certificate check", func() Account { a := good; a.Endpoint.InsecureSkipVerify = true; return a }, failure.SideSource, `not "tls+noverify"`},
		{"another user", func() Account { a := good; a.User = "bob@example.com"; return a }, failure.SideSource, `user "alice@example.com", not "bob@example.com"`},
		{"the other side", func() Account { return good }, failure.SideTarget, `side "source", not "target"`},
		{"as an admin's password", func() Account { a := good; a.Admin, a.AdminPassword = "root", good.Password; return a }, failure.SideSource, `secret "password", not "admin-password"`},
		{"as a token command", func() Account { a := good; a.TokenCommand = good.Password; return a }, failure.SideSource, `secret "password", not "token-command"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := ConnectInput{Mailbox: "alice", Source: boundAccount(t, key, failure.SideSource, real), Target: boundAccount(t, key, failure.SideTarget, real)}
			if c.side == failure.SideSource {
				in.Source = c.acc()
			} else {
				in.Target = c.acc()
			}
			appErr, d := connectFailure(t, &Activities{Key: key}, in)
			if appErr.Type() != string(failure.TypeSecretKeyMismatch) || d.Reason != "SealedForAnotherUse" || d.Side != c.side || !strings.Contains(d.Hint, "batch start") {
				t.Fatalf("Connect() = %v, details %+v; want SecretKeyMismatch/SealedForAnotherUse on the %s", appErr, d, c.side)
			}
			if c, ok := failure.ClassOf(failure.TypeSecretKeyMismatch); !ok || !c.Rule.Final {
				t.Fatal("SecretKeyMismatch is not final")
			}
			for _, text := range []string{appErr.Error(), d.String()} {
				if !strings.Contains(text, c.want) {
					t.Errorf("failure %q; want it to say %s", text, c.want)
				}
				if strings.Contains(text, pw) {
					t.Fatalf("failure %q holds the password", text)
				}
			}
		})
	}
	evil.mu.Lock()
	defer evil.mu.Unlock()
	if evil.conns != 0 || strings.Contains(evil.got.String(), "hunter2") {
		t.Fatalf("the other server got %d connections and %q", evil.conns, evil.got.String())
	}
}

// Values sealed before secrets were bound are refused, saying how to go
// on; a worker that accepts them during an upgrade logs on with them.
func TestUnboundSecretIsRefusedUnlessAccepted(t *testing.T) {
	key, _ := secret.NewKey(bytes.Repeat([]byte{7}, 32))
	addr := memserver.Start(t, "Work")
	old := func(side failure.Side) Account {
		a := boundAccount(t, key, side, addr)
		a.Password, _ = key.SealUnbound(memserver.Password)
		return a
	}
	in := ConnectInput{Mailbox: "alice", Source: old(failure.SideSource), Target: boundAccount(t, key, failure.SideTarget, addr)}
	appErr, d := connectFailure(t, &Activities{Key: key}, in)
	if appErr.Type() != string(failure.TypeSecretKeyMismatch) || d.Reason != "UnboundSecret" || !strings.Contains(d.Hint, secret.EnvAcceptUnbound+"=1") ||
		!strings.Contains(appErr.Error(), "mmsec1") {
		t.Fatalf("Connect() = %v, details %+v; want UnboundSecret naming %s", appErr, d, secret.EnvAcceptUnbound)
	}
	key.AcceptUnbound = true
	acts := &Activities{Key: key}
	if _, err := activityEnv(acts).ExecuteActivity(acts.Connect, in); err != nil {
		t.Fatalf("Connect() accepting unbound secrets = %v", err)
	}
}

// A worker whose key file was rotated opens the moves sealed before and
// after; one that lacks the key says which key it lacks.
func TestRotatedKeysOpenOldAndNewMoves(t *testing.T) {
	oldKey, _ := secret.NewKey(bytes.Repeat([]byte{1}, 32))
	newKey, _ := secret.NewKey(bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{1}, 32))
	addr := memserver.Start(t, "Work")
	worker := &Activities{Key: newKey}
	for _, k := range []*secret.Key{oldKey, newKey} {
		in := ConnectInput{Mailbox: "alice", Source: boundAccount(t, k, failure.SideSource, addr), Target: boundAccount(t, k, failure.SideTarget, addr)}
		if _, err := activityEnv(worker).ExecuteActivity(worker.Connect, in); err != nil {
			t.Fatalf("Connect() sealed with key %s = %v", k.IDs()[0], err)
		}
	}
	in := ConnectInput{Mailbox: "alice", Source: boundAccount(t, newKey, failure.SideSource, addr), Target: boundAccount(t, newKey, failure.SideTarget, addr)}
	appErr, d := connectFailure(t, &Activities{Key: oldKey}, in)
	if appErr.Type() != string(failure.TypeSecretKeyMismatch) || !strings.Contains(appErr.Error(), "key "+newKey.IDs()[0]) {
		t.Fatalf("Connect() with the old key only = %v (%+v); want SecretKeyMismatch naming key %s", appErr, d, newKey.IDs()[0])
	}
}

// echoLogon refuses every logon and repeats the command it was sent,
// password and all, as some servers do.
func echoLogon(t *testing.T) string {
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
				fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] echo\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					tag, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
					fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] refused %s\r\n", tag, cmd)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// A server that echoes the password in its refusal: the move's failure
// (the ApplicationError's message and details, which go to histories,
// logs and reports) holds neither it nor its base64.
func TestEchoedPasswordNeverLeavesTheLogon(t *testing.T) {
	key, _ := secret.NewKey(bytes.Repeat([]byte{7}, 32))
	const pw = "hunter2-Secret"
	acc := Account{Endpoint: engine.Endpoint{Addr: echoLogon(t), Security: engine.SecurityNone}, User: "alice", Auth: engine.AuthPlain}
	acc.Password, _ = key.SealFor(acc.Endpoint.SecretBinding(failure.SideSource, secret.UsePassword, "alice"), pw)
	login := acc
	login.Auth = engine.AuthLogin
	for _, a := range []Account{acc, login} {
		appErr, d := connectFailure(t, &Activities{Key: key}, ConnectInput{Mailbox: "alice", Source: a, Target: boundAccount(t, key, failure.SideTarget, memserver.Start(t))})
		if appErr.Type() != string(failure.TypeLogonFailed) {
			t.Fatalf("Connect() = %v; want LogonFailed", appErr)
		}
		all := appErr.Error() + "\n" + d.String() + "\n" + d.Server + "\n" + d.Error
		enc := []string{"AGFsaWNlAGh1bnRlcjItU2VjcmV0", "aHVudGVyMi1TZWNyZXQ"} // PLAIN's response; the password alone
		if strings.Contains(all, pw) || strings.Contains(all, "Secret") || strings.Contains(all, enc[0][4:24]) || strings.Contains(all, enc[1][:16]) {
			t.Fatalf("the failure holds the password:\n%s", all)
		}
		if !strings.Contains(all, secret.Redacted) {
			t.Fatalf("the failure %q: nothing redacted, though the server echoed the password", all)
		}
	}
}

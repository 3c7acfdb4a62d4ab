package activities

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/tests/memserver"
)

// Values moved between the secrets of an account, or between accounts
// that differ only in how a user or admin is spelled, never open: a
// password as an admin's or the other way round, an admin's password as
// a token command, the source admin's on the target, a master-user
// password for another mailbox, an admin spelled in another case. The
// server they would reach hears nothing.
func TestReviewSecretSwappedValuesAreRefused(t *testing.T) {
	key, _ := secret.NewKey(bytes.Repeat([]byte{8}, 32))
	evil := listenRecorder(t)
	ep := engine.Endpoint{Addr: evil.ln.Addr().String(), Security: engine.SecurityNone}
	seal := func(side failure.Side, use secret.Use, user, pw string) secret.Sealed {
		s, err := key.SealFor(ep.SecretBinding(side, use, user), pw)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const pw = "Swap-Secret-77"
	src := failure.SideSource
	for _, c := range []struct {
		name string
		acc  Account
		side failure.Side
	}{
		{"admin's password as root's own", Account{Endpoint: ep, User: "root", Password: seal(src, secret.UseAdminPassword, "root", pw)}, src},
		{"root's own password as the admin's", Account{Endpoint: ep, User: "alice", Admin: "root", AdminPassword: seal(src, secret.UsePassword, "root", pw)}, src},
		{"admin's password as a token command", Account{Endpoint: ep, User: "alice", TokenCommand: seal(src, secret.UseAdminPassword, "root", "echo "+pw)}, src},
		{"token command as an admin's password", Account{Endpoint: ep, User: "alice", Admin: "root", AdminPassword: seal(src, secret.UseTokenCommand, "", pw)}, src},
		{"source admin's on the target", Account{Endpoint: ep, User: "alice", Admin: "root", AdminPassword: seal(src, secret.UseAdminPassword, "root", pw)}, failure.SideTarget},
		{"master user for another mailbox", Account{Endpoint: ep, User: "bob*root", Password: seal(src, secret.UsePassword, "alice*root", pw)}, src},
		{"admin in another case", Account{Endpoint: ep, User: "alice", Admin: "ROOT", AdminPassword: seal(src, secret.UseAdminPassword, "root", pw)}, src},
		{"admin with a trailing space", Account{Endpoint: ep, User: "alice", Admin: "root ", AdminPassword: seal(src, secret.UseAdminPassword, "root", pw)}, src},
		{"user in another Unicode case", Account{Endpoint: ep, User: "ALİCE", Password: seal(src, secret.UsePassword, "alİce", pw)}, src},
		{"token command, password field", Account{Endpoint: ep, User: "alice", Password: seal(src, secret.UseTokenCommand, "", pw)}, src},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &Activities{Key: key}
			_, err := a.credentials(c.side, c.acc)
			d := failure.DetailsOf(err)
			if d.Type != failure.TypeSecretKeyMismatch || d.Reason != "SealedForAnotherUse" {
				t.Fatalf("credentials() = %v (%+v); want SecretKeyMismatch/SealedForAnotherUse", err, d)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("the refusal holds the secret: %v", err)
			}
		})
	}
	evil.mu.Lock()
	defer evil.mu.Unlock()
	if evil.conns != 0 {
		t.Fatalf("the server got %d connections", evil.conns)
	}
}

// A token command that fails, printing its client secret, and a server
// that echoes the token and the password: neither the command, its
// output, the token nor the password reach the failure, the worker's log
// or Temporal's.
func TestReviewSecretNeverInFailuresOrLogs(t *testing.T) {
	key, _ := secret.NewKey(bytes.Repeat([]byte{8}, 32))
	const (
		clientSecret = "Client-Secret-42"
		tok          = "tk9"
		pw           = "pw7"
	)
	echo := echoLogon(t)
	tgt := boundAccount(t, key, failure.SideTarget, memserver.Start(t))
	failing := Account{Endpoint: engine.Endpoint{Addr: echo, Security: engine.SecurityNone}, User: "alice", Auth: engine.AuthXOAuth2}
	failing.TokenCommand, _ = key.SealFor(failing.Endpoint.SecretBinding(failure.SideSource, secret.UseTokenCommand, ""),
		"echo token="+clientSecret+"; echo "+clientSecret+" >&2; exit 3")
	echoed := failing
	echoed.TokenCommand, _ = key.SealFor(failing.Endpoint.SecretBinding(failure.SideSource, secret.UseTokenCommand, ""), "echo "+tok)
	short := Account{Endpoint: failing.Endpoint, User: "alice", Auth: engine.AuthPlain}
	short.Password, _ = key.SealFor(short.Endpoint.SecretBinding(failure.SideSource, secret.UsePassword, "alice"), pw)

	for _, c := range []struct {
		name    string
		acc     Account
		secrets []string
		says    string
	}{
		{"failing token command", failing, []string{clientSecret}, "token command failed"},
		{"echoed token", echoed, []string{tok}, secret.Redacted},
		{"echoed short password", short, []string{pw}, secret.Redacted},
	} {
		t.Run(c.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			acts := &Activities{Key: key, Logger: zap.New(core)}
			var tlog bytes.Buffer
			var mu sync.Mutex
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &tlog}, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			env := suite.NewTestActivityEnvironment()
			env.RegisterActivity(acts)
			_, err := env.ExecuteActivity(acts.Connect, ConnectInput{Mailbox: "alice", Source: c.acc, Target: tgt})
			if err == nil {
				t.Fatal("Connect() logged on to a server that refuses everyone")
			}
			all := []string{err.Error(), tlog.String()}
			for _, e := range logs.All() {
				all = append(all, e.Message)
				for k, v := range e.ContextMap() {
					all = append(all, k+"="+strings.TrimSpace(strings.ReplaceAll(fmtAny(v), "\n", " ")))
				}
			}
			text := strings.Join(all, "\n")
			for _, s := range c.secrets {
				if strings.Contains(strings.ToLower(text), strings.ToLower(s)) || decodesTo(text, s) {
					t.Fatalf("%q reached the failure or a log:\n%s", s, text)
				}
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Connect() = %v; want it to say %q", err, c.says)
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func fmtAny(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if e, ok := v.(error); ok {
		return e.Error()
	}
	return strings.TrimSpace(strings.Trim(strings.ReplaceAll(slog.AnyValue(v).String(), "\n", " "), " "))
}

// decodesTo reports whether some base64 word of text decodes to bytes
// holding s, at any alignment.
func decodesTo(text, s string) bool {
	for _, w := range regexp.MustCompile(`[A-Za-z0-9+/_-]{2,}`).FindAllString(text, -1) {
		w = strings.NewReplacer("-", "+", "_", "/").Replace(w)
		for off := 0; off < 4 && off < len(w); off++ {
			seg := w[off:]
			if len(seg)%4 == 1 {
				seg = seg[:len(seg)-1]
			}
			if dec, err := base64.RawStdEncoding.DecodeString(seg); err == nil && strings.Contains(string(dec), s) {
				return true
			}
		}
	}
	return false
}

// The token command, the admin's own, runs without the worker's secret
// key in its environment: it needs MAILMOVE_USER, not the key that opens
// every sealed password, which a script's crash report or debug output
// could carry away.
func TestReviewSecretTokenCommandNeverSeesTheKey(t *testing.T) {
	t.Setenv(secret.EnvKey, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)))
	tk, err := runTokenCommand(t.Context(), "alice", `if [ -n "$`+secret.EnvKey+`" ]; then echo leaked; else echo "tok-$MAILMOVE_USER"; fi`)
	if err != nil || tk.value != "tok-alice" {
		t.Fatalf("runTokenCommand() = %q, %v; want tok-alice (the command saw %s)", tk.value, err, secret.EnvKey)
	}
}

package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
)

// credentials opens the account's sealed secrets into what logs on: its
// own password, an admin's (Admin set), or an OAuth2 token command's
// tokens (TokenCommand set). Each opens only for the use it was sealed
// for (engine.Endpoint.SecretBinding): this side, this server and
// security, this user — a sealed value copied into another move's input
// is refused before anything is dialled, with a failure that names what
// differs and ends the move (SecretKeyMismatch: final, never retried).
func (a *Activities) credentials(side failure.Side, acc Account) (engine.Credentials, error) {
	cred := engine.Credentials{User: acc.User, Mechanism: acc.Auth, Admin: acc.Admin}
	open := func(s secret.Sealed, use secret.Use, user string) (string, error) {
		v, err := a.Key.Open(s, acc.Endpoint.SecretBinding(side, use, user))
		if err != nil {
			return "", openFailure(side, use, err)
		}
		return v, nil
	}
	var err error
	switch {
	case acc.TokenCommand != "":
		command, err := open(acc.TokenCommand, secret.UseTokenCommand, "")
		if err != nil {
			return cred, err
		}
		cred.Token = func(ctx context.Context, fresh bool) (string, error) {
			return a.tokens().get(ctx, side, acc.User, command, fresh)
		}
	case acc.Admin != "":
		cred.Password, err = open(acc.AdminPassword, secret.UseAdminPassword, acc.Admin)
	default:
		cred.Password, err = open(acc.Password, secret.UsePassword, acc.User)
	}
	return cred, err
}

// openFailure classifies a sealed secret that does not open. Each cause
// is final (a retry opens nothing more) and keeps the class
// SecretKeyMismatch, with a Reason and a Hint of its own: the admin
// reads what to do, never the secret.
func openFailure(side failure.Side, use secret.Use, err error) error {
	c, _ := failure.ClassOf(failure.TypeSecretKeyMismatch)
	fe := &failure.Error{Type: c.Type, Side: side, Op: "open the sealed " + strings.ReplaceAll(string(use), "-", " "), Err: err, Hint: c.Hint, Reason: string(c.Type)}
	var be *secret.BindingError
	switch {
	case errors.As(err, &be):
		fe.Reason = "SealedForAnotherUse"
		fe.Hint = "this move's input holds a secret sealed for another move; start moves with `mailmove batch start` (or batch add, batch retry --csv), which seal for each move's own servers and users"
	case errors.Is(err, secret.ErrUnbound):
		fe.Reason = "UnboundSecret"
		fe.Hint = "sealed before secrets were bound: start the move again with mailmove batch start, or run the workers with " + secret.EnvAcceptUnbound + "=1 until the moves started before the upgrade end"
	}
	return fe
}

func (a *Activities) tokens() *tokenCache {
	a.tokenOnce.Do(func() { a.tokenCache = &tokenCache{tokens: map[string]token{}} })
	return a.tokenCache
}

// tokenCache keeps the OAuth2 access tokens of this worker, by side and
// user, until shortly before they expire: a move logs on many times.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[string]token
}

type token struct {
	value   string
	expires time.Time // zero: unknown, kept until the server refuses it
}

// get returns a token for user: a kept one unless fresh or about to
// expire, else one the command prints.
func (c *tokenCache) get(ctx context.Context, side failure.Side, user, command string, fresh bool) (string, error) {
	key := string(side) + "\x00" + user + "\x00" + command
	c.mu.Lock()
	t, ok := c.tokens[key]
	c.mu.Unlock()
	if ok && !fresh && (t.expires.IsZero() || time.Until(t.expires) > time.Minute) {
		return t.value, nil
	}
	t, err := runTokenCommand(ctx, user, command)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.tokens[key] = t
	c.mu.Unlock()
	return t.value, nil
}

// runTokenCommand runs an admin's token command with MAILMOVE_USER set to
// the account's user name. It prints the access token, or the JSON of a
// token response (access_token, and expires_in seconds), as Microsoft's and
// Google's token endpoints return it.
func runTokenCommand(ctx context.Context, user, command string) (token, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	// Not the worker's secret key: the command needs the user, not the
	// key that opens every sealed password.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, secret.EnvKey+"=") })
	cmd.Env = append(env, "MAILMOVE_USER="+user)
	var out bytes.Buffer
	cmd.Stdout = &limited{w: &out, n: 64 << 10}
	if err := cmd.Run(); err != nil {
		// Neither its output nor its diagnostics go into a failure: they
		// may hold a token or a client secret, and failures are kept in
		// histories.
		return token{}, fmt.Errorf("the token command failed (%v); run it by hand with MAILMOVE_USER=%s to see why", err, user)
	}
	text := strings.TrimSpace(out.String())
	if strings.HasPrefix(text, "{") {
		var resp struct {
			AccessToken string          `json:"access_token"`
			ExpiresIn   json.RawMessage `json:"expires_in"`
		}
		if err := json.Unmarshal([]byte(text), &resp); err != nil || resp.AccessToken == "" {
			return token{}, errors.New("the token command printed JSON without an access_token")
		}
		t := token{value: resp.AccessToken}
		var secs float64
		if json.Unmarshal(bytes.Trim(resp.ExpiresIn, `"`), &secs) == nil && secs > 0 {
			t.expires = time.Now().Add(time.Duration(secs) * time.Second)
		}
		return t, nil
	}
	if text == "" || strings.ContainsAny(text, " \n") {
		return token{}, errors.New("the token command printed no token (one line, or the JSON of a token response)")
	}
	return token{value: text}, nil
}

// limited keeps at most n bytes of what is written to it.
type limited struct {
	w interface{ Write([]byte) (int, error) }
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if k := min(len(p), l.n); k > 0 {
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

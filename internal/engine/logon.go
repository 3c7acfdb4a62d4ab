package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
)

// Mechanisms a side may be told to log on with (--source-auth,
// --target-auth); empty picks the best the server offers.
const (
	AuthLogin       = "login"
	AuthPlain       = "plain"
	AuthXOAuth2     = "xoauth2"
	AuthOAuthBearer = "oauthbearer"
)

// AuthMechanisms are the values of Credentials.Mechanism.
var AuthMechanisms = []string{AuthLogin, AuthPlain, AuthXOAuth2, AuthOAuthBearer}

// Credentials log on to one mailbox of an Endpoint: with its own password,
// with an admin's (SASL PLAIN with the mailbox as authorization identity:
// Dovecot master users, Exchange, Zimbra and Cyrus proxy logons), or with
// an OAuth2 access token (Microsoft 365, Google).
type Credentials struct {
	User     string
	Password string
	// Mechanism is one of AuthMechanisms; empty: AUTHENTICATE PLAIN where
	// the server offers it, else LOGIN.
	Mechanism string
	// Admin logs on as this admin, with Password the admin's, to User's
	// mailbox.
	Admin string
	// Token returns an OAuth2 access token for User; fresh asks for a new
	// one (the server refused the last). Set, it is what logs on.
	Token func(ctx context.Context, fresh bool) (string, error)
}

// SecretBinding is what a secret of side's account on ep is sealed for
// by the CLI and opened for by the worker (internal/secret): the server
// Dial connects to and how Dial protects the connection, so a sealed
// secret is sent nowhere else and no less protected. user is the account's
// User for its password, its Admin for an admin password, empty for a
// token command (secret.Use).
//
// Security is the mode as Dial reads it (anything but none and starttls is
// TLS), and for TLS the settings that change whom the connection trusts:
// "+noverify" (InsecureSkipVerify), "+ca:" and a hash of CA, "+min" and
// MinTLS when older than 1.2. Compress changes nothing of that and is
// left out.
func (ep Endpoint) SecretBinding(side failure.Side, use secret.Use, user string) secret.Binding {
	// Host names in ASCII lower case, as DNS compares them: strings.ToLower
	// would make the Kelvin sign a "k", another name for the same binding.
	// An IPv6 zone (after %) is an interface name, which keeps its case.
	server := asciiLower(ep.Addr)
	if host, port, err := net.SplitHostPort(ep.Addr); err == nil {
		host, zone, ok := strings.Cut(host, "%")
		if host = asciiLower(host); ok {
			host += "%" + zone
		}
		server = net.JoinHostPort(host, port)
	}
	var sec string
	switch ep.Security {
	case SecurityNone:
		sec = string(SecurityNone)
	case SecurityStartTLS:
		sec = string(SecurityStartTLS)
	default:
		sec = string(SecurityTLS)
	}
	if sec != string(SecurityNone) {
		if ep.InsecureSkipVerify {
			sec += "+noverify"
		}
		if ep.CA != "" {
			// The whole hash: a prefix short enough to match by varying a
			// comment in a PEM of one's own CA would trust that CA.
			h := sha256.Sum256([]byte(ep.CA))
			sec += "+ca:" + hex.EncodeToString(h[:])
		}
		if _, ok := TLSVersions[ep.MinTLS]; ok && ep.MinTLS != "1.2" {
			sec += "+min" + ep.MinTLS
		}
	}
	return secret.Binding{Use: use, Side: string(side), Server: server, Security: sec, User: user}
}

// asciiLower is s with A-Z in lower case, and nothing else changed.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// logon authenticates the session as cred says. A refused OAuth2 token is
// fetched anew and tried once more: tokens expire, also during a long move.
//
// No error that leaves it holds the password or a token: some servers
// echo what they were sent in their refusal, and a failure's text goes to
// histories, logs and reports. Every error is redacted (secret.Redact:
// the secret as it is, quoted, URL-encoded, in any case, cut short, and
// in base64) before it is returned; a cancellation is returned as it is.
func (s *Session) logon(ctx context.Context, cred Credentials) error {
	op := "login " + cred.User
	if cred.Admin != "" {
		op += " as " + cred.Admin
	}
	secrets := []string{cred.Password}
	if token := cred.Token; token != nil {
		cred.Token = func(ctx context.Context, fresh bool) (string, error) {
			t, err := token(ctx, fresh)
			secrets = append(secrets, t)
			return t, err
		}
	}
	err := s.authenticate(ctx, cred, false)
	if cred.Token != nil && isAuthFailure(err) {
		err = s.authenticate(ctx, cred, true)
	}
	if err != nil {
		return redact(failure.Classify(s.Side, op, ctxErr(ctx, err)), secrets)
	}
	return nil
}

// redact takes the secrets out of err's text: of a classified failure, its
// operation, the server's words and the error it wraps. A wrapped IMAP
// error is kept, redacted, for whoever reads its status and code.
func redact(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	if err == context.Canceled || err == context.DeadlineExceeded {
		// ctxErr's, as they are: a fixed text that holds no secret, even
		// where a password is one of its words, and callers test it with
		// errors.Is.
		return err
	}
	fe, ok := failure.As(err)
	if !ok {
		if msg := secret.Redact(err.Error(), secrets...); msg != err.Error() {
			return redactedError{msg: msg, imapErr: redactIMAP(err, secrets)}
		}
		return err
	}
	out := *fe
	out.Op, out.Server, out.Hint = secret.Redact(fe.Op, secrets...), secret.Redact(fe.Server, secrets...), secret.Redact(fe.Hint, secrets...)
	if fe.Err != nil {
		if msg := secret.Redact(fe.Err.Error(), secrets...); msg != fe.Err.Error() {
			out.Err = redactedError{msg: msg, imapErr: redactIMAP(fe.Err, secrets)}
		}
	}
	return &out
}

// redactIMAP is the IMAP error in err with its text redacted, or nil.
func redactIMAP(err error, secrets []string) *imap.Error {
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return nil
	}
	c := *ie
	c.Text = secret.Redact(ie.Text, secrets...)
	c.Code = imap.ResponseCode(secret.Redact(string(ie.Code), secrets...))
	return &c
}

// redactedError is an error whose text had a secret taken out; it wraps
// only the redacted IMAP error, if there was one.
type redactedError struct {
	msg     string
	imapErr *imap.Error
}

func (e redactedError) Error() string { return e.msg }

func (e redactedError) Unwrap() error {
	if e.imapErr == nil {
		return nil
	}
	return e.imapErr
}

func (s *Session) authenticate(ctx context.Context, cred Credentials, fresh bool) error {
	c := s.Client
	mech := strings.ToLower(cred.Mechanism)
	switch {
	case cred.Token != nil:
		token, err := cred.Token(ctx, fresh)
		if err != nil {
			return &failure.Error{Type: failure.TypeLogonFailed, Side: s.Side, Op: "get an OAuth2 token for " + cred.User, Err: err,
				Reason: "TokenCommandFailed", Hint: "the token command runs on the worker, with MAILMOVE_USER set to the user name"}
		}
		if mech == AuthOAuthBearer {
			return c.Authenticate(oauthBearer{sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: cred.User, Token: token})})
		}
		return c.Authenticate(&xoauth2{user: cred.User, token: token})
	case cred.Admin != "":
		return c.Authenticate(sasl.NewPlainClient(cred.User, cred.Admin, cred.Password))
	case mech == AuthPlain || mech == "" && s.offers("PLAIN"):
		return c.Authenticate(sasl.NewPlainClient("", cred.User, cred.Password))
	case mech == "" || mech == AuthLogin:
		return c.Login(cred.User, cred.Password).Wait()
	}
	return fmt.Errorf("mechanism %q needs an OAuth2 token command", cred.Mechanism)
}

// offers reports an AUTHENTICATE mechanism the server announces.
func (s *Session) offers(mech string) bool {
	return s.Caps.Has(imap.Cap("AUTH=" + mech))
}

// isAuthFailure reports the server refusing the credentials.
func isAuthFailure(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo
}

// xoauth2 is Google's and Microsoft's XOAUTH2 SASL mechanism: the initial
// response carries user and token; a refusal comes as a challenge (a JSON
// error) that the client answers with an empty line.
type xoauth2 struct{ user, token string }

func (x *xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

func (x *xoauth2) Next([]byte) ([]byte, error) { return []byte{}, nil }

// oauthBearer answers a refusal (a challenge holding the error) with the
// dummy response RFC 7628 asks for, so the server ends the command with NO
// and the session can try a fresh token.
type oauthBearer struct{ sasl.Client }

func (o oauthBearer) Next([]byte) ([]byte, error) { return []byte{1}, nil }

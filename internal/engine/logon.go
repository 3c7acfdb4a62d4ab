package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"

	"github.com/mailmove/mailmove/internal/failure"
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

// logon authenticates the session as cred says. A refused OAuth2 token is
// fetched anew and tried once more: tokens expire, also during a long move.
func (s *Session) logon(ctx context.Context, cred Credentials) error {
	op := "login " + cred.User
	if cred.Admin != "" {
		op += " as " + cred.Admin
	}
	err := s.authenticate(ctx, cred, false)
	if cred.Token != nil && isAuthFailure(err) {
		err = s.authenticate(ctx, cred, true)
	}
	if err != nil {
		return failure.Classify(s.Side, op, ctxErr(ctx, err))
	}
	return nil
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

package engine

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
)

// saslSession logs on to the test account by an admin's password (SASL
// PLAIN with the mailbox as authorization identity) or an OAuth2 token it
// accepts.
type saslSession struct {
	*memserver.Session
	token string
}

func (s *saslSession) AuthenticateMechanisms() []string {
	return []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}
}

func (s *saslSession) Authenticate(mech string) (sasl.Server, error) {
	login := func(user string) error {
		if user != memserver.User {
			return errors.New("no such user")
		}
		return s.Login(memserver.User, memserver.Password)
	}
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if username == "admin" && password == "admin-pw" && identity != "" {
				return login(identity)
			}
			if identity == "" || identity == username {
				return s.Login(username, password)
			}
			return errors.New("not an admin")
		}), nil
	case "OAUTHBEARER":
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if o.Token != s.token {
				return &sasl.OAuthBearerError{Status: "invalid_token"}
			}
			if err := login(o.Username); err != nil {
				return &sasl.OAuthBearerError{Status: "invalid_request"}
			}
			return nil
		}), nil
	}
	return &xoauth2Server{check: func(user, token string) error {
		if token != s.token {
			return errors.New("invalid token")
		}
		return login(user)
	}}, nil
}

type xoauth2Server struct {
	check  func(user, token string) error
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, errors.New("invalid credentials")
	}
	var user, token string
	for _, kv := range strings.Split(string(resp), "\x01") {
		if v, ok := strings.CutPrefix(kv, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
			token = v
		}
	}
	if err := x.check(user, token); err != nil {
		x.failed = true
		return []byte(`{"status":"401"}`), false, nil
	}
	return nil, true, nil
}

// Logons other than the mailbox's own password: an admin's, and OAuth2
// tokens, one of which expired and is fetched anew once.
func TestLogons(t *testing.T) {
	u := memserver.NewUser(t, "Work")
	addr := memserver.Serve(t, func() imapserver.Session {
		return &saslSession{Session: memserver.Sessions(u)().(*memserver.Session), token: "fresh-token"}
	})
	ep := Endpoint{Addr: addr, Security: SecurityNone}
	for _, tc := range []struct {
		name    string
		cred    Credentials
		fetches int32 // token fetches; 0: no token
		wantErr bool
	}{
		{"admin", Credentials{User: memserver.User, Admin: "admin", Password: "admin-pw"}, 0, false},
		{"admin, wrong password", Credentials{User: memserver.User, Admin: "admin", Password: "nope"}, 0, true},
		{"own password by PLAIN", Credentials{User: memserver.User, Password: memserver.Password, Mechanism: AuthPlain}, 0, false},
		{"own password by LOGIN", Credentials{User: memserver.User, Password: memserver.Password, Mechanism: AuthLogin}, 0, false},
		{"xoauth2, expired token refreshed", Credentials{User: memserver.User}, 2, false},
		{"oauthbearer, expired token refreshed", Credentials{User: memserver.User, Mechanism: AuthOAuthBearer}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fetched atomic.Int32
			if tc.fetches > 0 {
				tc.cred.Token = func(_ context.Context, fresh bool) (string, error) {
					fetched.Add(1)
					if fresh {
						return "fresh-token", nil
					}
					return "expired-token", nil
				}
			}
			s, err := Dial(context.Background(), failure.SideTarget, ep, tc.cred)
			if tc.wantErr {
				if fe, ok := failure.As(err); !ok || fe.Type != failure.TypeLogonFailed {
					t.Fatalf("Dial() = %v, want LogonFailed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial() = %v", err)
			}
			defer s.Close()
			if _, err := s.Client.Select("Work", nil).Wait(); err != nil {
				t.Fatalf("logged on, but Work cannot be selected: %v", err)
			}
			if fetched.Load() != tc.fetches {
				t.Fatalf("%d token fetches, want %d", fetched.Load(), tc.fetches)
			}
		})
	}
}

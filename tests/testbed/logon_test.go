package testbed

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// A master user logs on as alice (SASL PLAIN, alice as authorization
// identity) and sees her mailbox; a wrong master password is refused.
func TestMasterUserLogsOnAsAnyUser(t *testing.T) {
	t.Parallel()
	admin := User{Name: "admin", Password: "secret-admin"}
	s := StartForTest(t, Options{Name: "master", Users: []User{alice}, MasterUsers: []User{admin}})
	if err := Seed(s.Addr(), alice.Name, alice.Password, SampleMailbox(3, 10)); err != nil {
		t.Fatal(err)
	}
	logon := func(password string) error {
		c, err := imapclient.DialInsecure(s.Addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Authenticate(sasl.NewPlainClient(alice.Name, admin.Name, password)); err != nil {
			return err
		}
		st, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if st.NumMessages == 0 {
			t.Fatal("the master user logged on to an empty INBOX, not alice's")
		}
		return nil
	}
	if err := logon(admin.Password); err != nil {
		t.Fatalf("master logon: %v", err)
	}
	if err := logon("wrong"); err == nil {
		t.Fatal("master logon with a wrong password accepted")
	}
}

// OAUTHBEARER tokens are checked by the introspection URL: an active one
// for alice logs on, a revoked one does not.
func TestOAuth2LogonAsksIntrospection(t *testing.T) {
	t.Parallel()
	introspect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		active := r.PostForm.Get("token") == "good-token"
		_ = json.NewEncoder(w).Encode(map[string]any{"active": active, "username": alice.Name})
	}))
	defer introspect.Close()
	s := StartForTest(t, Options{Name: "oauth2", Users: []User{alice}, OAuth2IntrospectionURL: introspect.URL})
	logon := func(token string) error {
		c, err := imapclient.DialInsecure(s.Addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Authenticate(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: alice.Name, Token: token}))
	}
	if err := logon("good-token"); err != nil {
		t.Fatalf("logon with an active token: %v\n%s", err, s.LogTail())
	}
	// go-sasl's client gives up on the server's error challenge itself.
	if err := logon("revoked-token"); err == nil || !strings.Contains(err.Error(), "invalid_token") {
		t.Fatalf("logon with a revoked token: %v, want invalid_token", err)
	}
}

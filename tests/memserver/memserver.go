// Package memserver serves go-imap's in-memory IMAP server on a loopback
// port for fast tests of the engine and the activities (real Dovecot is
// tests/testbed).
package memserver

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// User and Password log on to the servers this package starts.
const User, Password = "alice@example.com", "secret"

// NewUser returns an in-memory account of User with INBOX and folders.
func NewUser(t testing.TB, folders ...string) *imapmemserver.User {
	t.Helper()
	u := imapmemserver.NewUser(User, Password)
	for _, f := range append([]string{"INBOX"}, folders...) {
		if err := u.Create(f, nil); err != nil {
			t.Fatalf("Create(%q) = %v", f, err)
		}
	}
	return u
}

// Start serves a new account with folders and returns its address.
func Start(t testing.TB, folders ...string) string {
	return Serve(t, Sessions(NewUser(t, folders...)))
}

// Sessions makes the sessions of a server holding the account u.
func Sessions(u *imapmemserver.User) func() imapserver.Session {
	return func() imapserver.Session { return &Session{user: u} }
}

// Session is a session of the account of a User, stricter than go-imap's
// own in one way real servers are: an APPEND whose literal ends early (the
// connection dropped) stores nothing, where imapmemserver would store the
// part it got.
type Session struct {
	*imapmemserver.UserSession
	user *imapmemserver.User
	// Rewrite, when set, changes each appended message before it is
	// stored, as servers that rewrite messages do.
	Rewrite func([]byte) []byte
}

func (s *Session) Login(username, password string) error {
	if err := s.user.Login(username, password); err != nil {
		return err
	}
	s.UserSession = imapmemserver.NewUserSession(s.user)
	return nil
}

func (s *Session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	buf, err := io.ReadAll(r)
	if err == nil && int64(len(buf)) != r.Size() {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	if s.Rewrite != nil {
		buf = s.Rewrite(buf)
	}
	return s.UserSession.Append(mailbox, literal{bytes.NewReader(buf)}, options)
}

// Serve serves the sessions newSession makes, IMAP4rev1 and IMAP4rev2
// without extensions, until the test ends, and returns the address.
func Serve(t testing.TB, newSession func() imapserver.Session) string {
	t.Helper()
	return ServeCaps(t, newSession, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}})
}

// ServeCaps is Serve announcing caps.
func ServeCaps(t testing.TB, newSession func() imapserver.Session, caps imap.CapSet) string {
	t.Helper()
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return newSession(), nil, nil
		},
		// A client cutting its connection is no news in these tests.
		Logger:       log.New(io.Discard, "", 0),
		InsecureAuth: true,
		Caps:         caps,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Message is the i-th test message: distinct Message-ID and size, some
// above 4 KB.
func Message(i int) []byte {
	body := strings.Repeat(fmt.Sprintf("line %d of a message body\r\n", i), 1+(i%7)*60)
	return []byte(fmt.Sprintf("From: a@example.com\r\nTo: b@example.com\r\nSubject: test %d\r\nMessage-ID: <%d@example.com>\r\n\r\n%s", i, i, body))
}

// Fill appends messages from to from+n-1 to a folder of u.
func Fill(t testing.TB, u *imapmemserver.User, folder string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		raw := Message(i)
		opts := &imap.AppendOptions{Time: time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC)}
		if _, err := u.Append(folder, literal{bytes.NewReader(raw)}, opts); err != nil {
			t.Fatalf("Append(%s, %d) = %v", folder, i, err)
		}
	}
}

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// GmailMessage is a message of a Gmail imitation (Gmail): its labels are
// "\\Inbox", "\\Sent", "\\Important", "\\Starred" or labels of the user's.
type GmailMessage struct {
	Raw    []byte
	Date   time.Time
	Labels []string
}

// Gmail serves an imitation of a Gmail account as Gmail shows it over
// IMAP (X-GM-EXT-1): every label a folder, each message in the folder of
// each of its labels and in [Gmail]/All Mail, starred ones also in
// [Gmail]/Starred (\Flagged) and important ones in [Gmail]/Important;
// FETCH X-GM-LABELS and X-GM-MSGID answer as Gmail does (go-imap patch 8).
func Gmail(t testing.TB, msgs []GmailMessage) string {
	t.Helper()
	u := imapmemserver.NewUser(User, Password)
	folders := map[string][]imap.MailboxAttr{
		"INBOX": nil, "[Gmail]/All Mail": {imap.MailboxAttrAll}, "[Gmail]/Important": {"\\Important"},
		"[Gmail]/Starred": {imap.MailboxAttrFlagged}, "[Gmail]/Sent Mail": {imap.MailboxAttrSent}, "[Gmail]/Drafts": {imap.MailboxAttrDrafts},
	}
	system := map[string]string{"\\Inbox": "INBOX", "\\Important": "[Gmail]/Important", "\\Starred": "[Gmail]/Starred", "\\Sent": "[Gmail]/Sent Mail", "\\Draft": "[Gmail]/Drafts"}
	for _, m := range msgs {
		for _, l := range m.Labels {
			if !strings.HasPrefix(l, "\\") {
				folders[l] = nil
			}
		}
	}
	for name, use := range folders {
		if err := u.Create(name, &imap.CreateOptions{SpecialUse: use}); err != nil {
			t.Fatalf("Create(%q) = %v", name, err)
		}
	}
	for _, m := range msgs {
		flags := []imap.Flag{imap.FlagSeen}
		in := []string{"[Gmail]/All Mail"}
		for _, l := range m.Labels {
			if folder, ok := system[l]; ok {
				flags = append(flags, imap.Flag(imapmemserver.GmailSystemPrefix+strings.TrimPrefix(l, "\\")))
				in = append(in, folder)
			} else {
				flags = append(flags, imap.Flag(imapmemserver.GmailLabelPrefix+l))
				in = append(in, l)
			}
			if l == "\\Starred" {
				flags = append(flags, imap.FlagFlagged)
			}
		}
		for _, folder := range in {
			if _, err := u.Append(folder, literal{bytes.NewReader(m.Raw)}, &imap.AppendOptions{Flags: flags, Time: m.Date}); err != nil {
				t.Fatalf("Append(%s) = %v", folder, err)
			}
		}
	}
	return ServeCaps(t, Sessions(u), imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapSpecialUse: {}, "X-GM-EXT-1": {}})
}

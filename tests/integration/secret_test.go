package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/workflows"
)

// echoIMAP is a server that greets like IMAP, refuses every command by
// repeating it (password and all, as some servers do) and keeps every
// byte it was sent.
type echoIMAP struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	got   bytes.Buffer
}

func startEchoIMAP(t *testing.T) *echoIMAP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoIMAP{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns++
			e.mu.Unlock()
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] echo\r\n")
				for {
					line, err := r.ReadString('\n')
					e.mu.Lock()
					e.got.WriteString(line)
					e.mu.Unlock()
					if err != nil {
						return
					}
					tag, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
					if strings.EqualFold(cmd, "LOGOUT") {
						fmt.Fprintf(c, "* BYE\r\n%s OK bye\r\n", tag)
						return
					}
					fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] refused: %s\r\n", tag, cmd)
				}
			}()
		}
	}()
	return e
}

func (e *echoIMAP) addr() string { return e.ln.Addr().String() }

// received is what the server was sent, and on how many connections.
func (e *echoIMAP) received() (int, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conns, e.got.String()
}

// secretForms are a password as it is and in the base64 it is sent in.
func secretForms(user, pw string) []string {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
	return []string{pw, plain[4 : len(plain)-4], base64.RawStdEncoding.EncodeToString([]byte(pw))}
}

// moveInput reads the input a move was started with from its history.
func moveInput(t *testing.T, c client.Client, id string) workflows.MailboxMoveInput {
	t.Helper()
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	ev, err := it.Next()
	if err != nil {
		t.Fatal(err)
	}
	var in workflows.MailboxMoveInput
	if err := converter.GetDefaultDataConverter().FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

// historyText is every event of a workflow's runs, in binary protobuf
// (payloads as they are, not base64).
func historyText(t *testing.T, c client.Client, id string) string {
	t.Helper()
	var b strings.Builder
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := proto.Marshal(ev)
		b.Write(raw)
	}
	return b.String()
}

// Someone who may start workflows copies a real move's sealed password
// into moves of their own: one whose source is their own server with
// security none, one for another user of the real server, one that uses
// it as the target's. Each fails at once with an error that says what
// differs (SecretKeyMismatch, SealedForAnotherUse); their server never
// receives the password, and the real move, sealed the same way, copies.
func TestSealedPasswordMovedToAnotherMoveIsRefused(t *testing.T) {
	accs := addAccounts(t, 1500, 20, "sealedalice", "sealedbob")
	alice := accs[0]
	startBatch(t, "default", "sealed-real", writeCSV(t, accs[:1], func(a account) string { return a.password }))
	onlyMove(t, waitTerminal(t, "default", "sealed-real", 3*time.Minute))
	assertIdentical(t, alice)

	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Namespace: "default", Logger: temporaltest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	real := moveInput(t, c, workflows.MoveWorkflowID("sealed-real", alice.user))
	if !strings.HasPrefix(string(real.Source.Password), "mmsec2:") || strings.Contains(string(real.Source.Password), alice.password) {
		t.Fatalf("the real move's source password %q: want it sealed, bound (mmsec2:)", real.Source.Password)
	}

	evil := startEchoIMAP(t)
	attacks := []struct {
		mailbox string
		change  func(*workflows.MailboxMoveInput)
		want    []string
	}{
		{"own-server", func(in *workflows.MailboxMoveInput) {
			in.Source.Endpoint = workflows.Endpoint{Addr: evil.addr(), Security: "none"}
		}, []string{`server "` + env.source.Addr() + `", not "` + evil.addr() + `"`}},
		{"own-server-own-user", func(in *workflows.MailboxMoveInput) {
			in.Source.Endpoint = workflows.Endpoint{Addr: evil.addr(), Security: "none"}
			in.Source.User = "mallory"
		}, []string{`server "` + env.source.Addr() + `"`, `user "` + alice.user + `", not "mallory"`}},
		{"another-user", func(in *workflows.MailboxMoveInput) {
			in.Source.User = accs[1].user
		}, []string{`user "` + alice.user + `", not "` + accs[1].user + `"`}},
		{"other-side", func(in *workflows.MailboxMoveInput) {
			in.Target.Endpoint = workflows.Endpoint{Addr: evil.addr(), Security: "none"}
			in.Target.User, in.Target.Password = alice.user, real.Source.Password
		}, []string{`side "source", not "target"`, `server "` + env.source.Addr() + `", not "` + evil.addr() + `"`}},
	}
	const batch = "sealed-stolen"
	for _, a := range attacks {
		in := real
		in.Batch, in.Mailbox, in.Gated, in.State = batch, a.mailbox, false, nil
		a.change(&in)
		run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: workflows.MoveWorkflowID(batch, a.mailbox), TaskQueue: workflows.TaskQueue}, workflows.MailboxMove, in)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err = run.Get(ctx, nil)
		cancel()
		if err == nil {
			t.Fatalf("%s: the move with a copied sealed password completed", a.mailbox)
		}
		v, qerr := c.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), workflows.QueryStatus)
		if qerr != nil {
			t.Fatal(qerr)
		}
		var st workflows.MoveStatus
		if err := v.Get(&st); err != nil {
			t.Fatal(err)
		}
		if st.Status != workflows.StatusFailed || st.StatusDetail != "Failed_SecretKeyMismatch" || !strings.Contains(st.Reason, "sealed for another use") {
			t.Fatalf("%s: %s/%s %q; want Failed_SecretKeyMismatch saying it was sealed for another use", a.mailbox, st.Status, st.StatusDetail, st.Reason)
		}
		for _, w := range a.want {
			if !strings.Contains(st.Reason, w) {
				t.Errorf("%s: reason %q; want it to say %s", a.mailbox, st.Reason, w)
			}
		}
		if h := historyText(t, c, run.GetID()); strings.Contains(h, alice.password) {
			t.Fatalf("%s: the history holds the password", a.mailbox)
		}
		t.Logf("%s: %s", a.mailbox, st.Reason)
	}
	conns, got := evil.received()
	for _, f := range secretForms(alice.user, alice.password) {
		if strings.Contains(got, f) {
			t.Fatalf("the other server received the password (%q) on %d connections", f, conns)
		}
	}
	if conns != 0 {
		t.Errorf("the other server was connected to %d times; a secret that does not open dials nothing", conns)
	}
}

// A source that echoes the password in its refusal: the move fails as a
// refused logon, and neither the history, the worker's log, batch status
// nor the report holds the password, plain or in base64.
func TestSealedPasswordEchoedByTheServerIsRedacted(t *testing.T) {
	accs := addAccounts(t, 1600, 1, "echoed")
	a := accs[0]
	echo := startEchoIMAP(t)
	startBatchTo(t, "default", "sealed-echo", writeCSV(t, accs, func(a account) string { return a.password }), echo.addr(), env.target.Addr(),
		"--logon-attempts", "1")
	r := waitTerminal(t, "default", "sealed-echo", 2*time.Minute)
	m := r.Moves[0]
	if m.Status != workflows.StatusFailed || m.StatusDetail != "Failed_LogonFailed" || !strings.Contains(m.Reason, "[redacted]") {
		t.Fatalf("%s/%s %q; want Failed_LogonFailed with the echoed password redacted", m.Status, m.StatusDetail, m.Reason)
	}
	if _, got := echo.received(); !strings.Contains(got, secretForms(a.user, a.password)[1]) && !strings.Contains(got, a.password) {
		t.Fatalf("the server never received the password, so nothing was echoed: %q", got)
	}
	assertNoSecrets(t, "default", "sealed-echo", secretForms(a.user, a.password)...)
}

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	"github.com/mailmove/mailmove/tests/faultproxy"
	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

// On-premises admins move every mailbox with one admin logon (Dovecot
// master users here; Exchange, Zimbra and Cyrus proxy logons alike): SASL
// PLAIN with the mailbox as authorization identity, on both sides, and a
// CSV without passwords.
func TestAdminLogonOnBothSidesWithoutUserPasswords(t *testing.T) {
	srcAdmin := testbed.User{Name: "migrator", Password: "src-admin-Secret-1"}
	tgtAdmin := testbed.User{Name: "importer", Password: "tgt-admin-Secret-2"}
	accs := []account{{user: "ann@example.com", password: "ann-own-pw"}, {user: "ben@example.com", password: "ben-own-pw"}}
	var users []testbed.User
	for _, a := range accs {
		users = append(users, testbed.User{Name: a.user, Password: a.password})
	}
	src := testbed.StartForTest(t, testbed.Options{Name: "adminsrc", Users: users, MasterUsers: []testbed.User{srcAdmin}})
	tgt := testbed.StartForTest(t, testbed.Options{Name: "admintgt", Separator: ".", Users: users, MasterUsers: []testbed.User{tgtAdmin}})
	for i, a := range accs {
		if err := testbed.Seed(src.Addr(), a.user, a.password, testbed.SampleMailbox(2100+int64(i), 120)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	srcFile, tgtFile := filepath.Join(dir, "src-admin"), filepath.Join(dir, "tgt-admin")
	for f, pw := range map[string]string{srcFile: srcAdmin.Password, tgtFile: tgtAdmin.Password} {
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	csv := writeCSV(t, accs, func(account) string { return "" })
	startBatchTo(t, "default", "admins", csv, src.Addr(), tgt.Addr(),
		"--source-admin", srcAdmin.Name, "--source-admin-password-file", srcFile,
		"--target-admin", tgtAdmin.Name, "--target-admin-password-file", tgtFile)
	r := waitTerminal(t, "default", "admins", 3*time.Minute)
	for _, m := range r.Moves {
		if m.Status != workflows.StatusCompleted {
			t.Fatalf("%s: %s (%s), want Completed", m.Mailbox, m.Status, m.Reason)
		}
	}
	for _, a := range accs {
		s, g := snapshots(t, src.Addr(), tgt.Addr(), a)
		if diff := testbed.Diff(s, g, nil); len(diff) > 0 {
			t.Fatalf("%s: source and target differ:\n%s", a.user, strings.Join(diff, "\n"))
		}
	}
	assertNoSecrets(t, "default", "admins", srcAdmin.Password, tgtAdmin.Password)
}

// Microsoft 365 and Google take OAuth2 tokens only. The source here is a
// Dovecot whose oauth2 passdb asks a local introspection endpoint; the
// token command counts the tokens it issues. Mid-move every token issued
// so far is revoked and the connections are cut (the sessions a worker
// keeps for the move's next call would otherwise go on without a logon):
// the next logon is refused, the worker runs the command again and the
// move goes on without a failure.
func TestOAuth2TokensRefreshedWhenRefusedMidMove(t *testing.T) {
	a := account{user: "olga@example.com", password: "olga-pw-for-the-snapshot"}
	intro := &introspection{user: a.user}
	ts := httptest.NewServer(intro)
	defer ts.Close()
	src := testbed.StartForTest(t, testbed.Options{Name: "oauthsrc", Users: []testbed.User{{Name: a.user, Password: a.password}},
		OAuth2IntrospectionURL: ts.URL})
	if err := env.target.AddUser(testbed.User{Name: a.user, Password: a.password}); err != nil {
		t.Fatal(err)
	}
	if err := testbed.Seed(src.Addr(), a.user, a.password, testbed.SampleMailbox(2200, 200)); err != nil {
		t.Fatal(err)
	}
	// The command prints a new token each run, as a token endpoint does;
	// its client secret stands for the one a real command would hold.
	dir := t.TempDir()
	script := filepath.Join(dir, "token.sh")
	if err := os.WriteFile(script, []byte(`n=$(cat "$0.count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0.count"
printf '{"access_token":"tok-%s-%d-%s","token_type":"Bearer","expires_in":3599}\n' "$MAILMOVE_USER" $n "$CLIENT_SECRET"
`), 0o755); err != nil {
		t.Fatal(err)
	}
	const clientSecret = "client-Secret-Xq7"
	command := "CLIENT_SECRET=" + clientSecret + " sh " + script
	// The CSV's password is the target's: the source logs on with tokens.
	csv := writeCSV(t, []account{a}, func(a account) string { return a.password })
	proxy := faultproxy.StartForTest(t, src.Addr())
	startBatchTo(t, "default", "oauth", csv, proxy.Addr(), env.target.Addr(),
		"--source-token-command", command, "--source-auth", "xoauth2",
		"--complete", "manual", "--incremental-interval", "1s", "--propagate-deletes")
	waitSynced(t, "oauth", a.user)
	before := intro.refused()
	issued := intro.revokeAll()
	proxy.DropConnections()
	c, err := imapclient.DialInsecure(src.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(a.user, a.password).Wait(); err != nil {
		t.Fatal(err)
	}
	changeSource(t, c, src.Separator(), 2201)
	c.Close()
	waitPasses(t, "oauth", a.user, 2)
	mailmove(t, "default", "batch", "complete", "oauth")
	m := onlyMove(t, waitTerminal(t, "default", "oauth", 3*time.Minute))
	if m.Status != workflows.StatusCompleted {
		t.Fatalf("%s (%s), want Completed", m.Status, m.Reason)
	}
	if intro.refused() == before {
		t.Fatalf("no token refused after revoking tokens 1..%d: the test did not test a refusal", issued)
	}
	if intro.maxAccepted() <= issued {
		t.Fatalf("no token issued after the revocation was accepted (last accepted %d, revoked up to %d)", intro.maxAccepted(), issued)
	}
	s, g := snapshots(t, src.Addr(), env.target.Addr(), a)
	if diff := testbed.Diff(s, g, testbed.OutlookName); len(diff) > 0 {
		t.Fatalf("source and target differ:\n%s", strings.Join(diff, "\n"))
	}
	t.Logf("%d tokens issued, %d refused, %d messages copied", intro.maxAccepted(), intro.refused(), m.Copied)
	assertNoSecrets(t, "default", "oauth", clientSecret, "tok-"+a.user, a.password)
}

// introspection is an RFC 7662 endpoint for the tokens token.sh prints
// ("tok-USER-N-SECRET"): active unless N was revoked.
type introspection struct {
	user string

	mu                  sync.Mutex
	revokedUpTo, maxOK  int
	seen, refusedTokens int
}

func (in *introspection) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	token := r.PostForm.Get("token")
	n := -1
	if rest, ok := strings.CutPrefix(token, "tok-"+in.user+"-"); ok {
		num, _, _ := strings.Cut(rest, "-")
		n, _ = strconv.Atoi(num)
	}
	in.mu.Lock()
	active := n > in.revokedUpTo
	if active {
		in.maxOK = max(in.maxOK, n)
	} else {
		in.refusedTokens++
	}
	in.seen = max(in.seen, n)
	in.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"active": active, "username": in.user})
}

// revokeAll refuses every token issued so far and returns their number.
func (in *introspection) revokeAll() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.revokedUpTo = in.seen
	return in.seen
}

func (in *introspection) refused() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.refusedTokens
}

func (in *introspection) maxAccepted() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.maxOK
}

// assertNoSecrets fails if any secret appears in the batch's workflow
// histories (every run), the worker's log, `batch status --json` or the
// batch report: secrets travel sealed and never come back out.
func assertNoSecrets(t *testing.T, namespace, batch string, secrets ...string) {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Namespace: namespace, Logger: temporaltest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	texts := map[string]string{}
	query := fmt.Sprintf("WorkflowId = %q OR WorkflowId STARTS_WITH %q", workflows.BatchWorkflowID(batch), workflows.MoveWorkflowID(batch, ""))
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, Query: query, NextPageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			var b strings.Builder
			it := c.GetWorkflowHistory(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					t.Fatal(err)
				}
				// Binary, not protojson: that would base64 the payloads.
				raw, _ := proto.Marshal(ev)
				b.Write(raw)
			}
			texts["history of "+e.GetExecution().GetWorkflowId()+" run "+e.GetExecution().GetRunId()] = b.String()
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	if len(texts) < 2 {
		t.Fatalf("found %d histories for batch %s, want the batch's and its moves'", len(texts), batch)
	}
	logText, _ := os.ReadFile(filepath.Join(env.dir, "worker-"+namespace+".log"))
	texts["worker log"] = string(logText)
	texts["batch status --json"] = mailmove(t, namespace, "batch", "status", batch, "--json")
	texts["batch report --format json"] = mailmove(t, namespace, "batch", "report", batch, "--format", "json")
	texts["batch report --format html"] = mailmove(t, namespace, "batch", "report", batch, "--format", "html")
	for where, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the secret %q", where, s)
			}
		}
	}
}

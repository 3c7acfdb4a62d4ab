package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/tlsproxy"
	"github.com/mailmove/mailmove/workflows"
)

// A cluster behind TLS that requires a client certificate, as a
// self-hosted Temporal with mTLS: the dev server behind a TLS proxy. A
// worker set up by a temporal CLI profile (--config-file, --profile) and
// the CLI set up by flags, then by TEMPORAL_* variables, move a batch
// through the proxy only; the CLI without a client certificate is refused
// with what to give.
func TestClusterTLS(t *testing.T) {
	pki := tlsproxy.NewFiles(t)
	proxy := tlsproxy.Start(t, env.temporal.Addr, pki)
	profiles := filepath.Join(t.TempDir(), "temporal.toml")
	if err := os.WriteFile(profiles, []byte(`[profile.mtls]
address = "`+proxy.Addr+`"
namespace = "`+crashNamespace+`"
[profile.mtls.tls]
server_ca_cert_path = "`+pki.CA+`"
client_cert_path = "`+pki.ClientCert+`"
client_key_path = "`+pki.ClientKey+`"
server_name = "`+tlsproxy.ServerName+`"
`), 0o600); err != nil {
		t.Fatal(err)
	}

	// The crash namespace has no worker of its own: this one, reaching
	// Temporal only through the proxy, is the one that moves the batch.
	w, err := startWorker(crashNamespace, "--address", proxy.Addr, "--config-file", profiles, "--profile", "mtls")
	if err != nil {
		t.Fatal(err)
	}
	defer stopWorker(w)

	accs := addAccounts(t, 3100, 40, "tls-ann", "tls-ben")
	csv := writeCSV(t, accs, func(a account) string { return a.password })
	tlsFlags := []string{"--address", proxy.Addr, "--namespace", crashNamespace, "--tls-ca-path", pki.CA,
		"--tls-cert-path", pki.ClientCert, "--tls-key-path", pki.ClientKey, "--tls-server-name", tlsproxy.ServerName}
	if out, err := mailmoveVia(nil, append([]string{"batch", "start", "--name", "tls", "--csv", csv,
		"--source", env.source.Addr(), "--target", env.target.Addr(),
		"--source-security", "none", "--target-security", "none"}, tlsFlags...)...); err != nil {
		t.Fatalf("batch start with TLS flags: %v\n%s", err, out)
	}
	waitTerminal(t, crashNamespace, "tls", 3*time.Minute)

	// The profile from the environment, as the temporal CLI reads it.
	out, err := mailmoveVia([]string{"TEMPORAL_CONFIG_FILE=" + profiles, "TEMPORAL_PROFILE=mtls"}, "batch", "status", "tls", "--json")
	if err != nil {
		t.Fatalf("batch status with TEMPORAL_PROFILE: %v\n%s", err, out)
	}
	r, err := parseReport([]byte(out))
	if err != nil || len(r.Moves) != len(accs) {
		t.Fatalf("batch status --json = %v, %d moves; want %d\n%s", err, len(r.Moves), len(accs), out)
	}
	for _, m := range r.Moves {
		if m.Status != workflows.StatusCompleted {
			t.Errorf("%s: %s (%s), want Completed\nworker log (end):\n%s", m.Mailbox, m.Status, m.Reason, workerLogTail(crashNamespace))
		}
	}
	for _, a := range accs {
		assertIdentical(t, a)
	}

	// The worker and both commands went through the proxy.
	if proxy.Accepted() < 3 {
		t.Errorf("the proxy accepted %d connections; want the worker's and two commands'", proxy.Accepted())
	}

	// Without a client certificate the proxy refuses the handshake: the
	// CLI says so, and what to give (the server's alert, or with TLS 1.3
	// maybe only a cut connection, has one hint or the other).
	refusedBefore := proxy.Refused()
	out, err = mailmoveVia(nil, "batch", "list", "--address", proxy.Addr, "--namespace", crashNamespace,
		"--tls-ca-path", pki.CA, "--tls-server-name", tlsproxy.ServerName)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(out, "give --tls-cert-path and --tls-key-path") {
		t.Fatalf("batch list without a client certificate = %v\n%s\nwant exit 3 and what to give", err, out)
	}
	if proxy.Refused() == refusedBefore {
		t.Errorf("the proxy refused no handshake; the CLI did not reach it")
	}
	t.Logf("refused: %s", strings.TrimSpace(out))
	t.Logf("proxy: %d connections with a client certificate, %d refused", proxy.Accepted(), proxy.Refused())
}

// mailmoveVia runs the CLI with only the connection its args and environ
// give (not the suite's --address), and the suite's secret key.
func mailmoveVia(environ []string, args ...string) (string, error) {
	cmd := exec.Command(env.mailmove, append(args, "--secret-key-file", env.keyFile)...)
	cmd.Env = append(os.Environ(), environ...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

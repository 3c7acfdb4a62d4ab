package worker

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/mailmove/mailmove/tests/tlsproxy"
)

// fakeEnv is an environment for envconfig: only these variables are set.
type fakeEnv map[string]string

func (e fakeEnv) Environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (e fakeEnv) LookupEnv(k string) (string, bool) { v, ok := e[k]; return v, ok }

// parseConnection parses args as the connection flags of a root command,
// with env as the environment and no config file unless one is named.
func parseConnection(t *testing.T, env fakeEnv, args ...string) Connection {
	t.Helper()
	if env == nil {
		env = fakeEnv{}
	}
	if _, ok := env["TEMPORAL_CONFIG_FILE"]; !ok {
		// Not the user's own ~/.config/temporalio/temporal.toml.
		env["TEMPORAL_CONFIG_FILE"] = filepath.Join(t.TempDir(), "none.toml")
	}
	var c Connection
	root := &cobra.Command{Use: "root", RunE: func(*cobra.Command, []string) error { return nil }}
	c.AddFlags(root)
	c.env = env
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return c
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsOf is what a test compares of the resolved TLS settings.
type tlsOf struct {
	on, disabled, clientCert, rootCAs bool
	serverName                        string
}

func tlsSummary(o client.Options) tlsOf {
	t := o.ConnectionOptions.TLS
	s := tlsOf{on: t != nil, disabled: o.ConnectionOptions.TLSDisabled}
	if t != nil {
		s.clientCert, s.rootCAs, s.serverName = len(t.Certificates) > 0, t.RootCAs != nil, t.ServerName
	}
	return s
}

// The temporal CLI's order: profile, then TEMPORAL_* variables, then the
// flags given; a flag left at its default overrides nothing.
func TestConnectionPrecedence(t *testing.T) {
	pki := tlsproxy.NewFiles(t)
	profiles := writeFile(t, "temporal.toml", `
[profile.default]
address = "profile-default:7233"
namespace = "profile-ns"

[profile.prod]
address = "prod.example:7233"
namespace = "prod"
[profile.prod.tls]
server_ca_cert_path = "`+pki.CA+`"
client_cert_path = "`+pki.ClientCert+`"
client_key_path = "`+pki.ClientKey+`"
server_name = "`+tlsproxy.ServerName+`"

[profile.cloud]
address = "ns.acct.tmprl.cloud:7233"
namespace = "ns.acct"
api_key = "from-profile"
`)
	for _, tc := range []struct {
		name     string
		env      fakeEnv
		args     []string
		addr, ns string
		tls      tlsOf
		apiKey   bool
	}{
		{name: "defaults", addr: "127.0.0.1:7233", ns: "default"},
		{name: "flags", args: []string{"--address", "f:1", "--namespace", "fns"}, addr: "f:1", ns: "fns"},
		{name: "env", env: fakeEnv{"TEMPORAL_ADDRESS": "e:1", "TEMPORAL_NAMESPACE": "ens"}, addr: "e:1", ns: "ens"},
		{name: "flag over env", env: fakeEnv{"TEMPORAL_ADDRESS": "e:1", "TEMPORAL_NAMESPACE": "ens"}, args: []string{"--address", "f:1"}, addr: "f:1", ns: "ens"},
		{name: "default profile", env: fakeEnv{"TEMPORAL_CONFIG_FILE": profiles}, addr: "profile-default:7233", ns: "profile-ns"},
		{name: "env over profile", env: fakeEnv{"TEMPORAL_CONFIG_FILE": profiles, "TEMPORAL_ADDRESS": "e:1"}, addr: "e:1", ns: "profile-ns"},
		{name: "flag over profile", args: []string{"--config-file", profiles, "--namespace", "fns"}, addr: "profile-default:7233", ns: "fns"},
		{name: "--profile", args: []string{"--config-file", profiles, "--profile", "prod"}, addr: "prod.example:7233", ns: "prod",
			tls: tlsOf{on: true, clientCert: true, rootCAs: true, serverName: tlsproxy.ServerName}},
		{name: "TEMPORAL_PROFILE", env: fakeEnv{"TEMPORAL_CONFIG_FILE": profiles, "TEMPORAL_PROFILE": "prod"}, addr: "prod.example:7233", ns: "prod",
			tls: tlsOf{on: true, clientCert: true, rootCAs: true, serverName: tlsproxy.ServerName}},
		{name: "--profile over TEMPORAL_PROFILE", env: fakeEnv{"TEMPORAL_CONFIG_FILE": profiles, "TEMPORAL_PROFILE": "prod"}, args: []string{"--profile", "default"},
			addr: "profile-default:7233", ns: "profile-ns"},
		{name: "--config-file over TEMPORAL_CONFIG_FILE", env: fakeEnv{"TEMPORAL_CONFIG_FILE": "/nonexistent.toml"}, args: []string{"--config-file", profiles},
			addr: "profile-default:7233", ns: "profile-ns"},
		{name: "flag over profile's TLS", args: []string{"--config-file", profiles, "--profile", "prod", "--tls-server-name", "other.test"},
			addr: "prod.example:7233", ns: "prod", tls: tlsOf{on: true, clientCert: true, rootCAs: true, serverName: "other.test"}},
		{name: "--tls=false over profile", args: []string{"--config-file", profiles, "--profile", "prod", "--tls=false"},
			addr: "prod.example:7233", ns: "prod", tls: tlsOf{disabled: true}},
		{name: "--tls", args: []string{"--tls"}, addr: "127.0.0.1:7233", ns: "default", tls: tlsOf{on: true}},
		{name: "TLS flags", args: []string{"--tls-ca-path", pki.CA, "--tls-cert-path", pki.ClientCert, "--tls-key-path", pki.ClientKey},
			addr: "127.0.0.1:7233", ns: "default", tls: tlsOf{on: true, clientCert: true, rootCAs: true}},
		{name: "TLS env", env: fakeEnv{"TEMPORAL_TLS_SERVER_CA_CERT_PATH": pki.CA, "TEMPORAL_TLS_SERVER_NAME": "env.test"},
			addr: "127.0.0.1:7233", ns: "default", tls: tlsOf{on: true, rootCAs: true, serverName: "env.test"}},
		{name: "TEMPORAL_TLS=false", env: fakeEnv{"TEMPORAL_TLS": "false"}, addr: "127.0.0.1:7233", ns: "default", tls: tlsOf{disabled: true}},
		{name: "--tls over TEMPORAL_TLS=false", env: fakeEnv{"TEMPORAL_TLS": "false"}, args: []string{"--tls"}, addr: "127.0.0.1:7233", ns: "default", tls: tlsOf{on: true}},
		// An API key alone means TLS with the system's roots.
		{name: "API key profile", args: []string{"--config-file", profiles, "--profile", "cloud"}, addr: "ns.acct.tmprl.cloud:7233", ns: "ns.acct", apiKey: true, tls: tlsOf{on: true}},
		{name: "API key env", env: fakeEnv{"TEMPORAL_API_KEY": "k"}, addr: "127.0.0.1:7233", ns: "default", apiKey: true, tls: tlsOf{on: true}},
		{name: "API key flag", args: []string{"--api-key", "k"}, addr: "127.0.0.1:7233", ns: "default", apiKey: true, tls: tlsOf{on: true}},
		{name: "API key without TLS", args: []string{"--api-key", "k", "--tls=false"}, addr: "127.0.0.1:7233", ns: "default", apiKey: true, tls: tlsOf{disabled: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseConnection(t, tc.env, tc.args...)
			o, err := c.ClientOptions()
			if err != nil {
				t.Fatalf("ClientOptions() = %v", err)
			}
			if o.HostPort != tc.addr || o.Namespace != tc.ns {
				t.Errorf("ClientOptions() = %s namespace %s, want %s namespace %s", o.HostPort, o.Namespace, tc.addr, tc.ns)
			}
			if got := tlsSummary(o); got != tc.tls {
				t.Errorf("TLS = %+v, want %+v", got, tc.tls)
			}
			if got := o.Credentials != nil; got != tc.apiKey {
				t.Errorf("API key set = %v, want %v", got, tc.apiKey)
			}
		})
	}
}

// A flag given after a subcommand, as in `mailmove batch list --address
// X`, is given too: it overrides the environment.
func TestConnectionFlagsOfSubcommands(t *testing.T) {
	var c Connection
	root := &cobra.Command{Use: "root"}
	root.AddCommand(&cobra.Command{Use: "sub", RunE: func(*cobra.Command, []string) error { return nil }})
	c.AddFlags(root)
	c.env = fakeEnv{"TEMPORAL_CONFIG_FILE": filepath.Join(t.TempDir(), "none.toml"), "TEMPORAL_ADDRESS": "e:1", "TEMPORAL_TLS": "true"}
	root.SetArgs([]string{"sub", "--address", "f:1", "--tls=false"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	o, err := c.ClientOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.HostPort != "f:1" || !o.ConnectionOptions.TLSDisabled {
		t.Fatalf("ClientOptions() = %s, TLS disabled %v; want f:1 without TLS, from the flags", o.HostPort, o.ConnectionOptions.TLSDisabled)
	}
}

// A Connection built in code is what it says: the environment and the
// user's profile do not change it.
func TestConnectionInCodeIgnoresEnvironment(t *testing.T) {
	c := Connection{Address: "dev:7233", Namespace: "default", env: fakeEnv{"TEMPORAL_ADDRESS": "e:1", "TEMPORAL_API_KEY": "k", "TEMPORAL_TLS": "true"}}
	o, err := c.ClientOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.HostPort != "dev:7233" || o.Credentials != nil || o.ConnectionOptions.TLS != nil {
		t.Fatalf("ClientOptions() = %s, credentials %v, TLS %v; want dev:7233 as built", o.HostPort, o.Credentials, o.ConnectionOptions.TLS)
	}
}

// A TLS file that cannot be read names where it was set and its path.
func TestConnectionMissingFileNamesItsOrigin(t *testing.T) {
	pki := tlsproxy.NewFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	profiles := writeFile(t, "temporal.toml", "[profile.prod.tls]\nclient_cert_path = \""+missing+"\"\nclient_key_path = \""+pki.ClientKey+"\"\n")
	for _, tc := range []struct {
		name string
		env  fakeEnv
		args []string
		want string
	}{
		{"CA flag", nil, []string{"--tls-ca-path", missing}, "--tls-ca-path " + missing + ": no such file"},
		{"cert flag", nil, []string{"--tls-cert-path", missing, "--tls-key-path", pki.ClientKey}, "--tls-cert-path " + missing + ": no such file"},
		{"key flag", nil, []string{"--tls-cert-path", pki.ClientCert, "--tls-key-path", missing}, "--tls-key-path " + missing + ": no such file"},
		{"CA env", fakeEnv{"TEMPORAL_TLS_SERVER_CA_CERT_PATH": missing}, nil, "TEMPORAL_TLS_SERVER_CA_CERT_PATH " + missing + ": no such file"},
		{"cert profile", nil, []string{"--config-file", profiles, "--profile", "prod"}, "tls.client_cert_path of profile prod in " + profiles + " " + missing + ": no such file"},
		{"cert without key", nil, []string{"--tls-cert-path", pki.ClientCert}, "--tls-cert-path " + pki.ClientCert + ": the client certificate needs its key: give --tls-key-path"},
		{"key without cert", nil, []string{"--tls-key-path", pki.ClientKey}, "--tls-key-path " + pki.ClientKey + ": the key needs its client certificate: give --tls-cert-path"},
		{"no such profile", nil, []string{"--config-file", profiles, "--profile", "staging"}, "profile staging of " + profiles},
		{"not PEM", nil, []string{"--tls-ca-path", profiles}, "failed adding server CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseConnection(t, tc.env, tc.args...)
			_, err := c.ClientOptions()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ClientOptions() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// Dial through a proxy that requires a client certificate: each wrong
// setting fails with what to check.
func TestDialHints(t *testing.T) {
	pki := tlsproxy.NewFiles(t)
	// Nothing listens on closed, nor behind the proxy: every case fails,
	// at the handshake or after it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	proxy := tlsproxy.Start(t, closed, pki)
	// A plain server that answers anything with a line of text.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("* OK not TLS\r\n"))
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no TLS, nothing listening", []string{"--address", closed}, "is the server running? (`make dev-server` starts a local one)"},
		{"no client certificate", []string{"--tls-ca-path", pki.CA, "--tls-server-name", tlsproxy.ServerName}, "give --tls-cert-path and --tls-key-path"},
		{"stranger's certificate", []string{"--tls-ca-path", pki.CA, "--tls-server-name", tlsproxy.ServerName, "--tls-cert-path", pki.StrangerCert, "--tls-key-path", pki.StrangerKey}, "check that --tls-cert-path is signed by an authority the server trusts"},
		{"unknown authority", []string{"--tls-server-name", tlsproxy.ServerName, "--tls-cert-path", pki.ClientCert, "--tls-key-path", pki.ClientKey}, "give --tls-ca-path"},
		{"TLS to a plain server", []string{"--address", plain.Addr().String(), "--tls"}, "the server does not speak TLS on this port"},
		{"name not in the certificate", []string{"--tls-ca-path", pki.CA, "--tls-cert-path", pki.ClientCert, "--tls-key-path", pki.ClientKey}, "give --tls-server-name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--address", proxy.Addr}, tc.args...) // a later --address wins
			c := parseConnection(t, nil, args...)
			cl, err := c.Dial(NewLogger(zap.NewNop()))
			if err == nil {
				cl.Close()
				t.Fatal("Dial() succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial() = %v\nwant the hint %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

// Each side's TLS flags reach its endpoint only; a wrong value names its
// flag.
func TestSideFlags(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.der")
	os.WriteFile(notPEM, []byte{0x30, 0x82}, 0o600)

	opts := &batchStartOptions{}
	f, _ := testFactory(t, nil)
	cmd := newCmdBatchStart(f, func(o *batchStartOptions) error { opts = o; return nil })
	if err := execute(cmd, "--name", "w", "--csv", "x.csv", "--source", "old:993", "--target", "new:143",
		"--source-ca-file", ca, "--source-min-tls", "1.0", "--target-security", "starttls", "--target-insecure-skip-verify", "--target-compress"); err != nil {
		t.Fatal(err)
	}
	src, tgt, err := endpoints(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src.CA, "BEGIN CERTIFICATE") || src.MinTLS != "1.0" || src.InsecureSkipVerify || src.Compress ||
		tgt.CA != "" || tgt.MinTLS != "" || !tgt.InsecureSkipVerify || tgt.Security != "starttls" || !tgt.Compress {
		t.Fatalf("endpoints = %+v, %+v", src, tgt)
	}
	for _, tc := range []struct {
		side *sideOptions
		want string
	}{
		{&sideOptions{name: "source", Security: "tls", MinTLS: "1.4"}, "--source-min-tls"},
		{&sideOptions{name: "target", Security: "tls", MinTLS: "1.2", CAFile: notPEM}, "--target-ca-file"},
		{&sideOptions{name: "target", Security: "tls", MinTLS: "1.2", CAFile: filepath.Join(dir, "none")}, "--target-ca-file"},
		{&sideOptions{name: "source", Security: "ssl", MinTLS: "1.2"}, "--source-security"},
	} {
		if _, err := tc.side.endpoint(false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("endpoint(%+v) = %v, want an error naming %s", tc.side, err, tc.want)
		}
	}
}

// The logon flags reach the side's account sealed; a missing admin
// password, or mechanisms that cannot go together, name their flags.
func TestSideLogonFlags(t *testing.T) {
	key := testKey(t)
	t.Setenv("MAILMOVE_TARGET_ADMIN_PASSWORD", "admin-secret")
	var acc workflows.Account
	target := &sideOptions{name: "target", Admin: "admin"}
	if err := target.logon(key, &acc); err != nil {
		t.Fatal(err)
	}
	if pw, _ := key.Open(acc.AdminPassword, acc.Endpoint.SecretBinding(failure.SideTarget, secret.UseAdminPassword, "admin")); acc.Admin != "admin" || pw != "admin-secret" || strings.Contains(string(acc.AdminPassword), "admin-secret") {
		t.Fatalf("account %+v: want the admin and its sealed password", acc)
	}
	source := &sideOptions{name: "source", TokenCommand: "get-token --secret s3cr3t"}
	acc = workflows.Account{}
	if err := source.logon(key, &acc); err != nil || strings.Contains(string(acc.TokenCommand), "s3cr3t") || acc.TokenCommand == "" {
		t.Fatalf("token command: %v, %+v; want it sealed", err, acc)
	}
	if source.needsPassword() || target.needsPassword() {
		t.Fatal("a side logging on as an admin or with tokens needs a CSV password")
	}
	for _, tc := range []struct {
		side *sideOptions
		want string
	}{
		{&sideOptions{name: "source", Admin: "admin"}, "--source-admin-password-file"},
		{&sideOptions{name: "source", Auth: "xoauth2"}, "--source-token-command"},
		{&sideOptions{name: "target", Auth: "kerberos"}, "--target-auth"},
		{&sideOptions{name: "target", Admin: "a", TokenCommand: "t"}, "choose one"},
	} {
		if err := tc.side.logon(key, &workflows.Account{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("logon(%+v) = %v, want an error naming %s", tc.side, err, tc.want)
		}
	}
}

func testKey(t *testing.T) *secret.Key {
	t.Helper()
	key, err := secret.Load(filepath.Join(t.TempDir(), "key"), true)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		"--source-ca-file", ca, "--source-min-tls", "1.0", "--target-security", "starttls", "--target-insecure-skip-verify"); err != nil {
		t.Fatal(err)
	}
	src, tgt, err := endpoints(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src.CA, "BEGIN CERTIFICATE") || src.MinTLS != "1.0" || src.InsecureSkipVerify ||
		tgt.CA != "" || tgt.MinTLS != "" || !tgt.InsecureSkipVerify || tgt.Security != "starttls" {
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

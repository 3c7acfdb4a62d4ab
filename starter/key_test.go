package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/internal/secret"
)

func TestKeyInitArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *keyInitOptions
	if err := execute(newCmdKeyInit(f, func(o *keyInitOptions) error { got = o; return nil })); err != nil || got == nil {
		t.Fatalf("key init: %v", err)
	}
}

// key init makes the key once; again, it leaves it alone.
func TestKeyInitCreatesOnce(t *testing.T) {
	t.Setenv(secret.EnvKey, "")
	file := filepath.Join(t.TempDir(), "mailmove", "secret.key")
	f, out := testFactory(t, nil)
	opts := &keyInitOptions{Out: f.Out, File: func() string { return file }}
	if err := keyInitRun(opts); err != nil || !strings.Contains(out.String(), "Created the secret key "+file) {
		t.Fatalf("first key init: %v, %q", err, out)
	}
	k1, err := secret.Load(file, false)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := k1.Seal("pw")
	out.Reset()
	if err := keyInitRun(opts); err != nil || !strings.Contains(out.String(), "exists; nothing changed") {
		t.Fatalf("second key init: %v, %q", err, out)
	}
	k2, _ := secret.Load(file, false)
	if got, err := k2.Open(sealed); err != nil || got != "pw" {
		t.Fatalf("the key changed: %v", err)
	}
}

package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

func TestKeyInitArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *keyInitOptions
	if err := execute(newCmdKeyInit(f, func(o *keyInitOptions) error { got = o; return nil })); err != nil || got == nil {
		t.Fatalf("key init: %v", err)
	}
}

var keyTestBinding = workflows.Endpoint{Addr: "imap.example:993"}.SecretBinding(failure.SideSource, secret.UsePassword, "alice")

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
	sealed, _ := k1.SealFor(keyTestBinding, "pw")
	out.Reset()
	if err := keyInitRun(opts); err != nil || !strings.Contains(out.String(), "exists; nothing changed") {
		t.Fatalf("second key init: %v, %q", err, out)
	}
	k2, _ := secret.Load(file, false)
	if got, err := k2.Open(sealed, keyTestBinding); err != nil || got != "pw" {
		t.Fatalf("the key changed: %v", err)
	}
}

func TestKeyRotateArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *keyRotateOptions
	if err := execute(newCmdKeyRotate(f, func(o *keyRotateOptions) error { got = o; return nil }), "--drop-old"); err != nil || got == nil || !got.DropOld {
		t.Fatalf("key rotate --drop-old: %v, %+v", err, got)
	}
	if err := execute(newCmdKeyRotate(f, func(*keyRotateOptions) error { return nil }), "extra"); err == nil {
		t.Fatal("key rotate extra: accepted an argument")
	}
}

// key rotate: new values are sealed with the new key, old ones still
// open, and it says what to do next; --drop-old then removes the old key.
func TestKeyRotateKeepsOldMovesOpening(t *testing.T) {
	t.Setenv(secret.EnvKey, "")
	file := filepath.Join(t.TempDir(), "secret.key")
	f, out := testFactory(t, nil)
	if err := keyInitRun(&keyInitOptions{Out: f.Out, File: func() string { return file }}); err != nil {
		t.Fatal(err)
	}
	k1, _ := secret.Load(file, false)
	old, _ := k1.SealFor(keyTestBinding, "old-pw")
	out.Reset()
	opts := &keyRotateOptions{Out: f.Out, File: func() string { return file }}
	if err := keyRotateRun(opts); err != nil {
		t.Fatal(err)
	}
	k2, _ := secret.Load(file, false)
	ids := k2.IDs()
	if len(ids) != 2 || ids[1] != k1.IDs()[0] {
		t.Fatalf("keys after rotate %v; want a new one, then %s", ids, k1.IDs()[0])
	}
	for _, want := range []string{"New key " + ids[0], "older keys " + ids[1], "to every worker", "key rotate --drop-old"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("key rotate said %q; want %q in it", out, want)
		}
	}
	sealed, _ := k2.SealFor(keyTestBinding, "new-pw")
	if !strings.HasPrefix(string(sealed), "mmsec2:"+ids[0]+":") {
		t.Fatalf("sealed after rotate with %q; want key %s", sealed, ids[0])
	}
	if got, err := k2.Open(old, keyTestBinding); err != nil || got != "old-pw" {
		t.Fatalf("a value sealed before the rotation: %q, %v", got, err)
	}

	out.Reset()
	opts.DropOld = true
	if err := keyRotateRun(opts); err != nil || !strings.Contains(out.String(), "Dropped the older keys "+ids[1]) {
		t.Fatalf("key rotate --drop-old: %v, %q", err, out)
	}
	k3, _ := secret.Load(file, false)
	if got := k3.IDs(); len(got) != 1 || got[0] != ids[0] {
		t.Fatalf("keys after --drop-old %v; want %s only", got, ids[0])
	}
	out.Reset()
	if err := keyRotateRun(opts); err != nil || !strings.Contains(out.String(), "nothing changed") {
		t.Fatalf("key rotate --drop-old again: %v, %q", err, out)
	}

	t.Setenv(secret.EnvKey, "AAAA")
	if err := keyRotateRun(&keyRotateOptions{Out: f.Out, File: func() string { return file }}); err == nil || !strings.Contains(err.Error(), secret.EnvKey) {
		t.Fatalf("key rotate with the key in %s: %v; want an error saying how to rotate there", secret.EnvKey, err)
	}
}

// What batch start seals opens for exactly the binding the worker reads
// off each account — the user's password for its user, the admin's for
// the admin, the token command for its server — and for nothing else.
func TestBatchStartSealsEachSecretForItsAccount(t *testing.T) {
	t.Setenv(secret.EnvKey, "")
	t.Setenv("MAILMOVE_TARGET_ADMIN_PASSWORD", "admin-pw")
	key := testKey(t)
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,alice-pw\nbob@example.com,bob,bob-pw\n")
	for _, tc := range []struct {
		args []string
		open func(workflows.MailboxMoveInput) (secret.Sealed, secret.Binding, string)
	}{
		{[]string{"--target-admin", "importer"}, func(mv workflows.MailboxMoveInput) (secret.Sealed, secret.Binding, string) {
			return mv.Target.AdminPassword, mv.Target.Endpoint.SecretBinding(failure.SideTarget, secret.UseAdminPassword, "importer"), "admin-pw"
		}},
		{[]string{"--target-token-command", "print-token --secret x"}, func(mv workflows.MailboxMoveInput) (secret.Sealed, secret.Binding, string) {
			return mv.Target.TokenCommand, mv.Target.Endpoint.SecretBinding(failure.SideTarget, secret.UseTokenCommand, ""), "print-token --secret x"
		}},
	} {
		opts := parseStart(t, append([]string{"--name", "w1", "--csv", csv, "--source", "old.example:993", "--target", "new.example:143",
			"--target-security", "starttls"}, tc.args...)...)
		in, err := batchInput(opts, key)
		if err != nil {
			t.Fatalf("batchInput(%v) = %v", tc.args, err)
		}
		for _, mv := range in.Moves {
			want := strings.Split(mv.Mailbox, "@")[0] + "-pw"
			b := mv.Source.Endpoint.SecretBinding(failure.SideSource, secret.UsePassword, mv.Source.User)
			if got, err := key.Open(mv.Source.Password, b); err != nil || got != want {
				t.Fatalf("%s: source password opens as %q, %v; want %q", mv.Mailbox, got, err, want)
			}
			b.User = "someone-else"
			if _, err := key.Open(mv.Source.Password, b); err == nil {
				t.Fatalf("%s: source password opens for another user", mv.Mailbox)
			}
			sealed, b, want := tc.open(mv)
			if got, err := key.Open(sealed, b); err != nil || got != want {
				t.Fatalf("%v: opens as %q, %v; want %q", tc.args, got, err, want)
			}
			b.Server = "evil.example:143"
			if _, err := key.Open(sealed, b); err == nil {
				t.Fatalf("%v: opens for another server", tc.args)
			}
		}
	}
}

package secret

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var alice = Binding{Use: UsePassword, Side: "source", Server: "imap.old.example:993", Security: "tls", User: "alice"}

func TestSecretSealOpen(t *testing.T) {
	t.Setenv(EnvKey, "")
	file := filepath.Join(t.TempDir(), "k")
	k, err := Load(file, true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.SealFor(alice, "hunter2")
	if err != nil || strings.Contains(string(s), "hunter2") || s.Version() != 2 {
		t.Fatalf("SealFor() = %q, %v", s, err)
	}
	k2, err := Load(file, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Open(s, alice); err != nil || got != "hunter2" {
		t.Fatalf("Open() = %q, %v; want hunter2", got, err)
	}
	other, _ := Load(filepath.Join(t.TempDir(), "other"), true)
	var unknown *UnknownKeyError
	if _, err := other.Open(s, alice); !errors.As(err, &unknown) || unknown.ID != k.IDs()[0] {
		t.Fatalf("Open() with another key = %v; want an UnknownKeyError naming %s", err, k.IDs()[0])
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing"), false); err == nil {
		t.Fatal("Load(missing, false) succeeded")
	}
	if got, err := k.Open("", alice); got != "" || err != nil {
		t.Fatalf("Open(\"\") = %q, %v; want no secret", got, err)
	}
}

// A value opens only for what it was sealed for; the error names each
// difference and never the secret.
func TestSecretOpenRefusesAnotherUse(t *testing.T) {
	k, _ := NewKey(bytes.Repeat([]byte{1}, 32))
	s, err := k.SealFor(alice, "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	change := func(f func(*Binding)) Binding { b := alice; f(&b); return b }
	for _, c := range []struct {
		name string
		here Binding
		want []string
	}{
		{"side", change(func(b *Binding) { b.Side = "target" }), []string{`side "source", not "target"`}},
		{"server", change(func(b *Binding) { b.Server = "evil.example:143" }), []string{`server "imap.old.example:993", not "evil.example:143"`}},
		{"port", change(func(b *Binding) { b.Server = "imap.old.example:143" }), []string{`server "imap.old.example:993"`}},
		{"security", change(func(b *Binding) { b.Security = "none" }), []string{`security "tls", not "none"`}},
		{"verification", change(func(b *Binding) { b.Security = "tls+noverify" }), []string{`security "tls", not "tls+noverify"`}},
		{"user", change(func(b *Binding) { b.User = "bob" }), []string{`user "alice", not "bob"`}},
		{"use", change(func(b *Binding) { b.Use = UseTokenCommand }), []string{`secret "password", not "token-command"`}},
		{"all", Binding{Use: UseAdminPassword, Side: "target", Server: "evil:1", Security: "none", User: "root"},
			[]string{"side", "server", "security", "user", "secret"}},
	} {
		_, err := k.Open(s, c.here)
		var be *BindingError
		if !errors.As(err, &be) {
			t.Fatalf("%s: Open() = %v; want a BindingError", c.name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Open() = %q; want it to name %s", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("%s: the error holds the secret", c.name)
		}
	}
}

// Changing anything in a sealed value — its clear binding to the one a
// move wants, its key ID, a byte of its ciphertext — makes it not open.
func TestSecretTamperedValuesDoNotOpen(t *testing.T) {
	k, _ := NewKey(bytes.Repeat([]byte{1}, 32))
	s, _ := k.SealFor(alice, "hunter2")
	parts := strings.Split(string(s), ":")
	if len(parts) != 4 || parts[0] != "mmsec2" || parts[1] != k.IDs()[0] {
		t.Fatalf("sealed value %q: want mmsec2:<key id>:<binding>:<box>", s)
	}
	evil := alice
	evil.Server, evil.Security = "evil.example:143", "none"
	forged, _ := jsonB64(evil)
	for name, v := range map[string]string{
		"binding rewritten": "mmsec2:" + parts[1] + ":" + forged + ":" + parts[3],
		"box flipped":       "mmsec2:" + parts[1] + ":" + parts[2] + ":" + flip(parts[3]),
		"id changed":        "mmsec2:00000000:" + parts[2] + ":" + parts[3],
		"box cut":           "mmsec2:" + parts[1] + ":" + parts[2] + ":" + parts[3][:10],
		"as mmsec1":         "mmsec1:" + parts[3],
	} {
		here := alice
		if name == "binding rewritten" {
			here = evil
		}
		k.AcceptUnbound = name == "as mmsec1"
		got, err := k.Open(Sealed(v), here)
		if err == nil || got != "" || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: Open() = %q, %v; want refused", name, got, err)
		}
	}
}

func jsonB64(b Binding) (string, error) {
	k, _ := NewKey(bytes.Repeat([]byte{9}, 32))
	s, err := k.SealFor(b, "x")
	return strings.Split(string(s), ":")[2], err
}

func flip(b64 string) string {
	raw, _ := base64.RawURLEncoding.DecodeString(b64)
	raw[len(raw)-1] ^= 1
	return base64.RawURLEncoding.EncodeToString(raw)
}

// Old values are refused unless the worker accepts them during an
// upgrade; then they open with any key held.
func TestSecretUnboundValues(t *testing.T) {
	old, _ := NewKey(bytes.Repeat([]byte{1}, 32))
	v1, _ := old.SealUnbound("hunter2")
	if v1.Version() != 1 {
		t.Fatalf("SealUnbound() = %q", v1)
	}
	if _, err := old.Open(v1, alice); !errors.Is(err, ErrUnbound) || !strings.Contains(err.Error(), EnvAcceptUnbound) {
		t.Fatalf("Open(mmsec1) = %v; want ErrUnbound naming %s", err, EnvAcceptUnbound)
	}
	rotated, _ := NewKey(bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{1}, 32))
	rotated.AcceptUnbound = true
	if got, err := rotated.Open(v1, alice); err != nil || got != "hunter2" {
		t.Fatalf("Open(mmsec1) accepting unbound = %q, %v", got, err)
	}
	t.Setenv(EnvKey, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	t.Setenv(EnvAcceptUnbound, "1")
	if k, err := Load("", false); err != nil || !k.AcceptUnbound {
		t.Fatalf("Load() with %s=1: %v, AcceptUnbound %v", EnvAcceptUnbound, err, k != nil && k.AcceptUnbound)
	}
}

// After a rotation, values sealed with the old key still open, new ones
// are sealed with the new key, and dropping the old keys stops them.
func TestSecretKeyRotation(t *testing.T) {
	t.Setenv(EnvKey, "")
	file := filepath.Join(t.TempDir(), "secret.key")
	k1, err := Load(file, true)
	if err != nil {
		t.Fatal(err)
	}
	oldID := k1.IDs()[0]
	before, _ := k1.SealFor(alice, "old-pw")
	// A worker started before the rotation.
	running, _ := Load(file, false)

	id, older, err := Rotate(file)
	if err != nil || id == oldID || len(older) != 1 || older[0] != oldID {
		t.Fatalf("Rotate() = %s, %v, %v; want a new ID and %s older", id, older, err, oldID)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := Load(file, false)
	if err != nil || strings.Join(k2.IDs(), ",") != id+","+oldID {
		t.Fatalf("Load() after rotate = %v, %v; want %s,%s", k2.IDs(), err, id, oldID)
	}
	after, _ := k2.SealFor(alice, "new-pw")
	if !strings.HasPrefix(string(after), "mmsec2:"+id+":") {
		t.Fatalf("sealed after rotate: %q; want key %s", after, id)
	}
	if got, err := k2.Open(before, alice); err != nil || got != "old-pw" {
		t.Fatalf("old value after rotate: %q, %v", got, err)
	}
	// The running worker reads the file again for a key it lacks.
	if got, err := running.Open(after, alice); err != nil || got != "new-pw" {
		t.Fatalf("running worker opening a new value: %q, %v", got, err)
	}
	// key init leaves a rotated file alone.
	if made, err := Init(file); made || err != nil {
		t.Fatalf("Init() on a rotated file = %v, %v", made, err)
	}

	cur, dropped, err := DropOld(file)
	if err != nil || cur != id || len(dropped) != 1 || dropped[0] != oldID {
		t.Fatalf("DropOld() = %s, %v, %v", cur, dropped, err)
	}
	k3, _ := Load(file, false)
	var unknown *UnknownKeyError
	if _, err := k3.Open(before, alice); !errors.As(err, &unknown) || unknown.ID != oldID {
		t.Fatalf("old value after drop: %v; want UnknownKeyError %s", err, oldID)
	}
	if got, err := k3.Open(after, alice); err != nil || got != "new-pw" {
		t.Fatalf("new value after drop: %q, %v", got, err)
	}

	// The environment holds several keys too, current first.
	raw1, raw2 := bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32)
	t.Setenv(EnvKey, base64.StdEncoding.EncodeToString(raw1)+", "+base64.StdEncoding.EncodeToString(raw2))
	ke, err := Load("", false)
	if err != nil || strings.Join(ke.IDs(), ",") != KeyID(raw1)+","+KeyID(raw2) {
		t.Fatalf("Load() from %s = %v, %v", EnvKey, ke, err)
	}
	if _, _, err := Rotate(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Rotate() of a missing file succeeded")
	}
}

// Hostile values never panic and never open.
func TestSecretHostileValuesNeverPanic(t *testing.T) {
	k, _ := NewKey(bytes.Repeat([]byte{1}, 32))
	k.AcceptUnbound = true
	good, _ := k.SealFor(alice, "hunter2")
	cases := []string{"mmsec2:", "mmsec2::::", "mmsec2:" + k.IDs()[0] + "::", "mmsec2:" + k.IDs()[0] + ":e30:", "mmsec1:", "mmsec1:AAAA",
		"mmsec2:zzzzzzzz:e30:AAAA", "mmsec2:" + k.IDs()[0] + ":bnVsbA:AAAA", "mmsec2:" + k.IDs()[0] + ":W10:AAAA",
		"mmsec2:" + strings.Repeat("a", 1<<17), "hunter2", string(good) + ":", string(good[:len(good)-3])}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := []byte(good)
		for range 1 + r.IntN(4) {
			switch i := r.IntN(len(b)); r.IntN(3) {
			case 0:
				b[i] = byte(r.IntN(256))
			case 1:
				b = b[:i]
			default:
				b = append(b[:i], append([]byte{':'}, b[i:]...)...)
			}
			if len(b) == 0 {
				break
			}
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if c == string(good) {
			continue
		}
		if got, err := k.Open(Sealed(c), alice); err == nil && got == "hunter2" {
			t.Fatalf("Open(%q) opened a changed value", c)
		}
	}
}

func FuzzSecretOpen(f *testing.F) {
	k, _ := NewKey(bytes.Repeat([]byte{1}, 32))
	good, _ := k.SealFor(alice, "hunter2")
	f.Add(string(good))
	f.Add("mmsec1:AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		k.Open(Sealed(s), alice)
	})
}

// Processes that make the key at once all end up with one key; a missing
// key is not made by a reader, and its error says how to make one.
func TestSecretKeyInitIsAtomic(t *testing.T) {
	t.Setenv(EnvKey, "")
	file := filepath.Join(t.TempDir(), "mailmove", "secret.key")
	var wg sync.WaitGroup
	keys := make([]*Key, 16)
	made := make([]bool, 16)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if made[i], err = Init(file); err != nil {
				t.Error(err)
			}
			if keys[i], err = Load(file, false); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	sealed, err := keys[0].SealFor(alice, "pw")
	if err != nil {
		t.Fatal(err)
	}
	creators := 0
	for i, k := range keys {
		if made[i] {
			creators++
		}
		if got, err := k.Open(sealed, alice); err != nil || got != "pw" {
			t.Fatalf("process %d has another key: %v", i, err)
		}
	}
	if creators != 1 {
		t.Fatalf("%d processes made the key, want 1", creators)
	}
	_, err = Load(filepath.Join(t.TempDir(), "none"), false)
	if err == nil || !strings.Contains(err.Error(), "mailmove key init") {
		t.Fatalf("Load(missing) = %v; want an error naming `mailmove key init`", err)
	}
}

// Redact takes the secret out as it is, quoted, and in base64 at every
// alignment, as inside an AUTHENTICATE PLAIN response.
func TestSecretRedact(t *testing.T) {
	const pw = `hun"ter\2-Secret`
	plain := func(prefix string) string { return base64.StdEncoding.EncodeToString([]byte(prefix + pw)) }
	for _, text := range []string{
		"NO [AUTHENTICATIONFAILED] bad password " + pw,
		`NO [AUTHENTICATIONFAILED] bad password "hun\"ter\\2-Secret"`,
		"NO bad response " + plain("\x00alice\x00"),
		"NO bad response " + plain("\x00bob\x00"),
		"NO bad response " + plain("\x00carol\x00"),
		"NO " + base64.RawURLEncoding.EncodeToString([]byte("x"+pw+"y")),
	} {
		got := Redact(text, pw)
		if !strings.Contains(got, Redacted) || strings.Contains(got, pw) || strings.Contains(got, "Secret") {
			t.Errorf("Redact(%q) = %q", text, got)
		}
		for _, enc := range []string{plain(""), plain("\x00alice\x00"), plain("\x00bob\x00"), plain("\x00carol\x00")} {
			if len(enc) > 12 && strings.Contains(got, enc[4:len(enc)-4]) {
				t.Errorf("Redact(%q) = %q: base64 of the secret left", text, got)
			}
		}
	}
	if got := Redact("NO [AUTHENTICATIONFAILED] Authentication failed.", "hunter2", ""); got != "NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Fatalf("Redact() of a reply without the secret = %q", got)
	}
}

package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// leaksBase64 reports whether some base64 run in text (standard or
// URL-safe alphabet, at any of its four character offsets) decodes to
// bytes holding secret: what a reader of the text could recover.
func leaksBase64(text, secret string) bool {
	for _, run := range regexp.MustCompile(`[A-Za-z0-9+/_-]{2,}`).FindAllString(text, -1) {
		run = strings.NewReplacer("-", "+", "_", "/").Replace(run)
		for off := range 4 {
			if off >= len(run) {
				break
			}
			seg := run[off:]
			if len(seg)%4 == 1 {
				seg = seg[:len(seg)-1]
			}
			if dec, err := base64.RawStdEncoding.DecodeString(seg); err == nil && bytes.Contains(dec, []byte(secret)) {
				return true
			}
		}
	}
	return false
}

// A short password (3 to 8 bytes) sent in an AUTHENTICATE PLAIN or
// XOAUTH2 response and echoed in base64 is taken out at every alignment
// the user name puts it at: nothing left in the text decodes to it.
func TestReviewRedactShortSecretsInBase64(t *testing.T) {
	for _, pw := range []string{"abc", "pin7", "ab12c", "s3cr3t", "Pass-12", "hunter22"} {
		for _, user := range []string{"a", "al", "ali", "alic", "alice", "alice1"} {
			for _, msg := range []string{"\x00" + user + "\x00" + pw, user + "\x00root\x00" + pw, "user=" + user + "\x01auth=Bearer " + pw + "\x01\x01"} {
				for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
					text := "NO [AUTHENTICATIONFAILED] bad response " + enc.EncodeToString([]byte(msg)) + " from you"
					if got := Redact(text, pw); leaksBase64(got, pw) {
						t.Errorf("Redact(%q, %q) = %q: still decodes to the secret", text, pw, got)
					}
				}
			}
		}
	}
}

// A server that repeats the command in another case (some upper-case the
// whole line they refuse) echoes the password too.
func TestReviewRedactChangedCase(t *testing.T) {
	const pw = "Hunter2-Secret"
	for _, text := range []string{
		"BAD COMMAND UNKNOWN: A1 LOGIN ALICE " + strings.ToUpper(pw),
		"no [authenticationfailed] you said: a1 login alice " + strings.ToLower(pw),
		`BAD you said: A1 LOGIN ALICE "` + strings.ToUpper(pw) + `"`,
	} {
		got := Redact(text, pw)
		if strings.Contains(strings.ToLower(got), strings.ToLower(pw)) {
			t.Errorf("Redact(%q) = %q: the password is left, in another case", text, got)
		}
	}
}

// Forms that held: the password quoted with escapes, inside a Go-quoted
// (%q) echo, at the start and end of the text, twice, and next to
// base64 of other secrets; the server's other words stay.
func TestReviewRedactFormsThatHold(t *testing.T) {
	const pw = `p"a\ss w0rd`
	for _, text := range []string{
		pw,
		pw + pw,
		`NO you said "` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(pw) + `"`,
		fmt.Sprintf("NO you said %q", "\x00alice\x00"+pw),
		"NO " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00"+pw)) + " " + base64.StdEncoding.EncodeToString([]byte("x"+pw)),
	} {
		got := Redact(text, pw)
		if strings.Contains(got, "w0rd") || leaksBase64(got, pw) {
			t.Errorf("Redact(%q) = %q", text, got)
		}
	}
	if got := Redact("NO [AUTHENTICATIONFAILED] Authentication failed", "Hunter2-Secret"); got != "NO [AUTHENTICATIONFAILED] Authentication failed" {
		t.Fatalf("Redact() changed a text without the secret: %q", got)
	}
}

// A binding is JSON in the value: users holding the format's separators,
// quotes, NUL or text that looks like another field never make two
// bindings alike, and a value opens only for the one it was sealed for.
func TestReviewBindingSeparatorsNeverCollide(t *testing.T) {
	k, _ := NewKey(bytes.Repeat([]byte{9}, 32))
	users := []string{"alice", "alice:", "alice:source", `alice","user":"bob`, "alice\x00bob", "alice ", "Alice", "alice*root", "root*alice",
		"ALİCE", "alİce", "user:alice", ":", "", "mmsec2:", `alice\`, "alice\u212a"}
	var bs []Binding
	for _, u := range users {
		bs = append(bs, Binding{Use: UsePassword, Side: "source", Server: "imap.old.example:993", Security: "tls", User: u})
	}
	bs = append(bs, Binding{Use: UsePassword, Side: "source", Server: "imap.old.example:993:", Security: "tls", User: "alice"},
		Binding{Use: UsePassword, Side: "source:imap.old.example:993", Security: "tls", User: "alice"},
		Binding{Use: UseAdminPassword, Side: "source", Server: "imap.old.example:993", Security: "tls", User: "alice"},
		Binding{Use: UseTokenCommand, Side: "source", Server: "imap.old.example:993", Security: "tls"},
		Binding{Use: UsePassword, Side: "source", Server: "imap.old.example:993", Security: "tls+noverify", User: "alice"})
	for i, b := range bs {
		s, err := k.SealFor(b, "pw")
		if err != nil {
			t.Fatal(err)
		}
		for j, h := range bs {
			got, err := k.Open(s, h)
			if (i == j) != (err == nil) || i == j && got != "pw" {
				t.Errorf("sealed for %+v, opened for %+v: %q, %v", b, h, got, err)
			}
		}
	}
}

// Editing the readable binding of a value — to another user, by JSON's
// case-insensitive keys, with a duplicate key, with spaces — never opens
// it for the edited use: the binding is authenticated as it was written.
func TestReviewEditedBindingNeverOpens(t *testing.T) {
	k, _ := NewKey(bytes.Repeat([]byte{5}, 32))
	s, _ := k.SealFor(alice, "hunter2")
	parts := strings.Split(string(s), ":")
	bob := alice
	bob.User = "bob"
	edits := []string{
		`{"use":"password","side":"source","server":"imap.old.example:993","security":"tls","user":"bob"}`,
		`{"use":"password","side":"source","server":"imap.old.example:993","security":"tls","user":"alice","USER":"bob"}`,
		`{"use":"password","side":"source","server":"imap.old.example:993","security":"tls","user":"alice","user":"bob"}`,
		`{"Use":"password","Side":"source","Server":"imap.old.example:993","Security":"tls","User":"bob"}`,
		` {"use":"password","side":"source","server":"imap.old.example:993","security":"tls","user":"bob"} `,
	}
	for _, e := range edits {
		var got Binding
		if err := json.Unmarshal([]byte(e), &got); err != nil || got != bob {
			t.Fatalf("edit %s decodes to %+v, %v; the test wants bob", e, got, err)
		}
		v := Sealed(strings.Join([]string{parts[0], parts[1], base64.RawURLEncoding.EncodeToString([]byte(e)), parts[3]}, ":"))
		if pw, err := k.Open(v, bob); err == nil {
			t.Fatalf("edited binding %s opened for bob: %q", e, pw)
		}
	}
	// The key ID is not a hint to be trusted either: another ID, same key.
	other := Sealed(strings.Join([]string{parts[0], "00000000", parts[2], parts[3]}, ":"))
	if _, err := k.Open(other, alice); err == nil {
		t.Fatal("a value with its key ID changed opened")
	}
}

// Keys whose IDs collide (32 bits: found by brute force here) both open
// what they sealed, also after rotating one in; a third key with that ID
// that sealed nothing opens nothing.
func TestReviewKeyIDCollision(t *testing.T) {
	seen := map[string][]byte{}
	var a, b []byte
	for i := 0; a == nil; i++ {
		raw := make([]byte, 32)
		rand.Read(raw)
		id := KeyID(raw)
		if prev, ok := seen[id]; ok && !bytes.Equal(prev, raw) {
			a, b = prev, raw
		}
		seen[id] = raw
		// 32-bit IDs collide after about 77,000 keys; none in 2,000,000
		// would mean the IDs are not what this test is about.
		if i > 2_000_000 {
			t.Fatal("no key ID collision in 2,000,000 keys: are key IDs still 32 bits?")
		}
	}
	ka, _ := NewKey(a)
	kb, _ := NewKey(b)
	va, _ := ka.SealFor(alice, "from-a")
	vb, _ := kb.SealFor(alice, "from-b")
	if !strings.HasPrefix(string(va), "mmsec2:"+KeyID(a)+":") || KeyID(a) != KeyID(b) {
		t.Fatal("no collision")
	}
	for _, k := range []*Key{mustKey(t, a, b), mustKey(t, b, a)} {
		if got, err := k.Open(va, alice); err != nil || got != "from-a" {
			t.Fatalf("Open(a's value) = %q, %v", got, err)
		}
		if got, err := k.Open(vb, alice); err != nil || got != "from-b" {
			t.Fatalf("Open(b's value) = %q, %v", got, err)
		}
	}
	if _, err := ka.Open(vb, alice); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a key with b's ID but not b opened b's value: %v", err)
	}
	// In a key file: rotating to a colliding key keeps both working.
	t.Setenv(EnvKey, "")
	file := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(b)+"\n"+base64.StdEncoding.EncodeToString(a)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Load(file, false)
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[Sealed]string{va: "from-a", vb: "from-b"} {
		if got, err := w.Open(v, alice); err != nil || got != want {
			t.Fatalf("Open() from a file of colliding keys = %q, %v", got, err)
		}
	}
}

func mustKey(t *testing.T, raw []byte, older ...[]byte) *Key {
	t.Helper()
	k, err := NewKey(raw, older...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// MAILMOVE_SECRET_KEY with spaces, empty elements and new lines reads the
// keys in order; one without a key, or with a broken one, is an error
// that names the variable and never a key of fewer bytes.
func TestReviewEnvKeyParsing(t *testing.T) {
	r1, r2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	e1, e2 := base64.StdEncoding.EncodeToString(r1), base64.StdEncoding.EncodeToString(r2)
	for _, v := range []string{e1 + "," + e2, "  " + e1 + " ,, " + e2 + " ,", ",\n" + e1 + "\r\n" + e2 + "\n", e1 + ",\t" + e2} {
		t.Setenv(EnvKey, v)
		k, err := Load("", false)
		if err != nil || strings.Join(k.IDs(), ",") != KeyID(r1)+","+KeyID(r2) {
			t.Errorf("Load() with %s=%q = %v, %v", EnvKey, v, k, err)
		}
	}
	for _, v := range []string{" ", ",", " , ,", e1 + " " + e2, e1[:40], e1 + "," + e2[:43], base64.StdEncoding.EncodeToString(r1[:16]), "#" + e1} {
		t.Setenv(EnvKey, v)
		if k, err := Load("", false); err == nil || !strings.Contains(err.Error(), EnvKey) || strings.Contains(err.Error(), e1) {
			t.Errorf("Load() with %s=%q = %v, %v; want an error naming it", EnvKey, v, k, err)
		}
	}
}

// A key file copied onto a worker's by a tool that writes it in place
// (cp, scp) may be read half-written; a worker that reads it then must not
// forget a key it holds, or the moves sealed with it fail for good
// (SecretKeyMismatch is final). Here the copy of [new, old] was read
// when only its first line had arrived.
func TestReviewTornKeyFileNeverForgetsAKey(t *testing.T) {
	t.Setenv(EnvKey, "")
	dir := t.TempDir()
	file := filepath.Join(dir, "secret.key")
	if _, err := Init(file); err != nil {
		t.Fatal(err)
	}
	worker, err := Load(file, false)
	if err != nil {
		t.Fatal(err)
	}
	running, _ := worker.SealFor(alice, "old-pw")

	// The admin rotates elsewhere and copies the file over the worker's.
	admin := filepath.Join(dir, "admin.key")
	data, _ := os.ReadFile(file)
	os.WriteFile(admin, data, 0o600)
	if _, _, err := Rotate(admin); err != nil {
		t.Fatal(err)
	}
	cli, _ := Load(admin, false)
	fresh, _ := cli.SealFor(alice, "new-pw")
	full, _ := os.ReadFile(admin)
	lines := strings.SplitAfter(string(full), "\n")
	var half string
	for _, l := range lines {
		half += l
		if !strings.HasPrefix(l, "#") {
			break
		}
	}
	if err := os.WriteFile(file, []byte(half), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := worker.Open(fresh, alice); err != nil || got != "new-pw" {
		t.Fatalf("worker opening a new move's value: %q, %v", got, err)
	}
	os.WriteFile(file, full, 0o600) // the copy ends
	if got, err := worker.Open(running, alice); err != nil || got != "old-pw" {
		t.Fatalf("worker opening a running move's value after reading a half-copied key file: %q, %v", got, err)
	}
}

// Rotations and reads at once: a worker sharing the file never fails to
// open a value sealed with a key it held, and every rotation's key is in
// the file at the end — two admins rotating at once lose no key.
func TestReviewConcurrentRotations(t *testing.T) {
	t.Setenv(EnvKey, "")
	file := filepath.Join(t.TempDir(), "secret.key")
	if _, err := Init(file); err != nil {
		t.Fatal(err)
	}
	worker, _ := Load(file, false)
	running, _ := worker.SealFor(alice, "old-pw")
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids []string
	)
	stop, readerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if got, err := worker.Open(running, alice); err != nil || got != "old-pw" {
				t.Errorf("Open() during rotations = %q, %v", got, err)
				return
			}
			if k, err := Load(file, false); err != nil {
				t.Errorf("Load() during rotations: %v", err)
				return
			} else if _, err := k.Open(running, alice); err != nil {
				t.Errorf("a key loaded during rotations lost the first key: %v", err)
				return
			}
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				id, _, err := Rotate(file)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-readerDone
	k, err := Load(file, false)
	if err != nil {
		t.Fatal(err)
	}
	held := strings.Join(k.IDs(), ",")
	for _, id := range ids {
		if !strings.Contains(held, id) {
			t.Fatalf("key %s, made by a rotation, is not in the file (%d of %d keys there)", id, len(k.IDs()), len(ids)+1)
		}
	}
}

// Hostile values — huge, deeply nested, every field the wrong type, a
// key ID that sends the worker to its file again and again — fail fast,
// never panic, and do not read the key file more than once a second.
func TestReviewHostileValuesAreCheap(t *testing.T) {
	t.Setenv(EnvKey, "")
	file := filepath.Join(t.TempDir(), "k")
	Init(file)
	k, _ := Load(file, false)
	id := k.IDs()[0]
	hdr := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	box := base64.RawURLEncoding.EncodeToString(make([]byte, 40))
	cases := []string{
		"mmsec2:" + id + ":" + hdr(strings.Repeat("[", 40000)) + ":" + box,
		"mmsec2:" + id + ":" + hdr(`{"use":1}`) + ":" + box,
		"mmsec2:" + id + ":" + hdr(`{"use":"password","side":"source","server":"imap.old.example:993","security":"tls","user":"alice"}{}`) + ":" + box,
		"mmsec2:" + id + ":" + hdr(`{"use":"password","side":"source","server":"imap.old.example:993","security":"tls","user":"alice"}`) + ":",
		"mmsec2:" + id + ":" + hdr(`{"use":"password","side":"source","server":"imap.old.example:993","security":"tls","user":"alice"}`) + ":" + strings.Repeat("A", 63<<10),
		"mmsec2:" + strings.Repeat(":", 70000),
		"mmsec2:" + id + ":" + strings.Repeat("%", 1000) + ":" + box,
		"mmsec1:" + strings.Repeat("A", 63<<10),
	}
	start := time.Now()
	for _, c := range cases {
		if _, err := k.Open(Sealed(c), alice); err == nil {
			t.Errorf("Open(%.60q) opened", c)
		}
	}
	// Unknown key IDs: the file is read at most once a second.
	for i := range 2000 {
		v := fmt.Sprintf("mmsec2:%08x:%s:%s", i, hdr(`{"use":"password","side":"source","server":"imap.old.example:993","security":"tls","user":"alice"}`), box)
		var unknown *UnknownKeyError
		if _, err := k.Open(Sealed(v), alice); !errors.As(err, &unknown) {
			t.Fatalf("Open(unknown key) = %v", err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("hostile values took %v", d)
	}
}

// A server that cuts its echo short (a line limit, "...") leaves the
// password's start: every 4 bytes or more of it are taken out, as it is
// and quoted, in any case.
func TestReviewRedactCutShortEcho(t *testing.T) {
	const pw = `Hunter2-"Secret"`
	quoted := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(pw)
	for _, form := range []string{pw, quoted, strings.ToUpper(pw)} {
		for n := 4; n < len(form); n++ {
			for _, text := range []string{"BAD line too long: a1 LOGIN alice " + form[:n], "BAD a1 LOGIN alice " + form[:n] + "... (cut)"} {
				got := Redact(text, pw)
				if strings.Contains(strings.ToLower(got), strings.ToLower(pw[:4])) {
					t.Errorf("Redact(%q) = %q: the password's start is left", text, got)
				}
			}
		}
	}
}

// `key rotate --drop-old` while a move sealed with an older key still
// runs: workers that hold that key keep opening it until they restart
// (also after reading the file again for a newer key); a restarted one
// refuses it, naming the key it lacks.
func TestReviewDropOldWhileAMoveRuns(t *testing.T) {
	t.Setenv(EnvKey, "")
	file := filepath.Join(t.TempDir(), "secret.key")
	Init(file)
	cli, _ := Load(file, false)
	oldID := cli.IDs()[0]
	running, _ := cli.SealFor(alice, "old-pw")
	Rotate(file)
	worker, _ := Load(file, false)
	if _, _, err := DropOld(file); err != nil {
		t.Fatal(err)
	}
	Rotate(file)
	cli, _ = Load(file, false)
	newer, _ := cli.SealFor(alice, "newer-pw")
	if got, err := worker.Open(newer, alice); err != nil || got != "newer-pw" {
		t.Fatalf("worker opening a value of a key it lacked: %q, %v", got, err)
	}
	if got, err := worker.Open(running, alice); err != nil || got != "old-pw" {
		t.Fatalf("worker opening a running move's value after --drop-old: %q, %v", got, err)
	}
	restarted, _ := Load(file, false)
	var unknown *UnknownKeyError
	if _, err := restarted.Open(running, alice); !errors.As(err, &unknown) || unknown.ID != oldID || !strings.Contains(err.Error(), oldID) {
		t.Fatalf("restarted worker opening a dropped key's value: %v; want UnknownKeyError naming %s", err, oldID)
	}
}

// Random secrets of 3 to 40 bytes echoed in random ways — as they are,
// quoted, upper- or lower-cased, inside base64 of a PLAIN or XOAUTH2
// response with random users, at the start, the middle or the end of the
// text — are never left, as they are or decoding from base64.
func TestReviewRedactRandomEchoes(t *testing.T) {
	const chars = `abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+/=."\ !@#$%*`
	rnd := func(n int) string {
		b := make([]byte, n)
		rand.Read(b)
		for i := range b {
			b[i] = chars[int(b[i])%len(chars)]
		}
		return string(b)
	}
	pick := func(n int) int {
		var b [1]byte
		rand.Read(b[:])
		return int(b[0]) % n
	}
	for range 3000 {
		pw := rnd(3 + pick(38))
		user := rnd(pick(12))
		var echo string
		switch pick(6) {
		case 0:
			echo = pw
		case 1:
			echo = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(pw) + `"`
		case 2:
			echo = strings.ToUpper(pw)
		case 3:
			echo = base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
		case 4:
			echo = base64.RawURLEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + pw + "\x01\x01"))
		default:
			echo = base64.StdEncoding.EncodeToString([]byte(user + "\x00root\x00" + pw))
		}
		text := []string{echo + " refused", "NO [AUTHENTICATIONFAILED] " + echo, "NO you said " + echo + " (bad)"}[pick(3)]
		got := Redact(text, pw)
		if strings.Contains(strings.ToLower(got), strings.ToLower(pw)) || leaksBase64(got, pw) {
			t.Fatalf("Redact(%q, %q) = %q: the secret is left", text, pw, got)
		}
	}
}

// A server whose logons go to a web service may echo that service's
// form: the password URL-encoded (%XX in either case, + or %20 for a
// space) is taken out too.
func TestReviewRedactURLEncoded(t *testing.T) {
	const pw = "hunter2!@ Secret/&"
	for _, text := range []string{
		"NO [AUTHENTICATIONFAILED] backend said: user=alice&password=" + url.QueryEscape(pw),
		"NO [AUTHENTICATIONFAILED] backend said: /auth/alice/" + url.PathEscape(pw),
		"NO [AUTHENTICATIONFAILED] backend said: password=" + strings.ToLower(url.QueryEscape(pw)),
	} {
		if got := Redact(text, pw); strings.Contains(got, "Secret") || strings.Contains(got, "hunter2") {
			t.Errorf("Redact(%q) = %q: the URL-encoded password is left", text, got)
		}
	}
}

// An echo cut short in the URL-encoded form: the longer start (of the
// encoded form) is taken out, not only the part it shares with the plain.
func TestReviewRedactCutShortURLEncoded(t *testing.T) {
	const pw = "hunter2!@ Secret/&"
	enc := url.QueryEscape(pw)
	for n := 4; n < len(enc); n++ {
		text := "NO backend said: password=" + enc[:n]
		if got := Redact(text, pw); strings.Contains(got, "Sec") || strings.Contains(got, "%40") {
			t.Errorf("Redact(%q) = %q", text, got)
		}
	}
}

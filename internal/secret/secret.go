// Package secret keeps passwords out of Temporal histories and binds each
// to its use. The starter seals each secret with a key shared by starter
// and workers (AES-256-GCM); the workflow carries only the sealed string,
// and only the activity that logs on opens it. Anyone who can read
// histories — the Web UI, an export, a replay file — sees ciphertext.
//
// A sealed value (`mmsec2:`) names what it was sealed for — its Binding:
// which secret of which side, the server, its security and the user — in
// clear, and authenticates that as the AEAD's associated data. A worker
// opens it only for that same Binding, so a value copied from one move's
// history into another move's input never reaches another server, another
// security setting or another user: Open refuses it and says what differs.
//
// A key file holds the current key and older ones (`mailmove key rotate`):
// values name the key that sealed them by its ID, so running moves keep
// opening while new ones are sealed with the new key.
package secret

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sealed is a secret encrypted with a Key. Its zero value is no secret.
type Sealed string

const (
	// prefixV1 is the format before secrets were bound: nonce and
	// ciphertext, no associated data, no key ID.
	prefixV1 = "mmsec1:"
	// prefixV2 is `mmsec2:<key ID>:<binding>:<nonce and ciphertext>`,
	// binding and ciphertext in unpadded URL-safe base64; the associated
	// data is everything before the last colon.
	prefixV2 = "mmsec2:"
	// maxPlain bounds what Seal takes (a token command is the longest
	// secret; 32 KiB is far more than one needs); maxSealed bounds what
	// Open reads, before it decodes anything.
	maxPlain  = 32 << 10
	maxSealed = 64 << 10
)

// Version reports the format of a sealed value: 1 (unbound, before
// secrets were bound), 2, or 0 for none or not a sealed value.
func (s Sealed) Version() int {
	switch {
	case strings.HasPrefix(string(s), prefixV1):
		return 1
	case strings.HasPrefix(string(s), prefixV2):
		return 2
	}
	return 0
}

// Use is which secret of an account a value is: a secret sealed as one
// never opens as another (a token command is run by the worker; a
// password is sent to the server).
type Use string

const (
	// UsePassword is the user's own password; it is bound to the user.
	UsePassword Use = "password"
	// UseAdminPassword is an admin's password for proxy logons; it is
	// bound to the admin, not to the mailboxes it opens.
	UseAdminPassword Use = "admin-password"
	// UseTokenCommand is the OAuth2 token command; it is bound to no user
	// (it makes tokens for every user of the tenant), only to where they
	// may be sent.
	UseTokenCommand Use = "token-command"
)

// Binding is what a sealed value may be opened for. Its fields are public
// facts of a move's input (they stand in the sealed value in clear): only
// the secret is encrypted. engine.Endpoint.SecretBinding makes the
// binding of an account's secret, the same way for the CLI that seals and
// the worker that opens.
type Binding struct {
	Use  Use    `json:"use"`
	Side string `json:"side"`
	// Server is the host:port the secret may be sent to, host in lower case.
	Server string `json:"server"`
	// Security is how the connection is protected: tls, starttls or none,
	// with the TLS settings that weaken or change whom it trusts
	// (engine.Endpoint.SecretBinding).
	Security string `json:"security"`
	// User is who logs on with it (the admin for an admin password);
	// empty for a token command.
	User string `json:"user,omitempty"`
}

func (b Binding) String() string {
	s := fmt.Sprintf("%s %s on %s (%s)", b.Side, b.Use, b.Server, b.Security)
	if b.User != "" {
		s += " for " + b.User
	}
	return s
}

// BindingError is Open refusing a value sealed for another use: a value
// copied from one move's input into another's. It names what differs;
// none of it is secret.
type BindingError struct {
	Sealed, Here Binding
}

func (e *BindingError) Error() string {
	var diffs []string
	add := func(what, sealed, here string) {
		if sealed != here {
			diffs = append(diffs, fmt.Sprintf("%s %q, not %q", what, sealed, here))
		}
	}
	add("side", e.Sealed.Side, e.Here.Side)
	add("server", e.Sealed.Server, e.Here.Server)
	add("security", e.Sealed.Security, e.Here.Security)
	add("user", e.Sealed.User, e.Here.User)
	add("secret", string(e.Sealed.Use), string(e.Here.Use))
	return "sealed for another use: " + strings.Join(diffs, "; ")
}

// ErrUnbound is Open refusing an `mmsec1:` value, sealed before secrets
// were bound, by a key that does not accept them (AcceptUnbound).
var ErrUnbound = errors.New("sealed by an older mailmove (mmsec1:) and bound to no server: workers open it only with " + EnvAcceptUnbound + "=1")

// UnknownKeyError is Open meeting a value sealed with a key this process
// does not hold: another key file, or a key dropped too early.
type UnknownKeyError struct {
	ID   string   // the key that sealed it
	Held []string // the keys held, current first
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("sealed with key %s, which this worker does not hold (it holds %s): give the workers the key file the batch was started with, "+
		"and after `mailmove key rotate` keep the older keys until the moves sealed with them end", e.ID, strings.Join(e.Held, ", "))
}

// errDamaged is a value that is not what Seal made, or was changed.
var errDamaged = errors.New("the sealed value is damaged or was changed")

// Key seals and opens secrets. It holds the current key, which seals, and
// older ones, which only open. Safe for concurrent use.
type Key struct {
	// AcceptUnbound opens `mmsec1:` values, which bind nothing: only while
	// moves started before the upgrade finish (Load sets it from
	// MAILMOVE_ACCEPT_MMSEC1=1).
	AcceptUnbound bool

	mu   sync.RWMutex
	keys []entry // keys[0] seals
	// file is read again, at most once a second, when a value names a key
	// not held: a worker on the machine where `key rotate` ran (or sharing
	// its file) opens new moves without a restart.
	file     string
	reloaded time.Time
}

type entry struct {
	id   string
	sum  [32]byte // the key's hash: tells keys with one ID apart
	aead cipher.AEAD
}

// EnvKey names the environment variable that may hold the key (base64),
// for deployments where a file is awkward; several keys, current first,
// separated by commas, while a rotation is under way.
const EnvKey = "MAILMOVE_SECRET_KEY"

// EnvKeyFile names the environment variable that may give the key file.
const EnvKeyFile = "MAILMOVE_SECRET_KEY_FILE"

// EnvAcceptUnbound, set to 1 on a worker, makes it open `mmsec1:` values,
// sealed before secrets were bound, during an upgrade.
const EnvAcceptUnbound = "MAILMOVE_ACCEPT_MMSEC1"

// DefaultKeyFile is where the key lives when neither flag nor environment
// names one: the user's config directory, shared by the CLI and a worker on
// the same machine.
func DefaultKeyFile() string {
	if f := os.Getenv(EnvKeyFile); f != "" {
		return f
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "mailmove", "secret.key")
}

// KeyID is the ID a key's values carry: the first 4 bytes of a hash of
// the key, in hex. It tells keys apart and reveals nothing of them.
func KeyID(raw []byte) string {
	h := sha256.Sum256(append([]byte("mailmove secret key id\x00"), raw...))
	return hex.EncodeToString(h[:4])
}

func newEntry(raw []byte) (entry, error) {
	if len(raw) != 32 {
		return entry{}, fmt.Errorf("secret key must be 32 bytes, got %d", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return entry{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return entry{}, err
	}
	return entry{id: KeyID(raw), sum: sha256.Sum256(raw), aead: aead}, nil
}

// NewKey returns a key from 32 raw bytes; older keys, which only open,
// may follow.
func NewKey(raw []byte, older ...[]byte) (*Key, error) {
	k := &Key{}
	for _, r := range append([][]byte{raw}, older...) {
		e, err := newEntry(r)
		if err != nil {
			return nil, err
		}
		k.keys = append(k.keys, e)
	}
	return k, nil
}

// IDs are the IDs of the keys held, the current one first.
func (k *Key) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, len(k.keys))
	for i, e := range k.keys {
		ids[i] = e.id
	}
	return ids
}

// parseKeys reads keys in base64, current first, separated by new lines
// or commas; lines starting with # are comments.
func parseKeys(text string) ([][]byte, error) {
	var raws [][]byte
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, f := range strings.Split(line, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(f)
			if err != nil {
				return nil, fmt.Errorf("not base64: %w", err)
			}
			if len(raw) != 32 {
				return nil, fmt.Errorf("a key must be 32 bytes, got %d", len(raw))
			}
			raws = append(raws, raw)
		}
	}
	if len(raws) == 0 {
		return nil, errors.New("no key in it")
	}
	return raws, nil
}

// Load reads the keys from $MAILMOVE_SECRET_KEY, or else from file. With
// create, a missing file is made with a new random key (mode 0600) — by the
// commands an admin runs (`mailmove key init`, `batch start`), never by a
// worker: processes that start together would each make a different key,
// and a worker whose key differs from the CLI's fails each move at once
// with SecretKeyMismatch. $MAILMOVE_ACCEPT_MMSEC1=1 sets AcceptUnbound.
func Load(file string, create bool) (*Key, error) {
	k, err := load(file, create)
	if err != nil {
		return nil, err
	}
	k.AcceptUnbound = os.Getenv(EnvAcceptUnbound) == "1"
	return k, nil
}

func load(file string, create bool) (*Key, error) {
	if v := os.Getenv(EnvKey); v != "" {
		raws, err := parseKeys(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKey, err)
		}
		return NewKey(raws[0], raws[1:]...)
	}
	if file == "" {
		file = DefaultKeyFile()
	}
	if create {
		if _, err := Init(file); err != nil {
			return nil, err
		}
	}
	raws, err := readKeys(file)
	if err != nil {
		return nil, err
	}
	k, err := NewKey(raws[0], raws[1:]...)
	if err != nil {
		return nil, err
	}
	k.file = file
	return k, nil
}

// readKeys reads a key file: the current key first.
func readKeys(file string) ([][]byte, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no secret key at %s: create it with `mailmove key init` (a first `mailmove batch start` does too) and give every worker the same file with --secret-key-file, or set %s", file, EnvKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read secret key (give the same --secret-key-file to the CLI and the worker, or set %s): %w", EnvKey, err)
	}
	if len(data) > 64<<10 {
		return nil, fmt.Errorf("secret key %s: larger than 64 KiB, not a key file", file)
	}
	raws, err := parseKeys(string(data))
	if err != nil {
		return nil, fmt.Errorf("secret key %s: %w", file, err)
	}
	return raws, nil
}

// Init makes a new random key in file unless one is there, atomically:
// of processes that race to make it, one wins and all read its key. It
// reports whether this call made it.
func Init(file string) (created bool, err error) {
	if _, err := os.Stat(file); err == nil {
		return false, nil
	}
	raw, err := randomKey()
	if err != nil {
		return false, err
	}
	tmp, err := writeTemp(file, [][]byte{raw})
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	// A hard link never replaces a file: only the first one lands.
	if err := os.Link(tmp, file); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("write secret key: %w", err)
	}
	return true, nil
}

func randomKey() ([]byte, error) {
	raw := make([]byte, 32)
	_, err := rand.Read(raw)
	return raw, err
}

// writeTemp writes keys to a new file (mode 0600) next to file and
// returns its name. A file of one key is as `key init` always made it;
// more get a comment saying which seals.
func writeTemp(file string, raws [][]byte) (string, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".secret-key-*")
	if err != nil {
		return "", fmt.Errorf("write secret key: %w", err)
	}
	err = tmp.Chmod(0o600)
	w := bufio.NewWriter(tmp)
	if len(raws) > 1 {
		fmt.Fprintf(w, "# mailmove secret keys: the first seals new moves, the others only open the moves sealed with them (mailmove key rotate).\n")
	}
	for _, raw := range raws {
		fmt.Fprintf(w, "%s\n", base64.StdEncoding.EncodeToString(raw))
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("write secret key: %w", err)
	}
	return tmp.Name(), nil
}

// replace writes keys to file atomically (a reader sees the old file or
// the new one, never half of one).
func replace(file string, raws [][]byte) error {
	tmp, err := writeTemp(file, raws)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write secret key: %w", err)
	}
	return nil
}

// lockFile keeps other Rotate and DropOld calls off file until unlock:
// each reads the file, then writes it whole, so two at once would lose
// the key one of them added. The lock is file+".lock", made exclusively;
// one left by a process that died is taken over after lockStale.
func lockFile(file string) (unlock func(), err error) {
	lock := file + ".lock"
	deadline := time.Now().Add(lockWait)
	for {
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			return func() { os.Remove(lock) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lock the secret key: %w", err)
		}
		if fi, err := os.Stat(lock); err == nil && time.Since(fi.ModTime()) > lockStale {
			os.Remove(lock)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("another mailmove key rotate holds %s; remove it if none runs", lock)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	lockWait  = 10 * time.Second
	lockStale = time.Minute
)

// Rotate puts a new random key first in file, which must exist: it seals
// from now on, and the keys that were there keep opening what they
// sealed. It returns the new key's ID and the older ones'.
func Rotate(file string) (id string, older []string, err error) {
	unlock, err := lockFile(file)
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	raws, err := readKeys(file)
	if err != nil {
		return "", nil, err
	}
	raw, err := randomKey()
	if err != nil {
		return "", nil, err
	}
	if err := replace(file, append([][]byte{raw}, raws...)); err != nil {
		return "", nil, err
	}
	for _, r := range raws {
		older = append(older, KeyID(r))
	}
	return KeyID(raw), older, nil
}

// DropOld keeps only the current key in file: values sealed with the
// others no longer open. It returns the current key's ID and the dropped
// ones'.
func DropOld(file string) (id string, dropped []string, err error) {
	unlock, err := lockFile(file)
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	raws, err := readKeys(file)
	if err != nil {
		return "", nil, err
	}
	for _, r := range raws[1:] {
		dropped = append(dropped, KeyID(r))
	}
	if len(dropped) > 0 {
		if err := replace(file, raws[:1]); err != nil {
			return "", nil, err
		}
	}
	return KeyID(raws[0]), dropped, nil
}

// SealFor encrypts a secret for the use b says, with the current key.
func (k *Key) SealFor(b Binding, plain string) (Sealed, error) {
	if len(plain) > maxPlain {
		return "", fmt.Errorf("a secret of %d bytes: at most %d", len(plain), maxPlain)
	}
	if b.Use == "" || b.Side == "" {
		return "", fmt.Errorf("seal a secret for %v: say which secret and side", b)
	}
	k.mu.RLock()
	cur := k.keys[0]
	k.mu.RUnlock()
	header, err := json.Marshal(b)
	if err != nil {
		return "", err
	}
	ad := prefixV2 + cur.id + ":" + base64.RawURLEncoding.EncodeToString(header)
	nonce := make([]byte, cur.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := cur.aead.Seal(nonce, nonce, []byte(plain), []byte(ad))
	return Sealed(ad + ":" + base64.RawURLEncoding.EncodeToString(out)), nil
}

// SealUnbound makes an `mmsec1:` value, bound to nothing, as mailmove did
// before secrets were bound. Workers refuse it unless AcceptUnbound: it
// exists for tests of that upgrade; everything else seals with SealFor.
func (k *Key) SealUnbound(plain string) (Sealed, error) {
	k.mu.RLock()
	cur := k.keys[0]
	k.mu.RUnlock()
	nonce := make([]byte, cur.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := cur.aead.Seal(nonce, nonce, []byte(plain), nil)
	return Sealed(prefixV1 + base64.RawStdEncoding.EncodeToString(out)), nil
}

// Open decrypts a sealed secret for the use here says. It refuses a value
// sealed for another use (*BindingError), one sealed with a key it does
// not hold (*UnknownKeyError), an unbound `mmsec1:` value unless
// AcceptUnbound (ErrUnbound), and anything damaged or changed. Its errors
// never hold the secret. The zero Sealed opens as no secret.
func (k *Key) Open(s Sealed, here Binding) (string, error) {
	if s == "" {
		return "", nil
	}
	if len(s) > maxSealed {
		return "", errDamaged
	}
	switch s.Version() {
	case 1:
		if !k.AcceptUnbound {
			return "", ErrUnbound
		}
		return k.openV1(s)
	case 2:
	default:
		return "", errors.New("the secret is not sealed (a sealed value starts with mmsec2:)")
	}
	rest := string(s[len(prefixV2):])
	cut := strings.LastIndexByte(rest, ':')
	if cut < 0 {
		return "", errDamaged
	}
	ad, box := string(s[:len(prefixV2)+cut]), rest[cut+1:]
	id, header, ok := strings.Cut(rest[:cut], ":")
	if !ok || len(id) != 8 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", errDamaged
	}
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return "", errDamaged
	}
	var sealed Binding
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sealed); err != nil || dec.More() {
		return "", errDamaged
	}
	data, err := base64.RawURLEncoding.DecodeString(box)
	if err != nil {
		return "", errDamaged
	}
	// The binding is checked before anything is decrypted: the clear
	// header says what differs, and a changed header fails below.
	if sealed != here {
		return "", &BindingError{Sealed: sealed, Here: here}
	}
	keys := k.withID(id)
	if len(keys) == 0 {
		return "", &UnknownKeyError{ID: id, Held: k.IDs()}
	}
	for _, e := range keys {
		n := e.aead.NonceSize()
		if len(data) < n+e.aead.Overhead() {
			return "", errDamaged
		}
		if plain, err := e.aead.Open(nil, data[:n], data[n:], []byte(ad)); err == nil {
			return string(plain), nil
		}
	}
	return "", errDamaged
}

// openV1 opens an unbound value with any key held.
func (k *Key) openV1(s Sealed) (string, error) {
	data, err := base64.RawStdEncoding.DecodeString(string(s[len(prefixV1):]))
	if err != nil {
		return "", errDamaged
	}
	k.mu.RLock()
	keys := slices.Clone(k.keys)
	k.mu.RUnlock()
	for _, e := range keys {
		n := e.aead.NonceSize()
		if len(data) < n+e.aead.Overhead() {
			return "", errDamaged
		}
		if plain, err := e.aead.Open(nil, data[:n], data[n:], nil); err == nil {
			return string(plain), nil
		}
	}
	return "", errors.New("cannot open the secret: this worker's secret key differs from the one the batch was started with")
}

// withID returns the keys held with that ID, reading the key file again
// (at most once a second) when none is.
func (k *Key) withID(id string) []entry {
	find := func() []entry {
		var out []entry
		for _, e := range k.keys {
			if e.id == id {
				out = append(out, e)
			}
		}
		return out
	}
	k.mu.RLock()
	out := find()
	k.mu.RUnlock()
	if len(out) > 0 || k.file == "" {
		return out
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.reloaded) > time.Second {
		k.reloaded = time.Now()
		if raws, err := readKeys(k.file); err == nil {
			var keys []entry
			for _, r := range raws {
				if e, err := newEntry(r); err == nil {
					keys = append(keys, e)
				}
			}
			// Keys held and no longer in the file stay: a file read while
			// it is being copied in place may lack some, and a move sealed
			// with one must not fail for good (SecretKeyMismatch is final).
			// A restart forgets them (key rotate --drop-old says so).
			for _, held := range k.keys {
				if !slices.ContainsFunc(keys, func(e entry) bool { return e.sum == held.sum }) {
					keys = append(keys, held)
				}
			}
			if len(keys) > 0 {
				k.keys = keys
			}
		}
	}
	return find()
}

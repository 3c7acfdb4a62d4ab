// Package secret keeps passwords out of Temporal histories. The starter seals
// each password with a key shared by starter and workers (AES-256-GCM); the
// workflow carries only the sealed string, and only the activity that logs on
// opens it. Anyone who can read histories — the Web UI, an export, a replay
// file — sees ciphertext.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sealed is a password encrypted with a Key. Its zero value is no password.
type Sealed string

const prefix = "mmsec1:"

// Key encrypts and decrypts passwords.
type Key struct{ aead cipher.AEAD }

// EnvKey names the environment variable that may hold the key (base64),
// for deployments where a file is awkward.
const EnvKey = "MAILMOVE_SECRET_KEY"

// EnvKeyFile names the environment variable that may give the key file.
const EnvKeyFile = "MAILMOVE_SECRET_KEY_FILE"

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

// NewKey returns a key from 32 raw bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("secret key must be 32 bytes, got %d", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Key{aead: aead}, nil
}

// Load reads the key from $MAILMOVE_SECRET_KEY, or else from file. With
// create, a missing file is made with a new random key (mode 0600) — by the
// commands an admin runs (`mailmove key init`, `batch start`), never by a
// worker: processes that start together would each make a different key,
// and a worker whose key differs from the CLI's fails each move at once
// with SecretKeyMismatch.
func Load(file string, create bool) (*Key, error) {
	if v := os.Getenv(EnvKey); v != "" {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%s: not base64: %w", EnvKey, err)
		}
		return NewKey(raw)
	}
	if file == "" {
		file = DefaultKeyFile()
	}
	if create {
		if _, err := Init(file); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no secret key at %s: create it with `mailmove key init` (a first `mailmove batch start` does too) and give every worker the same file with --secret-key-file, or set %s", file, EnvKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read secret key (give the same --secret-key-file to the CLI and the worker, or set %s): %w", EnvKey, err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("secret key %s: not base64: %w", file, err)
	}
	return NewKey(raw)
}

// Init makes a new random key in file unless one is there, atomically:
// of processes that race to make it, one wins and all read its key. It
// reports whether this call made it.
func Init(file string) (created bool, err error) {
	if _, err := os.Stat(file); err == nil {
		return false, nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".secret-key-*")
	if err != nil {
		return false, fmt.Errorf("write secret key: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n")
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("write secret key: %w", err)
	}
	// A hard link never replaces a file: only the first one lands.
	if err := os.Link(tmp.Name(), file); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("write secret key: %w", err)
	}
	return true, nil
}

// Seal encrypts a password.
func (k *Key) Seal(plain string) (Sealed, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := k.aead.Seal(nonce, nonce, []byte(plain), nil)
	return Sealed(prefix + base64.RawStdEncoding.EncodeToString(out)), nil
}

// Open decrypts a sealed password. It fails when the worker's key is not the
// one the batch was started with.
func (k *Key) Open(s Sealed) (string, error) {
	if s == "" {
		return "", nil
	}
	b64, ok := strings.CutPrefix(string(s), prefix)
	if !ok {
		return "", errors.New("password is not sealed")
	}
	data, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(data) < k.aead.NonceSize() {
		return "", errors.New("sealed password is damaged")
	}
	n := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, data[:n], data[n:], nil)
	if err != nil {
		return "", errors.New("cannot open the password: this worker's secret key differs from the one the batch was started with")
	}
	return string(plain), nil
}

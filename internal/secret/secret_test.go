package secret

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "k")
	k, err := Load(file, true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.Seal("hunter2")
	if err != nil || strings.Contains(string(s), "hunter2") {
		t.Fatalf("Seal() = %q, %v", s, err)
	}
	k2, err := Load(file, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Open(s); err != nil || got != "hunter2" {
		t.Fatalf("Open() = %q, %v; want hunter2", got, err)
	}
	other, _ := Load(filepath.Join(t.TempDir(), "other"), true)
	if _, err := other.Open(s); err == nil {
		t.Fatal("Open() with another key succeeded")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing"), false); err == nil {
		t.Fatal("Load(missing, false) succeeded")
	}
}

package secret

import (
	"path/filepath"
	"strings"
	"sync"
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

// Processes that make the key at once all end up with one key; a missing
// key is not made by a reader, and its error says how to make one.
func TestInitIsAtomic(t *testing.T) {
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
	sealed, err := keys[0].Seal("pw")
	if err != nil {
		t.Fatal(err)
	}
	creators := 0
	for i, k := range keys {
		if made[i] {
			creators++
		}
		if got, err := k.Open(sealed); err != nil || got != "pw" {
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

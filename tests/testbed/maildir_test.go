package testbed

import (
	"slices"
	"testing"
)

// Messages written as Maildir files are in INBOX at the first logon,
// seen, with their bytes as written.
func TestSeedMaildir(t *testing.T) {
	t.Parallel()
	src := StartForTest(t, Options{Name: "maildir", Users: []User{alice}})
	msgs := [][]byte{
		[]byte("From: a@example.org\r\nSubject: one\r\nMessage-ID: <1@x>\r\n\r\nOne.\r\n"),
		[]byte("From: a@example.org\r\nSubject: two\r\nMessage-ID: <2@x>\r\n\r\nTwo.\r\n"),
	}
	if err := src.SeedMaildir(alice.Name, msgs); err != nil {
		t.Fatal(err)
	}
	snap, err := TakeSnapshot(src.Addr(), alice.Name, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	inbox := snap["INBOX"]
	if len(inbox) != 2 {
		t.Fatalf("INBOX holds %d messages, want 2: %+v", len(inbox), snap)
	}
	for i, m := range inbox {
		if !slices.Contains(m.Flags, `\Seen`) || m.Size != int64(len(msgs[i])) {
			t.Errorf("message %d: %+v", i, m)
		}
	}
}

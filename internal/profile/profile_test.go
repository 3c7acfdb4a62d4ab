package profile

import (
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
)

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		host   string
		caps   []string
		idName string
		want   string
	}{
		{"imap.gmail.com", []string{"IMAP4rev1", "X-GM-EXT-1"}, "GImap", Gmail},
		{"127.0.0.1", []string{"IMAP4rev1", "X-GM-EXT-1"}, "", Gmail}, // an imitation behind a proxy
		{"outlook.office365.com", []string{"IMAP4rev1", "AUTH=XOAUTH2"}, "", Office365},
		{"mail.example.com", []string{"IMAP4rev1", "ID"}, "Dovecot", Dovecot},
		{"mail.example.com", []string{"IMAP4rev1", "ID"}, "Cyrus IMAPd", Cyrus},
		{"mail.example.com", []string{"IMAP4rev1", "AUTH=NTLM", "AUTH=GSSAPI"}, "", Exchange},
		{"mail.example.com", []string{"IMAP4rev1"}, "", Generic},
	} {
		if got := Detect(tc.host, tc.caps, tc.idName); got != tc.want {
			t.Errorf("Detect(%q, %v, %q) = %s, want %s", tc.host, tc.caps, tc.idName, got, tc.want)
		}
	}
}

func TestResolveAppliesAProfileFile(t *testing.T) {
	m, err := Parse([]byte("gmail:\n  downloadBytesPerWindow: 1000\n  window: 1m\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := Resolve(Gmail, m)
	if p.DownloadBytesPerWindow != 1000 || p.Window != failure.Duration(time.Minute) || p.UploadBytesPerWindow != 500<<20 || p.ConnectionsPerUser != 15 {
		t.Fatalf("Resolve(gmail) = %+v, want the file's download budget and window over the built-in numbers", p.Limits)
	}
	if p := Resolve("", m); p.Name != Generic || p.Window != failure.Duration(24*time.Hour) {
		t.Fatalf("Resolve(\"\") = %+v, want generic with a day's window", p)
	}
	for data, want := range map[string]string{
		"gmial:\n  window: 1m\n":             `unknown profile "gmial"`,
		"gmail:\n  downloadBytesPerDay: 5\n": "downloadBytesPerDay",
		"gmail:\n  window: -1m\n":            "negative",
	} {
		if _, err := Parse([]byte(data), "p.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error about %s", data, err, want)
		}
	}
}

// Every profile says where its numbers come from.
func TestEveryProfileHasASource(t *testing.T) {
	for _, p := range profiles {
		if p.Source == "" {
			t.Errorf("profile %s has no source", p.Name)
		}
	}
}

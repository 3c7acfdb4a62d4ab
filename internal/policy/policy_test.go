package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
)

func TestParseOverridesDefaults(t *testing.T) {
	p, err := Parse([]byte(`
rules:
  MailboxLocked:
    initialInterval: 2m
    maximumAttempts: 3
badItemLimit: 0
overQuota: wait
`), "p.yaml")
	if err != nil {
		t.Fatalf("Parse() = %v", err)
	}
	if r := p.Rule(failure.TypeMailboxLocked); time.Duration(r.InitialInterval) != 2*time.Minute || r.MaximumAttempts != 3 {
		t.Fatalf("MailboxLocked rule = %+v", r)
	}
	if p.BadItemLimit != 0 || p.OverQuota != OverQuotaWait || p.Rule(failure.TypeTargetFull).Final {
		t.Fatalf("policy = %+v; want badItemLimit 0 and a waiting TargetFull", p)
	}
	if r := p.Rule(failure.TypeLogonFailed); r.MaximumAttempts != 5 {
		t.Fatalf("LogonFailed default lost: %+v", r)
	}
}

func TestParseErrorsSayWhatToFix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rules:\n  Lockd:\n    initialInterval: 1m\n", "rules.Lockd: unknown failure type"},
		{"rules:\n  MailboxLocked:\n    initialInterval: soon\n", "want a duration"},
		{"rules:\n  ServerUnavailable:\n    backoffCoefficient: 2\n", "rules.ServerUnavailable.initialInterval: must be positive"},
		{"overQuota: maybe\n", `overQuota: "maybe", want fail or wait`},
		{"badItemLimt: 3\n", `unknown field "badItemLimt"`},
	} {
		_, err := Parse([]byte(tc.in), "p.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "p.yaml") {
			t.Errorf("Parse(%q) = %v, want an error naming p.yaml and %q", tc.in, err, tc.want)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

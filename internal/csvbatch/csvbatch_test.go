package csvbatch

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	rows, err := Parse(strings.NewReader("\ufeffEmailAddress,UserName,Password\nalice@example.com,alice,pw1\n\nbob@example.com,bob,pw2\n"), BothSides)
	if err != nil {
		t.Fatalf("Parse() = %v", err)
	}
	if len(rows) != 2 || rows[1].Line != 4 || rows[0].TargetUserName != "alice@example.com" || rows[0].TargetPassword != "pw1" {
		t.Fatalf("Parse() = %+v", rows)
	}
	rows, err = Parse(strings.NewReader("EmailAddress,UserName,Password,TargetUserName,TargetPassword\nalice@example.com,alice,pw1,admin*alice,apw\n"), BothSides)
	if err != nil || rows[0].TargetUserName != "admin*alice" || rows[0].TargetPassword != "apw" {
		t.Fatalf("Parse() with target columns = %+v, %v", rows, err)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "line 1: the file is empty"},
		{"Email,UserName,Password\n", `unknown column "Email"`},
		{"EmailAddress,UserName\n", "column Password is missing"},
		{"EmailAddress,UserName,Password\nalice@example.com,alice,\n", "line 2: Password is empty"},
		{"EmailAddress,UserName,Password\nalice,alice,pw\n", `line 2: EmailAddress "alice" is not an email address`},
		{"EmailAddress,UserName,Password\na@x.org,a,pw\nA@x.org,a,pw\n", "line 3: EmailAddress A@x.org already appears on line 2"},
		{"EmailAddress,UserName,Password,TargetUserName\na@x.org,a,pw,admin\n", "line 2: TargetUserName is given without TargetPassword"},
		{"EmailAddress,UserName,Password\n", "no mailbox rows"},
	} {
		_, err := Parse(strings.NewReader(tc.in), BothSides)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

// A side that logs on as an admin or with tokens needs no password from
// the file; the other still does, and the error says what else logs on.
func TestParseWithoutPasswords(t *testing.T) {
	in := "EmailAddress,UserName,Password\nalice@example.com,alice,\n"
	if _, err := Parse(strings.NewReader(in), Passwords{}); err != nil {
		t.Fatalf("Parse() with admin logons on both sides = %v", err)
	}
	_, err := Parse(strings.NewReader(in), Passwords{Target: true, Hint: " (or --target-admin)"})
	if err == nil || !strings.Contains(err.Error(), "line 2: the target needs a password") || !strings.Contains(err.Error(), "--target-admin") {
		t.Fatalf("Parse() = %v, want the target's missing password on line 2", err)
	}
}

// Package csvbatch reads the CSV file of a batch: the columns admins already
// use for IMAP migration batches, EmailAddress,UserName,Password, plus the
// optional TargetUserName,TargetPassword and SourceAuth,TargetAuth (a row's
// own logon mechanism, over the batch's --source-auth/--target-auth).
package csvbatch

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Row is one mailbox of a batch.
type Row struct {
	Line           int
	EmailAddress   string
	UserName       string
	Password       string
	TargetUserName string
	TargetPassword string
	// SourceAuth and TargetAuth, when set, are the row's logon mechanisms.
	SourceAuth string
	TargetAuth string
}

// Columns known to the parser, in canonical spelling.
var columns = []string{"EmailAddress", "UserName", "Password", "TargetUserName", "TargetPassword", "SourceAuth", "TargetAuth"}

// Passwords says which sides log on with the CSV's passwords; a side that
// logs on as an admin or with OAuth2 tokens needs none from it.
type Passwords struct {
	Source, Target bool
	// Hint names what logs on without them, for the error of a missing
	// password.
	Hint string
	// Auth checks a row's SourceAuth or TargetAuth (col) against how that
	// side logs on; nil accepts any.
	Auth func(col, value string) error
}

// BothSides is every side logging on with its own password.
var BothSides = Passwords{Source: true, Target: true}

// Parse reads every row. It reports every bad row at once, each with its line
// number, so an admin fixes the file in one go; a batch with a bad row must
// not start.
func Parse(r io.Reader, need Passwords) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("line 1: the file is empty; it needs a header row: EmailAddress,UserName,Password")
	}
	if err != nil {
		return nil, fmt.Errorf("line 1: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) // Excel writes a BOM
		known := false
		for _, c := range columns {
			if strings.EqualFold(h, c) {
				col[c], known = i, true
			}
		}
		if !known {
			return nil, fmt.Errorf("line 1: unknown column %q: the header must name EmailAddress,UserName,Password and optionally TargetUserName,TargetPassword,SourceAuth,TargetAuth", h)
		}
	}
	for _, c := range columns[:3] {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("line 1: column %s is missing: the header must name EmailAddress,UserName,Password", c)
		}
	}

	var rows []Row
	var errs []error
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		get := func(c string) string {
			if i, ok := col[c]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := Row{Line: line, EmailAddress: get("EmailAddress"), UserName: get("UserName"), Password: get("Password"),
			TargetUserName: get("TargetUserName"), TargetPassword: get("TargetPassword"),
			SourceAuth: strings.ToLower(get("SourceAuth")), TargetAuth: strings.ToLower(get("TargetAuth"))}
		var bad []string
		if !strings.Contains(row.EmailAddress, "@") {
			bad = append(bad, fmt.Sprintf("EmailAddress %q is not an email address", row.EmailAddress))
		}
		if row.UserName == "" {
			bad = append(bad, "UserName is empty")
		}
		if need.Source && row.Password == "" {
			bad = append(bad, "Password is empty"+need.Hint)
		}
		if need.Target && row.TargetUserName != "" && row.TargetPassword == "" {
			bad = append(bad, "TargetUserName is given without TargetPassword"+need.Hint)
		}
		if !need.Source && need.Target && row.TargetPassword == "" && row.Password == "" {
			bad = append(bad, "the target needs a password: TargetPassword or Password"+need.Hint)
		}
		for _, a := range []struct{ col, value string }{{"SourceAuth", row.SourceAuth}, {"TargetAuth", row.TargetAuth}} {
			if a.value != "" && need.Auth != nil {
				if err := need.Auth(a.col, a.value); err != nil {
					bad = append(bad, err.Error())
				}
			}
		}
		if first, dup := seen[strings.ToLower(row.EmailAddress)]; dup && row.EmailAddress != "" {
			bad = append(bad, fmt.Sprintf("EmailAddress %s already appears on line %d", row.EmailAddress, first))
		}
		if len(bad) > 0 {
			errs = append(errs, fmt.Errorf("line %d: %s", line, strings.Join(bad, "; ")))
			continue
		}
		seen[strings.ToLower(row.EmailAddress)] = line
		if row.TargetUserName == "" {
			row.TargetUserName = row.EmailAddress
		}
		if row.TargetPassword == "" {
			row.TargetPassword = row.Password
		}
		rows = append(rows, row)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d bad row(s); fix them and start the batch again (nothing was started):\n%w", len(errs), errors.Join(errs...))
	}
	if len(rows) == 0 {
		return nil, errors.New("the file has a header but no mailbox rows")
	}
	return rows, nil
}

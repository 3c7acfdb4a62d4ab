package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SeedMaildir writes messages into user's INBOX as Maildir files, without
// a logon: for mailboxes by the thousand, where a logon each would take
// longer than the run being measured. Dovecot reads them at the user's
// first logon as if they had been delivered. The user must not have
// logged on yet.
func (s *Server) SeedMaildir(user string, messages [][]byte) error {
	id, err := currentIdentity()
	if err != nil {
		return err
	}
	home := filepath.Join(s.dir, "mail", user)
	maildir := filepath.Join(home, "Maildir")
	for _, d := range []string{home, maildir, filepath.Join(maildir, "cur"), filepath.Join(maildir, "new"), filepath.Join(maildir, "tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil && !os.IsExist(err) {
			return fmt.Errorf("seed %s: %w", user, err)
		}
		if err := os.Chown(d, id.MailUID, id.MailGID); err != nil {
			return fmt.Errorf("seed %s: %w", user, err)
		}
	}
	now := time.Now()
	for i, m := range messages {
		// Maildir's unique name; ":2,S" marks the message seen.
		name := filepath.Join(maildir, "cur", fmt.Sprintf("%d.M%dP%d.testbed:2,S", now.Unix(), i, os.Getpid()))
		if err := os.WriteFile(name, m, 0o600); err != nil {
			return fmt.Errorf("seed %s: %w", user, err)
		}
		if err := os.Chown(name, id.MailUID, id.MailGID); err != nil {
			return fmt.Errorf("seed %s: %w", user, err)
		}
		// The message's INTERNALDATE.
		at := now.Add(-time.Duration(len(messages)-i) * time.Hour)
		if err := os.Chtimes(name, at, at); err != nil {
			return fmt.Errorf("seed %s: %w", user, err)
		}
	}
	return nil
}

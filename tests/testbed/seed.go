package testbed

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// maxInFlight bounds the APPENDs sent before waiting for the oldest one's
// tagged response.
const maxInFlight = 64

// Dial connects to addr without TLS and logs in. The caller must Close the
// client (Logout first for a clean server log).
func Dial(addr, user, password string) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{
		Dialer: &net.Dialer{Timeout: 10 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s as %s: %w", addr, user, err)
	}
	return c, nil
}

// Seed creates folders on the server at addr and appends their messages with
// flags and internal dates, as user. Folder names are translated from "/" to
// the server's hierarchy separator; folders that already exist (special-use
// folders created on login) are reused, so seeding twice duplicates
// messages. Folders marked Subscribed are subscribed; others are left as
// they are.
//
// APPENDs are pipelined, up to 64 in flight, so thousands of messages take
// seconds.
func Seed(addr, user, password string, folders []Folder) error {
	c, err := Dial(addr, user, password)
	if err != nil {
		return err
	}
	defer c.Close()

	sep, err := separator(c)
	if err != nil {
		return err
	}
	names := make([]string, len(folders))
	for i, f := range folders {
		names[i] = serverName(f.Name, sep)
		if !strings.EqualFold(names[i], "INBOX") {
			if err := c.Create(names[i], nil).Wait(); err != nil && !isCode(err, imap.ResponseCodeAlreadyExists) {
				return fmt.Errorf("seed %s: create %q: %w", user, f.Name, err)
			}
		}
		if f.Subscribed {
			if err := c.Subscribe(names[i]).Wait(); err != nil {
				return fmt.Errorf("seed %s: subscribe %q: %w", user, f.Name, err)
			}
		}
	}

	type pending struct {
		cmd    *imapclient.AppendCommand
		folder string
		index  int
	}
	var queue []pending
	wait := func(p pending) error {
		if _, err := p.cmd.Wait(); err != nil {
			return fmt.Errorf("seed %s: append to %q message %d: %w", user, p.folder, p.index, err)
		}
		return nil
	}
	for i, f := range folders {
		for j, m := range f.Messages {
			flags := make([]imap.Flag, len(m.Flags))
			for k, fl := range m.Flags {
				flags[k] = imap.Flag(fl)
			}
			cmd := c.Append(names[i], int64(len(m.Raw)), &imap.AppendOptions{Flags: flags, Time: m.InternalDate})
			if _, err := cmd.Write(m.Raw); err != nil {
				return fmt.Errorf("seed %s: append to %q message %d: %w", user, f.Name, j, err)
			}
			if err := cmd.Close(); err != nil {
				return fmt.Errorf("seed %s: append to %q message %d: %w", user, f.Name, j, err)
			}
			queue = append(queue, pending{cmd, f.Name, j})
			if len(queue) >= maxInFlight {
				if err := wait(queue[0]); err != nil {
					return err
				}
				queue = queue[1:]
			}
		}
	}
	for _, p := range queue {
		if err := wait(p); err != nil {
			return err
		}
	}
	if err := c.Logout().Wait(); err != nil {
		return fmt.Errorf("seed %s: logout: %w", user, err)
	}
	return nil
}

// separator returns the hierarchy separator of the personal namespace, from
// LIST "" "".
func separator(c *imapclient.Client) (namespace, error) {
	list, err := c.List("", "", nil).Collect()
	if err != nil {
		return namespace{}, fmt.Errorf("list hierarchy separator: %w", err)
	}
	ns := namespace{sep: '/'} // flat server; no name contains a separator then
	if len(list) > 0 && list[0].Delim != 0 {
		ns.sep = list[0].Delim
	}
	if data, err := c.Namespace().Wait(); err == nil && len(data.Personal) > 0 {
		ns.prefix = data.Personal[0].Prefix
	}
	return ns, nil
}

// namespace is a server's personal namespace: folder names start with
// prefix (INBOX aside) and separate levels with sep.
type namespace struct {
	prefix string
	sep    rune
}

// serverName translates a "/"-separated corpus name to the server's
// namespace.
func serverName(name string, ns namespace) string {
	if strings.EqualFold(name, "INBOX") {
		return name
	}
	return ns.prefix + strings.ReplaceAll(name, DefaultSeparator, string(ns.sep))
}

// corpusName translates a server name back to a "/"-separated corpus name.
func corpusName(name string, ns namespace) string {
	if rest, ok := strings.CutPrefix(name, ns.prefix); ok && rest != "" && !strings.EqualFold(name, "INBOX") {
		name = rest
	}
	if ns.sep == 0 {
		return name
	}
	return strings.ReplaceAll(name, string(ns.sep), DefaultSeparator)
}

func isCode(err error, code imap.ResponseCode) bool {
	var imapErr *imap.Error
	return errors.As(err, &imapErr) && imapErr.Code == code
}

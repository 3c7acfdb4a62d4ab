package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mailmove/mailmove/tests/testbed"
)

// sides are the two instances of a test bed, in start order.
var sides = []string{"source", "target"}

// localParts name the demo users; more mailboxes get userN names.
var localParts = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}

type upOptions struct {
	Dir             string
	SourcePort      int
	TargetPort      int
	Mailboxes       int
	Messages        int
	Seed            int64
	SourceSeparator string
	TargetSeparator string
	TargetFolders   string
}

func parseUp(args []string, stderr io.Writer) (upOptions, error) {
	var opts upOptions
	fs := flag.NewFlagSet("testbed up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.Dir, "dir", "", "state `directory` (required); as root, it and its parents get o+x")
	fs.IntVar(&opts.SourcePort, "source-port", 11143, "IMAP port of the source")
	fs.IntVar(&opts.TargetPort, "target-port", 12143, "IMAP port of the target")
	fs.IntVar(&opts.Mailboxes, "mailboxes", 3, "number of users (alice, bob, carol, ...)")
	fs.IntVar(&opts.Messages, "messages", 200, "messages seeded per source mailbox")
	fs.Int64Var(&opts.Seed, "seed", 1, "corpus seed; user i gets seed+i")
	fs.StringVar(&opts.SourceSeparator, "source-separator", "/", `hierarchy separator of the source, "/" or "."`)
	fs.StringVar(&opts.TargetSeparator, "target-separator", ".", `hierarchy separator of the target, "/" or "."`)
	fs.StringVar(&opts.TargetFolders, "target-folders", "standard", `special folder names on the target: "standard" (Sent, Trash...) or "outlook" (Sent Items, Deleted Items...)`)
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	switch {
	case fs.NArg() > 0:
		return opts, fmt.Errorf("up: unexpected argument %q", fs.Arg(0))
	case opts.Dir == "":
		return opts, errors.New("up: --dir is required")
	case opts.Mailboxes < 1:
		return opts, errors.New("up: --mailboxes must be at least 1")
	case opts.Messages < 0:
		return opts, errors.New("up: --messages must not be negative")
	case opts.TargetFolders != "standard" && opts.TargetFolders != "outlook":
		return opts, fmt.Errorf("up: --target-folders %q: want standard or outlook", opts.TargetFolders)
	}
	return opts, nil
}

func upRun(opts upOptions, stdout io.Writer) error {
	if err := testbed.EnsureDovecot(); err != nil {
		return err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	for _, side := range sides {
		old, err := stopSide(filepath.Join(dir, side))
		if err != nil {
			return fmt.Errorf("stop old %s: %w", side, err)
		}
		if old != nil {
			fmt.Fprintf(stdout, "stopped old %s (pid %d)\n", side, old.PID())
		}
		if err := os.RemoveAll(filepath.Join(dir, side)); err != nil {
			return fmt.Errorf("wipe %s: %w", side, err)
		}
	}

	users := make([]testbed.User, opts.Mailboxes)
	for i := range users {
		local := fmt.Sprintf("user%d", i+1)
		if i < len(localParts) {
			local = localParts[i]
		}
		users[i] = testbed.User{Name: local + "@example.com", Password: "secret-" + local}
	}

	targetFolders := testbed.StandardSpecialUse()
	if opts.TargetFolders == "outlook" {
		targetFolders = testbed.OutlookSpecialUse()
	}
	src, err := testbed.Start(testbed.Options{
		Name:       "source",
		Dir:        filepath.Join(dir, "source"),
		Port:       opts.SourcePort,
		Users:      users,
		Separator:  opts.SourceSeparator,
		SpecialUse: testbed.StandardSpecialUse(),
	})
	if err != nil {
		return err
	}
	tgt, err := testbed.Start(testbed.Options{
		Name:       "target",
		Dir:        filepath.Join(dir, "target"),
		Port:       opts.TargetPort,
		Users:      users,
		Separator:  opts.TargetSeparator,
		SpecialUse: targetFolders,
	})
	if err != nil {
		return errors.Join(err, src.Stop())
	}
	// A half-seeded test bed is useless; do not leave it running.
	fail := func(err error) error { return errors.Join(err, src.Stop(), tgt.Stop()) }

	for i, u := range users {
		start := time.Now()
		if err := testbed.Seed(src.Addr(), u.Name, u.Password, testbed.SampleMailbox(opts.Seed+int64(i), opts.Messages)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "seeded %s with %d messages in %v\n", u.Name, opts.Messages, time.Since(start).Round(time.Millisecond))
	}

	csvPath := filepath.Join(dir, "batch.csv")
	if err := writeBatch(csvPath, users); err != nil {
		return fail(err)
	}
	for _, s := range []*testbed.Server{src, tgt} {
		fmt.Fprintf(stdout, "%-7s %s  separator %q  pid %d  log %s\n", s.Name(), s.Addr(), s.Separator(), s.PID(), s.LogPath())
	}
	fmt.Fprintf(stdout, "batch   %s\n", csvPath)
	fmt.Fprintf(stdout, "stop with: testbed down --dir %s\n", dir)
	return nil
}

func writeBatch(path string, users []testbed.User) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"EmailAddress", "UserName", "Password"})
	for _, u := range users {
		w.Write([]string{u.Name, u.Name, u.Password})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("write batch: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	return nil
}

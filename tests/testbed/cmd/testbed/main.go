// Command testbed starts and stops a pair of seeded Dovecot servers for
// demos and scripts:
//
//	testbed up --dir DIR [--source-port 11143] [--target-port 12143] [--mailboxes 3] [--messages 200]
//	testbed down --dir DIR
//
// `up` leaves a "source" and a "target" Dovecot running in DIR/source and
// DIR/target, creates the same users on both, seeds the source with
// testbed.SampleMailbox and writes DIR/batch.csv for the migration. Running
// it again wipes and restarts both. `down` stops them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  testbed up --dir DIR [flags]   start and seed a source and a target Dovecot
  testbed down --dir DIR         stop them

Run "testbed up -h" for the flags of up.
`

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "up":
		opts, err := parseUp(args[1:], stderr)
		if err != nil {
			return err
		}
		return upRun(opts, stdout)
	case "down":
		opts, err := parseDown(args[1:], stderr)
		if err != nil {
			return err
		}
		return downRun(opts, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

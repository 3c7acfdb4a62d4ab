package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/mailmove/mailmove/tests/testbed"
)

type downOptions struct {
	Dir string
}

func parseDown(args []string, stderr io.Writer) (downOptions, error) {
	var opts downOptions
	fs := flag.NewFlagSet("testbed down", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.Dir, "dir", "", "state `directory` given to up (required)")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	switch {
	case fs.NArg() > 0:
		return opts, fmt.Errorf("down: unexpected argument %q", fs.Arg(0))
	case opts.Dir == "":
		return opts, errors.New("down: --dir is required")
	}
	return opts, nil
}

func downRun(opts downOptions, stdout io.Writer) error {
	var errs []error
	for _, side := range sides {
		s, err := stopSide(filepath.Join(opts.Dir, side))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("stop %s: %w", side, err))
		case s == nil:
			fmt.Fprintf(stdout, "%s: not running\n", side)
		default:
			fmt.Fprintf(stdout, "%s: stopped %s (pid %d)\n", side, s.Addr(), s.PID())
		}
	}
	return errors.Join(errs...)
}

// stopSide stops the instance running in dir and returns it, or nil if none
// was running.
func stopSide(dir string) (*testbed.Server, error) {
	s, err := testbed.Attach(dir)
	if errors.Is(err, testbed.ErrNotRunning) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s, s.Stop()
}

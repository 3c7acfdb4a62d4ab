package main

import (
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
)

// Exit statuses of mailmove, documented in the root command's help.
const (
	exitOK          = 0
	exitFailed      = 1 // an operation failed
	exitUsage       = 2 // the command line is wrong
	exitUnreachable = 3 // Temporal could not be reached
)

// exitError is an error that ends mailmove with a given exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err, if any, as a wrong command line: an unknown flag or
// command, a missing or invalid flag or argument.
func usageError(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitUsage, err: err}
}

// usageErrorf is usageError of a new error; name the flag and say what to
// write, e.g. "--concurrency 0: must be at least 1".
func usageErrorf(format string, a ...any) error {
	return usageError(fmt.Errorf(format, a...))
}

// exitCode is the exit status err ends mailmove with: that of an
// exitError, exitUnreachable for a Temporal frontend that became
// unavailable, else exitFailed.
func exitCode(err error) int {
	var e *exitError
	var unavailable *serviceerror.Unavailable
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &e):
		return e.code
	case errors.As(err, &unavailable):
		return exitUnreachable
	}
	return exitFailed
}

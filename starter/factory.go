package main

import (
	"io"

	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/worker"
)

// factory is what the verbs take from outside the process: the Temporal
// connection, the secret key and where to write. newCmdX copies what its
// verb needs into the verb's options; tests build a factory around a fake
// client.
type factory struct {
	// Conn is the connection flags (worker.Connection.AddFlags) and
	// --secret-key-file, which the root command owns; read it only once the
	// flags are parsed.
	Conn *worker.Connection
	// Dial connects to Temporal at conn. The caller closes the client; a
	// server that cannot be reached is an exitUnreachable error.
	Dial   func(conn worker.Connection) (client.Client, error)
	Out    io.Writer
	ErrOut io.Writer
}

// newFactory is the production factory: the real Temporal client with the
// SDK's logger kept quiet.
func newFactory(out, errOut io.Writer) *factory {
	return &factory{
		Conn: &worker.Connection{},
		Dial: func(conn worker.Connection) (client.Client, error) {
			c, err := conn.Dial(quietLogger{})
			if err != nil {
				return nil, &exitError{code: exitUnreachable, err: err}
			}
			return c, nil
		},
		Out:    out,
		ErrOut: errOut,
	}
}

// Client connects to the Temporal of the connection flags, the profile
// and the environment.
func (f *factory) Client() (client.Client, error) { return f.Dial(*f.Conn) }

// Key loads the key of --secret-key-file; with create, a missing file is
// made with a new key.
func (f *factory) Key(create bool) (*secret.Key, error) {
	return secret.Load(f.Conn.SecretKeyFile, create)
}

// quietLogger keeps the SDK's connection chatter out of the CLI's output.
type quietLogger struct{}

func (quietLogger) Debug(string, ...interface{}) {}
func (quietLogger) Info(string, ...interface{})  {}
func (quietLogger) Warn(string, ...interface{})  {}
func (quietLogger) Error(string, ...interface{}) {}

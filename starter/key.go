package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mailmove/mailmove/internal/secret"
)

type keyInitOptions struct {
	Out  io.Writer
	File func() string // --secret-key-file, read once the flags are parsed
}

func newCmdKey(f *factory) *cobra.Command {
	return newCmdGroup("key", "Manage the secret key that seals the batch passwords", newCmdKeyInit(f, nil))
}

func newCmdKeyInit(f *factory, runF func(*keyInitOptions) error) *cobra.Command {
	opts := &keyInitOptions{Out: f.Out, File: func() string { return f.Conn.SecretKeyFile }}
	return &cobra.Command{
		Use:   "init",
		Short: "Create the secret key file (--secret-key-file) unless it exists",
		Long: "Creates a new random key in --secret-key-file (mode 0600) unless one is there; running it\n" +
			"again changes nothing. Workers never create the key: give each worker this file (or set\n" +
			secret.EnvKey + " everywhere) before starting it.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if runF != nil {
				return runF(opts)
			}
			return keyInitRun(opts)
		},
	}
}

func keyInitRun(opts *keyInitOptions) error {
	if os.Getenv(secret.EnvKey) != "" {
		fmt.Fprintf(opts.Out, "The key comes from %s: no file to create.\n", secret.EnvKey)
		return nil
	}
	file := opts.File()
	created, err := secret.Init(file)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(opts.Out, "Created the secret key %s: give the workers the same file (--secret-key-file).\n", file)
	} else {
		fmt.Fprintf(opts.Out, "The secret key %s exists; nothing changed.\n", file)
	}
	return nil
}

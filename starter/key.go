package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailmove/mailmove/internal/secret"
)

type keyInitOptions struct {
	Out  io.Writer
	File func() string // --secret-key-file, read once the flags are parsed
}

func newCmdKey(f *factory) *cobra.Command {
	return newCmdGroup("key", "Manage the secret key that seals the batch passwords", newCmdKeyInit(f, nil), newCmdKeyRotate(f, nil))
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

type keyRotateOptions struct {
	Out     io.Writer
	File    func() string // --secret-key-file, read once the flags are parsed
	DropOld bool
}

func newCmdKeyRotate(f *factory, runF func(*keyRotateOptions) error) *cobra.Command {
	opts := &keyRotateOptions{Out: f.Out, File: func() string { return f.Conn.SecretKeyFile }}
	cmd := &cobra.Command{
		Use:   "rotate [--drop-old]",
		Short: "Make a new secret key for new moves; the older keys keep opening the running ones",
		Long: "Puts a new random key first in --secret-key-file: batches started from now on are sealed\n" +
			"with it, and the keys that were there stay in the file to open the moves sealed with them.\n" +
			"Give every worker the new file before starting a batch with it (a worker that reads the\n" +
			"same file picks the new key up by itself; others need the file and a restart).\n" +
			"--drop-old, once no move sealed with an older key runs, removes the older keys.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if runF != nil {
				return runF(opts)
			}
			return keyRotateRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DropOld, "drop-old", false, "remove the older keys, keep the current one (make no new key): moves sealed with them can no longer log on")
	return cmd
}

func keyRotateRun(opts *keyRotateOptions) error {
	if os.Getenv(secret.EnvKey) != "" {
		return fmt.Errorf("the key comes from %s, not a file: rotate it there — set it to a new key (`openssl rand -base64 32`), a comma and the old one, "+
			"on the CLI and every worker; drop the old one when the moves sealed with it have ended", secret.EnvKey)
	}
	file := opts.File()
	if opts.DropOld {
		id, dropped, err := secret.DropOld(file)
		if err != nil {
			return err
		}
		if len(dropped) == 0 {
			fmt.Fprintf(opts.Out, "The secret key %s holds only the current key %s; nothing changed.\n", file, id)
			return nil
		}
		fmt.Fprintf(opts.Out, "Dropped the older keys %s from %s; %s is the only key.\n"+
			"Give the workers this file and restart them. A move still sealed with a dropped key fails with SecretKeyMismatch.\n",
			strings.Join(dropped, ", "), file, id)
		return nil
	}
	id, older, err := secret.Rotate(file)
	if err != nil {
		return err
	}
	fmt.Fprintf(opts.Out, "New key %s in %s: it seals every batch started from now on; the older keys %s keep opening the moves sealed with them.\n"+
		"1. Copy %s to every worker (--secret-key-file) before starting a new batch; restart the workers that do not read this very file.\n"+
		"2. When the batches started before now have ended (mailmove batch list), run `mailmove key rotate --drop-old` and give the workers the file again.\n",
		id, file, strings.Join(older, ", "), file)
	return nil
}

package main

import "github.com/spf13/cobra"

func newCmdMove(f *factory) *cobra.Command {
	return newCmdGroup("move", "Inspect and steer one mailbox's move",
		newCmdMoveStatus(f, nil), newCmdMoveResume(f, nil), newCmdMoveComplete(f, nil))
}

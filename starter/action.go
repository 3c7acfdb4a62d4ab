package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
)

// actionResult is what a command that acts on a batch did, one outcome per
// mailbox: printed as lines, or whole as JSON with --json.
type actionResult struct {
	Batch  string
	Action string
	Moves  []outcome      `json:",omitempty"`
	Counts map[string]int `json:",omitempty"`
	// Summary is the line that ends the text form.
	Summary string
}

// outcome is what an action did to one move.
type outcome struct {
	Mailbox string
	Outcome string // e.g. completing, skipped, started again, cancelled
	Detail  string `json:",omitempty"`
}

func (r *actionResult) add(mailbox, what, detail string) {
	r.Moves = append(r.Moves, outcome{Mailbox: mailbox, Outcome: what, Detail: detail})
	if r.Counts == nil {
		r.Counts = map[string]int{}
	}
	r.Counts[what]++
}

// print writes r as JSON, or as a line per move (but those whose outcome
// is one of quiet, the usual ones) and the summary.
func (r actionResult) print(out io.Writer, asJSON bool, quiet ...string) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	for _, m := range r.Moves {
		if slices.Contains(quiet, m.Outcome) {
			continue
		}
		line := m.Mailbox + ": " + m.Outcome
		if m.Detail != "" {
			line += ": " + m.Detail
		}
		fmt.Fprintln(out, line)
	}
	if r.Summary != "" {
		fmt.Fprintln(out, r.Summary)
	}
	return nil
}

// addJSONFlag gives an action command --json.
func addJSONFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "json", false, "print what was done as JSON, one outcome per mailbox")
}

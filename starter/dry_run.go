package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

// dryRun logs on to both sides of every move, as Connect would, and prints
// the folder plan the rules give, with counts; it copies and starts nothing.
func dryRun(ctx context.Context, in workflows.BatchInput, key *secret.Key, out io.Writer) error {
	failed := 0
	for _, mv := range in.Moves {
		fmt.Fprintf(out, "%s\n", mv.Mailbox)
		if err := planOne(ctx, mv, key, out); err != nil {
			fmt.Fprintf(out, "  cannot plan: %v\n\n", err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d mailboxes cannot be planned; fix them before starting the batch", failed, len(in.Moves))
	}
	return nil
}

func planOne(ctx context.Context, mv workflows.MailboxMoveInput, key *secret.Key, out io.Writer) error {
	dial := func(side failure.Side, acc activities.Account) (*engine.Session, error) {
		pw, err := key.Open(acc.Password)
		if err != nil {
			return nil, err
		}
		return engine.Dial(ctx, side, acc.Endpoint, engine.Credentials{User: acc.User, Password: pw})
	}
	src, err := dial(failure.SideSource, mv.Source)
	if err != nil {
		return err
	}
	defer src.Close()
	tgt, err := dial(failure.SideTarget, mv.Target)
	if err != nil {
		return err
	}
	defer tgt.Close()
	plans, excluded, err := engine.Plan(ctx, src, tgt, mv.Settings.Rules)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SOURCE\tTARGET\tMESSAGES\tSIZE")
	var msgs uint32
	var bytes int64
	for _, p := range plans {
		target := p.Target
		switch {
		case p.Exists:
			target += " (exists)"
		default:
			target += " (new)"
		}
		if p.SpecialUse != "" {
			target += " " + string(p.SpecialUse)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", p.Source, target, p.Messages, humanize.Bytes(p.Bytes))
		msgs += p.Messages
		bytes += p.Bytes
	}
	for _, e := range excluded {
		fmt.Fprintf(tw, "  %s\t(excluded)\t\t\n", e)
	}
	tw.Flush()
	fmt.Fprintf(out, "  %d folders, %d messages, %s", len(plans), msgs, humanize.Bytes(bytes))
	if len(excluded) > 0 {
		fmt.Fprintf(out, "; %d folders excluded", len(excluded))
	}
	r := mv.Settings.Rules
	if r.MaxMessageSize > 0 || !r.NewerThan.IsZero() {
		fmt.Fprintf(out, " (before the size and date filters)")
	}
	fmt.Fprintf(out, "\n\n")
	return nil
}

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mailmove/mailmove/internal/csvbatch"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

// A gated batch's moves are started by the CLI, not by the batch: no
// payload of the batch carries their settings and credentials, whatever
// their number (workflows.BatchInput.Gated).
const (
	// namesPerSignal is how many mailboxes one signal names to the batch
	// (about 60 KB).
	namesPerSignal = 2000
	// startsAtOnce is how many moves the CLI starts in parallel.
	startsAtOnce = 16
)

// mailboxes are the moves' addresses.
func mailboxes(moves []workflows.MailboxMoveInput) []string {
	names := make([]string, len(moves))
	for i, mv := range moves {
		names[i] = mv.Mailbox
	}
	return names
}

// checkBatchSize refuses more mailboxes than a batch takes.
func checkBatchSize(have, adding int) error {
	if have+adding > workflows.MaxBatchMailboxes {
		return fmt.Errorf("a batch takes at most %d mailboxes and this one would have %d: split the CSV and start several batches",
			workflows.MaxBatchMailboxes, have+adding)
	}
	return nil
}

// registerMoves names mailboxes to the batch before their moves start, so
// that the batch waits for them, in pages of namesPerSignal.
func registerMoves(ctx context.Context, c client.Client, batch string, names []string) error {
	for len(names) > 0 {
		n := min(len(names), namesPerSignal)
		if err := c.SignalWorkflow(ctx, workflows.BatchWorkflowID(batch), "", workflows.SignalAddMoves, names[:n]); err != nil {
			return fmt.Errorf("batch %q: %w", batch, err)
		}
		names = names[n:]
	}
	return nil
}

// moveStartOptions start a gated move: its workflow ID is derived from the
// batch and mailbox, so that starting it twice is refused, and its memo
// says Queued until it writes its own.
func moveStartOptions(batch, mailbox string) client.StartWorkflowOptions {
	queued := workflows.MoveStatus{Batch: batch, Mailbox: mailbox, Status: workflows.StatusQueued, StatusDetail: workflows.DetailQueued}
	return client.StartWorkflowOptions{
		ID:        workflows.MoveWorkflowID(batch, mailbox),
		TaskQueue: workflows.TaskQueue,
		// A failed move may be started again by `batch retry`; a
		// completed one never.
		WorkflowIDReusePolicy:                    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrBatch.ValueSet(batch), workflows.SearchAttrMailbox.ValueSet(mailbox),
			workflows.SearchAttrStatus.ValueSet(string(workflows.StatusQueued)), workflows.SearchAttrStatusDetail.ValueSet(workflows.DetailQueued),
		),
		Memo: map[string]any{workflows.MemoMove: queued},
	}
}

// startMoves starts gated moves, startsAtOnce at a time. A move that
// exists already (a batch start or add run again after it was cut off)
// is counted, not started twice. progress, when not nil, gets a line
// every few seconds.
func startMoves(ctx context.Context, c client.Client, batch string, moves []workflows.MailboxMoveInput, progress io.Writer) (started, already int, err error) {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		next = make(chan workflows.MailboxMoveInput)
	)
	for range startsAtOnce {
		wg.Go(func() {
			for mv := range next {
				mv.Batch, mv.Gated = batch, true
				_, err := c.ExecuteWorkflow(ctx, moveStartOptions(batch, mv.Mailbox), workflows.MailboxMove, mv)
				var exists *serviceerror.WorkflowExecutionAlreadyStarted
				mu.Lock()
				switch {
				case err == nil:
					started++
				case errors.As(err, &exists):
					already++
				default:
					errs = append(errs, fmt.Errorf("%s: %w", mv.Mailbox, err))
				}
				mu.Unlock()
			}
		})
	}
	last := time.Now()
	for i, mv := range moves {
		if ctx.Err() != nil {
			break
		}
		next <- mv
		if progress != nil && time.Since(last) > 5*time.Second {
			last = time.Now()
			fmt.Fprintf(progress, "… %d of %d moves started\n", i, len(moves))
		}
	}
	close(next)
	wg.Wait()
	if n := len(errs); n > 0 {
		if n > 10 {
			errs = append(errs[:10], fmt.Errorf("and %d more", n-10))
		}
		return started, already, fmt.Errorf("%d moves not started (run the same command again: it starts only those):\n%w", n, errors.Join(errs...))
	}
	return started, already, ctx.Err()
}

// startedLine says what startMoves did.
func startedLine(started, already int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d moves started", started)
	if already > 0 {
		fmt.Fprintf(&b, ", %d already there (not started twice)", already)
	}
	return b.String()
}

// needsPassword: the account logs on with the user's own password (not as
// an admin, not with a token command), which the CSV gives.
func needsPassword(a workflows.Account) bool { return a.Admin == "" && a.TokenCommand == "" }

// movesFromRows makes a move of each CSV row: tmpl with the row's
// mailbox, users, logon mechanisms and passwords (sealed, each for its
// side's server and security and the row's user).
func movesFromRows(rows []csvbatch.Row, tmpl workflows.MailboxMoveInput, key *secret.Key, srcPassword, tgtPassword bool) ([]workflows.MailboxMoveInput, error) {
	moves := make([]workflows.MailboxMoveInput, 0, len(rows))
	for _, r := range rows {
		mv := tmpl
		mv.Mailbox = r.EmailAddress
		mv.Source.User, mv.Target.User = r.UserName, r.TargetUserName
		mv.Source.Auth = cmp.Or(r.SourceAuth, tmpl.Source.Auth)
		mv.Target.Auth = cmp.Or(r.TargetAuth, tmpl.Target.Auth)
		var err error
		if srcPassword {
			if mv.Source.Password, err = sealPassword(key, failure.SideSource, mv.Source, r.Password); err != nil {
				return nil, err
			}
		}
		if tgtPassword {
			if mv.Target.Password, err = sealPassword(key, failure.SideTarget, mv.Target, r.TargetPassword); err != nil {
				return nil, err
			}
		}
		moves = append(moves, mv)
	}
	return moves, nil
}

// sealPassword seals the user's own password of side's account acc (its
// Endpoint and User set) for that account only.
func sealPassword(key *secret.Key, side failure.Side, acc workflows.Account, password string) (secret.Sealed, error) {
	return key.SealFor(acc.Endpoint.SecretBinding(side, secret.UsePassword, acc.User), password)
}

// eachMove runs f for every move, startsAtOnce at a time (a batch may have
// thousands), and returns what f said of each in the moves' order.
func eachMove[T any](moves []workflows.MoveStatus, f func(workflows.MoveStatus) T) []T {
	out := make([]T, len(moves))
	sem := make(chan struct{}, startsAtOnce)
	var wg sync.WaitGroup
	for i, m := range moves {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = f(m)
		})
	}
	wg.Wait()
	return out
}

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/mailmove/mailmove/workflows"
)

type batchListOptions struct {
	Client func() (client.Client, error)
	Out    io.Writer

	JSON bool
}

func newCmdBatchList(f *factory, runF func(*batchListOptions) error) *cobra.Command {
	opts := &batchListOptions{Client: f.Client, Out: f.Out}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Every batch with its mailboxes counted by status",
		Long: "Lists the batches of the namespace from Temporal's visibility store (the search attributes\n" +
			"the moves keep current): a few paged list calls, whatever the number of mailboxes, and no\n" +
			"query to the workers.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return batchListRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// batchSummary is one line of `batch list`.
type batchSummary struct {
	Name      string
	State     string // the batch workflow's: Running, Completed, Terminated…
	Started   time.Time
	Mailboxes int
	ByStatus  map[workflows.Status]int
}

// batchListRun lists the Batch workflows, then counts each one's moves by
// status from their search attributes.
func batchListRun(ctx context.Context, opts *batchListOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	byName := map[string]*batchSummary{}
	err = eachExecution(ctx, c, "WorkflowType = 'Batch'", func(e execution) {
		name := cmp.Or(e.attr(workflows.SearchAttrBatch.GetName()), strings.TrimPrefix(e.id, workflows.BatchWorkflowID("")))
		if b := byName[name]; b == nil || e.started.After(b.Started) {
			byName[name] = &batchSummary{Name: name, State: e.state, Started: e.started, ByStatus: map[workflows.Status]int{}}
		}
	})
	if err != nil {
		return err
	}
	// Counted per batch, not listed: a few calls per batch at any size.
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 4)
		mu   sync.Mutex
		errs []error
	)
	for _, b := range byName {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			by, _, err := countMoves(ctx, c, b.Name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("batch %s: %w", b.Name, err))
				return
			}
			b.ByStatus = by
			for _, n := range by {
				b.Mailboxes += n
			}
		})
	}
	wg.Wait()
	if err := joinErrs(errs); err != nil {
		return err
	}
	list := []batchSummary{}
	for _, b := range byName {
		list = append(list, *b)
	}
	slices.SortFunc(list, func(a, b batchSummary) int { return b.Started.Compare(a.Started) })
	if opts.JSON {
		enc := json.NewEncoder(opts.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(opts.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BATCH\tSTATE\tSTARTED\tMAILBOXES\tBY STATUS")
	for _, b := range list {
		var parts []string
		for _, s := range statusOrder {
			if n := b.ByStatus[s]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, s))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Name, b.State, b.Started.Local().Format("2006-01-02 15:04"), b.Mailboxes, strings.Join(parts, ", "))
	}
	return tw.Flush()
}

// statusOrder is the order statuses are shown in.
var statusOrder = []workflows.Status{workflows.StatusQueued, workflows.StatusInProgress, workflows.StatusSuspended, workflows.StatusSynced,
	workflows.StatusCompleting, workflows.StatusCompleted, workflows.StatusCompletedWithWarnings, workflows.StatusFailed}

// execution is what `batch list` reads of a workflow execution.
type execution struct {
	id, state string
	started   time.Time
	attrs     map[string]*commonpb.Payload
	memo      map[string]*commonpb.Payload
}

// memoOf reads a memo field into ptr; false when the run has none.
func (e execution) memoOf(key string, ptr any) bool {
	p := e.memo[key]
	return p != nil && converter.GetDefaultDataConverter().FromPayload(p, ptr) == nil
}

// attr is a keyword search attribute's value, "" when unset.
func (e execution) attr(name string) string {
	var s string
	if p := e.attrs[name]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &s)
	}
	return s
}

// eachExecution pages through the executions a visibility query matches.
// A page the server does not serve within the SDK's 10 s per call (a busy
// dev server's SQLite, 1,000 executions with their memos) is asked again
// a quarter the size: the page token does not depend on the size.
func eachExecution(ctx context.Context, c client.Client, query string, f func(execution)) error {
	var token []byte
	size := int32(1000)
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: size, NextPageToken: token})
		var slow *serviceerror.DeadlineExceeded
		if errors.As(err, &slow) && size > 50 && ctx.Err() == nil {
			size /= 4
			continue
		}
		if err != nil {
			return fmt.Errorf("list workflows (%s): %w", query, err)
		}
		for _, w := range resp.GetExecutions() {
			f(execution{id: w.GetExecution().GetWorkflowId(), state: stateName(w.GetStatus()), started: w.GetStartTime().AsTime(),
				attrs: w.GetSearchAttributes().GetIndexedFields(), memo: w.GetMemo().GetFields()})
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return nil
		}
	}
}

// stateName is "Running", "Completed"… for a workflow execution status.
func stateName(s enums.WorkflowExecutionStatus) string {
	name := strings.TrimPrefix(s.String(), "WORKFLOW_EXECUTION_STATUS_")
	return strings.ToUpper(name[:1]) + strings.ToLower(name[1:])
}

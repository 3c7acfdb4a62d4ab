package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/mailmove/mailmove/worker"
	"github.com/mailmove/mailmove/workflows"
)

// fakeClient is a Temporal client that answers from canned values and
// records what the verbs asked. A method the verbs do not use panics on
// the nil embedded Client.
type fakeClient struct {
	client.Client

	mu sync.Mutex
	// queries answers QueryWorkflow by "workflowID queryType": a value to
	// JSON round-trip, or an error.
	queries map[string]any
	// results answers the Get of ExecuteWorkflow's run by workflow ID.
	results map[string]any
	// errs fails a call: by "method workflowID".
	errs map[string]error
	// inputs are the inputs GetWorkflowHistory reports workflows were
	// started with, by workflow ID.
	inputs map[string]any
	calls  []string
	// started are the StartWorkflowOptions and the one argument of each
	// ExecuteWorkflow.
	started []startCall
	closed  bool
	// describe answers DescribeWorkflowExecution by workflow ID.
	describe map[string]*workflowservice.DescribeWorkflowExecutionResponse
}

type startCall struct {
	Options client.StartWorkflowOptions
	Arg     any
}

func newFakeClient() *fakeClient {
	return &fakeClient{queries: map[string]any{}, results: map[string]any{}, errs: map[string]error{}, inputs: map[string]any{},
		describe: map[string]*workflowservice.DescribeWorkflowExecutionResponse{}}
}

func (c *fakeClient) record(method, id string, detail ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, strings.Join(append([]string{method, id}, detail...), " "))
	return c.errs[method+" "+id]
}

// callsOf lists the recorded calls of method, sorted (status queries run
// in parallel).
func (c *fakeClient) callsOf(method string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, call := range c.calls {
		if strings.HasPrefix(call, method+" ") {
			out = append(out, strings.TrimPrefix(call, method+" "))
		}
	}
	sort.Strings(out)
	return out
}

func (c *fakeClient) QueryWorkflow(_ context.Context, id, _ string, queryType string, _ ...any) (converter.EncodedValue, error) {
	if err := c.record("QueryWorkflow", id, queryType); err != nil {
		return nil, err
	}
	c.mu.Lock()
	v, ok := c.queries[id+" "+queryType]
	c.mu.Unlock()
	if err, isErr := v.(error); isErr {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("fake: no answer to query %s of %s", queryType, id)
	}
	return jsonValue{v}, nil
}

func (c *fakeClient) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
	if err := c.record("ExecuteWorkflow", o.ID); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = append(c.started, startCall{Options: o, Arg: args[0]})
	return &fakeRun{id: o.ID, result: c.results[o.ID]}, nil
}

func (c *fakeClient) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	if err := c.record("UpdateWorkflow", o.WorkflowID, o.UpdateName); err != nil {
		return nil, err
	}
	return fakeUpdate{id: o.WorkflowID}, nil
}

func (c *fakeClient) SignalWorkflow(_ context.Context, id, _ string, signal string, _ any) error {
	return c.record("SignalWorkflow", id, signal)
}

func (c *fakeClient) SignalWithStartWorkflow(_ context.Context, id, signal string, _ any, o client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
	if err := c.record("SignalWithStartWorkflow", id, signal); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = append(c.started, startCall{Options: o, Arg: args[0]})
	return &fakeRun{id: id}, nil
}

func (c *fakeClient) CancelWorkflow(_ context.Context, id, _ string) error {
	return c.record("CancelWorkflow", id)
}

func (c *fakeClient) TerminateWorkflow(_ context.Context, id, _ string, _ string, _ ...any) error {
	return c.record("TerminateWorkflow", id)
}

func (c *fakeClient) GetWorkflowHistory(_ context.Context, id, _ string, _ bool, _ enums.HistoryEventFilterType) client.HistoryEventIterator {
	c.record("GetWorkflowHistory", id)
	c.mu.Lock()
	in, ok := c.inputs[id]
	c.mu.Unlock()
	if !ok {
		return &fakeHistory{}
	}
	payloads, err := converter.GetDefaultDataConverter().ToPayloads(in)
	if err != nil {
		panic(err)
	}
	return &fakeHistory{events: []*historypb.HistoryEvent{{
		EventType: enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
		Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{
			WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{Input: payloads},
		},
	}}}
}

// DescribeWorkflowExecution answers from describe by workflow ID, else
// a running workflow without memo (a batch started before gating).
func (c *fakeClient) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	if err := c.record("DescribeWorkflowExecution", id); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.describe[id]; ok {
		return d, nil
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
		Execution: &commonpb.WorkflowExecution{WorkflowId: id}, Status: enums.WORKFLOW_EXECUTION_STATUS_RUNNING}}, nil
}

func (c *fakeClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
}

// jsonValue is a query answer: Get JSON round-trips the canned value, as
// the SDK's data converter does.
type jsonValue struct{ v any }

func (j jsonValue) HasValue() bool { return j.v != nil }

func (j jsonValue) Get(ptr any) error {
	data, err := json.Marshal(j.v)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, ptr)
}

type fakeRun struct {
	client.WorkflowRun
	id     string
	result any
}

func (r *fakeRun) GetID() string    { return r.id }
func (r *fakeRun) GetRunID() string { return "run-1" }

func (r *fakeRun) Get(_ context.Context, ptr any) error {
	if err, ok := r.result.(error); ok {
		return err
	}
	return jsonValue{r.result}.Get(ptr)
}

type fakeUpdate struct {
	client.WorkflowUpdateHandle
	id string
}

func (u fakeUpdate) Get(context.Context, any) error { return nil }

type fakeHistory struct{ events []*historypb.HistoryEvent }

func (h *fakeHistory) HasNext() bool { return len(h.events) > 0 }

func (h *fakeHistory) Next() (*historypb.HistoryEvent, error) {
	ev := h.events[0]
	h.events = h.events[1:]
	return ev, nil
}

// testFactory is a factory whose Dial hands out c (nil: dialing fails as an
// unreachable server does) and whose key lives in a temporary file.
func testFactory(t *testing.T, c *fakeClient) (*factory, *strings.Builder) {
	t.Helper()
	out := &strings.Builder{}
	f := &factory{
		Conn: &worker.Connection{Address: "temporal.test:7233", Namespace: "default", SecretKeyFile: filepath.Join(t.TempDir(), "key")},
		Dial: func(worker.Connection) (client.Client, error) {
			if c == nil {
				return nil, &exitError{code: exitUnreachable, err: fmt.Errorf("connect to Temporal: unreachable")}
			}
			return c, nil
		},
		Out:    out,
		ErrOut: io.Discard,
	}
	return f, out
}

// addBatch makes batch name's status query list moves, each answering its
// own status query, and then the mailboxes queued, which the batch has not
// started.
func (c *fakeClient) addBatch(name string, moves []workflows.MoveStatus, queued ...string) {
	var entries []workflows.BatchEntry
	for _, m := range moves {
		id := workflows.MoveWorkflowID(name, m.Mailbox)
		entries = append(entries, workflows.BatchEntry{Mailbox: m.Mailbox, WorkflowID: id, Started: true})
		m.Batch = name
		c.queries[id+" "+workflows.QueryStatus] = m
	}
	for _, mailbox := range queued {
		entries = append(entries, workflows.BatchEntry{Mailbox: mailbox, WorkflowID: workflows.MoveWorkflowID(name, mailbox)})
	}
	c.queries[workflows.BatchWorkflowID(name)+" "+workflows.QueryStatus] = workflows.BatchStatus{Name: name, Entries: entries}
}

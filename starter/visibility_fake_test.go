package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
)

// visibility is a small visibility store for the fakes: it answers the
// queries the CLI sends (terms joined by AND, each `F = 'v'`, `F != 'v'`
// or `F IN ('v', …)` on WorkflowType, WorkflowId, ExecutionStatus or a
// keyword search attribute) over runs, as the server would.
type visibility []*workflowpb.WorkflowExecutionInfo

func (v visibility) match(query string) ([]*workflowpb.WorkflowExecutionInfo, error) {
	var out []*workflowpb.WorkflowExecutionInfo
	for _, e := range v {
		ok, err := matches(e, query)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}

func matches(e *workflowpb.WorkflowExecutionInfo, query string) (bool, error) {
	for _, term := range strings.Split(query, " AND ") {
		field, op, values, err := parseTerm(term)
		if err != nil {
			return false, err
		}
		got := fieldOf(e, field)
		in := slices.Contains(values, got)
		if (op == "!=") == in {
			return false, nil
		}
	}
	return true, nil
}

func parseTerm(term string) (field, op string, values []string, err error) {
	for _, op := range []string{" != ", " = ", " IN "} {
		f, rest, ok := strings.Cut(term, op)
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if op == " IN " {
			rest = strings.TrimSuffix(strings.TrimPrefix(rest, "("), ")")
		}
		for len(rest) > 0 {
			v, tail, err := unquote(rest)
			if err != nil {
				return "", "", nil, fmt.Errorf("term %q: %w", term, err)
			}
			values = append(values, v)
			rest = strings.TrimPrefix(strings.TrimSpace(tail), ",")
			rest = strings.TrimSpace(rest)
		}
		return strings.TrimSpace(f), strings.TrimSpace(op), values, nil
	}
	return "", "", nil, fmt.Errorf("term %q: no operator the fake knows", term)
}

// unquote reads one quoted value as quoteQuery writes it.
func unquote(s string) (v, rest string, err error) {
	if !strings.HasPrefix(s, "'") {
		return "", "", fmt.Errorf("%q: not quoted", s)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
			if i < len(s) {
				b.WriteByte(s[i])
			}
		case '\'':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", fmt.Errorf("%q: unterminated", s)
}

// executionStatusNames are ExecutionStatus's values in queries.
var executionStatusNames = map[enums.WorkflowExecutionStatus]string{
	enums.WORKFLOW_EXECUTION_STATUS_RUNNING: "Running", enums.WORKFLOW_EXECUTION_STATUS_COMPLETED: "Completed",
	enums.WORKFLOW_EXECUTION_STATUS_FAILED: "Failed", enums.WORKFLOW_EXECUTION_STATUS_CANCELED: "Canceled",
	enums.WORKFLOW_EXECUTION_STATUS_TERMINATED: "Terminated", enums.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW: "ContinuedAsNew",
	enums.WORKFLOW_EXECUTION_STATUS_TIMED_OUT: "TimedOut",
}

func fieldOf(e *workflowpb.WorkflowExecutionInfo, field string) string {
	switch field {
	case "WorkflowType":
		return e.GetType().GetName()
	case "WorkflowId":
		return e.GetExecution().GetWorkflowId()
	case "ExecutionStatus":
		return executionStatusNames[e.GetStatus()]
	}
	var s string
	if p := e.GetSearchAttributes().GetIndexedFields()[field]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &s)
	}
	return s
}

// CountWorkflow counts the runs of c.store the query matches.
func (c *listClient) CountWorkflow(_ context.Context, req *workflowservice.CountWorkflowExecutionsRequest) (*workflowservice.CountWorkflowExecutionsResponse, error) {
	c.mu.Lock()
	c.counts++
	c.mu.Unlock()
	m, err := c.store.match(req.Query)
	if err != nil {
		return nil, err
	}
	return &workflowservice.CountWorkflowExecutionsResponse{Count: int64(len(m))}, nil
}

// typed sets a run's workflow type.
func typed(e *workflowpb.WorkflowExecutionInfo, name string) *workflowpb.WorkflowExecutionInfo {
	e.Type = &commonpb.WorkflowType{Name: name}
	return e
}

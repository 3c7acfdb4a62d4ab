package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"

	"github.com/mailmove/mailmove/workflows"
)

func TestExitCodes(t *testing.T) {
	csv := writeFile(t, "b.csv", "EmailAddress,UserName,Password\nalice@example.com,alice,pw\n")
	start := []string{"batch", "start", "--name", "w1", "--csv", csv, "--source", "a:993", "--target", "b:993"}
	batchID := workflows.BatchWorkflowID("w1") + " " + workflows.QueryStatus
	for _, tc := range []struct {
		name  string
		args  []string
		query any // the batch status query's answer; nil: Temporal unreachable
		want  int
	}{
		{"help", []string{"--help"}, nil, exitOK},
		{"no command", nil, nil, exitOK},
		{"status", []string{"batch", "status", "w1"}, workflows.BatchStatus{Name: "w1"}, exitOK},
		{"unknown flag", []string{"batch", "status", "w1", "--bogus"}, nil, exitUsage},
		{"unknown command", []string{"bogus"}, nil, exitUsage},
		{"unknown verb", []string{"batch", "bogus"}, nil, exitUsage},
		{"missing argument", []string{"batch", "status"}, nil, exitUsage},
		{"extra argument", []string{"move", "resume", "a@x", "b@x", "--batch", "w1"}, nil, exitUsage},
		{"missing flag", []string{"batch", "start", "--name", "w1"}, nil, exitUsage},
		{"bad flag value", []string{"batch", "status", "w1", "--interval", "soon"}, nil, exitUsage},
		{"invalid flag", append(start, "--concurrency", "0"), workflows.BatchStatus{}, exitUsage},
		{"invalid worker flag", []string{"worker", "--max-connections-per-server", "-1"}, nil, exitUsage},
		{"unreachable", []string{"batch", "status", "w1"}, nil, exitUnreachable},
		{"unavailable", []string{"batch", "status", "w1"}, serviceerror.NewUnavailable("connection refused"), exitUnreachable},
		{"failed", []string{"batch", "status", "w1"}, serviceerror.NewNotFound("no such workflow"), exitFailed},
		{"already exists", start, serviceerror.NewWorkflowExecutionAlreadyStarted("started", "", "r"), exitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c *fakeClient
			if tc.query != nil {
				c = newFakeClient()
				c.queries[batchID] = tc.query
				if err, ok := tc.query.(*serviceerror.WorkflowExecutionAlreadyStarted); ok {
					c.errs["ExecuteWorkflow "+workflows.BatchWorkflowID("w1")] = err
				}
			}
			f, _ := testFactory(t, c)
			errOut := &strings.Builder{}
			f.ErrOut = errOut
			if got := run(context.Background(), f, tc.args); got != tc.want {
				t.Fatalf("mailmove %q exits %d, want %d; stderr:\n%s", tc.args, got, tc.want, errOut)
			}
			if tc.want != exitOK && !strings.HasPrefix(errOut.String(), "mailmove: ") {
				t.Fatalf("stderr %q, want the error", errOut)
			}
		})
	}
}

func TestExitCodeOfWrappedErrors(t *testing.T) {
	if got := exitCode(fmt.Errorf("retry: %w", usageErrorf("--csv: no such file"))); got != exitUsage {
		t.Errorf("exitCode(wrapped usage error) = %d", got)
	}
	if got := exitCode(fmt.Errorf("a@x: %w", serviceerror.NewUnavailable("down"))); got != exitUnreachable {
		t.Errorf("exitCode(wrapped Unavailable) = %d", got)
	}
	if got := exitCode(usageError(nil)); got != exitOK {
		t.Errorf("exitCode(usageError(nil)) = %d", got)
	}
}

package workflows

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/internal/engine"
)

// leaseSync sends one LeaseSync to the limiter under test and hands its
// answer to got.
func leaseSync(t *testing.T, env *testsuite.TestWorkflowEnvironment, id string, s engine.LeaseSync, got func(engine.LeaseSyncResult)) {
	env.UpdateWorkflow(UpdateLeases, id, &testsuite.TestUpdateCallback{
		OnReject: func(err error) { t.Errorf("update %s rejected: %v", id, err) },
		OnAccept: func() {},
		OnComplete: func(v interface{}, err error) {
			if err != nil {
				t.Errorf("update %s: %v", id, err)
				return
			}
			got(v.(engine.LeaseSyncResult))
		},
	}, s)
}

func TestEndpointLimiterGrantsWithinLimitsAcrossWorkers(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a1, b1, b2, a2 engine.LeaseSyncResult
	env.RegisterDelayedCallback(func() {
		leaseSync(t, env, "a1", engine.LeaseSync{Worker: "a", Want: []engine.LeaseRequest{{ID: "a#1", User: "u"}, {ID: "a#2", User: "u"}, {ID: "a#3", User: "v"}}}, func(r engine.LeaseSyncResult) { a1 = r })
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		leaseSync(t, env, "b1", engine.LeaseSync{Worker: "b", Want: []engine.LeaseRequest{{ID: "b#1", User: "w"}}}, func(r engine.LeaseSyncResult) { b1 = r })
	}, 2*time.Second)
	env.RegisterDelayedCallback(func() {
		// The cap goes up: b is served at its next ask.
		env.SignalWorkflow(SignalEndpointLimits, EndpointLimits{MaxConnections: 3, ConnectionRate: 2})
	}, 3*time.Second)
	env.RegisterDelayedCallback(func() {
		leaseSync(t, env, "b2", engine.LeaseSync{Worker: "b", Want: []engine.LeaseRequest{{ID: "b#1", User: "w"}}}, func(r engine.LeaseSyncResult) { b2 = r })
	}, 4*time.Second)
	env.RegisterDelayedCallback(func() {
		// a lets everything go and asks no more.
		leaseSync(t, env, "a2", engine.LeaseSync{Worker: "a"}, func(r engine.LeaseSyncResult) { a2 = r })
		env.SignalWorkflow(SignalEndpointLimits, EndpointLimits{})
	}, 5*time.Second)
	env.RegisterDelayedCallback(func() {
		leaseSync(t, env, "b3", engine.LeaseSync{Worker: "b"}, func(engine.LeaseSyncResult) {})
	}, 6*time.Second)
	env.ExecuteWorkflow(EndpointLimiter, EndpointLimiterInput{Side: "source", Addr: "imap.example:993", Limits: EndpointLimits{MaxConnections: 2, ConnectionRate: 2}})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("limiter did not end once without limits and leases: %v", env.GetWorkflowError())
	}
	if len(a1.Granted) != 2 || a1.Retry == 0 {
		t.Fatalf("a's first ask = %+v, want 2 grants and a retry", a1)
	}
	if d := a1.Granted[1].DialAt.Sub(a1.Granted[0].DialAt); d < 625*time.Millisecond {
		t.Fatalf("grants %v apart, want at least 625ms", d)
	}
	if len(b1.Granted) != 0 {
		t.Fatalf("b granted %+v beyond the cap", b1)
	}
	// a#3 asked first, but a did not ask again: b waits behind it only
	// while a's request is remembered (WaiterTTL), which covers 4s.
	if len(b2.Granted) != 0 || b2.Limits.MaxConnections != 3 {
		t.Fatalf("b's second ask = %+v, want nothing granted (a#3 is ahead) and the new limits", b2)
	}
	if len(a2.Granted) != 0 {
		t.Fatalf("a released all, got %+v", a2)
	}
}

func TestEndpointLimiterContinuesAsNewWithItsLeases(t *testing.T) {
	defer func(n int) { endpointUpdatesPerRun = n }(endpointUpdatesPerRun)
	endpointUpdatesPerRun = 3
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	// a asks once, then renews what it holds.
	syncs := []engine.LeaseSync{
		{Worker: "a", Want: []engine.LeaseRequest{{ID: "a#0"}}},
		{Worker: "a", Held: []string{"a#0"}},
		{Worker: "a", Held: []string{"a#0"}},
	}
	for i, ls := range syncs {
		env.RegisterDelayedCallback(func() {
			leaseSync(t, env, fmt.Sprint("u", i), ls, func(engine.LeaseSyncResult) {})
		}, time.Duration(i+1)*time.Second)
	}
	env.ExecuteWorkflow(EndpointLimiter, EndpointLimiterInput{Side: "target", Addr: "imap.example:993", Limits: EndpointLimits{MaxConnections: 1}})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("limiter ended with %v, want continue-as-new", err)
	}
	var next EndpointLimiterInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.Carry == nil || len(next.Carry.Held) != 1 || next.Carry.Held[0].ID != "a#0" || next.Carry.Limits.MaxConnections != 1 {
		t.Fatalf("carried %+v, want the lease a#0 and the limits", next.Carry)
	}
}

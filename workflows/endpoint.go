package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
)

// SignalEndpointLimits sets the limits of an endpoint's limiter
// (EndpointLimits); `batch start` sends it with start, so the latest
// setting for an endpoint wins.
const SignalEndpointLimits = "endpoint-limits"

// UpdateLeases and MemoEndpointLimits are the limiter's update and memo
// key (activities' names: the workers send and read them).
const (
	UpdateLeases       = activities.UpdateLeases
	MemoEndpointLimits = activities.MemoEndpointLimits
)

// EndpointLimits are the limits of one endpoint across all workers.
type EndpointLimits = engine.EndpointLimits

// EndpointWorkflowID is the workflow ID of the limiter of a server on a
// side ("source" or "target").
func EndpointWorkflowID(side, addr string) string {
	return activities.EndpointWorkflowID(failure.Side(side), addr)
}

// EndpointLimiterInput starts an endpoint's limiter; Carry is set only by
// continue-as-new.
type EndpointLimiterInput struct {
	Side   string
	Addr   string
	Limits EndpointLimits `json:",omitempty"`
	Carry  *engine.Leases `json:",omitempty"`
}

// endpointUpdatesPerRun (a variable for tests): the limiter continues as new after this many
// updates (each a few events), well inside Temporal's 2,000 updates per
// run.
var endpointUpdatesPerRun = 1000

// endpointIdle is how long a limiter without limits waits for its last
// leases to be let go or expire before it ends.
const endpointIdle = engine.LeaseTTL + engine.WaiterTTL

// EndpointLimiter hands out connection leases for one endpoint to every
// worker (engine.Leases says what it keeps): each worker sends
// UpdateLeases with all it holds and wants, and gets its grants at once
// (the handler never blocks, so Temporal's cap of 10 updates in flight
// per workflow is one per worker and endpoint, each a few milliseconds).
// SignalEndpointLimits changes the limits; without limits and leases it
// ends. It continues as new every endpointUpdatesPerRun updates.
func EndpointLimiter(ctx workflow.Context, in EndpointLimiterInput) error {
	st := in.Carry
	if st == nil {
		st = &engine.Leases{Limits: in.Limits}
	}
	logger := workflow.GetLogger(ctx)
	memo := func() {
		if err := workflow.UpsertMemo(ctx, map[string]any{MemoEndpointLimits: st.Limits}); err != nil {
			logger.Warn("endpoint memo", "error", err)
		}
	}
	memo()
	updates := 0
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateLeases,
		func(ctx workflow.Context, s engine.LeaseSync) (engine.LeaseSyncResult, error) {
			updates++
			return st.Sync(workflow.Now(ctx), s), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, s engine.LeaseSync) error {
			if s.Worker == "" || len(s.Want) > 10000 || len(s.Held) > 10000 {
				return errors.New("a lease update names its worker and at most 10,000 leases")
			}
			return nil
		}}); err != nil {
		return err
	}
	sig := workflow.GetSignalChannel(ctx, SignalEndpointLimits)
	apply := func(l EndpointLimits) {
		if l != st.Limits {
			logger.Info("endpoint limits", "side", in.Side, "addr", in.Addr, "limits", l.String())
			st.Limits = l
			memo()
		}
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var l EndpointLimits
			sig.Receive(ctx, &l)
			apply(l)
		}
	})
	for {
		idle := func() bool { return !st.Limits.Limited() && len(st.Held) == 0 && len(st.Waiting) == 0 }
		full := func() bool {
			return updates >= endpointUpdatesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
		}
		var wait time.Duration = 24 * time.Hour
		if !st.Limits.Limited() {
			wait = endpointIdle
		}
		fired, err := workflow.AwaitWithTimeout(ctx, wait, func() bool { return full() || idle() })
		if err != nil {
			return err
		}
		st.Expire(workflow.Now(ctx))
		if !fired && !idle() && !full() {
			continue
		}
		// Signals not applied yet go with it; update handlers never block.
		if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
			return err
		}
		for {
			var l EndpointLimits
			if !sig.ReceiveAsync(&l) {
				break
			}
			apply(l)
		}
		if idle() {
			return nil
		}
		if full() {
			return workflow.NewContinueAsNewError(ctx, EndpointLimiter, EndpointLimiterInput{Side: in.Side, Addr: in.Addr, Carry: st})
		}
	}
}

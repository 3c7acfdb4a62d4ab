package activities

import (
	"strings"

	"github.com/mailmove/mailmove/internal/failure"
)

// Names of an endpoint's limiter workflow, which the activities ask for
// connection leases (engine.Leases; docs/limits.md).
const (
	// UpdateLeases is the Update a worker sends an endpoint's limiter:
	// engine.LeaseSync in, engine.LeaseSyncResult out.
	UpdateLeases = "leases"
	// MemoEndpointLimits is the memo key under which the limiter keeps
	// its engine.EndpointLimits, read by workers with one describe call.
	MemoEndpointLimits = "endpoint-limits"
)

// EndpointWorkflowID is the workflow ID of the limiter of one server
// (host:port, case folded) on one side: every batch naming it shares it.
func EndpointWorkflowID(side failure.Side, addr string) string {
	return "mailmove-endpoint/" + string(side) + "/" + strings.ToLower(addr)
}
